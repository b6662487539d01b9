"""What the craft agent reads and writes: the failure vocabulary, the command grammar inside the
``<answer>...</answer>`` block (the same convention as Sokoban), and the rules text."""

from __future__ import annotations

from enum import Enum

from agentsd.envs.base import TextEnv


class CraftFailure(str, Enum):
    """Why a craft step went wrong (``info["diagnosis"]["failure_type"]`` holds the value)."""

    INVALID_FORMAT = "invalid_format"  # the text did not parse into a command
    MISSING_ITEM = "missing_item"  # craft/smelt inputs or fuel, the item to place, a bucket for water
    RECIPE_FAIL = "recipe_fail"  # unknown item or recipe, not placeable, or no station within 1 step
    TOOL_TIER_TOO_LOW = "tool_tier_too_low"  # the block needs a better pickaxe
    NAV_STUCK = "nav_stuck"  # a move was blocked (by a block, water or the edge of the world)
    TARGET_UNREACHABLE = "target_unreachable"  # nothing to mine there, or no free cell to place on
    TIMEOUT = "timeout"  # ran out of steps


DIRS = {"north": (-1, 0), "south": (1, 0), "east": (0, 1), "west": (0, -1)}
_ALIAS = {"n": "north", "s": "south", "e": "east", "w": "west", "up": "north", "down": "south",
          "right": "east", "left": "west"}
MAX_MOVE = 16
MAX_COUNT = 64
_MAX_BODY = 80
VERBS = ("move", "mine", "craft", "smelt", "place", "inventory", "look")
HOW = (
    "answer with one command like <answer>move north 3</answer>, <answer>mine east</answer>, "
    "<answer>craft planks 4</answer>, <answer>smelt iron_ore 3</answer>, <answer>place crafting_table</answer>, "
    "<answer>inventory</answer> or <answer>look</answer>"
)

Action = tuple[str, str, int]  # (verb, argument, count)


def _direction(word: str) -> str | None:
    return word if word in DIRS else _ALIAS.get(word)


def _body(text: str) -> str | None:
    return TextEnv.answer_body(text, _MAX_BODY)


def parse_command(body: str) -> Action | None:
    """One command from its text (lower case); None if it is not a command."""
    words = body.split()
    if not words:
        return None
    verb, rest = words[0], words[1:]
    if verb in ("inventory", "look"):
        return (verb, "", 1) if not rest else None
    if verb == "move":
        if not 1 <= len(rest) <= 2:
            return None
        d = _direction(rest[0])
        n = _int(rest[1], MAX_MOVE) if len(rest) == 2 else 1
        return ("move", d, n) if d is not None and n is not None else None
    if verb == "mine":
        if not rest:
            return ("mine", "", 1)
        d = _direction(rest[0]) if len(rest) == 1 else None
        return ("mine", d, 1) if d is not None else None
    if verb in ("craft", "smelt", "place"):
        n = 1
        if len(rest) >= 2 and rest[-1].isdigit():
            if verb == "place":
                return None
            n = _int(rest[-1], MAX_COUNT)
            if n is None:
                return None
            rest = rest[:-1]
        if not rest:
            return None
        item = "_".join(rest)
        if not all(ch.isalnum() or ch == "_" for ch in item):
            return None
        return (verb, item, n)
    return None


def _int(word: str, hi: int) -> int | None:
    if not word.isdigit():
        return None
    n = int(word)
    return n if 1 <= n <= hi else None


def parse_answer(text: str) -> Action | None:
    body = _body(text)
    return None if body is None else parse_command(body)


def explain_invalid(text: str) -> str:
    if not isinstance(text, str):
        return f"the answer is not text; {HOW}"
    body = _body(text)
    if body is None:
        low = text.lower()
        if low.rfind("</answer>") >= 0 and low.rfind("<answer>") >= 0:
            return f"the answer block is longer than {_MAX_BODY} characters; {HOW}"
        return f"no <answer>...</answer> block; {HOW}"
    words = body.split()
    if not words:
        return f"the answer block is empty; {HOW}"
    if words[0] not in VERBS:
        return f"{words[0][:20]!r} is not a command (commands: {', '.join(VERBS)}); {HOW}"
    if words[0] in ("move", "mine"):
        return (
            f"bad {words[0]} command {body.strip()[:40]!r}: directions are north, south, east, west; "
            f"move takes an optional count 1..{MAX_MOVE}"
        )
    if words[0] in ("craft", "smelt", "place"):
        return f"bad {words[0]} command {body.strip()[:40]!r}: write '{words[0]} <item>" + (
            "'" if words[0] == "place" else f" [count 1..{MAX_COUNT}]'"
        )
    return f"{words[0]} takes no arguments; {HOW}"


def format_command(verb: str, arg: str = "", n: int = 1) -> str:
    parts = [verb] + ([arg] if arg else []) + ([str(n)] if n != 1 else [])
    return "<answer>" + " ".join(parts) + "</answer>"


def rules(legend: str, step_penalty: float, subgoal_reward: float, solve_reward: float,
          format_penalty: float) -> str:
    return (
        "You are in a Minecraft-style 2D world seen from above (north is up). Obtain the item the task "
        "asks for by gathering, crafting and smelting.\n"
        "Commands (one per turn, inside <answer>...</answer>):\n"
        f"- move <north|south|east|west> [n]: walk up to n cells (1..{MAX_MOVE}); you stop at the first "
        "block, water or the edge. You then face that way.\n"
        "- mine [direction]: turn to the direction (if given) and mine the block in front of you; it "
        "drops an item (tree -> log, stone -> cobblestone, coal_ore -> coal, iron_ore -> iron_ore, "
        "diamond_ore -> diamond, sand, gravel -> flint; water with a bucket -> water_bucket).\n"
        "- Pickaxe tiers: stone and coal_ore need a wooden_pickaxe, iron_ore a stone_pickaxe, "
        "diamond_ore an iron_pickaxe. Your best pickaxe is used automatically.\n"
        "- craft <item> [count]: uses a recipe from your inventory (whole batches; planks come 4 per "
        "log). Big (3x3) recipes need a placed crafting_table within 1 step (8 neighbours).\n"
        "- smelt <item> [count]: in a placed furnace within 1 step, with fuel from your inventory "
        "(coal or charcoal smelt 8 items each, log or planks 1.5, stick 0.5); e.g. smelt iron_ore.\n"
        "- place <item>: put a crafting_table, furnace, chest, torch or cobblestone in front of you "
        "(or on a free neighbouring cell).\n"
        "- inventory, look: show your items / a wider view (uses a turn).\n"
        f"Rewards: {step_penalty:+g} per turn, {subgoal_reward:+g} for each item on the task's "
        f"prerequisite chain obtained for the first time, {solve_reward:+g} when the task is done, "
        f"{format_penalty:+g} for a turn that is not a valid command.\n"
        f"{legend}\n"
        "Answer format: think briefly if you like, then write one command, e.g. <answer>mine east</answer>."
    )

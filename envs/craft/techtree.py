"""The craft tech tree as data: items, tools with tiers, blocks and what they drop, recipes, smelting,
fuels, tasks by tier. The default ships as ``techtree.json`` next to this module and is loaded at
import (:data:`DEFAULT`); ``load_techtree(path)`` reads another file in the same layout.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_PATH = HERE / "techtree.json"
TIERS = ("wood", "stone", "iron", "diamond")


@dataclass(frozen=True)
class Recipe:
    output: str
    count: int
    inputs: dict[str, int]
    needs_table: bool = False
    kind: str = "shapeless"  # "shaped" | "shapeless"


@dataclass(frozen=True)
class Block:
    name: str
    char: str
    walkable: bool = False
    drops: str | None = None
    tier: int = 0  # pickaxe tier needed (0 = bare hands)
    needs_item: str | None = None  # an item used up to collect it (water needs a bucket)
    keeps_block: bool = False  # the block stays after collecting (water)
    station: bool = False


@dataclass
class TechTree:
    items: list[str]
    tools: dict[str, dict[str, Any]]
    blocks: dict[str, Block]
    placeable: dict[str, str]  # item -> block it becomes
    recipes: dict[str, Recipe]  # output -> recipe (one per output)
    smelting: dict[str, str]  # input -> output
    fuels: list[tuple[str, float]]
    tasks: dict[str, list[tuple[str, int]]]
    budgets: dict[str, int]
    source_block: dict[str, str] = field(default_factory=dict)  # item -> block that drops it
    smelted_from: dict[str, str] = field(default_factory=dict)  # output -> input

    def __post_init__(self) -> None:
        known = set(self.items)
        for b in self.blocks.values():
            if b.drops is not None:
                self.source_block.setdefault(b.drops, b.name)
        self.smelted_from = {o: i for i, o in self.smelting.items()}
        for r in self.recipes.values():
            for x in (r.output, *r.inputs):
                if x not in known:
                    raise ValueError(f"recipe for {r.output!r} uses unknown item {x!r}")
        for i, o in self.smelting.items():
            if i not in known or o not in known:
                raise ValueError(f"smelting {i!r} -> {o!r} uses an unknown item")
        for t in self.tools:
            if t not in known:
                raise ValueError(f"tool {t!r} is not an item")
        for tier, tasks in self.tasks.items():
            for item, _ in tasks:
                if item not in known:
                    raise ValueError(f"task {item!r} of tier {tier!r} is not an item")
        for item in self.items:  # every item must be obtainable
            if item not in self.recipes and item not in self.smelted_from and item not in self.source_block:
                raise ValueError(f"item {item!r} has no recipe, smelting or block that drops it")
        self.pickaxes = {t["tier"]: name for name, t in self.tools.items() if t["kind"] == "pickaxe"}

    def pickaxe_for(self, tier: int) -> str:
        """The cheapest pickaxe that mines blocks of ``tier``."""
        return self.pickaxes[min(t for t in self.pickaxes if t >= tier)]

    def fuel_units(self, fuel_value: float, n: int) -> int:
        return math.ceil(n / fuel_value - 1e-9)

    def prerequisites(self, item: str) -> list[str]:
        """The chain of items needed to obtain ``item`` from nothing, in an order they can be made
        (ingredients, stations and pickaxes before what needs them; ``item`` last; fuel not listed:
        any fuel will do)."""
        out: list[str] = []
        seen: set[str] = set()

        def visit(x: str) -> None:
            if x in seen:
                return
            seen.add(x)
            r = self.recipes.get(x)
            if r is not None:
                for ing in r.inputs:
                    visit(ing)
                if r.needs_table:
                    visit("crafting_table")
            elif x in self.smelted_from:
                visit(self.smelted_from[x])
                visit("furnace")
            else:
                b = self.blocks[self.source_block[x]]
                if b.tier > 0:
                    visit(self.pickaxe_for(b.tier))
                if b.needs_item:
                    visit(b.needs_item)
            out.append(x)

        visit(item)
        return out


def _recipe(d: dict[str, Any]) -> Recipe:
    kind = d.get("type", "shapeless")
    if kind == "shaped":
        inputs: dict[str, int] = {}
        for row in d["pattern"]:
            for ch in row:
                if ch != " ":
                    inputs[d["key"][ch]] = inputs.get(d["key"][ch], 0) + 1
        big = len(d["pattern"]) > 2 or any(len(r) > 2 for r in d["pattern"])
    elif kind == "shapeless":
        inputs = {k: int(v) for k, v in d["inputs"].items()}
        big = sum(inputs.values()) > 4
    else:
        raise ValueError(f"unknown recipe type {kind!r}")
    return Recipe(d["output"], int(d.get("count", 1)), inputs, bool(d.get("needs_table", big)), kind)


def techtree_from_dict(data: dict[str, Any]) -> TechTree:
    blocks = {
        name: Block(
            name,
            b["char"],
            walkable=bool(b.get("walkable", False)),
            drops=b.get("drops"),
            tier=int(b.get("tier", 0)),
            needs_item=b.get("needs_item"),
            keeps_block=bool(b.get("keeps_block", False)),
            station=bool(b.get("station", False)),
        )
        for name, b in data["blocks"].items()
    }
    recipes: dict[str, Recipe] = {}
    for d in data["recipes"]:
        r = _recipe(d)
        if r.output in recipes:
            raise ValueError(f"two recipes for {r.output!r}: the default tree keeps one per item")
        recipes[r.output] = r
    return TechTree(
        items=list(data["items"]),
        tools=dict(data["tools"]),
        blocks=blocks,
        placeable=dict(data.get("placeable", {})),
        recipes=recipes,
        smelting={d["input"]: d["output"] for d in data.get("smelting", [])},
        fuels=[(f, float(v)) for f, v in data.get("fuels", [])],
        tasks={t: [(i, int(n)) for i, n in v] for t, v in data["tasks"].items()},
        budgets={t: int(v) for t, v in data["budgets"].items()},
    )


def load_techtree(path: str | os.PathLike = DEFAULT_PATH) -> TechTree:
    return techtree_from_dict(json.loads(Path(path).read_text()))


DEFAULT = load_techtree()

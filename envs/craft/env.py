"""The craft text environment (see :class:`CraftEnv`)."""

from __future__ import annotations

import os
from typing import Any

from agentsd.envs.base import Diagnosis, Predicate, TextEnv
from agentsd.envs.craft.techtree import DEFAULT, TIERS, TechTree
from agentsd.envs.craft.text import DIRS, CraftFailure, explain_invalid, format_command, parse_answer, rules
from agentsd.envs.craft.world import block_ids, generate

F = CraftFailure
_DIR_ORDER = ("north", "east", "south", "west")

_PREDICATES = (
    Predicate("invalid_format", "the answer text does not parse into a command", "before"),
    Predicate(
        "missing_ingredients",
        "the command lacks items it needs: craft/smelt inputs or fuel, the item to place, a bucket for water",
        "before",
    ),
    Predicate("unknown_recipe", "unknown item or recipe, not placeable, or no station within 1 step", "before"),
    Predicate("tool_tier_too_low", "mining the target block needs a better pickaxe", "before"),
    Predicate("move_blocked", "a move is stopped by a block, water or the edge before its last cell", "before"),
    Predicate("nothing_to_mine", "mine faces nothing minable, or place finds no free cell", "before"),
    Predicate("inv_ge", "the inventory holds at least n of item", "after", {"item": "str, item name", "n": "int, count"}),
    Predicate("task_done", "the task's item count is reached", "after"),
)
PREDICATES: dict[str, Predicate] = {p.name: p for p in _PREDICATES}
FAILURE_PREDICATES: dict[str, str] = {
    F.INVALID_FORMAT.value: "invalid_format",
    F.MISSING_ITEM.value: "missing_ingredients",
    F.RECIPE_FAIL.value: "unknown_recipe",
    F.TOOL_TIER_TOO_LOW.value: "tool_tier_too_low",
    F.NAV_STUCK.value: "move_blocked",
    F.TARGET_UNREACHABLE.value: "nothing_to_mine",
}
RISKS = {v: F(k) for k, v in FAILURE_PREDICATES.items()}


class CraftEnv(TextEnv):
    """Obtain an item in a Minecraft-style grid world by gathering, crafting and smelting.

    ## Action
    The last ``<answer>...</answer>`` block holds one command: ``move <north|south|east|west> [n]``
    (n 1..16; stops at the first non-walkable cell), ``mine [direction]`` (turn, then mine the
    facing cell), ``craft <item> [count]`` (count = items wanted, rounded up to whole batches),
    ``smelt <item> [count]`` (the input, e.g. ``iron_ore``, or its output name), ``place <item>``,
    ``inventory``, ``look``. Anything else is invalid: ``format_penalty`` and no change.

    ## Observation
    The task and step/day counter, a local ``view`` x ``view`` grid (``look``: 4 wider) with a
    legend, the inventory, the best pickaxe, stations within reach and in view, and the last message
    (failures say what is missing: ``missing: 2 planks``, ``needs a crafting_table within 1 step``,
    ``tool tier too low: stone needs wooden_pickaxe``).

    ## Reward
    ``step_penalty`` per turn (-0.01), ``subgoal_reward`` (+1) for each item of the task's
    prerequisite chain obtained for the first time, ``solve_reward`` (+10) when the task is done;
    an invalid turn gets ``format_penalty`` (-1).

    ## Episode end
    Terminated when the inventory holds the task's count; truncated after the tier's step budget
    (``max_steps`` overrides it).

    ## Info
    ``action_is_valid``, ``action_is_effective``, ``success``, ``command`` (the parsed command or
    None), ``task`` (item, count, tier), ``subgoals`` (the prerequisite chain in order, each with
    ``done``: obtained at some point) and ``diagnosis``: a :class:`CraftFailure` value, the state
    diff (``inventory`` deltas, ``position`` [[r, c], [r, c]], ``placed``/``mined`` blocks),
    ``progress`` (chain items done, with partial credit for the task count, over the chain length;
    1.0 when solved), ``stagnation`` and ``extra`` (steps, max_steps, day, position, facing,
    subgoals_done, subgoals_total). The turn that runs out of steps reports ``timeout``.

    ## Predicates
    "before" (``check(name, action_text)``): ``invalid_format``, ``missing_ingredients``,
    ``unknown_recipe``, ``tool_tier_too_low``, ``move_blocked``, ``nothing_to_mine``; each is True
    exactly when ``step`` would report its failure (``failure_predicates``; they run the same rules
    with ``apply=False``), except that a turn that runs out of steps reports ``timeout``. "after":
    ``inv_ge(item, n)`` and ``task_done``.

    ## Arguments
    ``tier`` (None: drawn from the seed), ``task`` (an item, or (item, count)), ``size`` (24),
    ``view`` (7), ``max_steps`` (the tier's budget), ``day_length`` (100), ``techtree`` (the shipped
    :data:`~agentsd.envs.craft.techtree.DEFAULT`), ``recipes`` (a directory of vanilla Minecraft recipe
    JSON merged over the tree, see :func:`~agentsd.envs.craft.recipes.load_recipes`), ``render_mode`` ("ansi": the local view), and the
    rewards above.
    """

    metadata = {**TextEnv.metadata, "render_fps": 4}
    name = "craft"
    train_seeds = range(0, 1_000_000)
    test_seeds = range(1_000_000, 1_100_000)
    failure_types = CraftFailure
    failure_predicates = FAILURE_PREDICATES

    def __init__(
        self,
        tier: str | None = None,
        task: str | tuple[str, int] | None = None,
        size: int = 24,
        view: int = 7,
        max_steps: int | None = None,
        day_length: int = 100,
        techtree: TechTree | None = None,
        recipes: str | os.PathLike | None = None,
        render_mode: str | None = None,
        format_penalty: float = -1.0,
        step_penalty: float = -0.01,
        subgoal_reward: float = 1.0,
        solve_reward: float = 10.0,
    ):
        super().__init__(render_mode=render_mode)
        if tier is not None and tier not in TIERS:
            raise ValueError(f"tier must be one of {TIERS} or None, got {tier!r}")
        if view < 3 or view % 2 == 0:
            raise ValueError(f"view must be odd and >= 3, got {view}")
        if size < 12:
            raise ValueError(f"size must be >= 12, got {size}")
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.tree = techtree or DEFAULT
        if recipes is not None:  # vanilla Minecraft recipe JSON merged over the tree (see recipes.py)
            from agentsd.envs.craft.recipes import load_recipes

            self.tree = load_recipes(recipes, base=self.tree).tree
        if isinstance(task, str):
            task = (task, 1)
        if task is not None and task[0] not in self.tree.items:
            raise ValueError(f"unknown task item {task[0]!r}")
        self.tier, self.fixed_task, self.size, self.view = tier, task, size, view
        self._max_steps_arg, self.day_length = max_steps, day_length
        self.format_penalty, self.step_penalty = format_penalty, step_penalty
        self.subgoal_reward, self.solve_reward = subgoal_reward, solve_reward
        self.block_names, self.bid = block_ids(self.tree)
        blocks = [self.tree.blocks[n] for n in self.block_names]
        self.chars = [b.char for b in blocks]
        self.walkable = [b.walkable for b in blocks]
        self.blocks = blocks
        self.stations = {k for k, b in enumerate(blocks) if b.station}
        self.grass = self.bid["grass"]
        self._legend = "Legend: @ you, (blank) outside the world, " + ", ".join(
            f"{b.char} {b.name.replace('_', ' ')}" for b in blocks
        )
        self.cells: bytearray | None = None

    # --- text ---------------------------------------------------------------------------------
    def instructions(self) -> str:
        return rules(self._legend, self.step_penalty, self.subgoal_reward, self.solve_reward, self.format_penalty)

    def task_description(self) -> str:
        if self.cells is None:
            return "Obtain the item the task names (a new task each episode)."
        return f"Obtain {self.count} {self.item} (tier {self.task_tier}) within {self.max_steps} steps."

    def parse_action(self, text: str) -> list[tuple[str, str, int]] | None:
        a = parse_answer(text)
        return None if a is None else [a]

    # --- episode ------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        world = generate(rng, self.size, self.tree)
        self.h, self.w = world.h, world.w
        self.cells = world.cells
        if self.fixed_task is not None:
            self.item, self.count = self.fixed_task
            self.task_tier = self.tier or self._tier_of(self.item)
        else:
            tier = self.tier or TIERS[int(rng.integers(len(TIERS)))]
            tasks = self.tree.tasks[tier]
            self.item, self.count = tasks[int(rng.integers(len(tasks)))]
            self.task_tier = tier
        self.max_steps = self._max_steps_arg or self.tree.budgets[self.task_tier]
        self.chain = self.tree.prerequisites(self.item)
        self._chain_set = set(self.chain)
        self._pad = (self.view + 4) // 2
        self._rows = [self._row_text(r) for r in range(self.h)]
        self._station_at: dict[int, int] = {i: k for i, k in enumerate(self.cells) if k in self.stations}
        self.pos, self.facing = world.start, "north"
        self.inv: dict[str, int] = {}
        self.obtained: set[str] = set()
        self.steps = 0
        self.solved = False
        self.message = "a new world"
        self._progress = self._measure()
        self._best, self._stagnation = self._progress, 0
        diag = self._diagnosis(None, "new world", {})
        return self._obs(), self._info(True, False, diag, None)

    def _tier_of(self, item: str) -> str:
        """The tier of a given task: set by the best pickaxe its chain needs (none: wood)."""
        needed, tier = set(self.tree.prerequisites(item)[:-1]), "wood"
        for t, pick in (("stone", "wooden_pickaxe"), ("iron", "stone_pickaxe"), ("diamond", "iron_pickaxe")):
            if pick in needed:
                tier = t
        return tier

    def step(self, action: str):
        if self.cells is None:
            raise RuntimeError("call reset() before step()")
        self.steps += 1
        parsed = self.parse_action(action)
        if parsed is None:
            fail, detail, diff, reward = F.INVALID_FORMAT, explain_invalid(action), {}, self.format_penalty
            cmd = None
        else:
            cmd = parsed[0]
            before = dict(self.inv)
            fail, detail, diff = self._run(cmd, apply=True)
            reward = self.step_penalty
            inv_diff = {k: self.inv.get(k, 0) - before.get(k, 0) for k in set(self.inv) | set(before)}
            inv_diff = {k: v for k, v in inv_diff.items() if v}
            if inv_diff:
                diff["inventory"] = inv_diff
                for k, v in inv_diff.items():
                    if v > 0 and k in self._chain_set and k not in self.obtained:
                        self.obtained.add(k)
                        reward += self.subgoal_reward
                for k in [k for k, v in self.inv.items() if v <= 0]:
                    del self.inv[k]
            if not self.solved and self.inv.get(self.item, 0) >= self.count:
                self.solved = True
                reward += self.solve_reward
                detail += f"; task done: you have {self.count} {self.item}"
            self._progress = self._measure()
        self.message = detail
        truncated = self.steps >= self.max_steps and not self.solved
        if truncated:
            fail = F.TIMEOUT
            self.message = detail = detail + f"; ran out of steps ({self.max_steps})"
        if self._progress > self._best + 1e-12:
            self._best, self._stagnation = self._progress, 0
        else:
            self._stagnation += 1
        diag = self._diagnosis(fail, detail, diff)
        info = self._info(parsed is not None, bool(diff), diag, cmd)
        obs = self._obs(wide=cmd is not None and cmd[0] == "look")
        return obs, float(reward), self.solved, truncated, info

    # --- the rules of one command (apply=False: only say what would happen) ---------------------
    def _run(self, cmd: tuple[str, str, int], apply: bool) -> tuple[CraftFailure | None, str, dict]:
        verb, arg, n = cmd
        if verb == "move":
            return self._move(arg, n, apply)
        if verb == "mine":
            return self._mine(arg or self.facing, apply)
        if verb == "craft":
            return self._craft(arg, n, apply)
        if verb == "smelt":
            return self._smelt(arg, n, apply)
        if verb == "place":
            return self._place(arg, apply)
        if verb == "inventory":
            return None, "inventory: " + self._inv_text(), {}
        return None, "you look around (wider view)", {}

    def _rc(self, i: int) -> list[int]:
        return list(divmod(i, self.w))

    def _ahead(self, i: int, d: str) -> int | None:
        dr, dc = DIRS[d]
        r, c = divmod(i, self.w)
        r, c = r + dr, c + dc
        if 0 <= r < self.h and 0 <= c < self.w:
            return r * self.w + c
        return None

    def _move(self, d: str, n: int, apply: bool):
        p0 = p = self.pos
        walk, cells = self.walkable, self.cells
        fail, msg = None, ""
        for k in range(n):
            t = self._ahead(p, d)
            if t is None or not walk[cells[t]]:
                what = "the edge of the world" if t is None else self.block_names[cells[t]].replace("_", " ")
                fail, msg = F.NAV_STUCK, f"moved {k} of {n} {d}: blocked by {what}"
                break
            p = t
        if fail is None:
            msg = f"moved {n} {d}"
        diff: dict[str, Any] = {}
        if p != p0:
            diff["position"] = [self._rc(p0), self._rc(p)]
        if apply:
            self.pos, self.facing = p, d
        return fail, msg, diff

    def best_pickaxe(self, inv: dict[str, int] | None = None) -> tuple[int, str | None]:
        inv = self.inv if inv is None else inv
        best, name = 0, None
        for t, pick in self.tree.pickaxes.items():
            if t > best and inv.get(pick, 0) > 0:
                best, name = t, pick
        return best, name

    def _mine(self, d: str, apply: bool):
        if apply:
            self.facing = d
        t = self._ahead(self.pos, d)
        if t is None:
            return F.TARGET_UNREACHABLE, f"nothing to mine {d}: the edge of the world", {}
        b = self.blocks[self.cells[t]]
        if b.walkable or b.drops is None:
            return F.TARGET_UNREACHABLE, f"nothing to mine {d}: {b.name.replace('_', ' ')}", {}
        tier, _ = self.best_pickaxe()
        if b.tier > tier:
            need = self.tree.pickaxe_for(b.tier)
            return F.TOOL_TIER_TOO_LOW, f"tool tier too low: {b.name} needs {need}", {}
        if b.needs_item and self.inv.get(b.needs_item, 0) < 1:
            return F.MISSING_ITEM, f"missing: 1 {b.needs_item} (to collect {b.name})", {}
        if apply:
            if b.needs_item:
                self.inv[b.needs_item] -= 1
            self.inv[b.drops] = self.inv.get(b.drops, 0) + 1
            if not b.keeps_block:
                self._set(t, self.grass)
        diff = {} if b.keeps_block else {"mined": [b.name, self._rc(t)]}
        return None, f"mined {b.name.replace('_', ' ')}: +1 {b.drops}", diff

    def _set(self, i: int, k: int) -> None:
        """Change one cell, keeping the text rows and the station index in step."""
        self.cells[i] = k
        self._station_at.pop(i, None)
        if k in self.stations:
            self._station_at[i] = k
        self._rows[i // self.w] = self._row_text(i // self.w)

    def _row_text(self, r: int) -> str:
        pad = " " * self._pad
        base = r * self.w
        return pad + "".join(self.chars[k] for k in self.cells[base : base + self.w]) + pad

    def station_near(self, name: str) -> bool:
        k = self.bid[name]
        r, c = divmod(self.pos, self.w)
        for i, kk in self._station_at.items():
            if kk == k:
                rr, cc = divmod(i, self.w)
                if abs(rr - r) <= 1 and abs(cc - c) <= 1:
                    return True
        return False

    @staticmethod
    def _missing(need: dict[str, int], inv: dict[str, int]) -> list[str]:
        return [f"{k - inv.get(i, 0)} {i}" for i, k in need.items() if inv.get(i, 0) < k]

    def _craft(self, item: str, n: int, apply: bool):
        tree = self.tree
        r = tree.recipes.get(item)
        if r is None:
            if item not in tree.items:
                return F.RECIPE_FAIL, f"unknown item {item!r}", {}
            if item in tree.smelted_from:
                return F.RECIPE_FAIL, f"no crafting recipe for {item}: smelt {tree.smelted_from[item]}", {}
            return F.RECIPE_FAIL, f"no crafting recipe for {item}: mine {tree.source_block[item]}", {}
        if r.needs_table and not self.station_near("crafting_table"):
            return F.RECIPE_FAIL, f"{item} needs a crafting_table within 1 step", {}
        batches = -(-n // r.count)
        need = {i: k * batches for i, k in r.inputs.items()}
        miss = self._missing(need, self.inv)
        if miss:
            return F.MISSING_ITEM, f"cannot craft {item}: missing: " + ", ".join(miss), {}
        if apply:
            for i, k in need.items():
                self.inv[i] -= k
            self.inv[item] = self.inv.get(item, 0) + batches * r.count
        return None, f"crafted {batches * r.count} {item}", {}

    def _fuel(self, src: str, n: int) -> tuple[str, int] | None:
        for f, value in self.tree.fuels:
            units = self.tree.fuel_units(value, n)
            if self.inv.get(f, 0) - (n if f == src else 0) >= units:
                return f, units
        return None

    def _smelt(self, item: str, n: int, apply: bool):
        tree = self.tree
        src = item if item in tree.smelting else tree.smelted_from.get(item)
        if src is None:
            what = "unknown item" if item not in tree.items else "cannot be smelted"
            return F.RECIPE_FAIL, f"{item!r}: {what} (smeltable: {', '.join(tree.smelting)})", {}
        if not self.station_near("furnace"):
            return F.RECIPE_FAIL, "smelting needs a furnace within 1 step", {}
        if self.inv.get(src, 0) < n:
            return F.MISSING_ITEM, f"cannot smelt: missing: {n - self.inv.get(src, 0)} {src}", {}
        fuel = self._fuel(src, n)
        if fuel is None:
            opts = " or ".join(f"{tree.fuel_units(v, n)} {f}" for f, v in tree.fuels)
            return F.MISSING_ITEM, f"cannot smelt: missing fuel: {opts}", {}
        out = tree.smelting[src]
        if apply:
            f, units = fuel
            self.inv[src] -= n
            self.inv[f] -= units
            self.inv[out] = self.inv.get(out, 0) + n
        return None, f"smelted {n} {src} into {out} (fuel: {fuel[1]} {fuel[0]})", {}

    def _place(self, item: str, apply: bool):
        block = self.tree.placeable.get(item)
        if block is None:
            return F.RECIPE_FAIL, f"{item} cannot be placed (placeable: {', '.join(self.tree.placeable)})", {}
        if self.inv.get(item, 0) < 1:
            return F.MISSING_ITEM, f"missing: 1 {item}", {}
        order = [self.facing] + [d for d in _DIR_ORDER if d != self.facing]
        for d in order:
            t = self._ahead(self.pos, d)
            if t is not None and self.cells[t] == self.grass:
                if apply:
                    self.inv[item] -= 1
                    self._set(t, self.bid[block])
                return None, f"placed {item} {d}", {"placed": [block, self._rc(t)]}
        return F.TARGET_UNREACHABLE, f"no free grass cell next to you to place {item}", {}

    # --- diagnosis ----------------------------------------------------------------------------
    def _measure(self) -> float:
        if self.solved:
            return 1.0
        done = sum(1 for x in self.chain[:-1] if x in self.obtained)
        part = min(1.0, self.inv.get(self.item, 0) / self.count)
        return min(0.99, (done + part) / len(self.chain))

    def _diagnosis(self, fail: CraftFailure | None, detail: str, diff: dict) -> Diagnosis:
        extra = {
            "steps": self.steps,
            "max_steps": self.max_steps,
            "day": self.steps // self.day_length + 1,
            "position": self._rc(self.pos),
            "facing": self.facing,
            "subgoals_done": sum(1 for x in self.chain if x in self.obtained),
            "subgoals_total": len(self.chain),
        }
        return Diagnosis(
            failure_type=fail.value if fail is not None else None,
            detail=detail,
            state_diff=diff,
            progress=self._progress,
            stagnation=self._stagnation,
            extra=extra,
        )

    def _info(self, valid: bool, effective: bool, diag: Diagnosis, cmd) -> dict[str, Any]:
        return self.make_info(
            valid=valid,
            effective=effective,
            success=self.solved,
            diagnosis=diag,
            command=list(cmd) if cmd is not None else None,
            task={"item": self.item, "count": self.count, "tier": self.task_tier},
            subgoals=[{"item": x, "done": x in self.obtained} for x in self.chain],
        )

    # --- predicates ---------------------------------------------------------------------------
    def predicates(self) -> dict[str, Predicate]:
        return dict(PREDICATES)

    def _ready(self) -> bool:
        if self.cells is None:
            raise RuntimeError("call reset() before check()")
        return True

    def _risk(self, name: str, action: str) -> bool:
        self._ready()
        parsed = self.parse_action(action)
        if parsed is None:
            return False
        return self._run(parsed[0], apply=False)[0] is RISKS[name]

    def _pred_invalid_format(self, action: str) -> bool:
        return self._ready() and self.parse_action(action) is None

    def _pred_inv_ge(self, action: None, item: str, n: int) -> bool:
        return self._ready() and self.inv.get(str(item), 0) >= int(n)

    def _pred_task_done(self, action: None) -> bool:
        return self._ready() and self.solved

    # --- views --------------------------------------------------------------------------------
    def _inv_text(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(self.inv.items())) or "(empty)"

    def _chain_text(self) -> str:
        return ", ".join(("*" + x) if x in self.obtained else x for x in self.chain)

    def grid_text(self, view: int | None = None) -> str:
        v = min(view or self.view, 2 * self._pad + 1)
        half = v // 2
        r0, c0 = divmod(self.pos, self.w)
        lo = c0 + self._pad - half  # column c sits at c + pad in a text row
        blank, rows, h = " " * v, [], self.h
        for r in range(r0 - half, r0 + half + 1):
            if not 0 <= r < h:
                rows.append(blank)
            elif r == r0:
                row = self._rows[r]
                rows.append(row[lo : lo + half] + "@" + row[lo + half + 1 : lo + v])
            else:
                rows.append(self._rows[r][lo : lo + v])
        return "\n".join(rows)

    def _nearby(self, half: int) -> list[str]:
        r0, c0 = divmod(self.pos, self.w)
        out = []
        for i, k in sorted(self._station_at.items()):
            r, c = divmod(i, self.w)
            dr, dc = r - r0, c - c0
            if abs(dr) > half or abs(dc) > half:
                continue
            ns = f"{abs(dr)} {'south' if dr > 0 else 'north'}" if dr else ""
            ew = f"{abs(dc)} {'east' if dc > 0 else 'west'}" if dc else ""
            where = " ".join(x for x in (ns, ew) if x)
            reach = " (within reach)" if max(abs(dr), abs(dc)) <= 1 else ""
            out.append(f"{self.block_names[k]} {where}{reach}")
        return out

    def _obs(self, wide: bool = False) -> str:
        v = self.view + (4 if wide else 0)
        tier, pick = self.best_pickaxe()
        tool = f"{pick} (tier {tier})" if pick else "none (bare hands: trees, sand, gravel)"
        near = self._nearby(v // 2)
        return (
            f"Task: obtain {self.count} {self.item}. Step {self.steps}/{self.max_steps}, "
            f"day {self.steps // self.day_length + 1}.\n"
            f"View ({v}x{v}, north up; you are @ facing {self.facing}):\n{self.grid_text(v)}\n"
            f"{self._legend}\n"
            f"Inventory: {self._inv_text()}\n"
            f"Prerequisites (* = obtained): {self._chain_text()}\n"
            f"Best pickaxe: {tool}\n"
            f"Stations in view: {'; '.join(near) if near else 'none'}\n"
            f"Last: {self.message}"
        )

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self.grid_text()
        return None

    # --- oracle -------------------------------------------------------------------------------
    def oracle_action(self) -> str | None:
        if self.cells is None or self.solved:
            return None
        from agentsd.envs.craft.planner import next_command

        cmd = next_command(self)
        return None if cmd is None else format_command(*cmd)

"""The craft oracle: a planner over the tech tree plus shortest-path navigation.

``next_command(env)`` re-plans from the current state on every call, so it follows the agent from
anywhere: it walks the task's recipe tree depth first, reserving what the inventory already holds,
and returns the first command whose inputs are all present — craft, smelt, place a station, or go
and mine the nearest block that drops a missing raw item (Dijkstra over the grid: walking costs 1,
tunnelling through a block the current pickaxe can mine costs 3). Stations: use one within 1 step,
place one from the inventory, walk to a placed one at most ``STATION_DETOUR`` away, else make one.
Fuel for smelting: whatever the inventory holds (the env burns the first of coal, charcoal, log,
planks, stick that suffices), else more logs.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from agentsd.envs.craft.text import DIRS, MAX_MOVE

if TYPE_CHECKING:  # pragma: no cover
    from agentsd.envs.craft.env import CraftEnv

Command = tuple[str, str, int]
STATION_DETOUR = 12
TUNNEL_COST = 3
STATION_COST = 10  # mining a placed station back (it returns to the inventory) to get past it


class Stuck(Exception):
    """No plan from here (a needed block is unreachable)."""


def next_command(env: CraftEnv) -> Command | None:
    try:
        return _need(env, env.item, env.count, dict(env.inv), 0)
    except Stuck:
        return None


def _need(env: CraftEnv, item: str, n: int, inv: dict[str, int], depth: int) -> Command | None:
    """The first command towards holding ``n`` more ``item`` (reserving from ``inv``), or None when
    ``inv`` already holds them."""
    if depth > 40:
        raise Stuck(item)
    have = inv.get(item, 0)
    if have >= n:
        inv[item] = have - n
        return None
    deficit, inv[item] = n - have, 0
    tree = env.tree
    r = tree.recipes.get(item)
    if r is not None:
        batches = -(-deficit // r.count)
        for ing, k in r.inputs.items():
            a = _need(env, ing, k * batches, inv, depth + 1)
            if a is not None:
                return a
        if r.needs_table:
            a = _station(env, "crafting_table", inv, depth)
            if a is not None:
                return a
        return ("craft", item, batches * r.count)
    src = tree.smelted_from.get(item)
    if src is not None:
        a = _need(env, src, deficit, inv, depth + 1)
        if a is not None:
            return a
        for f, v in tree.fuels:
            units = tree.fuel_units(v, deficit)
            if inv.get(f, 0) >= units:
                inv[f] -= units
                break
        else:
            log_value = dict(tree.fuels)["log"]
            return _need(env, "log", tree.fuel_units(log_value, deficit), inv, depth + 1)
        a = _station(env, "furnace", inv, depth)
        if a is not None:
            return a
        return ("smelt", src, deficit)
    bname = tree.source_block[item]
    b = tree.blocks[bname]
    tier, _ = env.best_pickaxe()
    if b.tier > tier:
        a = _need(env, tree.pickaxe_for(b.tier), 1, inv, depth + 1)
        if a is None:  # pragma: no cover - the tool is held but the tier check said otherwise
            raise Stuck(item)
        return a
    if b.needs_item:
        a = _need(env, b.needs_item, 1, inv, depth + 1)
        if a is not None:
            return a
    a = goto(env, {env.bid[bname]})
    if a is None:
        raise Stuck(item)
    return a


def _station(env: CraftEnv, name: str, inv: dict[str, int], depth: int) -> Command | None:
    if env.station_near(name):
        return None
    if inv.get(name, 0) >= 1:
        inv[name] -= 1
        for d in DIRS:  # place needs a free grass cell next to us; dig one if there is none
            t = env._ahead(env.pos, d)
            if t is not None and env.cells[t] == env.grass:
                return ("place", name, 1)
        for d in DIRS:
            t = env._ahead(env.pos, d)
            if t is not None and _tunnel(env, env.cells[t], env.best_pickaxe()[0]):
                return ("mine", d, 1)
        raise Stuck(name)
    a = goto(env, {env.bid[name]}, max_cost=STATION_DETOUR, mine=False)
    if a is not None:
        return a
    a = _need(env, name, 1, inv, depth + 1)
    if a is None:  # pragma: no cover - inv had none of it
        raise Stuck(name)
    return a


def _tunnel(env: CraftEnv, k: int, tier: int) -> bool:
    b = env.blocks[k]
    return b.drops is not None and not b.walkable and not b.station and b.needs_item is None and (
        b.tier <= tier
    ) and b.name not in ("chest", "torch")


def _placed(env: CraftEnv, k: int) -> bool:
    """A placed block (station, chest, torch): mined back only when it walls us in."""
    b = env.blocks[k]
    return b.drops is not None and not b.walkable and b.tier == 0 and b.needs_item is None


def goto(env: CraftEnv, targets: set[int], max_cost: int | None = None, mine: bool = True) -> Command | None:
    """The first command of a cheapest route to a cell next to (4 neighbours) a block in ``targets``;
    when already there, ``mine`` toward it (or None if ``mine`` is False). None when no route."""
    h, w, cells, pos = env.h, env.w, env.cells, env.pos
    tier, _ = env.best_pickaxe()
    walk = env.walkable
    cost_of = [
        1 if walk[k] else TUNNEL_COST if _tunnel(env, k, tier) else STATION_COST if _placed(env, k) else 0
        for k in range(len(env.blocks))
    ]
    for k in targets:
        cost_of[k] = 0  # stand next to a target, never tunnel through one
    steps = [(d, dr * w + dc, dr, dc) for d, (dr, dc) in DIRS.items()]
    dist = {pos: 0}
    parent: dict[int, int] = {}
    heap = [(0, pos)]
    goal = None
    while heap:
        cst, i = heapq.heappop(heap)
        if cst > dist[i]:
            continue
        if max_cost is not None and cst > max_cost:
            return None
        r, c = divmod(i, w)
        hit = None
        for d, _, dr, dc in steps:
            rr, cc = r + dr, c + dc
            if 0 <= rr < h and 0 <= cc < w and cells[rr * w + cc] in targets:
                hit = d
                break
        if hit is not None:
            if i == pos:
                return ("mine", hit, 1) if mine else None
            goal = i
            break
        for _, s, dr, dc in steps:
            rr, cc = r + dr, c + dc
            if not (0 <= rr < h and 0 <= cc < w):
                continue
            j = i + s
            step_cost = cost_of[cells[j]]
            if step_cost == 0:
                continue
            nd = cst + step_cost
            if nd < dist.get(j, 1 << 30):
                dist[j] = nd
                parent[j] = i
                heapq.heappush(heap, (nd, j))
    if goal is None:
        return None
    path = [goal]
    while path[-1] != pos:
        path.append(parent[path[-1]])
    path.reverse()
    first = path[1]
    d = next(d for d, s, _, _ in steps if pos + s == first and _adjacent(pos, first, w))
    if not walk[cells[first]]:
        return ("mine", d, 1)
    k = 1
    s = first - pos
    while k < MAX_MOVE and k + 1 < len(path) and path[k + 1] - path[k] == s and walk[cells[path[k + 1]]]:
        k += 1
    return ("move", d, k)


def _adjacent(a: int, b: int, w: int) -> bool:
    ra, ca = divmod(a, w)
    rb, cb = divmod(b, w)
    return abs(ra - rb) + abs(ca - cb) == 1

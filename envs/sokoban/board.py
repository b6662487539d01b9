"""Static analysis of a level layout, shared by the solver and the env.

A :class:`Board` precomputes, once per layout (walls + goals):

- ``inside``: cells the player can ever stand on (flood fill from the player, through boxes); every
  other cell is treated as a wall, so moves never leave the grid;
- push distances ``dist[g][x]``: the fewest pushes that bring a lone box from ``x`` to goal ``g``
  (found by pulling a box backwards from each goal);
- ``dead[x]``: simple-deadlock squares, from which a lone box can reach no goal at all;
- a freeze-deadlock test and an assignment lower bound (boxes matched to goals by push distance).
"""

from __future__ import annotations

from agentsd.envs.sokoban.level import Level

INF = 1 << 30
#: Move names in the order of ``Board.steps``.
MOVES = ("Up", "Down", "Left", "Right")
#: Above this many boxes the exact assignment (DP over goal subsets) gives way to a greedy match.
EXACT_MATCH_MAX = 10


class Board:
    def __init__(self, level: Level):
        self.h, self.w = h, w = level.h, level.w
        n = h * w
        self.steps = (-w, w, -1, 1)
        inside = bytearray(n)
        inside[level.player] = 1
        stack = [level.player]
        while stack:  # the level is closed (parse_level checks), so neighbours stay in the grid
            i = stack.pop()
            for s in self.steps:
                j = i + s
                if not inside[j] and j not in level.walls:
                    inside[j] = 1
                    stack.append(j)
        self.inside = inside
        self.wall = bytearray(1 - x for x in inside)
        self.goal = bytearray(n)
        for g in level.goals:
            self.goal[g] = 1
        self.goals = tuple(sorted(level.goals))
        self.dist = [self._pull_distances(g) for g in self.goals]
        self.dead = bytearray(1 if inside[i] and all(d[i] >= INF for d in self.dist) else 0 for i in range(n))
        self._hcache: dict[tuple[int, ...], int] = {}

    def _pull_distances(self, g: int) -> list[int]:
        """BFS pulling a lone box away from goal ``g``: pulls from ``x`` to ``x - s`` need the player
        at ``x - 2s``, i.e. the push ``x - s -> x`` is possible from there."""
        dist = [INF] * (self.h * self.w)
        dist[g] = 0
        if not self.inside[g]:  # a goal sealed off from the player (it may hold a box for good)
            return dist
        frontier, wall = [g], self.wall
        while frontier:
            nxt = []
            for x in frontier:
                d = dist[x] + 1
                for s in self.steps:
                    y = x - s
                    if not wall[y] and not wall[y - s] and dist[y] > d:
                        dist[y] = d
                        nxt.append(y)
            frontier = nxt
        return dist

    # --- player reachability -------------------------------------------------------------------
    def distances(self, player: int, boxes) -> dict[int, int]:
        """Walking distance from ``player`` to every cell it can reach without pushing."""
        wall, steps = self.wall, self.steps
        dist, frontier, d = {player: 0}, [player], 0
        while frontier:
            d += 1
            nxt = []
            for i in frontier:
                for s in steps:
                    j = i + s
                    if not wall[j] and j not in dist and j not in boxes:
                        dist[j] = d
                        nxt.append(j)
            frontier = nxt
        return dist

    def walk(self, src: int, dst: int, boxes) -> list[int] | None:
        """Shortest walk (step indices into ``steps``) from ``src`` to ``dst`` avoiding boxes."""
        if src == dst:
            return []
        wall, steps = self.wall, self.steps
        prev = {src: (-1, -1)}
        frontier = [src]
        while frontier:
            nxt = []
            for i in frontier:
                for k, s in enumerate(steps):
                    j = i + s
                    if wall[j] or j in boxes or j in prev:
                        continue
                    prev[j] = (i, k)
                    if j == dst:
                        path = []
                        while j != src:
                            j, k2 = prev[j]
                            path.append(k2)
                        return path[::-1]
                    nxt.append(j)
            frontier = nxt
        return None

    # --- lower bound --------------------------------------------------------------------------
    def lower_bound(self, boxes: tuple[int, ...]) -> int:
        """Min total push distance over assignments of boxes (a sorted tuple) to distinct goals;
        ``INF`` when no assignment exists (a deadlock). Exact up to ``EXACT_MATCH_MAX`` boxes."""
        hit = self._hcache.get(boxes)
        if hit is not None:
            return hit
        cost = [[d[b] for d in self.dist] for b in boxes]  # (boxes, goals)
        if len(boxes) == 1:
            v = min(cost[0])
        elif len(boxes) <= EXACT_MATCH_MAX:
            v = _exact_match(cost)
        else:
            v = _greedy_match(cost)
        v = v if v < INF else INF
        if len(self._hcache) > 500_000:  # bound memory on very long searches
            self._hcache.clear()
        self._hcache[boxes] = v
        return v

    # --- freeze deadlocks ---------------------------------------------------------------------
    def _blocked(self, b: int, axis: int, boxes, held: tuple[int, ...]) -> tuple[int, ...] | None:
        """Boxes proven immovable when box ``b`` cannot move along ``axis`` (0: left/right,
        1: up/down), or None. ``held`` are boxes assumed frozen further up the chain (act as walls)."""
        s = 1 if axis == 0 else self.w
        a, c = b - s, b + s
        wall = self.wall
        if wall[a] or wall[c] or a in held or c in held:
            return ()
        if self.dead[a] and self.dead[c]:  # it can move, but only into a simple deadlock
            return ()
        held = held + (b,)
        for n in (a, c):
            if n in boxes:
                r = self._blocked(n, 1 - axis, boxes, held)
                if r is not None:
                    return r + (n,)
        return None

    def frozen(self, boxes, b: int) -> tuple[int, ...] | None:
        """The group of boxes (``b`` included) that can never move again, or None if ``b`` can."""
        if self.wall[b]:  # a box sealed off from the player never moves (and may sit on the edge)
            return (b,)
        h = self._blocked(b, 0, boxes, ())
        if h is None:
            return None
        v = self._blocked(b, 1, boxes, ())
        if v is None:
            return None
        return (b, *h, *v)

    def freeze_deadlock(self, boxes, b: int) -> bool:
        """True if box ``b`` is frozen together with a box that is not on a goal."""
        group = self.frozen(boxes, b)
        return group is not None and not all(self.goal[x] for x in group)


def _exact_match(cost: list[list[int]]) -> int:
    """Min-cost perfect matching by DP over subsets of goals (n * 2^n)."""
    n_goals = len(cost[0])
    best = {0: 0}
    for row in cost:
        nxt: dict[int, int] = {}
        for used, v in best.items():
            for g in range(n_goals):
                bit = 1 << g
                if used & bit or row[g] >= INF:
                    continue
                key, val = used | bit, v + row[g]
                if val < nxt.get(key, INF):
                    nxt[key] = val
        if not nxt:
            return INF
        best = nxt
    return min(best.values())


def _greedy_match(cost: list[list[int]]) -> int:
    """Cheapest pairs first; not a bound but close, for levels with many boxes."""
    pairs = sorted((c, b, g) for b, row in enumerate(cost) for g, c in enumerate(row) if c < INF)
    used_b, used_g, total = set(), set(), 0
    for c, b, g in pairs:
        if b not in used_b and g not in used_g:
            used_b.add(b)
            used_g.add(g)
            total += c
    return total if len(used_b) == len(cost) else INF

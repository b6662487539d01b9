"""Procedural Sokoban levels by reverse play, deterministic per ``numpy.random.Generator``.

1. Carve a room: a random walk (with occasional widening) inside a border of walls.
2. Put the boxes on random goal cells.
3. Pull boxes away from the goals with a breadth-first search over (boxes, player region) states.
   Pulling is pushing played backwards, so every state reached is solvable, and its BFS depth is
   exactly the fewest pushes that solve it. We keep the state with the most boxes off their goals,
   then the deepest; regions are deduplicated per box set so each state is expanded once.

``search_depth`` caps the pulls (the depth of the BFS) and ``max_states`` the expansions, which keeps
hard rooms fast: the frontier a few pushes deep is already far from trivial. Rooms that yield a weak
level (a box stuck on its goal, or too few pushes) are re-drawn up to ``attempts`` times.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from agentsd.envs.sokoban.level import Level


@dataclass(frozen=True)
class Preset:
    size: tuple[int, int]
    boxes: int
    search_depth: int
    max_states: int
    fill: tuple[float, float]


# Tiny easy rooms get more floor, else one box can rarely travel two pushes; bigger rooms keep more
# wall, which makes for longer detours and keeps the state space (and the search) small.
PRESETS = {
    "easy": Preset((6, 6), 1, 40, 400, (0.7, 0.9)),
    "medium": Preset((8, 8), 2, 60, 1200, (0.5, 0.7)),
    "hard": Preset((10, 10), 3, 80, 1500, (0.5, 0.7)),
}

# Random walk: direction changes with this chance per step, and the corridor widens sideways this often.
_TURN, _WIDEN = 0.35, 0.3


def generate(
    rng: np.random.Generator,
    size: int | tuple[int, int] = (6, 6),
    boxes: int = 1,
    search_depth: int = 40,
    max_states: int = 1000,
    attempts: int = 8,
    min_pushes: int | None = None,
    fill: tuple[float, float] = (0.5, 0.7),
) -> Level:
    """A solvable level with ``boxes`` boxes on an ``h x w`` grid (walls included). The room's floor
    covers a share of the interior drawn from ``fill``; ``min_pushes`` (default 2 per box) is what a
    room must reach before we stop re-drawing it (at most ``attempts`` times)."""
    h, w = (size, size) if isinstance(size, int) else size
    if h < 4 or w < 4:
        raise ValueError(f"size must be at least 4x4 (walls included), got {h}x{w}")
    if not 0 < fill[0] <= fill[1] <= 1:
        raise ValueError(f"fill must be 0 < low <= high <= 1, got {fill}")
    if boxes < 1 or boxes + 2 > (h - 2) * (w - 2) * fill[0]:
        raise ValueError(f"{boxes} boxes do not fit a {h}x{w} room")
    min_pushes = 2 * boxes if min_pushes is None else min_pushes
    steps, n_walk = (-w, w, -1, 1), 3 * 4 * (h - 2) * (w - 2) + 3
    best, best_score = None, (-1, -1)
    for attempt in range(attempts + 50):
        u = rng.random(n_walk + boxes + 1).tolist()  # one draw per attempt: numpy calls are slow one by one
        floor = _carve(u, h, w, fill)
        # Goals only where a box can be pulled off at all (two floor cells in a row beside it); the
        # border is wall, so i + 2s is only read when i + s is inside.
        cand = [i for i in range(h * w) if floor[i] and any(floor[i + s] and floor[i + 2 * s] for s in steps)]
        if len(cand) < boxes:
            continue
        for j in range(boxes):  # partial Fisher-Yates shuffle
            k = j + int(u[n_walk + j] * (len(cand) - j))
            cand[j], cand[k] = cand[k], cand[j]
        goals = tuple(sorted(cand[:boxes]))
        found = _reverse_search(floor, w, goals, search_depth, max_states)
        if found is None:
            continue
        score, state, region = found
        if score > best_score:
            best, best_score = (floor, goals, state, region[int(u[-1] * len(region))]), score
        if (score[0] == boxes and score[1] >= min_pushes) or (attempt >= attempts and best_score[1] > 0):
            break
    if best is None or best_score[1] <= 0:
        raise RuntimeError(f"could not generate a {h}x{w} level with {boxes} boxes")
    floor, goals, state, player = best
    walls = frozenset(i for i in range(h * w) if not floor[i])
    return Level(h, w, walls, frozenset(goals), frozenset(state), player)


def generate_preset(rng: np.random.Generator, difficulty: str = "easy", **overrides) -> Level:
    """``generate`` with a named preset (easy / medium / hard); keyword arguments override it."""
    if difficulty not in PRESETS:
        raise ValueError(f"difficulty must be one of {sorted(PRESETS)}, got {difficulty!r}")
    p = PRESETS[difficulty]
    kw = {
        "size": p.size,
        "boxes": p.boxes,
        "search_depth": p.search_depth,
        "max_states": p.max_states,
        "fill": p.fill,
    }
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return generate(rng, **kw)


def _carve(u: list[float], h: int, w: int, fill: tuple[float, float]) -> bytearray:
    """Floor cells (1) of a random-walk room drawn from uniforms ``u``; the border stays wall."""
    area = (h - 2) * (w - 2)
    steps = 4 * area
    target = int(area * (fill[0] + (fill[1] - fill[0]) * u[3 * steps]))
    r, c = 1 + int(u[3 * steps + 1] * (h - 2)), 1 + int(u[3 * steps + 2] * (w - 2))
    floor = bytearray(h * w)
    floor[r * w + c] = 1
    n, d = 1, 0
    dr, dc = (-1, 1, 0, 0), (0, 0, -1, 1)
    for k in range(0, 3 * steps, 3):
        if u[k] < _TURN:
            d = int(u[k + 1] * 4)
        nr, nc = r + dr[d], c + dc[d]
        if not (0 < nr < h - 1 and 0 < nc < w - 1):
            d = int(u[k + 1] * 4)
            continue
        r, c = nr, nc
        for i in (r * w + c, _side(r, c, d, u[k + 2], h, w)):
            if i >= 0 and not floor[i]:
                floor[i] = 1
                n += 1
        if n >= target:
            break
    return floor


def _side(r: int, c: int, d: int, x: float, h: int, w: int) -> int:
    """A cell beside (r, c), across direction d, with chance _WIDEN; -1 for none."""
    if x >= _WIDEN:
        return -1
    if d < 2:  # moving vertically: widen left or right
        c += -1 if x < _WIDEN / 2 else 1
    else:
        r += -1 if x < _WIDEN / 2 else 1
    return r * w + c if 0 < r < h - 1 and 0 < c < w - 1 else -1


def _reverse_search(
    floor: bytearray, w: int, goals: tuple[int, ...], max_depth: int, max_states: int
) -> tuple[tuple[int, int], tuple[int, ...], list[int]] | None:
    """BFS over pulls from the solved position. Returns ((boxes off goal, pushes), boxes, region).

    Cell sets are int bitmasks (bit i = cell i): a player region is flooded with a few shifts per
    step instead of a set per cell, which is most of the speed. Shifts by 1 that wrap across rows land
    on the border, which is wall, so they are masked away."""
    full = sum(1 << i for i in range(len(floor)) if floor[i])
    gmask = sum(1 << g for g in goals)
    steps = (-w, w, -1, 1)
    covered: dict[int, int] = {}  # box mask -> union of the player regions already expanded
    # Every player region around the solved boxes is a solved state (the last push can end anywhere).
    queue = deque((goals, gmask, p, 0) for p in range(len(floor)) if floor[p] and not gmask >> p & 1)
    best, best_score, expanded = None, (-1, -1), 0
    while queue and expanded < max_states:
        boxes, bm, p, d = queue.popleft()
        cov = covered.get(bm, 0)
        if cov >> p & 1:
            continue
        free = full & ~bm
        region, grow = 1 << p, 0
        while grow != region:
            grow = region
            region = (region | region << 1 | region >> 1 | region << w | region >> w) & free
        covered[bm] = cov | region
        expanded += 1
        score = ((bm & ~gmask).bit_count(), d)
        if score > best_score:
            best, best_score = (boxes, region), score
        if d >= max_depth:
            continue
        for bi, b in enumerate(boxes):
            for s in steps:
                q = b + s  # the player stands here, on side s of the box, and steps back to q + s
                if region >> q & 1 and free >> (q + s) & 1:
                    nb = boxes[:bi] + (q,) + boxes[bi + 1 :]
                    queue.append((nb, bm ^ (1 << b) ^ (1 << q), q + s, d + 1))
    if best is None:
        return None
    region = best[1]
    return best_score, best[0], [i for i in range(len(floor)) if region >> i & 1]

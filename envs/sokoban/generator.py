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


PRESETS = {
    "easy": Preset((6, 6), 1, 40, 400),
    "medium": Preset((8, 8), 2, 60, 1200),
    "hard": Preset((10, 10), 3, 80, 1500),
}

# Random walk: direction changes with this chance per step; the walk stops once this share of the
# interior is floor (drawn between the two bounds), and widens the corridor sideways this often.
_TURN, _FILL, _WIDEN = 0.35, (0.5, 0.7), 0.3


def generate(
    rng: np.random.Generator,
    size: int | tuple[int, int] = (6, 6),
    boxes: int = 1,
    search_depth: int = 40,
    max_states: int = 1000,
    attempts: int = 8,
    min_pushes: int | None = None,
) -> Level:
    """A solvable level with ``boxes`` boxes on an ``h x w`` grid (walls included)."""
    h, w = (size, size) if isinstance(size, int) else size
    if h < 4 or w < 4:
        raise ValueError(f"size must be at least 4x4 (walls included), got {h}x{w}")
    if boxes < 1 or boxes + 2 > (h - 2) * (w - 2) * _FILL[0]:
        raise ValueError(f"{boxes} boxes do not fit a {h}x{w} room")
    min_pushes = 2 * boxes if min_pushes is None else min_pushes
    best, best_score = None, (-1, -1)
    for attempt in range(attempts + 50):
        floor = _carve(rng, h, w)
        cells = [i for i in range(h * w) if floor[i]]
        if len(cells) < boxes + 2:
            continue
        pick = rng.choice(len(cells), size=boxes, replace=False).tolist()
        goals = tuple(sorted(cells[k] for k in pick))
        found = _reverse_search(floor, w, goals, search_depth, max_states)
        if found is None:
            continue
        score, state, region = found
        if score > best_score:
            best, best_score = (floor, goals, state, region), score
        if (score[0] == boxes and score[1] >= min_pushes) or (attempt >= attempts and best_score[1] > 0):
            break
    if best is None or best_score[1] <= 0:
        raise RuntimeError(f"could not generate a {h}x{w} level with {boxes} boxes")
    floor, goals, state, region = best
    player = region[int(rng.integers(len(region)))]
    walls = frozenset(i for i in range(h * w) if not floor[i])
    return Level(h, w, walls, frozenset(goals), frozenset(state), player)


def generate_preset(rng: np.random.Generator, difficulty: str = "easy", **overrides) -> Level:
    """``generate`` with a named preset (easy / medium / hard); keyword arguments override it."""
    if difficulty not in PRESETS:
        raise ValueError(f"difficulty must be one of {sorted(PRESETS)}, got {difficulty!r}")
    p = PRESETS[difficulty]
    kw = {"size": p.size, "boxes": p.boxes, "search_depth": p.search_depth, "max_states": p.max_states}
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return generate(rng, **kw)


def _carve(rng: np.random.Generator, h: int, w: int) -> bytearray:
    """Floor cells (1) of a random-walk room; the border stays wall."""
    area = (h - 2) * (w - 2)
    steps = 4 * area
    u = rng.random(3 * steps + 3).tolist()  # one draw: numpy calls are slow one by one
    target = int(area * (_FILL[0] + (_FILL[1] - _FILL[0]) * u[-1]))
    r, c = 1 + int(u[-2] * (h - 2)), 1 + int(u[-3] * (w - 2))
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
    """BFS over pulls from the solved position. Returns ((boxes off goal, pushes), boxes, region)."""
    steps = (-w, w, -1, 1)
    nbrs = {i: tuple(i + s for s in steps if floor[i + s]) for i in range(len(floor)) if floor[i]}
    goalset = set(goals)
    covered: dict[tuple[int, ...], set[int]] = {}
    # Every player region around the solved boxes is a solved state (the last push can end anywhere).
    queue = deque((goals, p, 0) for p in nbrs if p not in goalset)
    best, best_score, expanded = None, (-1, -1), 0
    while queue and expanded < max_states:
        boxes, p, d = queue.popleft()
        cov = covered.get(boxes)
        if cov is not None and p in cov:
            continue
        region = {p}
        stack = [p]
        while stack:
            i = stack.pop()
            for j in nbrs[i]:
                if j not in region and j not in boxes:
                    region.add(j)
                    stack.append(j)
        if cov is None:
            covered[boxes] = set(region)  # a copy: best may keep region
        else:
            cov |= region
        expanded += 1
        score = (sum(1 for b in boxes if b not in goalset), d)
        if score > best_score:
            best, best_score = (boxes, region), score
        if d >= max_depth:
            continue
        for bi, b in enumerate(boxes):
            for s in steps:
                q = b + s  # the player stands here, on side s of the box, and steps back to q + s
                if q in region:
                    q2 = q + s
                    if floor[q2] and q2 not in boxes:
                        nb = (q,) if len(boxes) == 1 else tuple(sorted(boxes[:bi] + (q,) + boxes[bi + 1 :]))
                        queue.append((nb, q2, d + 1))
    if best is None:
        return None
    return best_score, best[0], sorted(best[1])

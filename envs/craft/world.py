"""Seeded world generation for the craft env: a grid of blocks with biomes.

Biomes are the Voronoi cells of a few seeded centres: forest (dense trees), plains (grass, some trees,
gravel), mountain (stone with coal; iron ore one cell or more inside; diamond ore deep inside; small
caves), and lakes (water with a sand shore). After drawing, reachability is checked tier by tier
(bare hands can cut through trees, sand and gravel; a wooden pickaxe adds stone and coal; stone adds
iron; iron adds diamond; water never) and short resources are added inside the reachable region
(a world still short is drawn again), so every task of every tier can be done from the start.

The generator uses the default tree's block names (grass, tree, stone, coal_ore, iron_ore,
diamond_ore, sand, gravel, water); a custom tech tree must keep them.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from agentsd.envs.craft.techtree import DEFAULT, TechTree

#: Resources every world holds within reach (block -> count), enough for any task of the default tree.
MINIMUM = {"tree": 30, "stone": 40, "coal_ore": 4, "iron_ore": 8, "diamond_ore": 5, "sand": 3, "gravel": 2, "water": 1}
#: Random grass cells tried as the start (the one with the most room reachable by hand wins).
START_CANDIDATES = 8
#: Draws before giving up on a world without shortages (one is almost always enough).
MAX_TRIES = 20
#: Highest pickaxe tier needed before a block can be reached (the region it must lie in).
REGION_TIER = {"tree": 0, "sand": 0, "gravel": 0, "water": 0, "stone": 1, "coal_ore": 1, "iron_ore": 2, "diamond_ore": 3}


class World:
    """The grid (``cells``: block ids, row-major), its size, the player's start."""

    def __init__(self, h: int, w: int, cells: bytearray, start: int, tree: TechTree):
        self.h, self.w, self.cells, self.start, self.tree = h, w, cells, start, tree


def block_ids(tree: TechTree) -> tuple[list[str], dict[str, int]]:
    names = list(tree.blocks)
    return names, {n: k for k, n in enumerate(names)}


def neighbours(i: int, h: int, w: int):
    r, c = divmod(i, w)
    if r > 0:
        yield i - w
    if r < h - 1:
        yield i + w
    if c > 0:
        yield i - 1
    if c < w - 1:
        yield i + 1


def region(cells: bytearray, start: int, h: int, w: int, passable: set[int]) -> set[int]:
    """Cells reachable from ``start`` through cells whose block id is in ``passable``."""
    seen = {start}
    q = deque([start])
    while q:
        i = q.popleft()
        for j in neighbours(i, h, w):
            if j not in seen and cells[j] in passable:
                seen.add(j)
                q.append(j)
    return seen


def shortages(world: World) -> list[str]:
    """Resources of :data:`MINIMUM` the world lacks within reach (empty for a good world)."""
    names, bid = block_ids(world.tree)
    h, w, cells = world.h, world.w, world.cells
    out = []
    for tier in range(4):
        passable = {bid[n] for n, b in world.tree.blocks.items() if (b.walkable or b.tier <= tier) and n != "water"}
        reach = region(cells, world.start, h, w, passable)
        for name, need in MINIMUM.items():
            if REGION_TIER[name] != tier:
                continue
            k = bid[name]
            if name == "water":
                have = sum(1 for i in range(h * w) if cells[i] == k and any(j in reach for j in neighbours(i, h, w)))
            else:
                have = sum(1 for i in reach if cells[i] == k)
            if have < need:
                out.append(name)
    return out


def generate(rng: np.random.Generator, size: int = 24, tree: TechTree = DEFAULT) -> World:
    """A world with every resource of :data:`MINIMUM` within reach at its tier (redrawn from the
    same generator in the rare case the repairs of :func:`_ensure` fall short)."""
    for _ in range(MAX_TRIES):
        world = _draw(rng, size, tree)
        if not shortages(world):
            return world
    raise RuntimeError(f"no world without shortages in {MAX_TRIES} draws ({shortages(world)})")


def _draw(rng: np.random.Generator, size: int, tree: TechTree) -> World:
    names, bid = block_ids(tree)
    h = w = size
    n_centres = max(5, size // 4)
    kinds = ["forest", "plains", "mountain", "mountain", "lake"]
    kinds += [str(k) for k in rng.choice(["forest", "plains", "mountain"], size=n_centres - len(kinds))]
    cy = rng.uniform(0, h, size=n_centres)
    cx = rng.uniform(0, w, size=n_centres)
    scale = np.array([1.0 if k != "lake" else 0.55 for k in kinds])  # lakes are smaller
    yy, xx = np.mgrid[0:h, 0:w]
    d = ((yy[..., None] - cy) ** 2 + (xx[..., None] - cx) ** 2) / scale**2
    d += rng.uniform(0, 6, size=d.shape)  # ragged borders
    biome = d.argmin(axis=-1)
    mountain = np.isin(biome, [k for k, kind in enumerate(kinds) if kind == "mountain"])
    # depth inside the mountains: steps to the nearest non-mountain cell
    depth = np.where(mountain, 99, 0)
    for _ in range(4):
        pad = np.pad(depth, 1, constant_values=99)
        nb = np.minimum.reduce([pad[:-2, 1:-1], pad[2:, 1:-1], pad[1:-1, :-2], pad[1:-1, 2:]])
        depth = np.where(mountain, np.minimum(depth, nb + 1), 0)
    u = rng.random((h, w))
    cells = bytearray(h * w)
    for r in range(h):
        for c in range(w):
            kind = kinds[biome[r, c]]
            x = u[r, c]
            if kind == "forest":
                b = "tree" if x < 0.45 else "grass"
            elif kind == "plains":
                b = "tree" if x < 0.06 else "gravel" if x < 0.08 else "grass"
            elif kind == "lake":
                b = "water"
            else:
                dep = depth[r, c]
                if x < 0.07:
                    b = "grass"  # cave pockets
                elif x < 0.15:
                    b = "coal_ore"
                elif dep >= 3 and x < 0.2:
                    b = "diamond_ore"
                elif dep >= 2 and x < 0.24:
                    b = "iron_ore"
                else:
                    b = "stone"
            cells[r * w + c] = bid[b]
    water = bid["water"]
    for i in range(h * w):  # sand shores
        if cells[i] != water and cells[i] != bid["stone"] and any(cells[j] == water for j in neighbours(i, h, w)):
            cells[i] = bid["sand"]
    grass = [i for i in range(h * w) if cells[i] == bid["grass"] and kinds[biome.flat[i]] in ("plains", "forest")]
    if not grass:
        grass = [i for i in range(h * w) if cells[i] == bid["grass"]] or [int(rng.integers(h * w))]
    # the start: of a few random grass cells, the one with the most room reachable by bare hands
    bare = {bid[n] for n, b in tree.blocks.items() if (b.walkable or b.tier == 0) and n != "water"}
    picks = [grass[int(k)] for k in rng.permutation(len(grass))[:START_CANDIDATES]]
    start = max(picks, key=lambda i: len(region(cells, i, h, w, bare)))
    cells[start] = bid["grass"]
    _ensure(cells, start, h, w, bid, rng, tree)
    return World(h, w, cells, start, tree)


def _ensure(cells: bytearray, start: int, h: int, w: int, bid: dict[str, int], rng, tree: TechTree) -> None:
    """Add missing resources inside the region reachable at the pickaxe tier that needs them: ores
    replace stone, surface blocks replace grass (never the start or its neighbours). When the region
    has too little room for that, it grows: a few blocks on its border become grass, and again."""
    blocks = tree.blocks
    names = list(blocks)
    keep = {start, *neighbours(start, h, w)}
    for tier in range(4):
        passable = {bid[n] for n, b in blocks.items() if (b.walkable or b.tier <= tier) and n != "water"}
        wanted = [(n, k) for n, k in MINIMUM.items() if REGION_TIER[n] == tier]
        for _ in range(200):
            reach = region(cells, start, h, w, passable)
            inside = sorted(reach)
            short = False
            for name, need in wanted:
                k = bid[name]
                if name == "water":  # water must touch the reachable region
                    have = sum(1 for i in range(h * w) if cells[i] == k and any(j in reach for j in neighbours(i, h, w)))
                else:
                    have = sum(1 for i in inside if cells[i] == k)
                if have >= need:
                    continue
                pool_name = "stone" if name.endswith("_ore") else "grass"
                if name == "water":  # a pond on the border of the region
                    pool = [j for i in inside for j in neighbours(i, h, w) if j not in reach and j not in keep]
                else:
                    pool = [i for i in inside if i not in keep and names[cells[i]] == pool_name]
                for j in rng.permutation(len(pool))[: need - have]:
                    cells[pool[int(j)]] = k
                short = short or len(pool) < need - have
            if not short:
                break
            border = sorted({j for i in inside for j in neighbours(i, h, w) if j not in reach})
            if not border:  # pragma: no cover - the whole grid is reachable
                break
            for j in rng.permutation(len(border))[:6]:
                cells[border[int(j)]] = bid["grass"] if tier == 0 or names[cells[border[int(j)]]] == "water" else bid["stone"]

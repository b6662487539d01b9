"""ScienceWorld's 30 task types and their own train / dev / test variation splits, without a JVM.

Each task's variations are numbered train first, then dev, then test (the simulator's
``get_variations_train/dev/test``; tests/envs/test_scienceworld.py checks this table against it).
A split's seeds deal the tasks round robin: seed ``k`` of a split is the ``k // 30``-th (roughly)
variation of a task, so the first 30 seeds of a split cover every task once.
"""

from __future__ import annotations

import functools

# task name: (train, dev, test) variation counts (scienceworld 1.2.3)
SPLITS: dict[str, tuple[int, int, int]] = {
    "boil": (14, 7, 9),
    "change-the-state-of-matter-of": (14, 7, 9),
    "chemistry-mix": (16, 8, 8),
    "chemistry-mix-paint-secondary-color": (18, 9, 9),
    "chemistry-mix-paint-tertiary-color": (18, 9, 9),
    "find-animal": (150, 75, 75),
    "find-living-thing": (150, 75, 75),
    "find-non-living-thing": (150, 75, 75),
    "find-plant": (150, 75, 75),
    "freeze": (14, 7, 9),
    "grow-fruit": (62, 31, 33),
    "grow-plant": (62, 31, 33),
    "identify-life-stages-1": (6, 3, 5),
    "identify-life-stages-2": (4, 2, 4),
    "inclined-plane-determine-angle": (84, 42, 42),
    "inclined-plane-friction-named-surfaces": (692, 346, 348),
    "inclined-plane-friction-unnamed-surfaces": (80, 40, 42),
    "lifespan-longest-lived": (62, 31, 32),
    "lifespan-longest-lived-then-shortest-lived": (62, 31, 32),
    "lifespan-shortest-lived": (62, 31, 32),
    "measure-melting-point-known-substance": (218, 109, 109),
    "measure-melting-point-unknown-substance": (150, 75, 75),
    "melt": (14, 7, 9),
    "mendelian-genetics-known-plant": (60, 30, 30),
    "mendelian-genetics-unknown-plant": (240, 120, 120),
    "power-component": (10, 5, 5),
    "power-component-renewable-vs-nonrenewable-energy": (10, 5, 5),
    "test-conductivity": (450, 225, 225),
    "test-conductivity-of-unknown-substances": (300, 150, 150),
    "use-thermometer": (270, 135, 135),
}
TASKS = tuple(SPLITS)
N_TRAIN = sum(v[0] for v in SPLITS.values())  # 3592
N_TEST = sum(v[2] for v in SPLITS.values())  # 1819


def variations(task: str, split: str) -> range:
    """The simulator's variation indices of ``task`` in ``split`` (train, dev or test)."""
    tr, dv, te = SPLITS[task]
    return {"train": range(0, tr), "dev": range(tr, tr + dv), "test": range(tr + dv, tr + dv + te)}[split]


@functools.lru_cache(maxsize=2)
def deal(split: str) -> tuple[tuple[str, int], ...]:
    """Every (task, variation) of ``split``, dealt round robin over the tasks."""
    lists = [[(t, v) for v in variations(t, split)] for t in TASKS]
    out: list[tuple[str, int]] = []
    for k in range(max(len(x) for x in lists)):
        out.extend(x[k] for x in lists if k < len(x))
    return tuple(out)

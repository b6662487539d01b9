"""Fixtures for the report tests; the fake-run writers live in tests/reportutil.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from reportutil import write_run


@pytest.fixture
def fake_sweep(tmp_path: Path) -> Path:
    """runs/fake: arms base and learn on sokoban, seeds 0 and 1, 8 test tasks; learn solves 4 more tasks."""
    root = tmp_path / "fake"
    root.mkdir()
    tasks = range(1_000_000, 1_000_008)
    for seed in (0, 1):
        write_run(root, f"base-sokoban-s{seed}", seed=seed, outcomes={t: t < 1_000_001 for t in tasks},
                  wall_s=10.0 + seed, learner_steps=0)
        write_run(root, f"learn-sokoban-s{seed}", seed=seed, outcomes={t: t < 1_000_005 for t in tasks},
                  wall_s=30.0 + seed, planner=True)
    return root

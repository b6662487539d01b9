"""Episode metrics with honest uncertainty: success rate with a Wilson 95% interval, mean return with
a normal-approximation 95% interval, invalid-action rate, turns and tokens."""

from __future__ import annotations

import math
from typing import Any

from agentsd.trajectory import Trajectory

Z95 = 1.959964


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (well-behaved at 0/n and n/n, unlike Wald)."""
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mean_ci(xs: list[float], z: float = Z95) -> tuple[float, float]:
    """Mean and the half-width of its normal-approximation 95% interval."""
    n = len(xs)
    if n == 0:
        return (0.0, 0.0)
    m = sum(xs) / n
    if n == 1:
        return (m, 0.0)
    var = sum((x - m) ** 2 for x in xs) / (n - 1)
    return (m, z * math.sqrt(var / n))


def summarize(trajs: list[Trajectory]) -> dict[str, Any]:
    n = len(trajs)
    wins = sum(t.success for t in trajs)
    lo, hi = wilson(wins, n)
    ret, ret_ci = mean_ci([t.total_reward for t in trajs])
    turns = sum(len(t.turns) for t in trajs)
    invalid = sum(t.invalid_actions for t in trajs)
    won = [len(t.turns) for t in trajs if t.success]
    return {
        "episodes": n,
        "success": wins / n if n else 0.0,
        "success_ci": [lo, hi],
        "return": ret,
        "return_ci": ret_ci,
        "invalid_rate": invalid / turns if turns else 0.0,
        "turns": turns / n if n else 0.0,
        "turns_to_success": sum(won) / len(won) if won else None,
        "tokens": sum(t.num_tokens for t in trajs),
    }

"""Statistics for sweeps: seeded bootstrap confidence intervals and paired differences. Pure (numpy only).

    mean, lo, hi = bootstrap_ci([0.5, 0.6, 0.7], seed=0)
    d = paired_diff({1000: 1.0, 1001: 0.0}, {1000: 0.0, 1001: 0.0})   # B - A per shared key

Every resampling draws from ``numpy.random.default_rng(seed)``, so the same inputs and seed always give
the same interval. The percentile bootstrap is used: the 2.5% and 97.5% quantiles of the resampled
means. With one value (or all values equal) the interval collapses to the mean, which is what the data
can say; a reader must look at ``n`` next to it.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

N_BOOT = 2000
ALPHA = 0.05


@dataclass(frozen=True)
class Estimate:
    """A mean with its (1 - alpha) bootstrap interval over ``n`` values."""

    mean: float
    lo: float
    hi: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fmt(self, pct: bool = False, digits: int = 2) -> str:
        if self.n == 0 or math.isnan(self.mean):
            return "-"
        if pct:
            return f"{self.mean:.1%} [{self.lo:.1%}, {self.hi:.1%}]"
        return f"{self.mean:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


NAN = Estimate(float("nan"), float("nan"), float("nan"), 0)


def _clean(values: Iterable[float | None]) -> np.ndarray:
    xs = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return np.asarray(xs, dtype=np.float64)


def bootstrap_means(xs: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """``n_boot`` means of resamples (with replacement, same size) of ``xs``."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(xs), size=(n_boot, len(xs)))
    return xs[idx].mean(axis=1)


def bootstrap_ci(values: Iterable[float | None], *, n_boot: int = N_BOOT, alpha: float = ALPHA,
                 seed: int = 0) -> Estimate:
    """Mean of ``values`` (None and NaN dropped) and its percentile-bootstrap interval."""
    xs = _clean(values)
    if len(xs) == 0:
        return NAN
    m = float(xs.mean())
    if len(xs) == 1 or np.all(xs == xs[0]):
        return Estimate(m, m, m, len(xs))
    boots = bootstrap_means(xs, n_boot, seed)
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return Estimate(m, float(min(lo, m)), float(max(hi, m)), len(xs))


@dataclass(frozen=True)
class PairedDiff(Estimate):
    """Mean of (b - a) over paired keys, with its bootstrap interval; ``p_better`` is the share of
    bootstrap resamples where b's mean beats a's (a one-sided bootstrap probability, not a p-value)."""

    p_better: float = float("nan")


def paired_diff(a: Mapping[Hashable, float], b: Mapping[Hashable, float], *, n_boot: int = N_BOOT,
                alpha: float = ALPHA, seed: int = 0) -> PairedDiff:
    """Mean difference ``b[k] - a[k]`` over the keys both have (the same test tasks), bootstrapped over
    keys. Keys one side lacks are left out: only like-for-like tasks are compared."""
    keys = [k for k in a if k in b]
    if not keys:
        return PairedDiff(float("nan"), float("nan"), float("nan"), 0)
    d = np.asarray([float(b[k]) - float(a[k]) for k in keys], dtype=np.float64)
    m = float(d.mean())
    if len(d) == 1 or np.all(d == d[0]):
        return PairedDiff(m, m, m, len(d), float(m > 0))
    boots = bootstrap_means(d, n_boot, seed)
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return PairedDiff(m, float(min(lo, m)), float(max(hi, m)), len(d), float((boots > 0).mean()))


def per_task_means(outcomes: Iterable[tuple[Hashable, float]]) -> dict[Hashable, float]:
    """Average several outcomes of the same task (e.g. one per run seed) into one value per task, so a
    paired bootstrap resamples tasks (the unit shared by both arms), not correlated repeats."""
    sums: dict[Hashable, list[float]] = {}
    for k, v in outcomes:
        sums.setdefault(k, []).append(float(v))
    return {k: sum(v) / len(v) for k, v in sums.items()}


def summarize_groups(rows: Iterable[Mapping[str, Any]], by: tuple[str, ...], metrics: Iterable[str], *,
                     seed: int = 0, n_boot: int = N_BOOT) -> list[dict[str, Any]]:
    """Group ``rows`` (one per run) by the ``by`` fields and give each metric's mean and interval over the
    group's runs (its seeds): ``[{**group, "n": runs, metric: Estimate.to_dict(), ...}]``, in first-seen
    order."""
    metrics = list(metrics)
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(f) for f in by), []).append(r)
    out = []
    for key, members in groups.items():
        rec: dict[str, Any] = dict(zip(by, key, strict=True))
        rec["n"] = len(members)
        for m in metrics:
            rec[m] = bootstrap_ci([r.get(m) for r in members], seed=seed, n_boot=n_boot).to_dict()
        out.append(rec)
    return out


#: two-sided 95% t quantiles by degrees of freedom (n - 1); the normal 1.96 beyond
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
       10: 2.228, 14: 2.145, 19: 2.093, 29: 2.045}


def t_interval(xs: Sequence[float]) -> tuple[float, float]:
    """Mean and 95% t-interval half-width of a few per-seed values (NaN half-width below 2 values).
    For the handful of seeds a benchmark runs, where a bootstrap would understate the spread."""
    n = len(xs)
    if n == 0:
        return (float("nan"), float("nan"))
    m = sum(xs) / n
    if n == 1:
        return (m, float("nan"))
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    q = T95.get(n - 1) or next((v for k, v in sorted(T95.items()) if k >= n - 1), 1.96)
    return (m, q * sd / math.sqrt(n))

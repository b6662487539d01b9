"""agentsd.report.stats: bootstrap intervals and paired differences that can fail."""

import numpy as np
import pytest

from agentsd.report.stats import bootstrap_ci, paired_diff, per_task_means, summarize_groups
from agentsd.report.tables import aggregate


def test_bootstrap_ci_contains_the_mean_and_the_truth():
    xs = np.random.default_rng(1).normal(0.5, 0.1, size=40)
    e = bootstrap_ci(xs, seed=0)
    assert e.n == 40 and e.mean == pytest.approx(xs.mean())
    assert e.lo < e.mean < e.hi
    assert e.lo < 0.5 < e.hi
    # the half-width is close to the normal-theory 1.96 * sd / sqrt(n)
    half = 1.96 * xs.std(ddof=1) / np.sqrt(len(xs))
    assert (e.hi - e.lo) / 2 == pytest.approx(half, rel=0.2)


def test_bootstrap_ci_coverage_is_near_nominal():
    rng = np.random.default_rng(7)
    hits = 0
    for i in range(200):
        xs = rng.binomial(1, 0.3, size=40).astype(float)
        e = bootstrap_ci(xs, seed=i, n_boot=500)
        hits += e.lo <= 0.3 <= e.hi
    assert 0.88 <= hits / 200 <= 0.99


def test_ci_width_shrinks_with_n():
    rng = np.random.default_rng(3)
    widths = []
    for n in (10, 100, 1000):
        xs = rng.normal(0, 1, size=n)
        xs = (xs - xs.mean()) / xs.std(ddof=1)  # the same spread at every n: only n changes
        e = bootstrap_ci(xs, seed=0)
        widths.append(e.hi - e.lo)
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] / widths[2] == pytest.approx(10, rel=0.35)  # ~ sqrt(1000 / 10)


def test_seeded_and_reproducible():
    xs = [0.1, 0.5, 0.2, 0.9, 0.4, 0.3]
    assert bootstrap_ci(xs, seed=5) == bootstrap_ci(xs, seed=5)
    assert bootstrap_ci(xs, seed=5) != bootstrap_ci(xs, seed=6)
    a = {k: float(k % 3 == 0) for k in range(30)}
    b = {k: float(k % 2 == 0) for k in range(30)}
    assert paired_diff(a, b, seed=1) == paired_diff(a, b, seed=1)


def test_degenerate_inputs():
    assert bootstrap_ci([]).n == 0 and np.isnan(bootstrap_ci([]).mean)
    e = bootstrap_ci([0.25])
    assert (e.mean, e.lo, e.hi, e.n) == (0.25, 0.25, 0.25, 1)
    assert bootstrap_ci([1.0, None, float("nan"), 0.0]).n == 2  # None and NaN are dropped


def test_paired_diff_of_identical_arms_is_exactly_zero():
    a = {1_000_000 + i: float(i % 3 == 0) for i in range(16)}
    d = paired_diff(a, dict(a))
    assert (d.mean, d.lo, d.hi, d.n) == (0.0, 0.0, 0.0, 16)


def test_paired_diff_finds_a_shift_and_pairs_only_shared_tasks():
    rng = np.random.default_rng(0)
    base = {k: float(v) for k, v in enumerate(rng.normal(0, 1, size=200))}
    better = {k: v + 0.5 + rng.normal(0, 0.1) for k, v in base.items()}
    d = paired_diff(base, better, seed=0)
    assert d.lo < 0.5 < d.hi and d.lo > 0.4 and d.p_better == 1.0
    # pairing removes the between-task spread: far narrower than the unpaired interval
    unpaired = bootstrap_ci(list(better.values())).hi - bootstrap_ci(list(better.values())).lo
    assert d.hi - d.lo < unpaired / 5
    # a task only one arm ran is left out
    d2 = paired_diff({1: 0.0, 2: 1.0}, {2: 1.0, 3: 1.0})
    assert d2.n == 1 and d2.mean == 0.0


def test_per_task_means_average_repeats():
    assert per_task_means([(1, 1.0), (1, 0.0), (2, 1.0)]) == {1: 0.5, 2: 1.0}


def test_summarize_groups_by_arm():
    rows = [{"arm": "a", "x": 1.0}, {"arm": "a", "x": 3.0}, {"arm": "b", "x": 5.0}]
    out = summarize_groups(rows, ("arm",), ["x"])
    assert [g["arm"] for g in out] == ["a", "b"] and out[0]["n"] == 2
    assert out[0]["x"]["mean"] == 2.0 and out[0]["x"]["lo"] >= 1.0 and out[0]["x"]["hi"] <= 3.0


def test_aggregate_pairs_arms_on_the_same_tasks():
    tasks = range(10)
    recs = []
    for seed in (0, 1, 2):
        recs.append({"arm": "base", "env": "e", "seed": seed, "complete": True, "success": 0.2,
                     "task_success": {t: float(t < 2) for t in tasks}, "task_return": {t: 0.0 for t in tasks}})
        recs.append({"arm": "new", "env": "e", "seed": seed, "complete": True, "success": 0.5,
                     "task_success": {t: float(t < 5) for t in tasks}, "task_return": {t: 1.0 for t in tasks}})
    recs.append({"arm": "new", "env": "e", "seed": 3, "complete": False})  # unfinished: not in the statistics
    agg = aggregate(recs, baseline="base")
    g = {x["arm"]: x for x in agg["groups"]}
    assert g["new"]["n"] == 3 and g["new"]["runs"] == 4 and g["new"]["success"]["mean"] == 0.5
    p = next(x for x in agg["paired"] if x["metric"] == "success")
    assert (p["a"], p["b"], p["tasks"]) == ("base", "new", 10)
    assert p["mean"] == pytest.approx(0.3) and p["lo"] <= 0.3 <= p["hi"] and p["lo"] >= 0.0
    r = next(x for x in agg["paired"] if x["metric"] == "return")
    assert (r["mean"], r["lo"], r["hi"]) == (1.0, 1.0, 1.0)


def test_t_interval_matches_the_t_distribution():
    from agentsd.report.stats import t_interval

    m, h = t_interval([0.1, 0.2, 0.3])
    assert m == pytest.approx(0.2) and h == pytest.approx(4.303 * 0.1 / 3 ** 0.5, rel=1e-4)
    assert t_interval([0.5])[1] != t_interval([0.5])[1]  # NaN: no spread from one value
    m, h = t_interval([0.0, 1.0] * 20)  # 39 degrees of freedom: close to the normal quantile
    assert h == pytest.approx(1.96 * (40 / 39) ** 0.5 * 0.5 / 40 ** 0.5, rel=1e-3)

"""Per-run records -> per-(env, arm) aggregates with bootstrap intervals, paired differences against a
baseline arm, and the markdown tables of results.md / report.md."""

from __future__ import annotations

import math
from typing import Any

from agentsd.report.stats import bootstrap_ci, paired_diff, per_task_means

#: metrics aggregated over seeds (per-run values from agentsd.report.collect.read_run)
METRICS = ("success", "tgc", "sgc", "return", "turns_to_success", "invalid_rate", "memory_entries", "tokens",
           "train_episodes", "learner_steps", "wall_s", "peak_rss_mb")


def _order(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def aggregate(records: list[dict[str, Any]], *, baseline: str | None = None,
              compare: list[tuple[str, str]] | None = None, seed: int = 0) -> dict[str, Any]:
    """``{"groups": [{env, arm, n, complete, <metric>: Estimate dict}], "paired": [{env, a, b, metric, ...}],
    "baseline": arm}``. Only complete runs enter the statistics; ``n`` counts them."""
    done = [r for r in records if r.get("complete")]
    arms = _order([r["arm"] for r in records])
    envs = _order([r["env"] for r in records])
    baseline = baseline if baseline in arms else (arms[0] if arms else None)
    groups = []
    for env in envs:
        for arm in arms:
            members = [r for r in done if r["env"] == env and r["arm"] == arm]
            total = sum(1 for r in records if r["env"] == env and r["arm"] == arm)
            if not total:
                continue
            g: dict[str, Any] = {"env": env, "arm": arm, "n": len(members), "runs": total,
                                 "seeds": sorted(r["seed"] for r in members)}
            for m in METRICS:
                g[m] = bootstrap_ci([r.get(m) for r in members], seed=seed).to_dict()
            groups.append(g)
    pairs: list[tuple[str, str]] = [(baseline, a) for a in arms if a != baseline] if baseline else []
    for p in compare or []:
        if tuple(p) not in pairs:
            pairs.append((p[0], p[1]))
    paired = []
    for env in envs:
        for a, b in pairs:
            ra = [r for r in done if r["env"] == env and r["arm"] == a]
            rb = [r for r in done if r["env"] == env and r["arm"] == b]
            if not ra or not rb:
                continue
            for metric, key in (("success", "task_success"), ("return", "task_return")):
                ta = per_task_means((int(k), v) for r in ra for k, v in r.get(key, {}).items())
                tb = per_task_means((int(k), v) for r in rb for k, v in r.get(key, {}).items())
                d = paired_diff(ta, tb, seed=seed)
                paired.append({"env": env, "a": a, "b": b, "metric": metric, "tasks": d.n, "mean": d.mean,
                               "lo": d.lo, "hi": d.hi, "p_better": d.p_better})
    return {"groups": groups, "paired": paired, "baseline": baseline, "arms": arms, "envs": envs}


def _fmt(e: dict[str, Any], kind: str = "num") -> str:
    if not e or not e.get("n") or e.get("mean") is None or math.isnan(e["mean"]):
        return "-"
    m, lo, hi = e["mean"], e["lo"], e["hi"]
    if kind == "pct":
        return f"{m:.1%} [{lo:.1%}, {hi:.1%}]" if e["n"] > 1 else f"{m:.1%}"
    if kind == "int":
        return f"{m:,.0f} [{lo:,.0f}, {hi:,.0f}]" if e["n"] > 1 and hi > lo else f"{m:,.0f}"
    return f"{m:.2f} [{lo:.2f}, {hi:.2f}]" if e["n"] > 1 and hi > lo else f"{m:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def summary_table(agg: dict[str, Any]) -> str:
    """One row per (env, arm): mean [95% bootstrap CI over seeds]."""
    has_tgc = any(g["tgc"]["n"] for g in agg["groups"])
    header = ["env", "arm", "runs", "success"] + (["TGC", "SGC"] if has_tgc else []) + [
        "return", "steps to success", "invalid", "memory", "tokens", "train episodes", "learner steps",
        "wall s", "peak RSS MB"]
    rows = []
    for g in agg["groups"]:
        row = [g["env"], g["arm"], f"{g['n']}/{g['runs']}", _fmt(g["success"], "pct")]
        if has_tgc:
            row += [_fmt(g["tgc"], "pct"), _fmt(g["sgc"], "pct")]
        row += [_fmt(g["return"]), _fmt(g["turns_to_success"]), _fmt(g["invalid_rate"], "pct"),
                _fmt(g["memory_entries"], "int"), _fmt(g["tokens"], "int"), _fmt(g["train_episodes"], "int"),
                _fmt(g["learner_steps"], "int"), _fmt(g["wall_s"], "int"), _fmt(g["peak_rss_mb"], "int")]
        rows.append(row)
    return _table(header, rows)


def paired_table(agg: dict[str, Any]) -> str:
    header = ["env", "comparison", "metric", "tasks", "mean difference [95% CI]", "P(b better)"]
    rows = []
    for p in agg["paired"]:
        if not p["tasks"]:
            continue
        pct = p["metric"] == "success"
        f = (lambda x: f"{x:+.1%}") if pct else (lambda x: f"{x:+.2f}")
        rows.append([p["env"], f"{p['b']} − {p['a']}", p["metric"], str(p["tasks"]),
                     f"{f(p['mean'])} [{f(p['lo'])}, {f(p['hi'])}]", f"{p['p_better']:.2f}"])
    return _table(header, rows) if rows else "(no paired comparisons: fewer than two arms with finished runs)"


def runs_table(records: list[dict[str, Any]]) -> str:
    header = ["run", "arm", "env", "seed", "status", "success", "before", "return", "invalid", "memory", "tokens",
              "learner steps", "wall s", "peak RSS MB"]

    def num(x: Any, f: str) -> str:
        return "-" if x is None else format(x, f)

    rows = []
    for r in records:
        status = "done" if r.get("complete") else r.get("status") or "incomplete"
        rows.append([r["run"], r["arm"], r["env"], str(r["seed"]), status, num(r.get("success"), ".1%"),
                     num(r.get("success_before"), ".1%"), num(r.get("return"), ".2f"),
                     num(r.get("invalid_rate"), ".1%"), num(r.get("memory_entries"), "d"), num(r.get("tokens"), ",d"),
                     num(r.get("learner_steps"), "d"), num(r.get("wall_s"), ".0f"), num(r.get("peak_rss_mb"), ".0f")])
    return _table(header, rows)


NOTES = (
    "Intervals are 95% percentile-bootstrap intervals (2000 resamples, seeded) of the mean over run seeds; "
    "with one seed they collapse to the value. Paired differences compare two arms on the same test tasks "
    "(the final evaluation's task seeds, each task's outcome averaged over run seeds) and resample tasks; "
    "P(b better) is the share of resamples with a positive difference. Tokens are generated tokens summed "
    "over all phases; wall time and peak RSS are those of the run's subprocess (summed / max over attempts)."
)


def results_markdown(title: str, records: list[dict[str, Any]], agg: dict[str, Any]) -> str:
    return "\n\n".join([
        f"# {title}",
        "## Summary (mean [95% CI] over seeds)",
        summary_table(agg),
        f"## Paired differences on the same test tasks (baseline: {agg['baseline']})",
        paired_table(agg),
        "## Runs",
        runs_table(records),
        NOTES,
    ]) + "\n"

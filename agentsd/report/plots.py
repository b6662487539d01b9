"""Report figures (matplotlib, Agg backend): learning curves, success per env with CIs, cost vs benefit.

Each function takes per-run records (:func:`agentsd.report.collect.read_run`) and/or aggregates
(:func:`agentsd.report.tables.aggregate`) and writes one PNG; nothing is shown on screen.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from agentsd.report.stats import bootstrap_ci  # noqa: E402

DPI = 110


def _colors(arms: list[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10")
    return {a: cmap(i % 10) for i, a in enumerate(arms)}


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def learning_curves(records: list[dict[str, Any]], arms: list[str], envs: list[str], path: Path) -> Path:
    """Test success vs cumulative train rollout episodes, per env, one line per arm (mean over seeds at
    each evaluation, with a 95% bootstrap band when there are several seeds)."""
    colors = _colors(arms)
    fig, axes = plt.subplots(1, len(envs), figsize=(5.2 * len(envs), 3.8), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        for arm in arms:
            runs = [r for r in records if r["env"] == env and r["arm"] == arm and r.get("curve")]
            if not runs:
                continue
            by_phase: dict[str, list[dict[str, Any]]] = {}
            for r in runs:
                for p in r["curve"]:
                    by_phase.setdefault(p["phase"], []).append(p)
            xs, ms, los, his = [], [], [], []
            for pts in by_phase.values():
                est = bootstrap_ci([p["success"] for p in pts])
                xs.append(sum(p["episodes"] for p in pts) / len(pts))
                ms.append(est.mean)
                los.append(est.lo)
                his.append(est.hi)
            order = sorted(range(len(xs)), key=lambda i: xs[i])
            xs, ms, los, his = ([v[i] for i in order] for v in (xs, ms, los, his))
            ax.plot(xs, ms, marker="o", color=colors[arm], label=f"{arm} (n={len(runs)})")
            if len(runs) > 1:
                ax.fill_between(xs, los, his, color=colors[arm], alpha=0.15)
        ax.set_title(f"{env}: test success during training")
        ax.set_xlabel("cumulative train rollout episodes")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("test success")
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def success_bars(agg: dict[str, Any], path: Path, metric: str = "success") -> Path:
    """Final test success per arm, one panel per env, with 95% bootstrap intervals over seeds."""
    envs, arms = agg["envs"], agg["arms"]
    colors = _colors(arms)
    fig, axes = plt.subplots(1, len(envs), figsize=(max(4.5, 1.1 * len(arms) + 2) * len(envs), 3.8), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        groups = [g for g in agg["groups"] if g["env"] == env and g[metric]["n"]]
        names = [g["arm"] for g in groups]
        means = [g[metric]["mean"] for g in groups]
        err = [[g[metric]["mean"] - g[metric]["lo"] for g in groups], [g[metric]["hi"] - g[metric]["mean"] for g in groups]]
        ax.bar(range(len(groups)), means, yerr=err, capsize=5, color=[colors[a] for a in names], alpha=0.85)
        for i, g in enumerate(groups):
            ax.text(i, min(1.0, g[metric]["hi"]) + 0.02, f"{g[metric]['mean']:.0%}\nn={g['n']}", ha="center",
                    va="bottom", fontsize=8)
        ax.set_xticks(range(len(groups)), names, rotation=20, ha="right")
        ax.set_ylim(0, 1.18)
        ax.set_ylabel(f"test {metric} (final eval)")
        ax.set_title(f"{env}: mean over seeds, 95% CI")
        ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def cost_benefit(agg: dict[str, Any], path: Path) -> Path:
    """Success vs compute per (env, arm): generated tokens and wall time, with 95% intervals on both axes."""
    arms = agg["arms"]
    colors = _colors(arms)
    markers = "osD^v<>p*h"
    envs = agg["envs"]
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.9), squeeze=False)
    for ax, (cost, label) in zip(axes[0], (("tokens", "generated tokens per run"), ("wall_s", "wall time per run (s)")),
                                 strict=True):
        plotted = False
        for g in agg["groups"]:
            c, s = g[cost], g["success"]
            if not c["n"] or not s["n"] or c["mean"] is None or math.isnan(c["mean"]):
                continue
            ax.errorbar(c["mean"], s["mean"], xerr=[[c["mean"] - c["lo"]], [c["hi"] - c["mean"]]],
                        yerr=[[s["mean"] - s["lo"]], [s["hi"] - s["mean"]]], fmt=markers[envs.index(g["env"]) % 10],
                        color=colors[g["arm"]], capsize=3, markersize=7,
                        label=f"{g['arm']} / {g['env']}" if len(envs) > 1 else g["arm"])
            plotted = True
        ax.set_xlabel(label)
        ax.set_ylabel("test success")
        ax.set_ylim(-0.03, 1.05)
        ax.grid(alpha=0.3)
        if plotted:
            ax.legend(fontsize=8, loc="best")
        else:
            ax.text(0.5, 0.5, "not measured\n(runs outside a sweep)", ha="center", va="center", transform=ax.transAxes)
    axes[0][0].set_title("benefit vs token cost")
    axes[0][1].set_title("benefit vs wall time")
    return _save(fig, path)

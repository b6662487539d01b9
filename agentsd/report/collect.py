"""Read run directories (the files :func:`agentsd.evolve.run` writes) into flat per-run records.

    rec = read_run("runs/small/grpo-sokoban-s0")
    rec["success"], rec["tokens"], rec["curve"], rec["task_success"]

Nothing here imports torch or opens a model; only the final evaluation's trajectories are read (for the
per-task outcomes that paired comparisons need).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from agentsd.evolve import FINAL_EVAL
from agentsd.trajectory import Trajectory, read_jsonl

#: the sweep's per-run file: wall time and peak memory of each attempt (written by agentsd.sweep)
RUN_COST_FILE = "sweep_run.json"
#: the sweep manifest (written by agentsd.sweep): the sweep file plus every expanded run
MANIFEST_FILE = "sweep.json"

_NAME = re.compile(r"^(?P<arm>.+)-(?P<env>[^-]+)-s(?P<seed>\d+)$")


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl records; a torn last line (hard kill mid-write) is skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if i != len(lines) - 1:
                raise
    return out


def is_complete(run_dir: Path) -> bool:
    """A run is complete when its final evaluation is recorded."""
    return any(r.get("phase") == FINAL_EVAL and r.get("kind") == "eval" for r in read_metrics(run_dir))


def is_run_dir(path: Path) -> bool:
    return (Path(path) / "metrics.jsonl").exists() or (Path(path) / "state.json").exists()


def read_trajectories(run_dir: Path, phase: str) -> list[Trajectory]:
    path = Path(run_dir) / "trajectories" / f"{phase}.jsonl"
    return list(read_jsonl(path)) if path.exists() else []


def _scenario(t: Trajectory) -> Any:
    info = t.turns[-1].info if t.turns else {}
    for key in ("scenario_id", "scenario"):
        if key in info:
            return info[key]
        if key in t.meta:
            return t.meta[key]
    return None


def goal_completion(trajs: list[Trajectory]) -> tuple[float | None, float | None]:
    """(TGC, SGC) when the episodes' final info carries ``tgc`` (task goal completion, as the ``apps``
    env reports it): TGC is the mean of it; SGC the share of scenarios whose every task reached tgc 1.
    (None, None) for envs that do not report it."""
    vals = [(t.turns[-1].info.get("tgc"), _scenario(t)) for t in trajs if t.turns]
    vals = [(float(v), s) for v, s in vals if v is not None]
    if not vals:
        return None, None
    tgc = sum(v for v, _ in vals) / len(vals)
    scen: dict[Any, list[float]] = {}
    for v, s in vals:
        if s is not None:
            scen.setdefault(s, []).append(v)
    sgc = sum(all(x >= 1.0 for x in xs) for xs in scen.values()) / len(scen) if scen else None
    return tgc, sgc


def _config(run_dir: Path) -> dict[str, Any]:
    p = Path(run_dir) / "config.yaml"
    try:
        return yaml.safe_load(p.read_text()) or {} if p.exists() else {}
    except yaml.YAMLError:
        return {}


def identity(run_dir: Path, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """arm, env, seed of a run: from the sweep manifest, else its name ``<arm>-<env>-s<seed>``, else its
    config (arm = the run's name)."""
    run_dir = Path(run_dir)
    for r in (manifest or {}).get("runs", []):
        if r["run"] == run_dir.name:
            return {"arm": r["arm"], "env": r["env"], "seed": r["seed"]}
    cfg = _config(run_dir)
    m = _NAME.match(run_dir.name)
    if m:
        return {"arm": m["arm"], "env": m["env"], "seed": int(m["seed"])}
    return {"arm": run_dir.name, "env": (cfg.get("env") or {}).get("name", "?"), "seed": cfg.get("seed", 0)}


def read_cost(run_dir: Path) -> dict[str, Any]:
    """Wall time (summed over attempts) and peak RSS (max over attempts) the sweep measured."""
    p = Path(run_dir) / RUN_COST_FILE
    if not p.exists():
        return {"wall_s": None, "peak_rss_mb": None, "attempts": 0}
    attempts = json.loads(p.read_text()).get("attempts", [])
    return {
        "wall_s": sum(a.get("wall_s", 0.0) for a in attempts),
        "peak_rss_mb": max((a.get("peak_rss_mb") or 0.0 for a in attempts), default=None),
        "attempts": len(attempts),
    }


def memory_size(run_dir: Path, records: list[dict[str, Any]]) -> int | None:
    """Active entries in the run's memory: from summary.json, else the last phase's memory stage."""
    p = Path(run_dir) / "summary.json"
    if p.exists():
        try:
            mem = json.loads(p.read_text()).get("memory")
        except json.JSONDecodeError:
            mem = None
        if mem and "by_kind" in mem:
            return int(sum(mem["by_kind"].values()))
    for r in reversed(records):
        size = (r.get("memory") or {}).get("size")
        if size:
            return int(sum(size.values()))
    return 0 if (Path(run_dir) / "memory").exists() else None


def read_run(run_dir: str | Path, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """One flat record per run: identity, final-eval metrics, costs, learning curve, per-task outcomes."""
    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    evals = [r for r in records if r.get("kind") == "eval"]
    final = next((r for r in reversed(evals) if r["phase"] == FINAL_EVAL), None)
    rec: dict[str, Any] = {"run": run_dir.name, "dir": str(run_dir), **identity(run_dir, manifest),
                           "complete": final is not None, "phases": [r["phase"] for r in records]}
    last = final or (evals[-1] if evals else None)
    m = last["metrics"] if last else {}
    rec.update({
        "final_phase": last["phase"] if last else None,
        "success": m.get("success"), "success_ci": m.get("success_ci"), "return": m.get("return"),
        "turns_to_success": m.get("turns_to_success"), "invalid_rate": m.get("invalid_rate"),
        "turns": m.get("turns"), "eval_episodes": m.get("episodes"),
        "success_before": evals[0]["metrics"].get("success") if evals else None,
        "tgc": m.get("tgc"), "sgc": m.get("sgc"),
    })
    # compute spent: generated tokens (every phase), policy rollout episodes, learner steps, SFT examples
    tokens = train_eps = steps = sft_examples = learner_tokens = 0
    curve = []
    for r in records:
        ro = r.get("rollout") or {}
        tokens += int(ro.get("tokens", 0) or 0)
        if r.get("kind") == "train" and r["phase"] != "warmstart":
            train_eps += int(ro.get("episodes", 0) or 0)
        learn = r.get("learn") or {}
        if learn.get("stepped"):
            steps += int(learn.get("steps", 1))
            learner_tokens += int(learn.get("tokens", 0) or 0)
        for key in ("sft", "learn"):
            sft_examples += int((r.get(key) or {}).get("examples", 0) or 0)
        if r.get("kind") == "eval":
            curve.append({"phase": r["phase"], "episodes": train_eps, "success": r["metrics"].get("success"),
                          "return": r["metrics"].get("return")})
    rec.update({"tokens": tokens, "train_episodes": train_eps, "learner_steps": steps,
                "learner_tokens": learner_tokens, "sft_examples": sft_examples, "curve": curve,
                "memory_entries": memory_size(run_dir, records), **read_cost(run_dir)})
    task_success: dict[int, float] = {}
    task_return: dict[int, float] = {}
    if last:
        trajs = read_trajectories(run_dir, last["phase"])
        for t in trajs:
            task_success[t.seed] = float(t.success)
            task_return[t.seed] = t.total_reward
        if rec["tgc"] is None:
            rec["tgc"], sgc = goal_completion(trajs)
            rec["sgc"] = rec["sgc"] if rec["sgc"] is not None else sgc
    rec["task_success"] = task_success
    rec["task_return"] = task_return
    return rec


def read_manifest(sweep_dir: Path) -> dict[str, Any] | None:
    p = Path(sweep_dir) / MANIFEST_FILE
    return json.loads(p.read_text()) if p.exists() else None


def find_runs(path: str | Path) -> tuple[list[Path], dict[str, Any] | None]:
    """The run directories under a sweep directory (in manifest order when there is one), or ``[path]``
    when ``path`` is a single run."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no directory {str(path)!r}")
    if is_run_dir(path):
        return [path], None
    manifest = read_manifest(path)
    if manifest:
        dirs = [path / r["run"] for r in manifest["runs"]]
        return [d for d in dirs if is_run_dir(d)], manifest
    dirs = sorted(d for d in path.iterdir() if d.is_dir() and is_run_dir(d))
    if not dirs:
        raise FileNotFoundError(f"{str(path)!r} is neither a run directory (metrics.jsonl) nor a sweep of runs")
    return dirs, None

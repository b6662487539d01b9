"""Sweeps: arms x environments x seeds under one budget, each run a subprocess, resumable.

    spec = load_sweep("configs/sweeps/small.yaml")
    plan = expand(spec)                  # validates every run's config up front (load_config)
    results = run_sweep(plan)            # runs/<sweep>/<arm>-<env>-s<seed>/, results.jsonl, results.md

A sweep file (YAML):

    name: small
    envs:                                 # key -> a run config (shipped name or YAML path) + overrides
      sokoban: {config: sokoban, overrides: [env.kwargs.difficulty=easy]}
    seeds: [0, 1, 2]
    budget: {warmstart_episodes: 8, iterations: 2, episodes_per_iteration: 8, eval_episodes: 16}
    overrides: [memory.enabled=true]     # every run
    arms:                                 # name -> dotted overrides (or {overrides: [...], envs: [...]})
      base: [learning.algo=none, learning.warmstart.episodes=0, learning.iterations=0]
      grpo: [learning.algo=grpo, rollout.group_size=4]
    baseline: base                        # paired comparisons are against this arm (default: the first)

A run's overrides are applied in this order, later ones winning: the env's config file, the budget, the
sweep's ``overrides``, the env's ``overrides``, extra ``--set`` overrides, the arm's overrides, then
``seed``, ``name`` and ``output_dir``. Each run's validated config is written to
``runs/<sweep>/configs/<run>.yaml`` and run as ``python -m agentsd.cli run --config <that> --name <run>``.
A run whose final evaluation is recorded is complete and skipped; one with a ``state.json`` but no final
evaluation is continued with ``--resume``. ``os.wait4`` gives each attempt's wall time and peak RSS
(``<run>/sweep_run.json``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agentsd.config import ConfigError, dump_config, load_config, shipped_configs
from agentsd.report.collect import MANIFEST_FILE, RUN_COST_FILE, is_complete, read_run

RESULTS_JSONL = "results.jsonl"
RESULTS_MD = "results.md"


class SweepError(ValueError):
    """A sweep file problem, with a one-line message naming the arm / env / key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SweepEnv(_Strict):
    #: a shipped run config name (sokoban, craft) or a YAML path (relative to the sweep file, else the cwd)
    config: str
    overrides: list[str] = Field(default_factory=list)


#: budget field -> the config keys it sets (the same value for every arm unless an arm overrides it)
BUDGET_KEYS: dict[str, tuple[str, ...]] = {
    "warmstart_episodes": ("learning.warmstart.episodes",),
    "iterations": ("learning.iterations",),
    "episodes_per_iteration": ("rollout.batch",),
    "learner_steps_per_iteration": ("learning.onpolicy.steps_per_iteration",),
    "max_new_tokens": ("rollout.sampling.max_new_tokens", "eval.sampling.max_new_tokens"),
    "max_turns": ("rollout.max_turns",),
    "eval_episodes": ("eval.episodes",),
}


class Budget(_Strict):
    """Compute per run. Train rollout episodes = iterations x episodes_per_iteration; learner steps =
    iterations x learner_steps_per_iteration (on-policy arms); tokens are capped per turn by
    max_new_tokens and per episode by max_turns. Unset fields keep the env config's values."""

    warmstart_episodes: int | None = Field(None, ge=0)
    iterations: int | None = Field(None, ge=0)
    episodes_per_iteration: int | None = Field(None, ge=1)
    learner_steps_per_iteration: int | None = Field(None, ge=1)
    max_new_tokens: int | None = Field(None, ge=1)
    max_turns: int | None = Field(None, ge=1)
    eval_episodes: int | None = Field(None, ge=1)

    def overrides(self) -> list[str]:
        out = []
        for name, keys in BUDGET_KEYS.items():
            v = getattr(self, name)
            if v is not None:
                out += [f"{k}={v}" for k in keys]
        return out


class Arm(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.]+(-[A-Za-z0-9_.]+)*$")
    overrides: list[str] = Field(default_factory=list)
    #: run this arm only on these envs (default: all)
    envs: list[str] | None = None
    description: str = ""


class SweepSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    description: str = ""
    output_dir: str = "runs"
    envs: dict[str, SweepEnv]
    arms: list[Arm]
    seeds: list[int] = Field(default_factory=lambda: [0])
    budget: Budget = Field(default_factory=Budget)
    overrides: list[str] = Field(default_factory=list)
    baseline: str | None = None
    compare: list[tuple[str, str]] = Field(default_factory=list)

    @field_validator("arms", mode="before")
    @classmethod
    def _arms_mapping(cls, v: Any) -> Any:
        # ``arms: {name: [overrides]}`` or ``{name: {overrides: [...], envs: [...]}}`` or a list of Arms
        if isinstance(v, dict):
            out = []
            for name, body in v.items():
                if body is None or isinstance(body, list):
                    out.append({"name": name, "overrides": body or []})
                elif isinstance(body, dict):
                    out.append({"name": name, **body})
                else:
                    raise ValueError(f"arm {name!r} must be a list of overrides or a mapping")
            return out
        return v

    @field_validator("envs")
    @classmethod
    def _env_keys(cls, v: dict[str, SweepEnv]) -> dict[str, SweepEnv]:
        for k in v:
            if not k or "-" in k or "/" in k:
                raise ValueError(f"env key {k!r} must be non-empty without '-' or '/' (it is part of run names)")
        return v


@dataclass
class PlannedRun:
    run: str
    arm: str
    env: str
    seed: int
    overrides: list[str]
    config_path: Path
    config_yaml: str

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "arm": self.arm, "env": self.env, "seed": self.seed,
                "overrides": self.overrides, "config": str(self.config_path)}


@dataclass
class SweepPlan:
    spec: SweepSpec
    sweep_dir: Path
    runs: list[PlannedRun]
    source: str = ""
    extra: list[str] = field(default_factory=list)


def load_sweep(path: str | Path) -> tuple[SweepSpec, Path]:
    """Parse and validate a sweep file; returns the spec and the file's directory (for relative configs)."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"no sweep file {str(path)!r}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise SweepError(f"sweep file {str(path)!r} is not valid YAML: {str(e).splitlines()[0]}") from None
    try:
        return SweepSpec.model_validate(data), path.parent
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise SweepError(f"sweep file {str(path)!r}: {loc}: {err['msg']}") from None


def _config_ref(ref: str, base: Path | None) -> str:
    if ref in shipped_configs():
        return ref
    for cand in ([base / ref] if base else []) + [Path(ref)]:
        if cand.exists():
            return str(cand)
    return ref  # load_config names the problem


def expand(spec: SweepSpec, base: Path | None = None, *, name: str | None = None, extra: list[str] | None = None,
           arms: list[str] | None = None, envs: list[str] | None = None, seeds: list[int] | None = None,
           output_dir: str | None = None) -> SweepPlan:
    """Every (arm, env, seed) run with its overrides, each validated with :func:`load_config` now, so a
    bad key fails before anything runs (the error names the arm, env and key)."""
    known_arms = [a.name for a in spec.arms]
    for label, picked, known in (("arm", arms, known_arms), ("env", envs, list(spec.envs))):
        for x in picked or []:
            if x not in known:
                raise SweepError(f"no {label} {x!r} in sweep {spec.name!r} (have: {', '.join(known)})")
    if len(set(known_arms)) != len(known_arms):
        raise SweepError(f"sweep {spec.name!r} lists an arm twice")
    for a in spec.arms:
        for e in a.envs or []:
            if e not in spec.envs:
                raise SweepError(f"arm {a.name!r} names env {e!r}, which the sweep does not list")
    for ref, what in ((spec.baseline, "baseline"), *((x, "compare") for p in spec.compare for x in p)):
        if ref is not None and ref not in known_arms:
            raise SweepError(f"{what} arm {ref!r} is not one of the arms ({', '.join(known_arms)})")
    sweep_dir = Path(output_dir or spec.output_dir) / (name or spec.name)
    runs = []
    for env_key, env in spec.envs.items():
        if envs and env_key not in envs:
            continue
        for arm in spec.arms:
            if (arms and arm.name not in arms) or (arm.envs and env_key not in arm.envs):
                continue
            for seed in seeds if seeds is not None else spec.seeds:
                run = f"{arm.name}-{env_key}-s{seed}"
                ov = (spec.budget.overrides() + list(spec.overrides) + list(env.overrides) + list(extra or [])
                      + list(arm.overrides) + [f"seed={seed}", f"name={run}", f"output_dir={sweep_dir}"])
                try:
                    cfg = load_config(_config_ref(env.config, base), ov)
                except ConfigError as e:
                    raise SweepError(f"arm {arm.name!r}, env {env_key!r}: {e}") from None
                runs.append(PlannedRun(run, arm.name, env_key, seed, ov, sweep_dir / "configs" / f"{run}.yaml",
                                       dump_config(cfg)))
    if not runs:
        raise SweepError(f"sweep {spec.name!r}: nothing to run with this selection of arms, envs and seeds")
    return SweepPlan(spec, sweep_dir, runs, extra=list(extra or []))


def write_manifest(plan: SweepPlan) -> None:
    plan.sweep_dir.mkdir(parents=True, exist_ok=True)
    (plan.sweep_dir / "configs").mkdir(exist_ok=True)
    for r in plan.runs:
        r.config_path.write_text(r.config_yaml)
    manifest_path = plan.sweep_dir / MANIFEST_FILE
    old = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    # runs of an earlier invocation with another --arms/--seeds selection stay in the manifest
    runs = {r["run"]: r for r in old.get("runs", [])}
    runs.update({r.run: r.to_dict() for r in plan.runs})
    manifest = {"name": plan.sweep_dir.name, "spec": plan.spec.model_dump(mode="json"), "extra": plan.extra,
                "runs": list(runs.values())}
    manifest_path.write_text(json.dumps(manifest, indent=1))


def _record_attempt(run_dir: Path, attempt: dict[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    p = run_dir / RUN_COST_FILE
    data = json.loads(p.read_text()) if p.exists() else {"attempts": []}
    data["attempts"].append(attempt)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(p)


def thread_env(threads: int | None) -> dict[str, str]:
    """Environment for a child limited to ``threads`` CPU threads (torch, OpenMP, MKL, tokenizers). On a
    shared, oversubscribed CPU one thread per run avoids OpenMP threads spinning at barriers."""
    if not threads:
        return {}
    n = str(int(threads))
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "TOKENIZERS_PARALLELISM": "false"}


def run_one(r: PlannedRun, sweep_dir: Path, *, python: str = sys.executable,
            env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run (or resume) one run as a subprocess; returns the attempt: rc, wall_s, peak_rss_mb, resumed.
    ``env``: extra environment variables for the child."""
    run_dir = sweep_dir / r.run
    resume = (run_dir / "state.json").exists()
    cmd = [python, "-m", "agentsd.cli", "run", "--config", str(r.config_path), "--name", r.run]
    if resume:
        cmd.append("--resume")
    logs = sweep_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "160", **(env or {})}
    t0 = time.time()
    start = time.perf_counter()
    with open(logs / f"{r.run}.log", "a", encoding="utf-8") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=child_env)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except KeyboardInterrupt:
            # the child got the same SIGINT (same process group): let it save what it has, then record
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            except KeyboardInterrupt:
                proc.send_signal(signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            _record_attempt(run_dir, _attempt(t0, start, status, usage, resume))
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
    attempt = _attempt(t0, start, status, usage, resume)
    _record_attempt(run_dir, attempt)
    return attempt


def _attempt(t0: float, start: float, status: int, usage: Any, resume: bool) -> dict[str, Any]:
    return {"started": t0, "wall_s": round(time.perf_counter() - start, 2),
            "rc": os.waitstatus_to_exitcode(status), "resumed": resume,
            # Linux reports ru_maxrss in KiB
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "user_s": round(usage.ru_utime, 2),
            "sys_s": round(usage.ru_stime, 2)}


def _last_error(sweep_dir: Path, run: str) -> str:
    p = sweep_dir / "logs" / f"{run}.log"
    if not p.exists():
        return ""
    lines = [x.strip() for x in p.read_text(errors="replace").splitlines() if x.strip()]
    errs = [x for x in lines if x.startswith(("error", "Error", "Traceback")) or "Error:" in x]
    return (errs[-1] if errs else lines[-1] if lines else "")[:200]


Log = Callable[[str], None]


def run_sweep(plan: SweepPlan, *, log: Log = print, fail_fast: bool = False, python: str = sys.executable,
              threads: int | None = None, jobs: int = 1, ray_address: str | None = None) -> list[dict[str, Any]]:
    """Run every planned run (skipping complete ones), then write results.jsonl and results.md.

    A failed run is recorded and the sweep goes on (``fail_fast`` stops it: no new run starts). ``threads``
    limits each run's CPU threads (:func:`thread_env`). ``jobs``: runs at once, each its own subprocess
    (on a 2-core machine ``jobs=2, threads=1`` keeps both cores busy). ``ray_address`` (``"auto"``,
    ``"ray://host:10001"``, or ``"local"`` for a Ray started here): each run is a Ray task reserving
    ``threads`` CPUs (1 by default) on any node, at most ``jobs`` at once (0 = as many as Ray schedules);
    the nodes must see the sweep directory at the same path (a shared filesystem) and have the same
    Python environment."""
    from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

    write_manifest(plan)
    status: dict[str, str] = {}
    n = len(plan.runs)
    launch = _ray_launcher(ray_address, threads, python) if ray_address else None
    todo: list[tuple[int, PlannedRun]] = []
    for i, r in enumerate(plan.runs, 1):
        if is_complete(plan.sweep_dir / r.run):
            status[r.run] = "done"
            log(f"[{i}/{n}] {r.run}: complete, skipped")
        else:
            todo.append((i, r))
    width = len(todo) if launch is not None and jobs <= 0 else max(1, jobs)

    def start(i: int, r: PlannedRun) -> dict[str, Any]:
        how = "resuming" if (plan.sweep_dir / r.run / "state.json").exists() else "running"
        log(f"[{i}/{n}] {r.run}: {how}")
        if launch is not None:
            return launch(r, plan.sweep_dir)
        return run_one(r, plan.sweep_dir, python=python, env=thread_env(threads))

    def finish(i: int, r: PlannedRun, a: dict[str, Any]) -> bool:
        if a["rc"] == 0 and is_complete(plan.sweep_dir / r.run):
            status[r.run] = "done"
            log(f"[{i}/{n}] {r.run}: done in {a['wall_s']:.0f} s, peak RSS {a['peak_rss_mb']:.0f} MB")
            return True
        status[r.run] = f"failed (rc {a['rc']})"
        log(f"[{i}/{n}] {r.run}: FAILED rc {a['rc']}: {_last_error(plan.sweep_dir, r.run)} "
            f"(log: {plan.sweep_dir / 'logs' / (r.run + '.log')})")
        return False

    try:
        if width == 1:
            for i, r in todo:
                if not finish(i, r, start(i, r)) and fail_fast:
                    break
        else:
            with ThreadPoolExecutor(max_workers=width) as pool:
                queue = list(todo)
                running: dict[Future, tuple[int, PlannedRun]] = {}
                stop = False
                while queue or running:
                    while queue and not stop and len(running) < width:
                        i, r = queue.pop(0)
                        running[pool.submit(start, i, r)] = (i, r)
                    if not running:
                        break
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for f in done:
                        i, r = running.pop(f)
                        if not finish(i, r, f.result()) and fail_fast:
                            stop = True
    finally:
        results = write_results(plan, status)
    return results


def _ray_launcher(address: str, threads: int | None, python: str) -> Callable[[PlannedRun, Path], dict[str, Any]]:
    """``launch(run, sweep_dir)``: :func:`run_one` as a Ray task (its subprocess on whichever node Ray
    picks, with ``threads`` CPUs reserved), blocking until it ends."""
    try:
        import ray
    except ImportError as e:
        raise SweepError("--ray needs Ray: pip install 'agentsd[ray]'") from e
    if not ray.is_initialized():
        if address == "local":
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    cpus = threads or 1
    task = ray.remote(num_cpus=cpus, max_retries=0)(run_one)

    def launch(r: PlannedRun, sweep_dir: Path) -> dict[str, Any]:
        return ray.get(task.remote(r, sweep_dir, python=python, env=thread_env(cpus)))

    return launch


def write_results(plan: SweepPlan, status: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """results.jsonl (one record per planned run) and results.md (aggregates, paired differences, runs)."""
    from agentsd.report.tables import aggregate, results_markdown

    status = status or {}
    records = []
    for r in plan.runs:
        d = plan.sweep_dir / r.run
        if d.exists():
            rec = read_run(d, {"runs": [r.to_dict()]})
        else:
            rec = {"run": r.run, "arm": r.arm, "env": r.env, "seed": r.seed, "complete": False}
        rec["status"] = "done" if rec.get("complete") else status.get(r.run, "not run")
        records.append(rec)
    with open(plan.sweep_dir / RESULTS_JSONL, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")
    agg = aggregate(records, baseline=plan.spec.baseline, compare=[tuple(p) for p in plan.spec.compare])
    (plan.sweep_dir / RESULTS_MD).write_text(results_markdown(f"sweep {plan.sweep_dir.name}", records, agg))
    return records

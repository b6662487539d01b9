"""Learning on Sokoban easy: GRPO vs OPD vs Skill-SD from one warm-start, at the same rollout budget.

    python bench/learning_sokoban.py [--seeds 3] [--iterations 3] [--arms grpo,opd,skill_sd] [--batch 4]
        [--group-size 4] [--max-turns 8] [--test 16] [--warmstart 8] [--warmstart-epochs 1] [--model DIR]
        [--search-depth D] [--lr LR] [--eval-temperature T] [--seed-ids 0,2]

An arm is an algo with optional ``learning.onpolicy`` overrides, e.g. ``--arms grpo,skill_sd,skill_sd:lam=0.1``
(run ``skill_sd-lam0.1-s<seed>``; every variant is also compared with the same seeds' grpo). ``--search-depth``
sets the level generator's reverse pulls (1: boxes start near their targets, shorter solutions), ``--lr`` the
arms' learning rate, ``--eval-temperature`` samples the test episodes instead of greedy decoding (greedy
decoding of a nearly uniform policy is a constant move); the samples come from each run's own RNG, so
an arm's re-evaluation of the warm-start differs from the warm-start's by chance and the consistency
check below does not apply.
``--seed-ids`` runs a subset of seeds, so that one process per seed can share a machine
(give each its own ``--out``; a final invocation over all seeds reads the finished runs back).

The learning benchmark of issue 4. Per seed s, one warm-start (``agentsd run`` with config ``sokoban``,
``env.kwargs.difficulty=easy``, ``learning.iterations=0``, run ``warmstart-s<s>``): SFT on ``--warmstart``
oracle demonstrations (train seeds 0..W-1), with memory enabled so the demos build a skill memory. It is
shared by every arm of that seed, and its final test success (``eval_after``) is iteration 0 of every arm.
Then per arm (``grpo``, ``opd``, ``skill_sd``) one run ``<arm>-s<s>`` from the warm-start checkpoint
(``model.name=<checkpoint>``, ``learning.warmstart.episodes=0``, ``learning.algo=<arm>``,
``eval.every=1``). ``MemoryConfig`` has no "start from this memory" option (``memory.dir`` would make all
arms write into one shared store), so before an arm's run starts the warm-start run's ``memory/`` is copied
into ``<arm run>/memory``, where ``run()`` opens it by default: every arm starts from the same skills
(built from train-seed demos only) and adds its own train episodes to its own copy; only skill_sd's
teacher reads it.

Budget, identical for every arm and seed: ``--iterations`` N iterations, each ``--batch`` episodes on fresh
train seeds (``batch / group-size`` seeds x ``--group-size`` rollouts each, temperature 1), at most
``--max-turns`` turns and 12 new tokens per turn, then 1 learner step (LoRA r16, lr 2e-5) on all the
iteration's turns; after every iteration ``--test`` test episodes (greedy unless ``--eval-temperature``) on test seeds 0.. (the same
tasks for every arm and seed). Defaults: 3 iterations x 4 episodes (1 seed x group of 4) x <= 8 turns,
16 test episodes, 8 demos for the warm-start.

Seeds differ in the warm-start's SFT (LoRA init, shuffling), the sampling RNG and the learner's LoRA init;
the train and test tasks are the same for every seed (``run()`` picks them from fixed ranges). The arms'
iterations start right after the warm-start's demo levels (``rollout.train_start``), so no arm trains on a
level the warm-start saw. ``opd`` distils from the frozen warm-start weights shown the env oracle's answer
for each turn's state (``opd_context: reference``, the default; ``opd:opd_context=none`` is the plain-prompt
KL anchor). Each arm's own ``eval_before`` re-evaluates the warm-start checkpoint (a consistency
check, reported in the JSON; it costs one extra evaluation per arm and seed).

Table: test success per arm and iteration, mean over seeds with a 95% t-interval; each arm's paired
difference (per seed) to the warm-start at the last iteration, and skill_sd - grpo. The issue's aim is
skill_sd >= grpo + 5 points at equal budget with both above the warm-start; the script prints the measured
differences, it does not tune anything towards them. Runs live in ``--work``; a finished run is read back
from its run directory and not redone, an interrupted one is resumed (``resume=True``). Writes JSON
(``--out``) and a PNG next to it.

Time: not measured with the embedded model (the default). For scale, configs/sweeps/small.yaml measured
on the shared 2-core CPU: warm-start SFT on 6 demos 166 s, an eval ~100 s, a skill_sd learner step on 96
turns 727 s; with these defaults a run has 4 evaluations and 3 learner steps on <= 32 turns each. Disk:
each arm run keeps two model copies (``checkpoints/base`` and the latest iteration, ~0.5 GB each for
smollm2-135m in fp32) plus ``learner.pt`` (~80 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from agentsd.report.stats import t_interval as t_ci  # noqa: E402

ARMS = ("grpo", "opd", "skill_sd")
WARM = "warmstart"
WALL_FILE = "bench_wall.json"  # per run: wall seconds of each attempt of this script
AIM_POINTS = 0.05  # issue 4: skill_sd >= grpo + 5 points


def fmt_ci(m: float, h: float, signed: bool = False) -> str:
    if m != m:
        return "-"
    s = f"{m:+.1%}" if signed else f"{m:.1%}"
    return f"{s} ± {h:.1%}" if h == h else s


def fmt_num(m: float, h: float, signed: bool = False) -> str:
    if m != m:
        return "-"
    s = f"{m:+.2f}" if signed else f"{m:.2f}"
    return f"{s} ± {h:.2f}" if h == h else s


# --- configs ---------------------------------------------------------------------------------------------


def common_overrides(args) -> list[str]:
    """Budget and settings shared by the warm-start and every arm."""
    return [
        f"output_dir={args.work}", "env.kwargs.difficulty=easy", "memory.enabled=true",
        *([f"env.kwargs.search_depth={args.search_depth}"] if args.search_depth else []),
        # sampled evaluation from each run's own torch RNG (seeded by the run): not eval.sampling.seed, which
        # re-seeds every generate call, so each turn would reuse the same random numbers (correlated moves)
        *([f"eval.sampling.temperature={args.eval_temperature}"] if args.eval_temperature else []),
        "tracking.tensorboard=false", f"rollout.batch={args.batch}", f"rollout.group_size={args.group_size}",
        f"rollout.max_turns={args.max_turns}", f"eval.episodes={args.test}", f"eval.batch={args.test}",
        # the measurements in docs/ were made with text generation, before configs/sokoban.yaml moved
        # to candidate scoring with the memory's guardrails as a mask: keep them reproducible
        "rollout.actor=generate", "memory.guard=false", "eval.meter=0", "env.kwargs.end_on_deadlock=false",
    ]


def warm_config(args, seed: int):
    from agentsd.config import load_config

    return load_config("sokoban", [
        *common_overrides(args), f"name={WARM}-s{seed}", f"seed={seed}", "learning.iterations=0",
        f"learning.warmstart.episodes={args.warmstart}", f"learning.warmstart.epochs={args.warmstart_epochs}",
        *([f"model.name={args.model}"] if args.model else []),
    ])


def parse_arm(spec: str) -> tuple[str, str, list[str]]:
    """``algo[:key=value...]`` -> (run-name stem, algo, ``learning.onpolicy`` overrides), e.g.
    ``skill_sd:lam=0.1`` -> (``skill_sd-lam0.1``, ``skill_sd``, [``learning.onpolicy.lam=0.1``])."""
    algo, *opts = spec.split(":")
    if algo not in ARMS:
        raise SystemExit(f"unknown arm {spec!r}: the algo must be one of {list(ARMS)}")
    if bad := [o for o in opts if "=" not in o]:
        raise SystemExit(f"arm {spec!r}: options are key=value (learning.onpolicy keys), not {bad}")
    stem = "-".join([algo, *(o.replace("=", "") for o in opts)])
    return stem, algo, [f"learning.onpolicy.{o}" for o in opts]


def arm_config(args, arm: str, seed: int, checkpoint: str):
    from agentsd.config import load_config

    stem, algo, extra = parse_arm(arm)
    return load_config("sokoban", [
        *common_overrides(args), f"name={stem}-s{seed}", f"seed={seed}", f"model.name={checkpoint}",
        "learning.warmstart.episodes=0", f"learning.algo={algo}", f"learning.iterations={args.iterations}",
        "eval.every=1", "learning.onpolicy.steps_per_iteration=1",
        *([f"learning.onpolicy.lr={args.lr}"] if args.lr else []), *extra,
        f"rollout.train_start={args.warmstart}",  # fresh train levels: not the warm-start's demo levels
    ])


#: settings a cached run must share with the current invocation to be reused
CHECK_KEYS = ("seed", "env.kwargs.difficulty", "env.kwargs.search_depth", "learning.onpolicy.lr",
              "eval.sampling.temperature",
              "learning.onpolicy.lam", "rollout.batch", "rollout.group_size", "rollout.max_turns",
              "eval.episodes", "learning.iterations", "learning.algo", "learning.warmstart.episodes",
              "learning.warmstart.epochs",
              "model.name", "learning.onpolicy.steps_per_iteration", "eval.every", "rollout.train_start")


def _get(d: dict[str, Any], dotted: str) -> Any:
    for k in dotted.split("."):
        d = (d or {}).get(k) if isinstance(d, dict) else None
    return d


def check_same(cfg) -> None:
    """Refuse to resume or reuse a run directory made with a different budget."""
    p = cfg.run_dir / "config.yaml"
    if not (cfg.run_dir / "state.json").exists() or not p.exists():
        return
    import yaml

    old, new = yaml.safe_load(p.read_text()) or {}, cfg.model_dump(mode="json")
    diff = [k for k in CHECK_KEYS if _get(old, k) != _get(new, k)]
    if diff:
        raise SystemExit(f"{cfg.run_dir} was made with different settings ({', '.join(diff)}: "
                         f"{[_get(old, k) for k in diff]} vs {[_get(new, k) for k in diff]}); "
                         "use another --work or delete it")


# --- running ---------------------------------------------------------------------------------------------


def is_done(run_dir: Path) -> bool:
    st = run_dir / "state.json"
    return st.exists() and "eval_after" in json.loads(st.read_text())["done"]


def timed_run(cfg) -> None:
    """``run()`` (resumed when the run directory has a state), recording wall seconds per attempt in
    ``<run>/bench_wall.json``; a killed attempt keeps the time up to its last logged phase."""
    from agentsd.evolve import run

    run_dir = cfg.run_dir
    resume = (run_dir / "state.json").exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    wf = run_dir / WALL_FILE
    data = json.loads(wf.read_text()) if wf.exists() else {"attempts": []}
    att = {"start": time.time(), "wall_s": 0.0, "resumed": resume, "finished": False}
    data["attempts"].append(att)
    t0 = time.perf_counter()

    def save() -> None:
        att["wall_s"] = round(time.perf_counter() - t0, 1)
        wf.write_text(json.dumps(data, indent=1))

    def log(msg: str) -> None:
        print(f"  [{cfg.name} {time.perf_counter() - t0:6.0f} s] {msg}", flush=True)
        save()

    save()
    print(f"{'resuming' if resume else 'starting'} {run_dir}", flush=True)
    run(cfg, resume=resume, log=log)
    att["finished"] = True
    save()


def seed_memory(warm_dir: Path, run_dir: Path) -> None:
    """Start an arm's memory from the warm-start run's (a copy: each arm then grows its own)."""
    src, dst = warm_dir / "memory", run_dir / "memory"
    if not (src / "memory.sqlite").exists():
        raise SystemExit(f"warm-start memory {src} is missing; was the warm-start run with memory.enabled?")
    if dst.exists():
        shutil.rmtree(dst)  # a copy from an attempt that stopped before its first phase was recorded
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock"))


# --- reading results back from run directories ----------------------------------------------------------


def phase_iteration(phase: str, iterations: int) -> int | None:
    if phase == "eval_before":
        return 0
    if phase == "eval_after":
        return iterations
    if phase.startswith("eval_iter_"):
        return int(phase.rsplit("_", 1)[1])
    return None


def read_cell(run_dir: Path, iterations: int) -> dict[str, Any]:
    """One run's curve (success and per-task outcomes per evaluation) and costs, from its files."""
    from agentsd.report.collect import read_metrics, read_trajectories

    recs: dict[str, dict[str, Any]] = {}
    for r in read_metrics(run_dir):  # a phase redone after a kill appears twice: the last one counts
        recs[r["phase"]] = r
    curve = []
    for phase, r in recs.items():
        if r["kind"] != "eval":
            continue
        m = r["metrics"]
        trajs = read_trajectories(run_dir, phase)
        curve.append({
            "iteration": phase_iteration(phase, iterations), "phase": phase, "success": m["success"],
            "success_ci": m.get("success_ci"), "return": m["return"], "invalid_rate": m["invalid_rate"],
            "turns": m["turns"], "episodes": m["episodes"],
            "per_task": {str(t.seed): int(t.success) for t in sorted(trajs, key=lambda t: t.seed)},
        })
    curve.sort(key=lambda p: p["iteration"])
    train = [r for p, r in recs.items() if r["kind"] == "train" and p != "warmstart"]
    learn = [r.get("learn") or {} for r in train]
    ro = {k: [(r.get("rollout") or {}) for p, r in recs.items() if (r["kind"] == "eval") == (k == "eval")]
          for k in ("train", "eval")}
    wf = run_dir / WALL_FILE
    attempts = json.loads(wf.read_text())["attempts"] if wf.exists() else []
    summary = run_dir / "summary.json"
    mem = json.loads(summary.read_text()).get("memory") if summary.exists() else None
    cell: dict[str, Any] = {
        "run_dir": str(run_dir), "complete": "eval_after" in recs, "curve": curve,
        "train_success": [r["metrics"]["success"] for r in train],
        "train_episodes": sum(int((r.get("rollout") or {}).get("episodes", 0)) for r in train),
        "train_turns": sum(int((r.get("rollout") or {}).get("turns", 0)) for r in train),
        "learner_steps": sum(int(x.get("steps", 0)) for x in learn if x.get("stepped")),
        # learn records hold the last step's time; with 1 step per iteration (this benchmark) it is exact
        "learner_s": round(sum(float(x.get("step_seconds", 0.0)) * int(x.get("steps", 1)) for x in learn), 1),
        "teacher_s": round(sum(float(x.get("teacher_seconds", 0.0)) for x in learn), 1),
        "learner_tokens": sum(int(x.get("tokens", 0)) for x in learn),
        "learn": learn,
        "rollout_s": {k: round(sum(float(x.get("wall_seconds", 0.0)) for x in v), 1) for k, v in ro.items()},
        "tokens": {k: sum(int(x.get("tokens", 0)) for x in v) for k, v in ro.items()},
        "wall_s": round(sum(a["wall_s"] for a in attempts), 1), "attempts": len(attempts),
        "memory": (mem or {}).get("by_kind"),
    }
    if "warmstart" in recs:
        w = recs["warmstart"]
        cell["demos"] = {"episodes": w["metrics"]["episodes"], "solved": w["metrics"]["success"]}
        cell["sft"] = w.get("sft")
        cell["tokens"]["demos"] = int((w.get("rollout") or {}).get("tokens", 0))
        cell["checkpoint"] = json.loads((run_dir / "state.json").read_text())["checkpoint"]
    return cell


# --- plot ------------------------------------------------------------------------------------------------


def plot(curves: dict[str, dict[int, list[float]]], per_seed: dict[str, dict[int, list[float]]],
         warm: list[float], iterations: int, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    cmap = plt.get_cmap("tab10")
    for i, (arm, by_it) in enumerate(curves.items()):
        its = sorted(by_it)
        if not its:
            continue
        dx = 0.04 * (i - (len(curves) - 1) / 2)  # a small offset per arm so that equal curves stay visible
        xs = [k + dx for k in its]
        ms, hs = zip(*(t_ci(by_it[k]) for k in its), strict=True)
        n = max(len(by_it[k]) for k in its)
        color = cmap(i % 10)
        ax.plot(xs, ms, marker="o", color=color, label=f"{arm} (n={n} seeds)")
        if any(h == h for h in hs):
            lo = [max(0.0, m - (h if h == h else 0.0)) for m, h in zip(ms, hs, strict=True)]
            hi = [min(1.0, m + (h if h == h else 0.0)) for m, h in zip(ms, hs, strict=True)]
            ax.fill_between(xs, lo, hi, color=color, alpha=0.15)
        for seed_curve in per_seed.get(arm, {}).values():
            ks = sorted(seed_curve)
            ax.plot([k + dx for k in ks], [seed_curve[k] for k in ks], color=color, alpha=0.25, lw=0.8)
    if warm:
        m, h = t_ci(warm)
        ax.errorbar([0], [m], yerr=[[min(m, h if h == h else 0.0)], [h if h == h else 0.0]], fmt="s",
                    color="black", capsize=4, zorder=5, label=f"warm-start (n={len(warm)})")
    ax.set_xlim(-0.2, iterations + 0.2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("iteration (0 = warm-start)")
    ax.set_ylabel("test success (mean over seeds, 95% t-CI)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- main ------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--batch", type=int, default=4, help="train episodes per iteration (rollout.batch)")
    ap.add_argument("--group-size", type=int, default=4, help="rollouts per train seed (rollout.group_size)")
    ap.add_argument("--max-turns", type=int, default=8)
    ap.add_argument("--test", type=int, default=16, help="test episodes per evaluation (eval.episodes)")
    ap.add_argument("--warmstart", type=int, default=8, help="oracle demos for each seed's warm-start")
    ap.add_argument("--warmstart-epochs", type=int, default=1, help="SFT epochs of the warm-start")
    ap.add_argument("--model", default=None, help="model.name of the warm-start (default: the config's)")
    ap.add_argument("--search-depth", type=int, default=None,
                    help="env.kwargs.search_depth: reverse pulls of the level generator (1 = boxes near targets)")
    ap.add_argument("--lr", type=float, default=None, help="learning.onpolicy.lr of the arms (default: the config's)")
    ap.add_argument("--eval-temperature", type=float, default=0.0,
                    help="test episodes' sampling temperature (0 = greedy)")
    ap.add_argument("--seed-ids", default=None,
                    help="run only these seeds (comma list), e.g. one process per seed; the table covers them")
    ap.add_argument("--work", default="runs/bench-learning-sokoban")
    ap.add_argument("--out", default="bench/results/learning_sokoban.json")
    args = ap.parse_args()
    arms = [a for a in args.arms.split(",") if a]
    for a in arms:
        parse_arm(a)
    seed_ids = [int(x) for x in args.seed_ids.split(",")] if args.seed_ids else list(range(args.seeds))
    if args.batch % args.group_size:
        raise SystemExit("--batch must be a multiple of --group-size")

    work, out = Path(args.work), Path(args.out)
    png = out.with_suffix(".png")
    work.mkdir(parents=True, exist_ok=True)
    res = json.loads(out.read_text()) if out.exists() else {}
    cells = res.setdefault("cells", {})
    res["config"] = {k: getattr(args, k) for k in ("seeds", "iterations", "batch", "group_size", "max_turns",
                                                    "test", "warmstart", "model", "work", "search_depth", "lr",
                                                    "eval_temperature")}
    res["config"]["seed_ids"] = seed_ids
    res["config"]["arms"] = arms
    res["config"]["budget_per_arm"] = {
        "iterations": args.iterations, "train_episodes_per_iteration": args.batch,
        "train_seeds_per_iteration": args.batch // args.group_size, "group_size": args.group_size,
        "max_turns": args.max_turns, "learner_steps_per_iteration": 1, "test_episodes": args.test,
        "eval_every": 1,
    }
    res["machine"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                      "python": platform.python_version()}

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=1))

    t_start = time.perf_counter()
    for seed in seed_ids:
        wcfg = warm_config(args, seed)
        check_same(wcfg)
        if not is_done(wcfg.run_dir):
            timed_run(wcfg)
        cells[f"{WARM}/s{seed}"] = read_cell(wcfg.run_dir, 0)
        save()
        ckpt = str(Path(cells[f"{WARM}/s{seed}"]["checkpoint"]).resolve())
        for arm in arms:
            cfg = arm_config(args, arm, seed, ckpt)
            check_same(cfg)
            if not is_done(cfg.run_dir):
                if not (cfg.run_dir / "state.json").exists():
                    seed_memory(wcfg.run_dir, cfg.run_dir)
                timed_run(cfg)
            cells[f"{arm}/s{seed}"] = cell = read_cell(cfg.run_dir, args.iterations)
            save()
            print(f"seed {seed} {arm}: " + ", ".join(f"it {p['iteration']} {p['success']:.1%}"
                                                     for p in cell["curve"]) + f" ({cell['wall_s']:.0f} s)",
                  flush=True)
    res["bench_wall_s_this_invocation"] = round(time.perf_counter() - t_start, 1)

    # --- summary: per arm and iteration over seeds; warm-start is iteration 0 -------------------------------
    seeds = [s for s in seed_ids if f"{WARM}/s{s}" in cells]
    final = {s: next(p for p in cells[f"{WARM}/s{s}"]["curve"] if p["phase"] == "eval_after") for s in seeds}
    warm = {s: final[s]["success"] for s in seeds}
    warm_ret = {s: final[s]["return"] for s in seeds}  # finer than success: shaped reward (boxes on targets)
    warm_tasks = {s: final[s]["per_task"] for s in seeds}
    curves: dict[str, dict[int, list[float]]] = {}
    per_seed: dict[str, dict[int, dict[int, float]]] = {}
    last: dict[str, dict[int, float]] = {}
    ret_curves: dict[str, dict[int, list[float]]] = {}
    last_ret: dict[str, dict[int, float]] = {}
    last_tasks: dict[str, dict[int, dict[str, int]]] = {}
    consistency = {}
    for arm in arms:
        curves[arm], per_seed[arm], last[arm], last_tasks[arm] = {}, {}, {}, {}
        ret_curves[arm], last_ret[arm] = {}, {}
        for s in seeds:
            c = cells.get(f"{arm}/s{s}")
            if not c or not c["complete"]:
                continue
            pts = {0: warm[s], **{p["iteration"]: p["success"] for p in c["curve"] if p["iteration"] > 0}}
            per_seed[arm][s] = pts
            for k, v in pts.items():
                curves[arm].setdefault(k, []).append(v)
            last[arm][s] = pts[args.iterations]
            rets = {0: warm_ret[s], **{p["iteration"]: p["return"] for p in c["curve"] if p["iteration"] > 0}}
            for k, v in rets.items():
                ret_curves[arm].setdefault(k, []).append(v)
            last_ret[arm][s] = rets[args.iterations]
            last_tasks[arm][s] = next(p for p in c["curve"] if p["phase"] == "eval_after")["per_task"]
            before = next((p for p in c["curve"] if p["iteration"] == 0), None)
            consistency[f"{arm}/s{s}"] = before is not None and before["per_task"] == warm_tasks[s]

    def paired(a: dict[int, float], b: dict[int, float]) -> dict[str, Any]:
        ss = sorted(set(a) & set(b))
        m, h = t_ci([a[s] - b[s] for s in ss])
        return {"seeds": len(ss), "diff": m, "ci": h, "per_seed": {str(s): a[s] - b[s] for s in ss}}

    def paired_tasks(a: dict[int, dict[str, int]], b: dict[int, dict[str, int]]) -> dict[str, Any]:
        """Pooled over (seed, task) pairs: finer than per seed, but tasks of one seed are not independent."""
        d = [a[s][t] - b[s][t] for s in sorted(set(a) & set(b)) for t in a[s] if t in b[s]]
        m, h = t_ci([float(x) for x in d])
        return {"pairs": len(d), "diff": m, "ci": h, "wins": sum(x > 0 for x in d), "losses": sum(x < 0 for x in d)}

    def curve(by_it: dict[int, list[float]]) -> dict[str, Any]:
        return {str(k): dict(zip(("mean", "ci", "n"), (*t_ci(v), len(v)), strict=True)) for k, v in sorted(by_it.items())}

    summary: dict[str, Any] = {"warmstart": dict(zip(("mean", "ci"), t_ci(list(warm.values())), strict=True)),
                               "warmstart_return": dict(zip(("mean", "ci"), t_ci(list(warm_ret.values())), strict=True))}
    for arm in arms:
        summary[arm] = {
            "curve": curve(curves[arm]), "return_curve": curve(ret_curves[arm]),
            "vs_warmstart": paired(last[arm], warm), "vs_warmstart_tasks": paired_tasks(last_tasks[arm], warm_tasks),
            "return_vs_warmstart": paired(last_ret[arm], warm_ret),
        }
    if "skill_sd" in arms and "grpo" in arms:
        d = paired(last["skill_sd"], last["grpo"])
        summary["skill_sd_minus_grpo"] = {**d, "tasks": paired_tasks(last_tasks["skill_sd"], last_tasks["grpo"]),
                                          "return": paired(last_ret["skill_sd"], last_ret["grpo"])}
        summary["aim"] = {
            "skill_sd_ge_grpo_plus_5pts_point": d["seeds"] > 0 and d["diff"] >= AIM_POINTS,
            "skill_sd_ge_grpo_plus_5pts_ci_lower": d["seeds"] > 1 and d["diff"] - d["ci"] >= AIM_POINTS,
            "both_above_warmstart_point": all(summary[a]["vs_warmstart"]["diff"] > 0 for a in ("grpo", "skill_sd")),
        }
    for arm in arms:  # variants, e.g. skill_sd:lam=0.1, against the same seeds' grpo
        if arm not in ("grpo", "skill_sd") and "grpo" in arms:
            summary[f"{arm} - grpo"] = {**paired(last[arm], last["grpo"]),
                                        "tasks": paired_tasks(last_tasks[arm], last_tasks["grpo"])}
    summary["eval_before_matches_warmstart"] = consistency
    res["summary"] = summary
    save()

    # --- table -------------------------------------------------------------------------------------------
    it_cols = list(range(args.iterations + 1))
    levels = f"Sokoban easy{f' (search_depth {args.search_depth})' if args.search_depth else ''}"
    table = Table(title=f"{levels}, {args.iterations} iterations x {args.batch} episodes "
                        f"(groups of {args.group_size}, <= {args.max_turns} turns), {args.test} test episodes: "
                        "test success, mean over seeds ± 95% t-CI (iteration 0 = warm-start)")
    for col in ("arm", "seeds", *(f"it {k}" for k in it_cols), f"it {args.iterations} - warm (paired)",
                f"return it {args.iterations}", "return - warm", "train succ", "learner s/run", "wall s/run"):
        table.add_column(col, justify="left" if col == "arm" else "right")
    m, h = t_ci(list(warm.values()))
    ws_cells = [cells[f"{WARM}/s{s}"] for s in seeds]
    rm, rh = t_ci(list(warm_ret.values()))
    table.add_row("warm-start", str(len(seeds)), fmt_ci(m, h), *["" for _ in it_cols[1:]], "", fmt_num(rm, rh), "",
                  "", "", f"{sum(c['wall_s'] for c in ws_cells) / max(1, len(ws_cells)):.0f}")
    for arm in arms:
        runs = [cells[f"{arm}/s{s}"] for s in per_seed[arm]]
        if not runs:
            continue
        d = summary[arm]["vs_warmstart"]
        tr = [x for c in runs for x in c["train_success"]]
        table.add_row(arm, str(len(runs)), *(fmt_ci(*t_ci(curves[arm].get(k, []))) for k in it_cols),
                      fmt_ci(d["diff"], d["ci"], signed=True), fmt_num(*t_ci(list(last_ret[arm].values()))),
                      fmt_num(summary[arm]["return_vs_warmstart"]["diff"], summary[arm]["return_vs_warmstart"]["ci"],
                              signed=True),
                      f"{sum(tr) / max(1, len(tr)):.1%}",
                      f"{sum(c['learner_s'] for c in runs) / len(runs):.1f}",
                      f"{sum(c['wall_s'] for c in runs) / len(runs):.0f}")
    console = Console(width=220)
    console.print(table)
    if "skill_sd_minus_grpo" in summary:
        d = summary["skill_sd_minus_grpo"]
        dt = d["tasks"]
        console.print(
            f"skill_sd - grpo at iteration {args.iterations}: {fmt_ci(d['diff'], d['ci'], signed=True)} "
            f"(paired over {d['seeds']} seeds; pooled over {dt['pairs']} seed x task pairs: "
            f"{fmt_ci(dt['diff'], dt['ci'], signed=True)}, {dt['wins']} wins / {dt['losses']} losses; "
            f"return {fmt_num(d['return']['diff'], d['return']['ci'], signed=True)}). "
            f"Aim +5 points: {'met' if summary['aim']['skill_sd_ge_grpo_plus_5pts_point'] else 'not met'} "
            f"(point estimate), {'met' if summary['aim']['skill_sd_ge_grpo_plus_5pts_ci_lower'] else 'not met'} "
            f"(CI lower bound); both above warm-start: "
            f"{'yes' if summary['aim']['both_above_warmstart_point'] else 'no'} (point estimates).")
    for arm in arms:
        if (d := summary.get(f"{arm} - grpo")) is not None:
            console.print(f"{arm} - grpo at iteration {args.iterations}: {fmt_ci(d['diff'], d['ci'], signed=True)} "
                          f"(paired over {d['seeds']} seeds; {d['tasks']['wins']} wins / {d['tasks']['losses']} "
                          f"losses over {d['tasks']['pairs']} seed x task pairs)")
    bad = [k for k, ok in consistency.items() if not ok]
    if args.eval_temperature:
        console.print(f"(sampled test episodes: each arm's eval_before differs from the warm-start's by chance; "
                      f"{len(consistency) - len(bad)}/{len(consistency)} matched task by task)")
    else:
        console.print("eval_before of every arm equals the warm-start's eval_after task by task"
                      if not bad else f"eval_before differs from the warm-start's eval_after in: {', '.join(bad)}")
    plot(curves, per_seed, list(warm.values()), args.iterations,
         f"{levels}: {args.batch} episodes/iteration, {args.test} test episodes, {len(seeds)} seeds", png)
    print(f"wrote {out} and {png}")


if __name__ == "__main__":
    main()

"""Memory-only evolution: does the planner loop over skill memory help, and which part of it?

    python bench/memory_only.py [--envs sokoban,craft] [--seeds 3] [--train 8] [--test 8] [--max-turns 12]

Per environment, one warm-start (SFT on oracle demos, shared by every arm and seed; ``agentsd run`` with
no iterations), then per seed: a fresh memory built from the warm-start demos plus one round of the full
planner loop on a seed-specific slice of *train* tasks (reflection writes memory), then every arm is
evaluated on the same *test* tasks with that memory frozen:

- ``plain``: the policy alone, plain rollout prompt (what ``agentsd run`` evaluates in distill mode);
- ``none``: the planner loop without memory (plans and acts; nothing to retrieve or check);
- ``text``: memory retrieved into the prompt as text; no guardrail checks, no replanning, no expansion;
- ``guardrails``: ``text`` plus executable guardrails that veto actions before they run; on an env that
  lists its actions (Sokoban) a veto masks the forbidden ones in the re-proposal (``mask_vetoed``);
- ``guardrails_unmasked``: ``guardrails`` with the re-proposal unconstrained (``mask_vetoed=false``:
  re-sampled at the retry temperature, and after ``max_vetoes`` the last proposal runs);
- ``full``: the whole loop (retrieval, guardrails with the mask, replanning, skill expansion).

Seeds differ in the train slice that built the memory and in the sampling seed. Success is averaged
over test tasks per seed; the table shows the mean over seeds with a 95% t-interval, and each arm's
paired difference to ``none`` per seed. Results are cached per (env, seed, arm) in the JSON file, so an
interrupted benchmark continues where it stopped. Writes bench/results/memory_only.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from agentsd.report.stats import t_interval as t_ci

ARMS = {
    "plain": None,
    "none": {"retrieval": False, "guardrails": False, "replan": True, "expand_skills": False},
    "text": {"retrieval": True, "guardrails": False, "replan": False, "expand_skills": False},
    "guardrails": {"retrieval": True, "guardrails": True, "replan": False, "expand_skills": False},
    "guardrails_unmasked": {"retrieval": True, "guardrails": True, "replan": False, "expand_skills": False,
                            "mask_vetoed": False},
    "full": {"retrieval": True, "guardrails": True, "replan": True, "expand_skills": True},
}
ENV_CONFIG = {"sokoban": "sokoban", "craft": "craft"}


def warm_start(env: str, out: Path, args) -> str:
    """One warm-started checkpoint per env (agentsd run with no iterations); reused if present."""
    from agentsd.config import load_config
    from agentsd.evolve import run

    ov = [f"output_dir={out}", f"name=warmstart-{env}", "learning.iterations=0", "eval.episodes=1",
          f"learning.warmstart.episodes={args.warmstart}", "memory.enabled=false",
          "rollout.actor=generate", "memory.guard=false", "eval.meter=0",
          *([f"model.name={args.model}"] if args.model else [])]
    cfg = load_config(ENV_CONFIG[env], ov)
    state = cfg.run_dir / "state.json"
    if not (state.exists() and "eval_after" in json.loads(state.read_text())["done"]):
        run(cfg, resume=cfg.run_dir.exists(), log=lambda *a: None)
    return json.loads(state.read_text())["checkpoint"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--envs", default="sokoban,craft")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--only-seeds", default=None,
                    help="comma list: run only these seeds (e.g. one process per seed, each with its own --out)")
    ap.add_argument("--train", type=int, default=8, help="planner train episodes per seed (memory building)")
    ap.add_argument("--test", type=int, default=8, help="test episodes per arm and seed")
    ap.add_argument("--warmstart", type=int, default=16, help="oracle demos for the shared warm-start")
    ap.add_argument("--max-turns", type=int, default=12)
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--model", default=None, help="model.name override (default: the env config's model)")
    ap.add_argument("--work", default="runs/bench-memory-only")
    ap.add_argument("--out", default="bench/results/memory_only.json")
    args = ap.parse_args()

    from agentsd.config import load_config
    from agentsd.evolve import model_kwargs
    from agentsd.memory import DiagnosticSummarizer, SkillMemory
    from agentsd.planner import PlannerConfig, PlannerLoop
    from agentsd.policy import load_policy
    from agentsd.rollout import EnvFactory, PolicyActor, make_tasks, rollout
    from agentsd.trajectory import read_jsonl

    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    res = json.loads(out.read_text()) if out.exists() else {}
    cells = res.setdefault("cells", {})
    res["config"] = {k: getattr(args, k) for k in ("seeds", "train", "test", "warmstart", "max_turns")}
    res["machine"] = {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()}
    arms = [a for a in args.arms.split(",") if a]

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=1))

    for env in [e for e in args.envs.split(",") if e]:
        ckpt = warm_start(env, work, args)
        cfg = load_config(ENV_CONFIG[env], [])
        envs = EnvFactory(cfg.env.name, cfg.env.kwargs)
        policy = load_policy(ckpt, **model_kwargs(cfg.model))
        demos = list(read_jsonl(work / f"warmstart-{env}" / "trajectories" / "warmstart.jsonl"))
        test_tasks = make_tasks(envs.cls, "test", args.test)
        only = {int(x) for x in args.only_seeds.split(",")} if args.only_seeds else None
        for seed in range(args.seeds):
            if only is not None and seed not in only:
                continue
            todo = [a for a in arms if f"{env}/{seed}/{a}" not in cells]
            if not todo:
                continue
            mem_dir = work / f"memory-{env}-s{seed}"
            built = (mem_dir / "built").exists()
            mem = SkillMemory(mem_dir / "m")
            summ = DiagnosticSummarizer()
            sampling = cfg.rollout.sampling.model_copy(update={"seed": seed})
            if not built:  # warm-start demos, then one full-loop round on this seed's train slice
                t0 = time.perf_counter()
                mem.ingest([d for d in demos if d.split == "train"], summ)
                start = args.warmstart + seed * args.train
                loop = PlannerLoop(policy, mem, PlannerConfig(), sampling=sampling, summarizer=summ)
                trajs, _ = loop.run(envs, make_tasks(envs.cls, "train", args.train, start=start),
                                    max_turns=args.max_turns)
                (mem_dir / "built").write_text(json.dumps({
                    "seconds": round(time.perf_counter() - t0, 1), "train_success": sum(t.success for t in trajs),
                    "stats": mem.stats()["by_kind"]}))
            build = json.loads((mem_dir / "built").read_text())
            for arm in todo:
                t0 = time.perf_counter()
                eval_sampling = cfg.eval.sampling.model_copy(update={"seed": seed})
                if ARMS[arm] is None:
                    trajs, st = rollout(envs, PolicyActor(policy, eval_sampling), test_tasks, batch=args.test,
                                        max_turns=args.max_turns)
                    extra = {}
                else:
                    pc = PlannerConfig(**ARMS[arm], reflect=False, batch=args.test)
                    loop = PlannerLoop(policy, None if arm == "none" else mem, pc, sampling=eval_sampling,
                                       frozen=True)
                    trajs, st = loop.run(envs, test_tasks, max_turns=args.max_turns)
                    metas = [t.meta["planner"] for t in trajs]
                    extra = {k: sum(m[k] for m in metas) for k in ("vetoes", "replans", "expansions")}
                cells[f"{env}/{seed}/{arm}"] = {
                    "success": sum(t.success for t in trajs) / len(trajs),
                    "per_task": [int(t.success) for t in trajs],
                    "return": sum(t.total_reward for t in trajs) / len(trajs),
                    "invalid_rate": sum(t.invalid_actions for t in trajs) / max(1, sum(len(t.turns) for t in trajs)),
                    "turns": sum(len(t.turns) for t in trajs) / len(trajs),
                    "tokens": st.tokens, "seconds": round(time.perf_counter() - t0, 1),
                    "memory": build["stats"], **extra,
                }
                save()
                print(f"{env} seed {seed} {arm}: {cells[f'{env}/{seed}/{arm}']['success']:.1%} "
                      f"({cells[f'{env}/{seed}/{arm}']['seconds']} s)", flush=True)
            mem.close()

    # --- table -----------------------------------------------------------------------------------------
    table = Table(title="memory-only evolution: test success, mean over seeds [95% t-CI]; paired diff vs none")
    for col in ("env", "arm", "seeds", "success", "diff vs none", "return", "invalid", "vetoes", "replans",
                "expansions", "s/arm"):
        table.add_column(col, justify="left" if col in ("env", "arm") else "right")
    summary = {}
    for env in [e for e in args.envs.split(",") if e]:
        for arm in arms:
            rows = [cells[f"{env}/{s}/{arm}"] for s in range(args.seeds) if f"{env}/{s}/{arm}" in cells]
            if not rows:
                continue
            m, h = t_ci([r["success"] for r in rows])
            diffs = [cells[f"{env}/{s}/{arm}"]["success"] - cells[f"{env}/{s}/none"]["success"]
                     for s in range(args.seeds) if f"{env}/{s}/{arm}" in cells and f"{env}/{s}/none" in cells]
            dm, dh = t_ci(diffs)
            summary[f"{env}/{arm}"] = {"seeds": len(rows), "success": m, "ci": h, "diff_vs_none": dm, "diff_ci": dh}
            table.add_row(env, arm, str(len(rows)), f"{m:.1%} ± {h:.1%}" if h == h else f"{m:.1%}",
                          f"{dm:+.1%} ± {dh:.1%}" if dh == dh else (f"{dm:+.1%}" if diffs else "-"),
                          f"{sum(r['return'] for r in rows) / len(rows):.2f}",
                          f"{sum(r['invalid_rate'] for r in rows) / len(rows):.1%}",
                          *(str(sum(r.get(k, 0) for r in rows)) if arm not in ("plain",) else "-"
                            for k in ("vetoes", "replans", "expansions")),
                          f"{sum(r['seconds'] for r in rows) / len(rows):.0f}")
    res["summary"] = summary
    save()
    Console(width=200).print(table)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""The run recipe, top to bottom: build env, policy; warm-start; evaluate; for each iteration collect ->
learn -> log; evaluate again; write the summary.

    cfg = load_config("sokoban")
    result = run(cfg)
    print(result.table())

Every phase appends its metrics to ``runs/<name>/metrics.jsonl`` and its episodes to
``runs/<name>/trajectories/<phase>.jsonl``. Finished phases are recorded in ``state.json`` with a
model checkpoint after each phase that changed the weights, so ``resume=True`` continues an
interrupted run from its last finished phase. With ``memory.enabled`` every collecting phase (warm-start
demonstrations, iteration rollouts; train seeds only) is summarized into the run's skill memory
(``runs/<name>/memory``); re-ingesting the same trajectories after a resume adds no support. The
Skill-SD learner slots in at ``learn``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentsd.config import ModelConfig, RunConfig, dump_config
from agentsd.metrics import summarize
from agentsd.rollout import EnvFactory, OracleActor, PolicyActor, make_tasks, rollout
from agentsd.trajectory import Trajectory

Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass
class RunResult:
    name: str
    run_dir: Path
    phases: list[dict[str, Any]] = field(default_factory=list)

    @property
    def evals(self) -> list[dict[str, Any]]:
        return [p for p in self.phases if p["kind"] == "eval"]

    def table(self):
        """A rich Table of the evaluation phases (the same table the CLI prints)."""
        from rich.table import Table

        t = Table(title=f"agentsd run {self.name}: test episodes")
        for col in ("phase", "episodes", "success [95% CI]", "return ± CI", "invalid", "turns", "tok/s"):
            t.add_column(col, justify="right" if col != "phase" else "left")
        for p in self.evals:
            m = p["metrics"]
            lo, hi = m["success_ci"]
            t.add_row(
                p["phase"],
                str(m["episodes"]),
                f"{m['success']:.1%} [{lo:.1%}, {hi:.1%}]",
                f"{m['return']:.2f} ± {m['return_ci']:.2f}",
                f"{m['invalid_rate']:.1%}",
                f"{m['turns']:.1f}",
                f"{p['rollout']['tokens_per_s']:.0f}",
            )
        return t


class RunState:
    """state.json: the phases finished so far and where the latest weights are."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "state.json"
        self.data: dict[str, Any] = {"done": [], "checkpoint": None, "phases": []}
        if self.path.exists():
            self.data = json.loads(self.path.read_text())

    def done(self, phase: str) -> bool:
        return phase in self.data["done"]

    def mark(self, record: dict[str, Any], checkpoint: str | None = None) -> None:
        self.data["done"].append(record["phase"])
        self.data["phases"].append(record)
        if checkpoint is not None:
            self.data["checkpoint"] = checkpoint
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)  # atomic: a kill never leaves a half-written state


def _prepare_dir(cfg: RunConfig, resume: bool) -> Path:
    run_dir = cfg.run_dir
    if run_dir.exists() and not resume:
        if (run_dir / "state.json").exists():
            raise FileExistsError(
                f"run directory {str(run_dir)!r} already exists; pass --resume to continue it "
                "or choose another --name"
            )
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "trajectories").mkdir(exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_config(cfg))
    return run_dir


def _save_checkpoint(policy: Any, run_dir: Path, phase: str) -> str:
    """Save the policy weights for resume; only the latest checkpoint is kept (they are large)."""
    ckpt_root = run_dir / "checkpoints"
    dest = ckpt_root / phase
    tmp = ckpt_root / (phase + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    policy.model.save_pretrained(tmp, safe_serialization=True)
    policy.tokenizer.save_pretrained(tmp)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    for old in ckpt_root.iterdir():
        if old != dest and old.is_dir():
            shutil.rmtree(old)
    return str(dest)


def _fmt_sft(stats: dict[str, Any]) -> str:
    if not stats.get("examples"):
        return "no fine-tuning (no successful episodes)" if stats else "no fine-tuning"
    return f"fine-tuned on {stats['examples']} turns, loss {stats['final_loss']:.3f}, {stats['seconds']:.0f} s"


def model_kwargs(m: ModelConfig) -> dict[str, Any]:
    """Backend keyword arguments from the model section (autocast only when set explicitly)."""
    kw: dict[str, Any] = {"dtype": m.dtype, "device": m.device, "max_batch": m.max_batch, "cache_dir": m.cache_dir}
    if m.autocast is not None:
        kw["autocast"] = m.autocast
    return kw


def run(cfg: RunConfig, *, resume: bool = False, progress: Progress | None = None, log=print) -> RunResult:
    from agentsd.policy import load_policy

    run_dir = _prepare_dir(cfg, resume)
    state = RunState(run_dir)
    result = RunResult(cfg.name, run_dir, phases=list(state.data["phases"]))

    # --- build ----------------------------------------------------------------------------------
    envs = EnvFactory(cfg.env.name, cfg.env.kwargs)
    model_path = state.data["checkpoint"] or cfg.model.name
    policy = load_policy(model_path, **model_kwargs(cfg.model))
    r = cfg.rollout
    ws = cfg.learning.warmstart
    # Disjoint slices of the train range: demos first, then one fresh slice per iteration.
    train_cursor = ws.episodes

    def phase_rollout(phase: str, actor, tasks, max_turns: int = r.max_turns) -> tuple[list[Trajectory], dict[str, Any]]:
        out = run_dir / "trajectories" / f"{phase}.jsonl"
        out.unlink(missing_ok=True)  # a phase interrupted earlier is redone from scratch

        finished = 0

        def tick(_t: Trajectory) -> None:
            nonlocal finished
            finished += 1
            if progress:
                progress(phase, finished, len(tasks))

        trajs, stats = rollout(
            envs, actor, tasks, batch=r.batch, max_turns=max_turns, history=r.history,
            out_path=out, on_episode=tick,
        )
        return trajs, stats.to_dict()

    def record(phase: str, kind: str, trajs, rstats, checkpoint: str | None = None, **extra) -> None:
        rec = {"phase": phase, "kind": kind, "metrics": summarize(trajs), "rollout": rstats,
               "time": time.time(), **extra}
        with open(run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        state.mark(rec, checkpoint)
        result.phases.append(rec)

    def evaluate(phase: str) -> None:
        if state.done(phase):
            return
        tasks = make_tasks(envs.cls, "test", cfg.eval.episodes, start=0)
        trajs, rstats = phase_rollout(phase, PolicyActor(policy, cfg.eval.sampling), tasks)
        record(phase, "eval", trajs, rstats)
        m = result.phases[-1]["metrics"]
        log(f"{phase}: success {m['success']:.1%} return {m['return']:.2f} invalid {m['invalid_rate']:.1%}")

    def finetune(phase: str, trajs: list[Trajectory], lr: float, epochs: int, lora: bool, bs: int) -> dict:
        from agentsd.learn.sft import SFTConfig, examples_from_trajectories, sft

        examples = examples_from_trajectories(trajs)
        if not examples:
            return {"examples": 0}
        micro = min(ws.micro_batch, bs)
        sft_cfg = SFTConfig(lora=lora, lr=lr, epochs=epochs, batch_size=micro, grad_accum=max(1, bs // micro),
                            seed=cfg.seed)

        def tick(step: int, total: int, loss: float) -> None:
            if progress:
                progress(phase + " (sft)", step, total)

        res = sft(policy.model, policy.tokenizer, examples, sft_cfg, progress=tick)
        policy.model = res.model
        return {"examples": len(examples), "final_loss": res.final_loss, "seconds": res.seconds}

    # --- memory: summarize train-split trajectories into skills and guardrails ---------------------
    memory = None
    summarizer = None
    mc = cfg.memory
    if mc.enabled:
        from agentsd.memory import DiagnosticSummarizer, SkillMemory

        memory = SkillMemory(
            Path(mc.dir) if mc.dir else run_dir / "memory", url=mc.url, namespace=mc.namespace,
            embedder=mc.embedding_model, embedding_backend=mc.embedding_backend,
            merge_threshold=mc.merge_threshold, retire_floor=mc.retire_floor, stale_after=mc.stale_after,
        )
        if mc.summarizer == "llm":
            from agentsd.memory.llm import LLMSummarizer
            from agentsd.policy.base import Sampling

            judge = load_policy(mc.summarizer_model, **model_kwargs(cfg.model)) if mc.summarizer_model else policy
            summarizer = LLMSummarizer(
                judge, namespace=mc.namespace,
                sampling=Sampling(max_new_tokens=mc.summarizer_max_new_tokens, temperature=0.0),
            )
        else:
            summarizer = DiagnosticSummarizer(namespace=mc.namespace)

    def remember(phase: str, trajs: list[Trajectory], iteration: int) -> dict[str, Any]:
        """Memory stage after a collecting phase (train seeds only; eval phases never write memory)."""
        if memory is None:
            return {}
        t0 = time.perf_counter()
        memory.advance(iteration)
        rep = memory.ingest(trajs, summarizer)
        st = memory.stats()
        out = {**rep.to_dict(), "size": st["by_kind"], "seconds": round(time.perf_counter() - t0, 2)}
        log(f"{phase}: memory +{out['added']} entries, {out['merged']} merged, {out['rejected']} rejected; "
            f"now {st['by_kind'].get('skill', 0)} skills, {st['by_kind'].get('guardrail', 0)} guardrails")
        return out

    # --- warm-start on oracle demonstrations -----------------------------------------------------
    if ws.episodes > 0 and not state.done("warmstart"):
        tasks = make_tasks(envs.cls, "train", ws.episodes, start=0)
        # Demonstrations run to the env's own end: the turn cap is a budget for the model, not the oracle.
        demos, rstats = phase_rollout("warmstart", OracleActor(), tasks, max_turns=10**9)
        good = [t for t in demos if t.success]
        mem_stats = remember("warmstart", demos, 0) if mc.from_warmstart else {}
        sft_stats = finetune("warmstart", good, ws.lr, ws.epochs, ws.lora, ws.batch_size)
        ckpt = _save_checkpoint(policy, run_dir, "warmstart")
        record("warmstart", "train", demos, rstats, ckpt, sft=sft_stats, memory=mem_stats)
        log(f"warmstart: {len(good)}/{len(demos)} oracle demos solved; {_fmt_sft(sft_stats)}")

    evaluate("eval_before")

    # --- iterations: collect on train seeds -> learn -----------------------------------------------
    for it in range(1, cfg.learning.iterations + 1):
        phase = f"iter_{it}"
        start = train_cursor + (it - 1) * r.batch
        if state.done(phase):
            continue
        tasks = make_tasks(envs.cls, "train", r.batch // r.group_size or 1, start=start, group_size=r.group_size)
        trajs, rstats = phase_rollout(phase, PolicyActor(policy, r.sampling), tasks)
        mem_stats = remember(phase, trajs, it)
        learn_stats: dict[str, Any] = {}
        ckpt = None
        if cfg.learning.algo == "rft":
            wins = [t for t in trajs if t.success]
            learn_stats = finetune(phase, wins, cfg.learning.lr, 1, ws.lora, ws.batch_size)
            if learn_stats["examples"]:
                ckpt = _save_checkpoint(policy, run_dir, phase)
        record(phase, "train", trajs, rstats, ckpt, learn=learn_stats, memory=mem_stats)
        m = result.phases[-1]["metrics"]
        log(f"{phase}: train success {m['success']:.1%} invalid {m['invalid_rate']:.1%}; {_fmt_sft(learn_stats)}")

    evaluate("eval_after")

    summary = {"name": cfg.name, "phases": result.phases}
    if memory is not None:
        summary["memory"] = {"path": str(memory.path), **memory.stats()}
        memory.close()
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return result

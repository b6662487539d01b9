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
(``runs/<name>/memory``); re-ingesting the same trajectories after a resume adds no support.

``learning.algo`` picks the learner: ``rft`` (SFT on the iteration's successful episodes) or an
on-policy algorithm of :mod:`agentsd.learn.onpolicy` (``sft``, ``grpo``, ``opd``, ``skill_sd``,
``skill_prompt``): the model is prepared once (LoRA via ``prepare_model``), with one optimizer and one
teacher for the whole run; each iteration collects ``rollout.batch`` episodes in groups of
``rollout.group_size`` per seed (group-relative advantages are 0 in a group of one: GRPO needs
group_size >= 2), updates the memory, then takes ``learning.onpolicy.steps_per_iteration`` learner steps.
skill_sd's teacher sees skills retrieved for the episode's task and the turn's observation;
skill_prompt puts them in the student's prompt instead (rollouts and evaluation alike).

Checkpoint layout of the on-policy learner: ``checkpoints/iter_<k>/`` holds the model (with LoRA a
merged copy, so ``load_policy`` reads it as a plain model) and ``learner.pt`` (the adapter weights,
optimizer, teacher and reference states, RNG states); ``checkpoints/base/`` the weights under the
adapter. A resumed run loads base + adapter, so it continues exactly where it stopped.
"""

from __future__ import annotations

import json
import shutil
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentsd.config import (
    ONPOLICY_ALGOS,
    ModelConfig,
    RunConfig,
    check_combinations,
    dump_config,
    guard_off,
    onpolicy_config,
)
from agentsd.metrics import summarize
from agentsd.rollout import CandidateActor, EnvFactory, OracleActor, PolicyActor, make_tasks, rollout
from agentsd.trajectory import Trajectory, write_jsonl

Progress = Callable[[str, int, int], None]  # (phase, done, total)

#: The phase of a run's final evaluation (agentsd.report reads it as the run's result).
FINAL_EVAL = "eval_after"


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

    def __init__(self, run_dir: Path, *, write: bool = True):
        self.path = run_dir / "state.json"
        self.write = write  # False in the non-main processes of a data-parallel launch
        self.data: dict[str, Any] = {"done": [], "checkpoint": None, "phases": []}
        if self.path.exists():
            self.data = json.loads(self.path.read_text())

    def done(self, phase: str) -> bool:
        return phase in self.data["done"]

    def extend(self, iterations: int) -> int | None:
        """A finished run resumed with more ``iterations`` than it ran: its final evaluation becomes the
        learning-curve point ``eval_iter_<k>`` of the iteration it followed (in state.json, metrics.jsonl
        and the trajectory file), so the extended run evaluates again at its new end. Returns k, or None
        when there is nothing to extend. Every process rewrites its copy alike; only the writer touches
        files."""
        if FINAL_EVAL not in self.data["done"]:
            return None
        k = sum(1 for p in self.data["done"] if p.startswith("iter_"))
        if k >= iterations:
            return None
        new = f"eval_iter_{k}"
        self.data["done"] = [new if p == FINAL_EVAL else p for p in self.data["done"]]
        for rec in self.data["phases"]:
            if rec["phase"] == FINAL_EVAL:
                rec["phase"] = new
        if self.write:
            run_dir = self.path.parent
            metrics = run_dir / "metrics.jsonl"
            if metrics.exists():
                lines = []
                for line in metrics.read_text().splitlines():
                    rec = json.loads(line) if line.strip() else None
                    if rec is not None and rec.get("phase") == FINAL_EVAL:
                        line = json.dumps({**rec, "phase": new})
                    lines.append(line)
                tmp = metrics.with_suffix(".tmp")
                tmp.write_text("".join(x + "\n" for x in lines))
                tmp.replace(metrics)
            traj = run_dir / "trajectories" / f"{FINAL_EVAL}.jsonl"
            if traj.exists():
                traj.replace(traj.with_name(f"{new}.jsonl"))
            self._save()
        return k

    def mark(self, record: dict[str, Any], checkpoint: str | None = None) -> None:
        self.data["done"].append(record["phase"])
        self.data["phases"].append(record)
        if checkpoint is not None:
            self.data["checkpoint"] = checkpoint
        if self.write:
            self._save()

    def _save(self) -> None:
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


def _save_checkpoint(policy: Any, run_dir: Path, phase: str, *, model: Any = None,
                     extra: Callable[[Path], None] | None = None, state_dict: dict[str, Any] | None = None) -> str:
    """Save the policy weights (``model`` instead of ``policy.model`` when given; ``state_dict``: its
    weights, gathered from a sharded model) for resume, atomically:
    everything, ``extra(tmp_dir)``'s files included, is written to ``<phase>.tmp`` and renamed.
    Older checkpoints are removed by :func:`_prune_checkpoints` once state.json points to this one."""
    ckpt_root = run_dir / "checkpoints"
    dest = ckpt_root / phase
    tmp = ckpt_root / (phase + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    (model if model is not None else policy.model).save_pretrained(tmp, safe_serialization=True, state_dict=state_dict)
    policy.tokenizer.save_pretrained(tmp)
    if extra is not None:
        extra(tmp)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return str(dest)


def _prune_checkpoints(run_dir: Path, keep: str) -> None:
    """Only the latest checkpoint is kept (they are large), and the LoRA learner's ``base``."""
    ckpt_root = run_dir / "checkpoints"
    for old in ckpt_root.iterdir():
        if old != Path(keep) and old.is_dir() and old.name != BASE_DIR:
            shutil.rmtree(old)


#: checkpoints/<BASE_DIR>: the weights the on-policy learner's LoRA adapter sits on (saved once)
BASE_DIR = "base"
LEARNER_FILE = "learner.pt"


def _rng_state() -> dict[str, Any]:
    import random

    import numpy as np
    import torch

    st: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                          "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict[str, Any]) -> None:
    import random

    import numpy as np
    import torch

    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _fmt_learn(stats: dict[str, Any]) -> str:
    if not stats.get("stepped"):
        return f"no learner step ({int(stats.get('tokens', 0))} tokens to train on)"
    parts = [f"loss {stats['loss']:.4f}"]
    for key, label in (("sdl", "sdl"), ("kl", "kl"), ("clip_frac", "clip"), ("mismatch_abs", "mismatch")):
        if key in stats:
            parts.append(f"{label} {stats[key]:.4f}")
    parts.append(f"{stats['tokens_per_s']:.0f} tok/s")
    return f"{int(stats.get('steps', 1))} learner step(s): " + ", ".join(parts)


def _fmt_sft(stats: dict[str, Any]) -> str:
    if not stats.get("examples"):
        return "no fine-tuning (no successful episodes)" if stats else "no fine-tuning"
    return f"fine-tuned on {stats['examples']} turns, loss {stats['final_loss']:.3f}, {stats['seconds']:.0f} s"


def _planner_stats(trajs: list[Trajectory]) -> dict[str, Any]:
    """What the planner did over a phase: vetoes, replans, skill expansions, plan tokens."""
    metas = [t.meta.get("planner") or {} for t in trajs]
    return {k: sum(int(m.get(k, 0)) for m in metas) for k in ("vetoes", "replans", "expansions", "plan_tokens")}


class _Meter:
    """The learnability meter at every evaluation (``eval.meter`` states): the same held-out oracle
    states each time, scored under the plain student prompt (and the memory's skills, when there is a
    memory), so a run's log shows whether the policy reads the states better after each phase."""

    def __init__(self, envs: EnvFactory, n: int, history: int, log: Callable[..., None]):
        # a local factory of the same env: the oracle walks in this process even when the run's envs
        # live on env workers (their remote proxies carry no seed ranges)
        self.envs, self.n, self.history, self.log = EnvFactory(envs.name, envs.kwargs), n, history, log
        self.states: list | None = None

    def __call__(self, policy: Any, skills: Callable[[str], str | None] | None = None) -> dict[str, Any] | None:
        from agentsd.learnability import measure, oracle_states

        if self.n <= 0:
            return None
        if self.states is None:
            try:
                self.states = oracle_states(self.envs, self.n, history=self.history)
            except (ValueError, NotImplementedError) as err:  # no finite candidates or no oracle
                self.log(f"eval.meter: off for this env ({err})")
                self.n, self.states = 0, []
                return None
        net = policy.model
        training = net.training
        net.eval()
        try:
            report = measure(policy, self.states, ("student", "skills") if skills else ("student",), skills=skills)
        finally:
            net.train(training)
        keep = ("p_oracle", "top1", "top_share", "top_counts", "gap", "gap_ci")
        return {"states": report["states"], "tasks": report["tasks"], "chance_top1": report["chance_top1"],
                **{c: {k: v[k] for k in keep} for c, v in report["summary"].items()}}


def _fmt_meter(m: dict[str, Any]) -> str:
    parts = [f"{c} P(oracle) {v['p_oracle']:.3f} top-1 {v['top1']:.0%} top share {v['top_share']:.0%}"
             for c, v in m.items() if isinstance(v, dict)]
    return f"meter ({m['states']} oracle states): " + "; ".join(parts)


def model_kwargs(m: ModelConfig) -> dict[str, Any]:
    """Backend keyword arguments from the model section (autocast only when set explicitly)."""
    kw: dict[str, Any] = {"dtype": m.dtype, "device": m.device, "max_batch": m.max_batch, "cache_dir": m.cache_dir}
    if m.autocast is not None:
        kw["autocast"] = m.autocast
    return kw


def _quiet(*_a: Any, **_k: Any) -> None:
    return None


def _parallel_rollout(dp: Any, phase: str, envs: EnvFactory, actor: Any, tasks: list, *, batch: int,
                      max_turns: int, history: int, out: Path, tick: Callable[[Trajectory], None], skills: Any,
                      seed: int, reference: bool = False) -> tuple[list[Trajectory], dict[str, Any]]:
    """A phase's rollouts split across the processes of a data-parallel launch: each plays a contiguous
    share of ``tasks`` with its own RNG stream (seeded from the run seed, the phase and its rank, so a
    resumed phase replays the same way and group members on different processes are not duplicates);
    every process gets all trajectories back in task order; the main process writes the phase file."""
    from agentsd.learn.parallel import merge_rollout_stats

    _seed_everything(zlib.crc32(f"{seed}/{phase}/{dp.rank}".encode()))
    if isinstance(actor, PolicyActor) and actor.sampling.seed is not None:
        actor = PolicyActor(actor.policy, actor.sampling.model_copy(update={"seed": actor.sampling.seed + 7919 * dp.rank}))
    elif isinstance(actor, CandidateActor):
        actor = CandidateActor(actor.policy, actor.sampling, actor.guard, seed=zlib.crc32(f"{seed}/{phase}/{dp.rank}".encode()))
    mine, stats = rollout(envs, actor, dp.share(tasks), batch=batch, max_turns=max_turns, history=history,
                          on_episode=tick if dp.is_main else None, skills=skills, reference=reference)
    trajs = dp.gather(mine)
    merged = merge_rollout_stats(dp.gather([stats.to_dict()]))
    if dp.is_main:
        write_jsonl(out, trajs, append=False)
    return trajs, merged


def run(cfg: RunConfig, *, resume: bool = False, progress: Progress | None = None, log=print) -> RunResult:
    from agentsd.learn.parallel import DataParallel
    from agentsd.policy import load_policy

    # Launched as N processes (torchrun / accelerate launch): data parallel, see agentsd.learn.parallel.
    # The main process owns the run directory, memory, checkpoints and logs; the others roll out their
    # share of each phase and back-propagate their share of each learner step.
    dp = DataParallel.from_launch()
    main = dp is None or dp.is_main
    if dp is not None:
        from agentsd.learn.parallel import launcher_sharding

        cfg = cfg.model_copy(deep=True)
        cfg.name = dp.broadcast(cfg.name)  # a timestamped default name differs between processes
        asked = launcher_sharding()  # an accelerate FSDP / DeepSpeed config: the learner's own sharding
        if asked is not None and not getattr(cfg.learning.onpolicy, f"shard_{asked}"):
            if cfg.learning.algo in ONPOLICY_ALGOS:
                setattr(cfg.learning.onpolicy, f"shard_{asked}", True)
                note = f"accelerate launch config: sharding with learning.onpolicy.shard_{asked}=true"
            else:
                note = (f"accelerate launch config asks for sharding, but learning.algo={cfg.learning.algo} "
                        f"fine-tunes on the main process: not sharded")
            if main:
                log(note)
        if cfg.model.device.startswith("cuda"):
            cfg.model.device = str(dp.device)
        if not main:
            log, progress = _quiet, None
    check_combinations(cfg, world=dp.world if dp is not None else 1)
    error = None
    if main:
        try:
            _prepare_dir(cfg, resume)
        except FileExistsError as e:
            error = str(e)
    if dp is not None:
        error = dp.broadcast(error)  # every process fails alike rather than waiting for the main one
    if error:
        raise FileExistsError(error)
    run_dir = cfg.run_dir
    state = RunState(run_dir, write=main)
    extended = state.extend(cfg.learning.iterations) if resume else None
    if extended is not None:
        log(f"extending a finished run: {extended} -> {cfg.learning.iterations} iterations; its final evaluation "
            f"is now eval_iter_{extended}")
    from agentsd.tracking import Tracker

    tracker = Tracker.from_config(cfg, run_dir) if main else Tracker(None, tensorboard=False)
    result = RunResult(cfg.name, run_dir, phases=list(state.data["phases"]))

    # --- build ----------------------------------------------------------------------------------
    _seed_everything(cfg.seed)  # sampling draws from the global RNGs; a resumed learner restores its own
    b = cfg.backend
    if b.env_workers:
        from agentsd.distributed import RayEnvFactory

        envs: EnvFactory = RayEnvFactory(cfg.env.name, cfg.env.kwargs, workers=b.env_workers, address=b.address,
                                         num_cpus=b.num_cpus, cpus_per_worker=b.cpus_per_worker)
    else:
        envs = EnvFactory(cfg.env.name, cfg.env.kwargs)
    algo = cfg.learning.algo
    onpolicy = algo in ONPOLICY_ALGOS and cfg.learning.iterations > 0
    # opd's teacher sees the env oracle's answer for each turn's state: recorded during train rollouts
    opd_reference = onpolicy and algo == "opd" and cfg.learning.onpolicy.opd_context == "reference"
    ckpt_path = state.data["checkpoint"]
    learner_sd = None  # the on-policy learner's state at the last finished iteration (resume)
    if onpolicy and ckpt_path and (Path(ckpt_path) / LEARNER_FILE).exists():
        import torch

        learner_sd = torch.load(Path(ckpt_path) / LEARNER_FILE, map_location="cpu", weights_only=False)
    # With LoRA the learner resumes from the base weights plus its saved adapter (exactly the trained
    # model), not from the merged copy in the checkpoint (that one is for load_policy, eval and serving).
    if learner_sd is not None and learner_sd["adapter"] is not None:
        model_path = str(run_dir / "checkpoints" / BASE_DIR)
    else:
        model_path = ckpt_path or cfg.model.name
    policy = load_policy(model_path, **model_kwargs(cfg.model))
    # Rollouts on Ray actors (backend.kind=ray): each worker holds a replica, synced before a policy
    # rollout whenever the weights changed since (``weights_version`` counts updates in this process).
    ray_rollout = None
    weights_version = 0
    if cfg.backend.kind == "ray":
        from agentsd.distributed import RayRollout

        ray_rollout = RayRollout(b.workers, model=model_path, model_kwargs=model_kwargs(cfg.model), address=b.address,
                                 num_cpus=b.num_cpus, cpus_per_worker=b.cpus_per_worker, version=-1)
    r = cfg.rollout
    ws = cfg.learning.warmstart
    # Disjoint slices of the train range: demos first, then one fresh slice per iteration.
    train_cursor = ws.episodes if r.train_start is None else r.train_start

    def sync_ray_weights() -> None:
        if ray_rollout.version != weights_version:
            ray_rollout.sync_weights(policy.model, version=weights_version)  # LoRA merged in a copy

    def phase_rollout(phase: str, actor, tasks, max_turns: int = r.max_turns, skills=None, batch: int = r.batch,
                      reference: bool = False) -> tuple[list[Trajectory], dict[str, Any]]:
        out = run_dir / "trajectories" / f"{phase}.jsonl"
        out.unlink(missing_ok=True)  # a phase interrupted earlier is redone from scratch

        finished = 0

        def tick(_t: Trajectory) -> None:
            nonlocal finished
            finished += 1
            if progress:
                progress(phase, finished, len(tasks))

        if dp is not None:
            from agentsd.learn.parallel import whole_weights

            with whole_weights(policy.model):  # shard_params: each process generates on its own
                return _parallel_rollout(dp, phase, envs, actor, tasks, batch=batch, max_turns=max_turns,
                                         history=r.history, out=out, tick=tick, skills=skills, seed=cfg.seed,
                                         reference=reference)
        run_rollout = rollout
        if ray_rollout is not None:
            if isinstance(actor, PolicyActor):
                sync_ray_weights()
            run_rollout = ray_rollout
        trajs, stats = run_rollout(
            envs, actor, tasks, batch=batch, max_turns=max_turns, history=r.history,
            out_path=out, on_episode=tick, skills=skills, reference=reference,
        )
        return trajs, stats.to_dict()

    def record(phase: str, kind: str, trajs, rstats, checkpoint: str | None = None, **extra) -> None:
        rec = {"phase": phase, "kind": kind, "metrics": summarize(trajs), "rollout": rstats,
               "time": time.time(), **extra}
        if main:
            with open(run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")
        state.mark(rec, checkpoint)
        tracker.log_phase(rec, step=len(state.data["phases"]))  # phase index: stable across resume
        if checkpoint is not None and main:
            _prune_checkpoints(run_dir, checkpoint)
        result.phases.append(rec)
        if dp is not None:
            dp.barrier()  # the next phase starts on a state.json every process agrees with

    meter = _Meter(envs, cfg.eval.meter, r.history, log)
    why_not = guard_off(cfg, world=dp.world if dp is not None else 1)
    guarding = cfg.memory.guard and why_not is None
    if why_not:
        log(f"memory.guard: off ({why_not})")

    def actor_for(phase: str, sampling: Any) -> tuple[Any, int | None]:
        """The policy's actor for a phase (``rollout.actor``) and, with ``memory.guard``, how many of the
        memory's executable guardrails mask its candidates (read once, when the phase starts)."""
        if r.actor == "generate":
            return PolicyActor(policy, sampling), None
        guard, rails = None, []
        if guarding and memory is not None:
            rails = [g for g in memory.entries(kind="guardrail", env=envs.name) if g.executable or g.forbidden_action]

            def guard(env: Any, cands: list[str]) -> list[str]:
                return [c for c in cands if not any(g.check(env, c) for g in rails)]

        actor = CandidateActor(policy, sampling, guard=guard if rails else None,
                               seed=zlib.crc32(f"{cfg.seed}/{phase}".encode()))
        return actor, (len(rails) if guarding else None)

    def evaluate(phase: str) -> None:
        if state.done(phase):
            return
        tasks = make_tasks(envs.cls, "test", cfg.eval.episodes, start=0)
        if planning:
            trajs, rstats = planner_rollout(phase, tasks, frozen=True, sampling=cfg.eval.sampling)
        else:
            actor, guards = actor_for(phase, cfg.eval.sampling)
            trajs, rstats = phase_rollout(phase, actor, tasks, skills=student_skills, batch=cfg.eval.batch or r.batch)
        extra = {} if planning or guards is None else {"guardrails": guards}
        if cfg.eval.meter:
            from agentsd.learn.parallel import whole_weights

            # every process enters (gathering sharded weights is a collective); the main one scores
            with whole_weights(policy.model):
                skills = (lambda q: retrieve_block(q, "", envs.name)) if memory is not None else None
                reading = meter(policy, skills) if main else None
            if reading is not None:
                extra["meter"] = reading
        record(phase, "eval", trajs, rstats, **extra)
        m = result.phases[-1]["metrics"]
        masked = f"; candidates masked by {extra['guardrails']} executable guardrail(s)" if "guardrails" in extra else ""
        log(f"{phase}: success {m['success']:.1%} return {m['return']:.2f} invalid {m['invalid_rate']:.1%}{masked}")
        if "meter" in extra:
            log(f"{phase}: {_fmt_meter(extra['meter'])}")

    def save_weights(phase: str) -> str:
        path = _save_checkpoint(policy, run_dir, phase) if main else None
        return dp.broadcast(path) if dp is not None else path

    def curve_point(it: int) -> None:
        """The learning curve's evaluation after iteration ``it`` (``eval.every``); the last iteration's
        is ``eval_after``."""
        if cfg.eval.every and it % cfg.eval.every == 0 and it < cfg.learning.iterations:
            evaluate(f"eval_iter_{it}")

    def finetune(phase: str, trajs: list[Trajectory], lr: float, epochs: int, lora: bool, bs: int) -> dict:
        from agentsd.learn.sft import SFTConfig, examples_from_trajectories, sft

        nonlocal weights_version
        examples = examples_from_trajectories(trajs)
        if not examples:
            return {"examples": 0}
        micro = min(ws.micro_batch, bs)
        sft_cfg = SFTConfig(lora=lora, lr=lr, epochs=epochs, batch_size=micro, grad_accum=max(1, bs // micro),
                            seed=cfg.seed)

        def tick(step: int, total: int, loss: float) -> None:
            if progress:
                progress(phase + " (sft)", step, total)

        stats = None
        if main:  # SFT is cheap next to rollouts: the main process trains, the others receive the weights
            res = sft(policy.model, policy.tokenizer, examples, sft_cfg, progress=tick)
            policy.model = res.model
            stats = {"examples": len(examples), "final_loss": res.final_loss, "seconds": res.seconds}
        if dp is not None:
            dp.broadcast_params(policy.model)
            stats = dp.broadcast(stats)
        weights_version += 1
        return stats

    # --- memory: summarize train-split trajectories into skills and guardrails ---------------------
    memory = None
    summarizer = None
    mc = cfg.memory
    if mc.enabled and main:  # one writer: the main process (the skills it retrieves go out in the samples)
        from agentsd.memory import DiagnosticSummarizer, SkillMemory

        mem_path = Path(mc.dir) if mc.dir else run_dir / "memory"
        mem_kwargs = dict(url=mc.url, namespace=mc.namespace, embedder=mc.embedding_model,
                          embedding_backend=mc.embedding_backend, merge_threshold=mc.merge_threshold,
                          retire_floor=mc.retire_floor, stale_after=mc.stale_after)
        if ray_rollout is not None:  # one memory actor: the driver and every worker use the same store
            from agentsd.distributed import RemoteMemory

            memory = RemoteMemory.start(mem_path, **mem_kwargs)
        else:
            memory = SkillMemory(mem_path, **mem_kwargs)
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
        if dp is not None and mc.enabled and mc.summarizer == "llm" and not mc.summarizer_model:
            from agentsd.learn.parallel import whole_weights

            # the main process's summarizer generates with the policy: shard_params layers gathered first
            with whole_weights(policy.model):
                return _remember(phase, trajs, iteration)
        return _remember(phase, trajs, iteration)

    def _remember(phase: str, trajs: list[Trajectory], iteration: int) -> dict[str, Any]:
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

    # --- on-policy learner ----------------------------------------------------------------------------
    op = cfg.learning.onpolicy

    def setup_learner() -> dict[str, Any]:
        from agentsd.learn.onpolicy import (
            Teacher,
            load_optimizer_state,
            make_optimizer,
            make_teacher,
            prepare_model,
            shard_model,
        )

        opcfg = onpolicy_config(op, model_autocast=cfg.model.autocast, algo=algo, seed=cfg.seed)
        if op.lora and learner_sd is None and main:
            # the weights under the adapter, kept for an exact resume (see the checkpoint layout)
            base = run_dir / "checkpoints" / BASE_DIR
            tmp = base.with_name(BASE_DIR + ".tmp")
            if tmp.exists():
                shutil.rmtree(tmp)
            policy.model.save_pretrained(tmp, safe_serialization=True)
            policy.tokenizer.save_pretrained(tmp)
            if base.exists():
                shutil.rmtree(base)
            tmp.rename(base)
        if dp is not None:
            dp.barrier()
        # peft injects the LoRA layers into policy.model's own modules, so policy.model (which the
        # rollouts generate with) runs the live adapter: no merge, no weight copy after a step.
        net = prepare_model(policy.model, opcfg)
        if shard_model(net, opcfg, dp):  # shard_params: before the optimizer and teacher, which follow suit
            log(f"shard_params: decoder layers sharded across {dp.world} processes (FSDP2)")
        opt = make_optimizer(net, opcfg, dp)
        teacher_model = None
        if op.teacher_model is not None:  # opd's fixed teacher: reloaded as it is on resume
            teacher_model = load_policy(op.teacher_model, **model_kwargs(cfg.model)).model
            teacher_model.requires_grad_(False)
        teacher = make_teacher(net, opcfg, skills_for=skills_for, teacher_model=teacher_model)
        reference = Teacher(net, "frozen") if opcfg.kl_coef > 0 and algo != "sft" else None
        if learner_sd is not None:
            import torch

            if learner_sd["adapter"] is not None:
                params = dict(net.named_parameters())
                with torch.no_grad():
                    for n, t in learner_sd["adapter"].items():
                        params[n].copy_(t)
            load_optimizer_state(opt, learner_sd["optimizer"], net)
            if teacher is not None:
                teacher.load_state_dict(learner_sd["teacher"])
            if reference is not None:
                reference.load_state_dict(learner_sd["reference"])
            _set_rng_state(learner_sd["rng"])
        return {"cfg": opcfg, "net": net, "opt": opt, "teacher": teacher, "reference": reference}

    def learn_onpolicy(phase: str, trajs: list[Trajectory]) -> dict[str, Any]:
        from agentsd.learn.onpolicy import build_samples, learner_step

        opcfg, net, teacher = learner["cfg"], learner["net"], learner["teacher"]
        batch = build_samples(trajs, policy.tokenizer, opcfg, teacher=teacher) if main else None
        if dp is not None:
            batch = dp.broadcast(batch)  # the teacher's skills come from the main process's memory
        steps = []
        for k in range(op.steps_per_iteration):
            # several steps on one batch: the first records π_old (the learner's log-probs) for the rest
            steps.append(learner_step(net, policy.tokenizer, batch.samples, opcfg, teacher, learner["opt"],
                                      reference=learner["reference"], dp=dp,
                                      record_old=op.steps_per_iteration > 1))
            if progress:
                progress(phase + " (learn)", k + 1, op.steps_per_iteration)
        return {**steps[-1], "steps": len(steps), "first_loss": steps[0]["loss"], "episodes": batch.episodes,
                "skipped_turns": batch.skipped}

    def save_learner(phase: str, it: int) -> str:
        import copy

        import torch

        from agentsd.learn.onpolicy import model_state_dict, optimizer_state_dict
        from agentsd.learn.parallel import has_sharded_params

        net, teacher, reference = learner["net"], learner["teacher"], learner["reference"]
        lora = hasattr(net, "peft_config")
        # every process: sharded state (shard_optimizer, shard_params) is gathered on the main one
        opt_sd = optimizer_state_dict(learner["opt"], dp, net)
        weights = model_state_dict(net, dp)  # shard_params: the whole weights; None otherwise
        gather = main or has_sharded_params(net)  # sharded teachers gather collectively
        teacher_sd = teacher.state_dict() if teacher is not None and gather else None
        reference_sd = reference.state_dict() if reference is not None and gather else None

        def extra(d: Path) -> None:
            sd = {
                "algo": algo, "iteration": it, "lora": lora,
                "adapter": {n: p.detach().clone() for n, p in net.named_parameters() if p.requires_grad}
                if lora else None,
                "optimizer": opt_sd,
                "teacher": teacher_sd,
                "reference": reference_sd,
                "rng": _rng_state(),
            }
            torch.save(sd, d / (LEARNER_FILE + ".tmp"))
            (d / (LEARNER_FILE + ".tmp")).replace(d / LEARNER_FILE)

        # With LoRA the checkpoint's model is a merged copy (a plain model load_policy reads); the live
        # adapter stays in place for the next iteration.
        path = None
        if main:
            merged = copy.deepcopy(net).merge_and_unload() if lora else None
            path = _save_checkpoint(policy, run_dir, phase, model=merged, extra=extra, state_dict=weights)
        return dp.broadcast(path) if dp is not None else path

    # --- retrieval: the skills block for a task and observation (skill_sd teacher, skill_prompt student)
    sk = cfg.learning.skills

    def retrieve_block(task: str, observation: str, env: str) -> str | None:
        if memory is None:
            return None
        hits = memory.retrieve(f"{task}\n{observation}".strip(), k=sk.k, env=env, budget_tokens=sk.budget_tokens)
        return memory.render(hits) or None

    def skills_for(turn, traj: Trajectory) -> str | None:
        """The teacher's skills for one turn: the episode's task plus the turn's observation (the last
        user message)."""
        obs = next((m["content"] for m in reversed(turn.messages) if m.get("role") == "user"), "")
        return retrieve_block(str(traj.meta.get("task", "")), obs, traj.env)

    student_skills = None
    if algo == "skill_prompt":
        def student_skills(env, obs: str) -> str | None:
            return retrieve_block(env.task_description(), obs, envs.name)

    # --- the planner loop (mode memory / both) ------------------------------------------------------------
    planning = cfg.mode in ("memory", "both")
    checkpointer = None

    def planner_rollout(phase: str, tasks, *, frozen: bool, sampling) -> tuple[list[Trajectory], dict[str, Any]]:
        """Episodes through the LangGraph planner: train phases reflect into memory, eval phases never write."""
        from agentsd.planner import PlannerLoop, sqlite_checkpointer

        nonlocal checkpointer
        out = run_dir / "trajectories" / f"{phase}.jsonl"
        out.unlink(missing_ok=True)
        finished = 0

        def tick(_t: Trajectory) -> None:
            nonlocal finished
            finished += 1
            if progress:
                progress(phase + " (planner)", finished, len(tasks))

        batch = min(cfg.planner.batch, r.batch)
        if ray_rollout is not None:  # the loop runs on the workers, with their replicas and the memory actor
            from agentsd.distributed import PlannerSpec

            sync_ray_weights()
            spec = PlannerSpec(cfg.planner, memory, sampling, frozen, summarizer,
                               checkpoint_dir=str(run_dir) if cfg.planner.checkpoint else None, phase=phase)
            trajs, stats = ray_rollout(envs, PolicyActor(policy, sampling), tasks, batch=batch, max_turns=r.max_turns,
                                       history=r.history, out_path=out, on_episode=tick, planner=spec)
        else:
            if checkpointer is None and cfg.planner.checkpoint:
                checkpointer = sqlite_checkpointer(run_dir / "planner.sqlite")
            loop = PlannerLoop(policy, memory, cfg.planner, sampling=sampling, history=r.history,
                               summarizer=summarizer, frozen=frozen, checkpointer=checkpointer)
            trajs, stats = loop.run(envs, tasks, max_turns=r.max_turns, batch=batch, out_path=out, on_episode=tick,
                                    phase=phase)
        return trajs, {**stats.to_dict(), "planner": _planner_stats(trajs)}

    # --- warm-start on oracle demonstrations -----------------------------------------------------
    if ws.episodes > 0 and not state.done("warmstart"):
        tasks = make_tasks(envs.cls, "train", ws.episodes, start=0)
        # Demonstrations run to the env's own end: the turn cap is a budget for the model, not the oracle.
        demos, rstats = phase_rollout("warmstart", OracleActor(), tasks, max_turns=10**9)
        good = [t for t in demos if t.success]
        mem_stats = remember("warmstart", demos, 0) if mc.from_warmstart else {}
        sft_stats = finetune("warmstart", good, ws.lr, ws.epochs, ws.lora, ws.batch_size)
        ckpt = save_weights("warmstart")
        record("warmstart", "train", demos, rstats, ckpt, sft=sft_stats, memory=mem_stats)
        log(f"warmstart: {len(good)}/{len(demos)} oracle demos solved; {_fmt_sft(sft_stats)}")

    evaluate("eval_before")

    # --- the on-policy learner: LoRA wrapping, optimizer and teacher, once for all iterations ----------
    learner: dict[str, Any] = {}
    if onpolicy:
        learner = setup_learner()

    # --- iterations: collect on train seeds -> learn -----------------------------------------------
    for it in range(1, cfg.learning.iterations + 1):
        phase = f"iter_{it}"
        start = train_cursor + (it - 1) * r.batch
        if state.done(phase):
            curve_point(it)  # a run killed between the iteration and its evaluation
            continue
        tasks = make_tasks(envs.cls, "train", r.batch // r.group_size or 1, start=start, group_size=r.group_size)
        learn_stats: dict[str, Any] = {}
        ckpt = None
        if cfg.mode == "memory":
            # No weight update: the planner acts on train seeds and its reflect node grows the memory.
            assert memory is not None
            memory.advance(it)
            n0 = memory.stats()["by_kind"]
            trajs, rstats = planner_rollout(phase, tasks, frozen=False, sampling=r.sampling)
            n1 = memory.stats()["by_kind"]
            mem_stats = {"size": n1, "grown": {k: n1.get(k, 0) - n0.get(k, 0) for k in n1}}
            record(phase, "train", trajs, rstats, None, learn={}, memory=mem_stats)
            m = result.phases[-1]["metrics"]
            log(f"{phase}: planner train success {m['success']:.1%}; memory now {n1.get('skill', 0)} skills, "
                f"{n1.get('guardrail', 0)} guardrails; {rstats['planner']['vetoes']} vetoes, "
                f"{rstats['planner']['replans']} replans")
            curve_point(it)
            continue
        actor, guards = actor_for(phase, r.sampling)
        trajs, rstats = phase_rollout(phase, actor, tasks, skills=student_skills, reference=opd_reference)
        mem_stats = remember(phase, trajs, it)
        if guards is not None:
            mem_stats["guard"] = guards  # guardrails that masked this phase's candidates
        if algo == "rft":
            wins = [t for t in trajs if t.success]
            learn_stats = finetune(phase, wins, cfg.learning.lr, 1, ws.lora, ws.batch_size)
            if learn_stats["examples"]:
                ckpt = save_weights(phase)
        elif onpolicy:
            learn_stats = learn_onpolicy(phase, trajs)
            weights_version += 1
            ckpt = save_learner(phase, it)
        record(phase, "train", trajs, rstats, ckpt, learn=learn_stats, memory=mem_stats)
        m = result.phases[-1]["metrics"]
        fmt = _fmt_learn(learn_stats) if onpolicy else _fmt_sft(learn_stats)
        log(f"{phase}: train success {m['success']:.1%} invalid {m['invalid_rate']:.1%}; {fmt}")
        curve_point(it)

    evaluate(FINAL_EVAL)

    tracker.close()
    if ray_rollout is not None:
        ray_rollout.shutdown()
    if hasattr(envs, "shutdown"):
        envs.shutdown()
    if checkpointer is not None:
        checkpointer.conn.close()
    summary = {"name": cfg.name, "phases": result.phases}
    if memory is not None:
        summary["memory"] = {"path": str(memory.path), **memory.stats()}
        memory.close()
    if main:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return result

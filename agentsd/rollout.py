"""Batched multi-turn rollouts: B environments in lockstep turns against one policy.

Each turn, the prompts of all live episodes go to the actor in one call (one batched ``generate``).
An episode that ends leaves the batch and the next task takes its slot, so the batch stays full while
tasks remain. Each finished episode is appended to a JSONL file at once, so an interrupted run keeps
every episode it finished.

    envs = EnvFactory("sokoban", {"difficulty": "easy"})
    tasks = make_tasks(envs.cls, "test", n=32)
    trajs, stats = rollout(envs, PolicyActor(policy, Sampling(temperature=0)), tasks, batch=32)
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agentsd.envs import TextEnv, make, spec
from agentsd.policy.base import Conversation, Generation, Policy, Sampling
from agentsd.prompts import Step, build_messages
from agentsd.trajectory import Trajectory, Turn, write_jsonl


@dataclass(frozen=True)
class Task:
    seed: int
    split: str = "train"
    group: int = 0


class EnvFactory:
    """Builds env instances of one registered env with fixed kwargs."""

    def __init__(self, name: str, kwargs: dict[str, Any] | None = None):
        self.name = name
        self.kwargs = dict(kwargs or {})
        self.cls = spec(name).load()

    def __call__(self) -> TextEnv:
        return make(self.name, **self.kwargs)

    def step_many(self, envs: list[TextEnv], actions: list[str]) -> list[tuple]:
        """One step of each env (``env.step(action)`` results in order). In-process: one after another;
        :class:`agentsd.distributed.RayEnvFactory` steps its remote envs concurrently."""
        return [env.step(a) for env, a in zip(envs, actions, strict=True)]


def make_tasks(env_cls: type[TextEnv], split: str, n: int, start: int = 0, group_size: int = 1) -> list[Task]:
    """``n`` distinct task seeds from the env's ``split`` range (offset ``start``), each ``group_size``
    times. Train and test ranges are disjoint by the env's contract."""
    seeds = env_cls.seeds(split)
    if start + n > len(seeds):
        raise ValueError(f"{split} range of {env_cls.name} has {len(seeds)} seeds; asked for {start}+{n}")
    return [Task(seeds[start + i], split, g) for i in range(n) for g in range(group_size)]


class Actor(Protocol):
    name: str

    def act(self, prompts: list[Conversation], envs: list[TextEnv]) -> list[Generation]: ...


class PolicyActor:
    """Acts by sampling from a policy: one batched generate call per turn."""

    def __init__(self, policy: Policy, sampling: Sampling):
        self.policy = policy
        self.sampling = sampling
        self.name = getattr(policy, "name", type(policy).__name__)

    def act(self, prompts: list[Conversation], envs: list[TextEnv]) -> list[Generation]:
        return self.policy.generate(prompts, self.sampling)


class OracleActor:
    """Acts with each env's oracle (its solver or reference program); for demonstrations and tests."""

    name = "oracle"

    def act(self, prompts: list[Conversation], envs: list[TextEnv]) -> list[Generation]:
        return [Generation(text=env.oracle_action() or "") for env in envs]


class CandidateActor:
    """Acts on envs with a finite action set (``TextEnv.action_candidates()``) by scoring every
    candidate instead of generating: each candidate's exact token ids + EOS are scored under the turn's
    prompt as a tree (:func:`agentsd.policy.hf.candidate_logprobs`: the shared prefix once, each board once,
    only the candidate tokens per candidate), and the best one is taken (temperature
    0) or one is sampled from the softmax of the summed log-probs at ``sampling.temperature``.

    ``guard(env, candidates)``, when given, returns the candidates allowed now (e.g. those no executable
    guardrail forbids); an empty answer keeps all of them, so a turn never stalls. Envs that list no
    candidates fall back to ``policy.generate``. The recorded ``token_ids``/``logprobs`` are the picked
    candidate's tokens and their log-probs under the unconstrained model. Needs a policy with a local
    model (the ``hf`` backend).
    """

    def __init__(self, policy: Policy, sampling: Sampling,
                 guard: Callable[[TextEnv, list[str]], list[str]] | None = None, seed: int = 0):
        import random

        self.policy, self.sampling, self.guard = policy, sampling, guard
        self.name = getattr(policy, "name", type(policy).__name__)
        self.rng = random.Random(seed if sampling.seed is None else sampling.seed)
        if getattr(policy, "model", None) is None or getattr(policy, "tokenizer", None) is None:
            raise ValueError(f"{type(policy).__name__} has no local model to score candidates with")

    def act(self, prompts: list[Conversation], envs: list[TextEnv]) -> list[Generation]:
        import math

        from agentsd.policy.chat import encode_chat
        from agentsd.policy.hf import candidate_logprobs

        tok, net = self.policy.tokenizer, self.policy.model
        out: list[Generation | None] = [None] * len(envs)
        owners, prompt_rows, cand_rows = [], [], []
        free = []  # envs without candidates: generated as usual
        for i, (msgs, env) in enumerate(zip(prompts, envs, strict=True)):
            cands = env.action_candidates()
            if not cands:
                free.append(i)
                continue
            cands = list(cands)
            if self.guard is not None:
                cands = self.guard(env, cands) or cands
            owners.append((i, cands))
            prompt_rows.append(encode_chat(tok, msgs))
            cand_rows.append([list(tok(c, add_special_tokens=False).input_ids) + [tok.eos_token_id] for c in cands])
        if owners:
            training = net.training
            net.eval()
            try:
                scored = candidate_logprobs(net, prompt_rows, cand_rows, pad_id=tok.eos_token_id)
            finally:
                net.train(training)
            for (i, cands), ids, rows, lps in zip(owners, prompt_rows, cand_rows, scored, strict=True):
                scores = [sum(x) for x in lps]
                if self.sampling.temperature <= 0:
                    j = max(range(len(cands)), key=scores.__getitem__)
                else:
                    top = max(scores)
                    weights = [math.exp((x - top) / self.sampling.temperature) for x in scores]
                    j = self.rng.choices(range(len(cands)), weights)[0]
                out[i] = Generation(text=cands[j], token_ids=rows[j], logprobs=lps[j], prompt_tokens=len(ids))
        if free:
            for i, gen in zip(free, self.policy.generate([prompts[i] for i in free], self.sampling), strict=True):
                out[i] = gen
        return [g for g in out if g is not None]


@dataclass
class RolloutStats:
    episodes: int = 0
    turns: int = 0
    tokens: int = 0
    act_seconds: float = 0.0
    env_seconds: float = 0.0
    wall_seconds: float = 0.0
    batch_sizes: list[int] = field(default_factory=list)
    #: environment actors replaced during the rollout (a :class:`~agentsd.distributed.RayEnvFactory`);
    #: None for in-process environments
    env_restarts: int | None = None

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.act_seconds if self.act_seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        mean_batch = sum(self.batch_sizes) / len(self.batch_sizes) if self.batch_sizes else 0.0
        return {
            "episodes": self.episodes,
            "turns": self.turns,
            "tokens": self.tokens,
            "act_seconds": round(self.act_seconds, 3),
            "env_seconds": round(self.env_seconds, 3),
            "wall_seconds": round(self.wall_seconds, 3),
            "tokens_per_s": round(self.tokens_per_s, 1),
            "mean_batch": round(mean_batch, 2),
            **({"env_restarts": self.env_restarts} if self.env_restarts is not None else {}),
        }


@dataclass
class _Slot:
    env: TextEnv
    task: Task | None = None
    traj: Trajectory | None = None
    past: list[Step] = field(default_factory=list)
    obs: str = ""


def oracle_reference(env: TextEnv) -> str | None:
    """The env oracle's answer from the current state (None when it has none, e.g. timed out); an env
    without an oracle is an error that says so."""
    try:
        return env.oracle_action()
    except NotImplementedError:
        raise ValueError(
            f"{type(env).__name__} has no oracle_action(): reference answers (opd's teacher context, "
            "learning.onpolicy.opd_context=reference) need one; use opd_context=none"
        ) from None


def rollout(
    envs: EnvFactory,
    actor: Actor,
    tasks: list[Task],
    *,
    batch: int = 32,
    max_turns: int = 30,
    history: int = 0,
    out_path: str | Path | None = None,
    skills: Callable[[TextEnv, str], str | None] | None = None,
    on_episode: Callable[[Trajectory], None] | None = None,
    policy_version: int = 0,
    reference: bool = False,
) -> tuple[list[Trajectory], RolloutStats]:
    """Run every task to the end; return trajectories in task order and throughput stats.

    ``skills(env, observation)``, when given, returns text to put in the prompt (memory retrieval
    slots in here). ``on_episode`` is called as each episode finishes (progress bars). ``reference``:
    before each turn ask the env's oracle for a correct answer from the current state and keep it in
    ``Turn.reference`` (privileged ground truth for a distillation teacher; the policy never sees it).
    """
    stats = RolloutStats()
    t0 = time.perf_counter()
    restarts0 = getattr(envs, "restarts", None)  # a RayEnvFactory counts replaced environment actors
    queue = deque(enumerate(tasks))
    slots = [_Slot(envs()) for _ in range(min(batch, len(tasks)))]
    index: dict[int, int] = {}  # id(slot) -> task index
    done: dict[int, Trajectory] = {}

    def start(slot: _Slot) -> bool:
        if not queue:
            slot.task = None
            return False
        i, task = queue.popleft()
        obs, _ = slot.env.reset(seed=task.seed)
        slot.task, slot.obs, slot.past = task, obs, []
        slot.traj = Trajectory(
            env=envs.name,
            seed=task.seed,
            split=task.split,
            group=task.group,
            policy=actor.name,
            policy_version=policy_version,
            env_kwargs=envs.kwargs,
            initial_observation=obs,
            meta={"task": slot.env.task_description()},
        )
        index[id(slot)] = i
        return True

    def finish(slot: _Slot) -> None:
        assert slot.traj is not None
        done[index.pop(id(slot))] = slot.traj
        stats.episodes += 1
        if out_path is not None:
            write_jsonl(out_path, [slot.traj])
        if on_episode is not None:
            on_episode(slot.traj)
        start(slot)

    for slot in slots:
        start(slot)
    while True:
        live = [s for s in slots if s.task is not None]
        if not live:
            break
        prompts = []
        for s in live:
            task_text = s.env.task_description()
            extra = skills(s.env, s.obs) if skills else None
            prompts.append(
                build_messages(s.env.instructions(), task_text, s.obs, s.past, history, skills=extra)
            )
        refs = [oracle_reference(s.env) for s in live] if reference else [None] * len(live)
        ta = time.perf_counter()
        gens = actor.act(prompts, [s.env for s in live])
        stats.act_seconds += time.perf_counter() - ta
        stats.batch_sizes.append(len(live))
        te = time.perf_counter()
        step_many = getattr(envs, "step_many", None)  # any callable returning envs works as a factory
        actions = [gen.text for gen in gens]
        results = step_many([s.env for s in live], actions) if step_many else [
            s.env.step(a) for s, a in zip(live, actions, strict=True)]
        for s, msgs, gen, res, ref in zip(live, prompts, gens, results, refs, strict=True):
            obs, reward, terminated, truncated, info = res
            turn = Turn(
                messages=msgs,
                response=gen.text,
                token_ids=gen.token_ids,
                logprobs=gen.logprobs,
                reward=float(reward),
                terminated=bool(terminated),
                truncated=bool(truncated),
                info=info,
                observation=obs,
                reference=ref,
            )
            s.traj.turns.append(turn)
            s.past.append(Step(s.obs, gen.text, bool(info.get("action_is_valid", True))))
            s.obs = obs
            stats.turns += 1
            stats.tokens += len(gen.token_ids)
            if terminated or truncated or len(s.traj.turns) >= max_turns:
                if not (terminated or truncated):
                    turn.truncated = True
                finish(s)
        stats.env_seconds += time.perf_counter() - te
    stats.wall_seconds = time.perf_counter() - t0
    if restarts0 is not None:
        stats.env_restarts = envs.restarts - restarts0
    return [done[i] for i in sorted(done)], stats

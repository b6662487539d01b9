"""Scale-out rollouts on Ray: rollout workers as Ray actors, the driver dispatches task chunks.

Each worker is a Ray actor (its own process, on this machine or on any node of a cluster) that builds
the environments (``EnvFactory(name, kwargs)``) and, for a policy actor, its own replica of the policy
(``load_policy(model, **model_kwargs)``). It runs the ordinary in-process engine,
:func:`agentsd.rollout.rollout`, on the chunk of tasks it is given and returns the trajectories as
plain dicts. The driver keeps a queue of chunks and hands the next one to whichever worker is free, so
a fast worker takes more; it puts the trajectories back in task order, writes the JSONL in task order
as the finished prefix grows, and calls ``on_episode`` for each.

    rr = RayRollout(workers=2, model="smollm2-135m", model_kwargs={"dtype": "float32"})
    trajs, stats = rr(envs, PolicyActor(policy, Sampling(temperature=0)), tasks, batch=16)
    ...  # learner update on the driver
    rr.sync_weights(policy.model, version=1)   # or a checkpoint dir, or a state dict
    rr.shutdown()

Weights: the driver's own policy is not used by the workers (the ``PolicyActor`` passed in only
supplies its sampling parameters and name); each worker samples from its replica, which
:meth:`RayRollout.sync_weights` updates after a learner step. Every trajectory carries the
``policy_version`` of the weights it was sampled with, so a stale one is known.

Faults: a worker that dies mid-chunk (its process killed, an OOM, a lost node) is replaced by a new
actor built with the current weights and version, and its chunk goes back to the queue. Results are
kept by task index, so no task is counted twice; ``stats.retried`` counts re-dispatched tasks and
``stats.restarts`` replaced workers.

Memory: a run's skill memory lives in one memory actor (:class:`RemoteMemory`, a proxy with the
:class:`~agentsd.memory.SkillMemory` API), so the driver and every worker read and write one store and
writes are serialized by the actor. A ``skills=`` callback that retrieves from a ``RemoteMemory``
(``skill_prompt``) is shipped to the workers, and ``planner=`` (:class:`PlannerSpec`) runs the LangGraph
planner loop in the workers, its reflect node writing through the actor and its LangGraph checkpoints
going to one SQLite file per worker process (:func:`find_planner_checkpoint` finds an episode's).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentsd.rollout import EnvFactory, OracleActor, PolicyActor, RolloutStats, Task
from agentsd.trajectory import Trajectory, write_jsonl

__all__ = ["PlannerSpec", "RayEnvFactory", "RayRollout", "RayRolloutStats", "RemoteEnv", "RemoteMemory",
           "find_planner_checkpoint", "merged_state_dict", "ray_available"]


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def _require_ray():
    try:
        import ray
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("backend 'ray' needs Ray: pip install 'agentsd[ray]'") from e
    return ray


@dataclass
class RayRolloutStats(RolloutStats):
    """:class:`RolloutStats` summed over workers (act/env seconds are worker-seconds; wall is the driver's)
    plus the fault and dispatch counters."""

    workers: int = 0
    chunks: int = 0
    retried: int = 0  # tasks re-dispatched after their worker died
    restarts: int = 0  # workers replaced
    duplicates: int = 0  # results for a task index already done (dropped)
    worker_wall_seconds: float = 0.0  # sum over chunks of the worker-side rollout wall time

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d.update(
            backend="ray",
            workers=self.workers,
            chunks=self.chunks,
            retried=self.retried,
            restarts=self.restarts,
            duplicates=self.duplicates,
            worker_wall_seconds=round(self.worker_wall_seconds, 3),
        )
        return d


def merged_state_dict(model: Any) -> dict[str, Any]:
    """A plain (non-PEFT) CPU state dict of ``model``; for a PEFT/LoRA model each LoRA layer's base
    weight gets its adapter's delta added (``W + scale * B @ A``) in the copy, so the names and values
    are those of the merged model while the learner's model is left untouched."""
    import torch

    with torch.no_grad():
        if not hasattr(model, "peft_config"):
            return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        from peft.tuners.lora import LoraLayer

        deltas = {}
        for name, mod in model.named_modules():
            if isinstance(mod, LoraLayer) and not mod.merged:
                adapters = [a for a in mod.active_adapters if a in mod.lora_A]
                if adapters:
                    deltas[name + ".base_layer.weight"] = sum(mod.get_delta_weight(a) for a in adapters)
        sd = {}
        for k, v in model.state_dict().items():
            if "lora_" in k:
                continue
            t = v.detach() + deltas[k].to(v.dtype) if k in deltas else v.detach()
            sd[k.removeprefix("base_model.model.").replace(".base_layer.", ".")] = t.to("cpu", copy=True)
        return sd


class _Worker:
    """The body of a rollout worker actor (wrapped with ``ray.remote`` on first use)."""

    def __init__(self, model: str | None, model_kwargs: dict[str, Any], weights: Any, version: int,
                 crash_once: dict[str, Any] | None = None) -> None:
        self.model = model
        self.model_kwargs = dict(model_kwargs)
        self.policy = None
        self.version = version
        self.crash_once = crash_once
        self._envs: dict[tuple, EnvFactory] = {}
        if model is not None:
            from agentsd.policy import load_policy

            self.policy = load_policy(model, **self.model_kwargs)
            if weights is not None:
                self._load(weights)

    def pid(self) -> int:
        return os.getpid()

    def _load(self, weights: Any) -> None:
        if isinstance(weights, str):  # a checkpoint dir: reload the replica from it
            from agentsd.policy import load_policy

            self.policy = load_policy(weights, **self.model_kwargs)
        else:
            import torch

            with torch.no_grad():
                self.policy.model.load_state_dict(weights, strict=True)

    def load_weights(self, weights: Any, version: int) -> int:
        if self.policy is None:
            raise RuntimeError("this worker has no policy (started for the oracle actor)")
        self._load(weights)
        self.version = version
        return version

    def run(self, env_name: str, env_kwargs: dict[str, Any], kind: str, sampling: Any, actor_name: str,
            chunk: list[tuple[int, Task]], batch: int, max_turns: int, history: int,
            skills: Callable | None = None, planner: PlannerSpec | None = None,
            reference: bool = False) -> dict[str, Any]:
        from agentsd.rollout import rollout

        if self.crash_once is not None:  # fault injection for tests: die on this seed, once
            marker = Path(self.crash_once["marker"])
            if any(t.seed == self.crash_once["seed"] for _, t in chunk) and not marker.exists():
                marker.write_text(str(os.getpid()))
                os._exit(1)
        key = (env_name, repr(sorted(env_kwargs.items())))
        if key not in self._envs:
            self._envs[key] = EnvFactory(env_name, env_kwargs)
        if kind == "oracle":
            actor = OracleActor()
        else:
            if self.policy is None:
                raise RuntimeError("a policy rollout on a worker started without a model")
            actor = PolicyActor(self.policy, sampling)
            actor.name = actor_name
        tasks = [t for _, t in chunk]
        if planner is not None:
            trajs, stats = planner.run(self.policy, self._envs[key], tasks, batch=min(batch, len(tasks)),
                                       max_turns=max_turns, history=history)
            for t in trajs:
                t.policy_version = self.version
        else:
            trajs, stats = rollout(self._envs[key], actor, tasks, batch=min(batch, len(tasks)), max_turns=max_turns,
                                   history=history, policy_version=self.version, skills=skills,
                                   reference=reference)
        return {
            "indices": [i for i, _ in chunk],
            "trajectories": [t.model_dump(mode="json") for t in trajs],
            "stats": {"episodes": stats.episodes, "turns": stats.turns, "tokens": stats.tokens,
                      "act_seconds": stats.act_seconds, "env_seconds": stats.env_seconds,
                      "wall_seconds": stats.wall_seconds, "batch_sizes": stats.batch_sizes},
            "pid": os.getpid(),
        }


class RayRollout:
    """Rollouts on ``workers`` Ray actors; call it like :func:`agentsd.rollout.rollout`.

    ``model``/``model_kwargs``: what each worker loads with ``load_policy`` (None: oracle-only
    workers). ``address``: a Ray cluster to join (``"auto"``, ``"ray://host:10001"``), None to start a
    local Ray with ``num_cpus``; an already initialized Ray is reused. ``cpus_per_worker``: the CPUs
    Ray reserves per worker (it also sets the worker's thread count). ``chunk_size``: tasks per
    dispatch (None: about two chunks per worker, at most ``batch``). ``max_retries``: how many times
    one chunk may lose its worker before the rollout fails.

    Ray's memory monitor kills workers when the whole node is above 95% memory, other processes
    included; on a shared machine start Ray with ``RAY_memory_monitor_refresh_ms=0`` in the
    environment (or a higher ``RAY_memory_usage_threshold``). An OOM-killed worker counts as a death.
    """

    def __init__(self, workers: int = 2, *, model: str | None = None, model_kwargs: Mapping[str, Any] | None = None,
                 address: str | None = None, num_cpus: int | None = None, cpus_per_worker: float = 1,
                 chunk_size: int | None = None, version: int = 0, max_retries: int = 3,
                 _crash_once: dict[str, Any] | None = None) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        ray = _require_ray()
        self._owns_ray = False
        if not ray.is_initialized():
            if address is None:
                ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=address, log_to_driver=False)
            self._owns_ray = True
        self.n_workers = workers
        self.model = model
        self.model_kwargs = dict(model_kwargs or {})
        self.cpus_per_worker = cpus_per_worker
        self.chunk_size = chunk_size
        self.max_retries = max_retries
        self.version = version
        self._weights_ref = None  # the latest synced weights (an ObjectRef or a path), for restarts
        self._crash_once = _crash_once
        self._cls = ray.remote(_Worker)
        self.workers = [self._spawn() for _ in range(workers)]
        # fail early (model load errors surface here, not mid-rollout)
        ray.get([w.pid.remote() for w in self.workers])

    def _spawn(self):
        return self._cls.options(num_cpus=self.cpus_per_worker, max_restarts=0).remote(
            self.model, self.model_kwargs, self._weights_ref, self.version, self._crash_once
        )

    def pids(self) -> list[int]:
        ray = _require_ray()
        return ray.get([w.pid.remote() for w in self.workers])

    def sync_weights(self, weights: Any, version: int | None = None) -> int:
        """Push new weights to every worker; returns the new version (``version`` or the old one + 1).

        ``weights``: a checkpoint dir (str/Path; each worker reloads its replica from it: the
        simplest choice with LoRA, whose merged checkpoint evolve already writes), a state dict
        (``ray.put`` once, each worker ``load_state_dict``), or a model (a PEFT model's adapter is
        merged first: :func:`merged_state_dict`). A worker started later (a restart) loads the
        same weights.
        """
        ray = _require_ray()
        if self.model is None:
            raise RuntimeError("RayRollout was started without a model; nothing to sync")
        if isinstance(weights, (str, Path)):
            payload: Any = str(weights)
        else:
            sd = weights if isinstance(weights, Mapping) else merged_state_dict(weights)
            payload = ray.put(dict(sd))
        self.version = self.version + 1 if version is None else int(version)
        ray.get([w.load_weights.remote(payload, self.version) for w in self.workers])
        self._weights_ref = payload
        return self.version

    def __call__(
        self,
        envs: EnvFactory,
        actor: Any,
        tasks: list[Task],
        *,
        batch: int = 32,
        max_turns: int = 30,
        history: int = 0,
        out_path: str | Path | None = None,
        skills: Callable | None = None,
        on_episode: Callable[[Trajectory], None] | None = None,
        policy_version: int | None = None,
        planner: PlannerSpec | None = None,
        reference: bool = False,
    ) -> tuple[list[Trajectory], RayRolloutStats]:
        """Run every task to the end on the workers; trajectories in task order, summed stats.

        ``skills``: as in :func:`~agentsd.rollout.rollout`, shipped to the workers (it must be picklable:
        retrieve from a :class:`RemoteMemory`, not from a local store). ``planner``: run the episodes
        through the planner loop instead (``actor`` must then be a PolicyActor; its sampling is unused).
        ``policy_version`` is accepted for signature compatibility; trajectories carry the version
        each worker actually sampled with (the last :meth:`sync_weights`). ``reference``: as in
        :func:`~agentsd.rollout.rollout` (plain rollouts only)."""
        ray = _require_ray()
        if planner is not None and not isinstance(actor, PolicyActor):
            raise TypeError("planner= runs the workers' policy: pass a PolicyActor")
        if isinstance(actor, OracleActor):
            kind, sampling, name = "oracle", None, actor.name
        elif isinstance(actor, PolicyActor):
            if self.model is None:
                raise ValueError("a PolicyActor needs RayRollout(model=...) so the workers can load the policy")
            kind, sampling, name = "policy", actor.sampling, actor.name
        else:
            raise TypeError(f"the ray backend runs OracleActor or PolicyActor, not {type(actor).__name__}")
        stats = RayRolloutStats(workers=self.n_workers)
        t0 = time.perf_counter()
        n = len(tasks)
        size = self.chunk_size or max(1, min(batch, -(-n // (2 * self.n_workers))))
        queue: deque[list[tuple[int, Task]]] = deque(
            list(enumerate(tasks))[i:i + size] for i in range(0, n, size)
        )
        done: dict[int, Trajectory] = {}
        written = 0
        pending: dict[Any, tuple[int, list[tuple[int, Task]]]] = {}  # ref -> (worker slot, chunk)
        tries: dict[int, int] = {}  # first task index of a chunk -> times its worker died

        def dispatch(slot: int) -> None:
            if not queue:
                return
            chunk = queue.popleft()
            ref = self.workers[slot].run.remote(envs.name, envs.kwargs, kind, sampling, name, chunk, batch,
                                                max_turns, history, skills, planner, reference)
            pending[ref] = (slot, chunk)
            stats.chunks += 1

        for slot in range(self.n_workers):
            dispatch(slot)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            ref = ready[0]
            slot, chunk = pending.pop(ref)
            try:
                res = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                    ray.exceptions.ObjectLostError, ray.exceptions.OutOfMemoryError) as e:
                # the worker died: replace it (current weights and version) and re-queue its chunk
                key = chunk[0][0]
                tries[key] = tries.get(key, 0) + 1
                if tries[key] > self.max_retries:
                    raise RuntimeError(f"tasks {[i for i, _ in chunk]} lost their worker {tries[key]} times") from e
                stats.retried += len(chunk)
                stats.restarts += 1
                try:
                    ray.kill(self.workers[slot], no_restart=True)
                except Exception:  # noqa: BLE001 - already gone
                    pass
                self.workers[slot] = self._spawn()
                queue.appendleft(chunk)
                dispatch(slot)
                continue
            dispatch(slot)  # keep the worker busy before the driver does its bookkeeping
            s = res["stats"]
            stats.turns += s["turns"]
            stats.tokens += s["tokens"]
            stats.act_seconds += s["act_seconds"]
            stats.env_seconds += s["env_seconds"]
            stats.worker_wall_seconds += s["wall_seconds"]
            stats.batch_sizes.extend(s["batch_sizes"])
            for i, d in zip(res["indices"], res["trajectories"], strict=True):
                if i in done:
                    stats.duplicates += 1
                    continue
                traj = Trajectory.model_validate(d)
                done[i] = traj
                stats.episodes += 1
                if on_episode is not None:
                    on_episode(traj)
            if out_path is not None:  # the finished prefix, in task order
                prefix = []
                while written in done:
                    prefix.append(done[written])
                    written += 1
                if prefix:
                    write_jsonl(out_path, prefix)
        stats.wall_seconds = time.perf_counter() - t0
        missing = [i for i in range(n) if i not in done]
        if missing:  # pragma: no cover - would be a dispatch bug
            raise RuntimeError(f"tasks {missing[:10]} never finished")
        return [done[i] for i in range(n)], stats

    def shutdown(self) -> None:
        """Kill the workers (and the local Ray this object started, if any)."""
        ray = _require_ray()
        for w in self.workers:
            try:
                ray.kill(w, no_restart=True)
            except Exception:  # noqa: BLE001
                pass
        self.workers = []
        if self._owns_ray:
            ray.shutdown()

    def __enter__(self) -> RayRollout:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


# ------------------------------------------------------------------------------------------ memory actor


def _invoke(target: Any, name: str, args: tuple = (), kwargs: dict[str, Any] | None = None) -> Any:
    """In an actor: ``target.name(*args, **kwargs)`` for a method, the attribute's value otherwise."""
    value = getattr(target, name)
    return value(*args, **(kwargs or {})) if callable(value) else value


def _forward(cls: type, name: str, call: Any) -> Any:
    """On a proxy: a function that forwards a method of ``cls`` through ``call(name, args, kwargs)``,
    or the forwarded attribute's value."""
    if callable(getattr(cls, name, None)):
        return lambda *a, **k: call(name, a, k)
    return call(name, (), {})


class _MemoryHost:
    """The body of the memory actor: one :class:`~agentsd.memory.SkillMemory`, the only process that
    touches the store."""

    def __init__(self, path: str, kwargs: dict[str, Any]) -> None:
        from agentsd.memory import SkillMemory

        self.mem = SkillMemory(path, **kwargs)

    def pid(self) -> int:
        return os.getpid()

    def call(self, name: str, args: tuple = (), kwargs: dict[str, Any] | None = None) -> Any:
        return _invoke(self.mem, name, args, kwargs)


class RemoteMemory:
    """A :class:`~agentsd.memory.SkillMemory` in a Ray actor, used through the same API from the driver
    and from any worker (the proxy pickles as its actor handle). The actor runs one call at a time, so
    concurrent writers (planner reflect nodes on several workers, the driver's memory stage) never
    interleave. ``ingest`` summarizes in the caller's process and sends only the entries; ``render`` is
    local. The store's directory is the actor's (with ``url``, the Chroma server's index plus the
    actor's side store).

        mem = RemoteMemory.start("runs/x/memory", embedder="all-MiniLM-L6-v2")
        mem.ingest(trajs)                      # from the driver
        hits = mem.retrieve("push the box", k=3, env="sokoban")   # from anywhere
    """

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    @classmethod
    def start(cls, path: str | Path, *, num_cpus: float = 0, **kwargs: Any) -> RemoteMemory:
        """Open (or create) the store at ``path`` in a new actor; ``kwargs`` go to ``SkillMemory``.
        Errors opening it (a damaged directory, another embedder) are raised here."""
        ray = _require_ray()
        handle = ray.remote(num_cpus=num_cpus, max_restarts=0)(_MemoryHost).remote(str(path), kwargs)
        ray.get(handle.pid.remote())
        return cls(handle)

    def _call(self, name: str, args: tuple = (), kwargs: dict[str, Any] | None = None) -> Any:
        ray = _require_ray()
        return ray.get(self._handle.call.remote(name, args, kwargs or {}))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        from agentsd.memory import SkillMemory

        return _forward(SkillMemory, name, self._call)

    def ingest(self, trajectories: Any, summarizer: Any = None, *, allow_test: bool = False) -> Any:
        from agentsd.memory.memory import ingest_into

        return ingest_into(self, trajectories, summarizer, allow_test=allow_test)

    @staticmethod
    def render(hits: Any, max_chars: int = 480) -> str:
        from agentsd.memory import SkillMemory

        return SkillMemory.render(hits, max_chars)

    def close(self) -> None:
        ray = _require_ray()
        try:
            self._call("close")
            ray.kill(self._handle, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass


@dataclass
class PlannerSpec:
    """What a worker needs to run episodes through :class:`agentsd.planner.PlannerLoop` with its own
    policy replica: the planner config, the memory (a :class:`RemoteMemory`), sampling, whether memory is
    frozen (evaluation) and the summarizer of its reflect node (a picklable one, e.g. the diagnostic
    summarizer).

    ``checkpoint_dir``: keep LangGraph checkpoints there, one SQLite file per worker process
    (``planner-<pid>.sqlite``: SQLite does not take concurrent writers from several processes well),
    with the same thread ids as in-process (``<phase>/<split>-<seed>-<group>``). The path is opened on
    the worker's node: the run directory in local mode, a shared filesystem on a cluster."""

    cfg: Any
    memory: Any
    sampling: Any
    frozen: bool
    summarizer: Any = None
    checkpoint_dir: str | None = None
    phase: str = "planner"

    def checkpointer(self) -> Any:
        """This process's checkpointer (opened once per worker process), or None."""
        if self.checkpoint_dir is None:
            return None
        from agentsd.planner import sqlite_checkpointer

        path = str(Path(self.checkpoint_dir) / f"planner-{os.getpid()}.sqlite")
        if path not in _CHECKPOINTERS:
            _CHECKPOINTERS[path] = sqlite_checkpointer(path)
        return _CHECKPOINTERS[path]

    def run(self, policy: Any, envs: EnvFactory, tasks: list[Task], *, batch: int, max_turns: int,
            history: int) -> tuple[list[Trajectory], RolloutStats]:
        from agentsd.planner import PlannerLoop

        loop = PlannerLoop(policy, self.memory, self.cfg, sampling=self.sampling, history=history,
                           summarizer=self.summarizer, frozen=self.frozen, checkpointer=self.checkpointer())
        return loop.run(envs, tasks, max_turns=max_turns, batch=batch, phase=self.phase)


#: Planner checkpointers of this (worker) process, by SQLite path.
_CHECKPOINTERS: dict[str, Any] = {}


def find_planner_checkpoint(checkpoint_dir: str | Path, thread_id: str) -> Any:
    """The checkpointer (a LangGraph ``SqliteSaver``) holding planner episode ``thread_id`` among the
    files under ``checkpoint_dir`` (the in-process ``planner.sqlite`` and the workers'
    ``planner-<pid>.sqlite``); pass it to ``PlannerLoop(checkpointer=...)`` to inspect or resume the
    episode. Raises KeyError when no file has it."""
    from agentsd.planner import sqlite_checkpointer

    root = Path(checkpoint_dir)
    config = {"configurable": {"thread_id": thread_id}}
    for path in sorted(root.glob("planner*.sqlite")):
        saver = sqlite_checkpointer(path)
        if saver.get_tuple(config) is not None:
            return saver
        saver.conn.close()
    raise KeyError(f"no planner checkpoint of {thread_id!r} under {root}")


# --------------------------------------------------------------------------------------- env actors


class _EnvHost:
    """The body of an environment actor: env instances of one registered env, addressed by handle."""

    def __init__(self, env_name: str, env_kwargs: dict[str, Any]) -> None:
        self.factory = EnvFactory(env_name, env_kwargs)
        self.envs: dict[int, Any] = {}
        self.next = 0

    def pid(self) -> int:
        return os.getpid()

    def new(self) -> int:
        self.next += 1
        self.envs[self.next] = self.factory()
        return self.next

    def call(self, handle: int, name: str, args: tuple = (), kwargs: dict[str, Any] | None = None) -> Any:
        """``env.name(*args, **kwargs)`` for a method, the attribute's value otherwise."""
        return _invoke(self.envs[handle], name, args, kwargs)

    def close(self, handle: int) -> None:
        env = self.envs.pop(handle, None)
        if env is not None and hasattr(env, "close"):
            env.close()


class RemoteEnv:
    """A TextEnv that lives in an environment actor: every method call and attribute read is forwarded
    (blocking) to it, so rollouts, oracles, the planner's checks and diagnosis work unchanged.
    :meth:`RayEnvFactory.step_many` steps many of them concurrently.

    It keeps the calls that change the env's state since the last ``reset`` (the ``reset`` and each
    ``step``). When its actor dies, :class:`RayEnvFactory` replaces the actor and this env is rebuilt on
    the new one by replaying that log: our environments are deterministic given the reset seed and the
    actions, so the episode continues where it was and no step is lost or applied twice."""

    _MUTATING = ("reset", "step")

    def __init__(self, factory: RayEnvFactory, slot: int, cls: type) -> None:
        self._factory, self._slot, self._cls = factory, slot, cls
        self._log: list[tuple[str, tuple, dict[str, Any]]] = []
        self._gen = -1  # the generation of the slot's actor this env's handle lives on; -1: none yet
        self._handle = 0
        self._ensure()

    @property
    def _host(self) -> Any:
        return self._factory.hosts[self._slot]

    def _ensure(self) -> None:
        """Make sure the env exists on the slot's current actor, replaying the log on a new one."""
        ray = _require_ray()
        f = self._factory
        for _ in range(f.max_restarts + 1):
            gen = f.generations[self._slot]
            if gen == self._gen:
                return
            host = f.hosts[self._slot]
            try:
                handle = ray.get(host.new.remote())
                for name, args, kwargs in self._log:
                    ray.get(host.call.remote(handle, name, args, kwargs))
            except ray.exceptions.RayActorError:
                f._replace(self._slot, gen)
                continue
            if self._gen >= 0:
                f.replayed += 1
            self._handle, self._gen = handle, gen
            return
        raise RuntimeError(f"environment actor {self._slot} died {f.max_restarts + 1} times in a row")

    def _record(self, name: str, args: tuple, kwargs: dict[str, Any]) -> None:
        if name == "reset":
            self._log = [(name, args, kwargs)]
        elif name == "step":
            self._log.append((name, args, kwargs))

    def _call(self, name: str, args: tuple = (), kwargs: dict[str, Any] | None = None) -> Any:
        ray = _require_ray()
        kwargs = kwargs or {}
        f = self._factory
        for _ in range(f.max_restarts + 1):
            self._ensure()
            try:
                out = ray.get(self._host.call.remote(self._handle, name, args, kwargs))
            except ray.exceptions.RayActorError:
                f._replace(self._slot, self._gen)
                continue
            if name in self._MUTATING:
                self._record(name, args, kwargs)
            return out
        raise RuntimeError(f"environment actor {self._slot} died {f.max_restarts + 1} times in a row")

    _OWN = ("_factory", "_slot", "_cls", "_log", "_gen", "_handle")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in self._OWN:  # not set yet (e.g. during unpickling)
            raise AttributeError(name)
        return _forward(self._cls, name, self._call)

    def close(self) -> None:
        ray = _require_ray()
        try:
            ray.get(self._host.close.remote(self._handle))
        except Exception:  # noqa: BLE001 - the actor may already be gone at shutdown
            pass

    def __repr__(self) -> str:
        return f"RemoteEnv({self._cls.__name__}, actor={self._slot}, handle={self._handle})"


class RayEnvFactory(EnvFactory):
    """An :class:`~agentsd.rollout.EnvFactory` whose environments live on ``workers`` Ray actors
    (round-robin), apart from generation: the policy stays where it is (the driver, or its GPU) and
    environments that are costly or unsafe to step there — the ``apps`` code sandboxes — run in their
    own processes, on this machine or across a cluster. :func:`agentsd.rollout.rollout` steps a turn's
    environments concurrently through :meth:`step_many`.

        envs = RayEnvFactory("apps", {"action_format": "code"}, workers=4)
        trajs, stats = rollout(envs, PolicyActor(policy, sampling), tasks, batch=16)
        envs.shutdown()

    Faults: an actor that dies (killed, out of memory, its node lost) is replaced by a new one and each
    of its environments is rebuilt there by replaying its reset and steps (:class:`RemoteEnv`);
    ``restarts`` counts replaced actors and ``replayed`` rebuilt environments, and the rollout's stats
    report ``env_restarts``. ``max_restarts``: consecutive deaths of one actor before giving up.
    """

    def __init__(self, name: str, kwargs: dict[str, Any] | None = None, *, workers: int = 2,
                 address: str | None = None, num_cpus: int | None = None, cpus_per_worker: float = 1.0,
                 max_restarts: int = 3) -> None:
        super().__init__(name, kwargs)
        ray = _require_ray()
        if not ray.is_initialized():
            ray.init(address=address, num_cpus=num_cpus if address is None else None,
                     include_dashboard=False, log_to_driver=False)
        self._remote = ray.remote(num_cpus=cpus_per_worker, max_restarts=0)(_EnvHost)
        self.hosts = [self._spawn() for _ in range(workers)]
        self.generations = [0] * workers  # bumped each time a slot's actor is replaced
        self.max_restarts = max_restarts
        self.restarts = 0
        self.replayed = 0
        self._made = 0

    def _spawn(self) -> Any:
        return self._remote.remote(self.name, self.kwargs)

    def _replace(self, slot: int, gen: int) -> None:
        """Replace slot ``slot``'s actor, seen dead at generation ``gen`` (a no-op when another env on the
        same actor already replaced it)."""
        if self.generations[slot] != gen:
            return
        ray = _require_ray()
        try:
            ray.kill(self.hosts[slot], no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        self.hosts[slot] = self._spawn()
        self.generations[slot] += 1
        self.restarts += 1

    def __call__(self) -> RemoteEnv:
        slot = self._made % len(self.hosts)
        self._made += 1
        return RemoteEnv(self, slot, self.cls)

    def step_many(self, envs: list[Any], actions: list[str]) -> list[tuple]:
        """Step every env at once; an env whose actor died is rebuilt and stepped again on its own."""
        ray = _require_ray()
        for e in envs:
            e._ensure()
        refs = [e._host.call.remote(e._handle, "step", (a,), {}) for e, a in zip(envs, actions, strict=True)]
        out: list[tuple] = []
        for e, a, ref in zip(envs, actions, refs, strict=True):
            try:
                res = ray.get(ref)
            except ray.exceptions.RayActorError:
                self._replace(e._slot, e._gen)
                out.append(e._call("step", (a,)))  # rebuilt by replay, then this step once
                continue
            e._record("step", (a,), {})
            out.append(res)
        return out

    def pids(self) -> list[int]:
        ray = _require_ray()
        return ray.get([h.pid.remote() for h in self.hosts])

    def shutdown(self) -> None:
        ray = _require_ray()
        for h in self.hosts:
            ray.kill(h)
        self.hosts = []

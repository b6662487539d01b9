"""Ray rollouts (agentsd.distributed): real Ray actors in a local Ray (2 CPUs), real process deaths.

One Ray instance for the module (startup is ~10 s); the workers of each RayRollout reserve a quarter
CPU each so several can coexist on the 2-CPU local Ray.
"""

from __future__ import annotations

import os

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'agentsd[ray]'); ray backend untested")

from agentsd.distributed import RayRollout  # noqa: E402
from agentsd.policy.base import Sampling  # noqa: E402
from agentsd.rollout import EnvFactory, OracleActor, PolicyActor, make_tasks, rollout  # noqa: E402
from agentsd.trajectory import read_jsonl  # noqa: E402

GREEDY = Sampling(temperature=0, max_new_tokens=8)
KW = {"dtype": "float32", "autocast": False, "name": "tiny"}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    # Ray's OOM monitor counts every process on the node; this machine is shared with other jobs
    os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def envs():
    return EnvFactory("sokoban", {"difficulty": "easy"})


@pytest.fixture(scope="module")
def rr(tiny_model_dir):
    r = RayRollout(2, model=tiny_model_dir, model_kwargs=KW, cpus_per_worker=0.25, chunk_size=2)
    yield r
    r.shutdown()


def _run_cfg(tmp_path, model_dir, name, *extra):
    """A tiny `agentsd run` config (rft, one iteration, memory off); ``extra`` overrides come last."""
    from agentsd.config import load_config

    return load_config("sokoban", [
        f"output_dir={tmp_path}", f"name={name}", f"model.name={model_dir}", "model.dtype=float32",
        "model.autocast=false", "env.kwargs.brief=true", "learning.warmstart.episodes=2",
        "learning.warmstart.batch_size=4", "rollout.max_turns=3", "learning.iterations=1", "learning.algo=rft",
        "memory.enabled=false", "memory.guard=false", "rollout.actor=generate", "eval.meter=4",
        "eval.sampling.max_new_tokens=4", "rollout.sampling.max_new_tokens=4", *extra])


def _key(t):
    return (t.seed, [x.response for x in t.turns], [x.reward for x in t.turns], t.success)


def test_oracle_same_trajectories_as_in_process(rr, envs, tmp_path):
    tasks = make_tasks(envs.cls, "test", 10)
    local, _ = rollout(envs, OracleActor(), tasks, batch=4, max_turns=40)
    seen = []
    out = tmp_path / "t.jsonl"
    remote, stats = rr(envs, OracleActor(), tasks, batch=4, max_turns=40, out_path=out, on_episode=seen.append)
    assert [_key(t) for t in remote] == [_key(t) for t in local]
    assert all(t.success for t in remote) and len(seen) == 10
    assert [t.seed for t in read_jsonl(out)] == [t.seed for t in tasks]  # JSONL in task order
    d = stats.to_dict()
    assert d["episodes"] == 10 and d["retried"] == 0 and d["chunks"] == 5 and d["workers"] == 2
    assert len(set(rr.pids())) == 2


def test_tiny_model_greedy_same_actions(rr, envs, tiny_policy):
    tasks = make_tasks(envs.cls, "test", 4)
    local, _ = rollout(envs, PolicyActor(tiny_policy, GREEDY), tasks, batch=4, max_turns=2, reference=True)
    remote, stats = rr(envs, PolicyActor(tiny_policy, GREEDY), tasks, batch=4, max_turns=2, reference=True)
    assert [_key(t) for t in remote] == [_key(t) for t in local]
    refs = [[x.reference for x in t.turns] for t in remote]  # the oracle's answers, recorded on the workers
    assert refs == [[x.reference for x in t.turns] for t in local] and all(r for rs in refs for r in rs)
    assert [t.turns[0].token_ids for t in remote] == [t.turns[0].token_ids for t in local]
    assert stats.tokens > 0 and all(t.policy_version == 0 and t.policy == "tiny" for t in remote)


def test_skills_callback_is_shipped_to_the_workers(rr, envs, tiny_policy):
    """A picklable skills= callback runs in the workers: the same prompts and actions as in-process."""
    tasks = make_tasks(envs.cls, "test", 2)

    def skills(env, obs):
        return f"SKILL-MARKER for {env.task_description()[:20]}"

    a, _ = rollout(envs, PolicyActor(tiny_policy, GREEDY), tasks, max_turns=1, skills=skills)
    b, _ = rr(envs, PolicyActor(tiny_policy, GREEDY), tasks, max_turns=1, skills=skills)
    assert [t.turns[0].messages for t in b] == [t.turns[0].messages for t in a]
    assert all("SKILL-MARKER" in t.turns[0].messages[0]["content"] for t in b)
    assert [_key(t) for t in b] == [_key(t) for t in a]


def test_weight_sync_changes_generations(rr, envs, tiny_model_dir, tmp_path):
    import torch

    from agentsd.policy.hf import HFPolicy

    tasks = make_tasks(envs.cls, "test", 4)
    rr_policy = HFPolicy(tiny_model_dir, **KW)  # the driver's copy, which the learner would train
    before, _ = rr(envs, PolicyActor(rr_policy, GREEDY), tasks, max_turns=2)
    # a "learner update" on the driver: perturb the output head
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        w = rr_policy.model.lm_head.weight
        w.add_(torch.randn(w.shape, generator=g) * 2.0)
    assert rr.sync_weights(rr_policy.model) == 1
    after, _ = rr(envs, PolicyActor(rr_policy, GREEDY), tasks, max_turns=2)
    expect, _ = rollout(envs, PolicyActor(rr_policy, GREEDY), tasks, batch=4, max_turns=2)
    assert all(t.policy_version == 1 for t in after)
    assert [_key(t) for t in after] == [_key(t) for t in expect]  # the workers sample from the new weights
    assert [_key(t) for t in after] != [_key(t) for t in before]
    # the same weights as a checkpoint dir: workers reload from the path
    ckpt = tmp_path / "ckpt"
    rr_policy.model.save_pretrained(ckpt)
    rr_policy.tokenizer.save_pretrained(ckpt)
    assert rr.sync_weights(ckpt, version=2) == 2
    again, _ = rr(envs, PolicyActor(rr_policy, GREEDY), tasks, max_turns=2)
    assert [_key(t) for t in again] == [_key(t) for t in expect] and {t.policy_version for t in again} == {2}


def test_lora_learner_syncs_merged_weights(rr, envs, tiny_model_dir):
    """A PEFT-wrapped learner model: workers get base + adapter delta, the learner is untouched."""
    import torch
    from peft import LoraConfig, get_peft_model

    from agentsd.distributed import merged_state_dict
    from agentsd.policy.hf import HFPolicy

    pol = HFPolicy(tiny_model_dir, **KW)
    torch.manual_seed(0)
    pol.model = get_peft_model(pol.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "lm_head"],
                                                     init_lora_weights=False))
    before = {k: v.clone() for k, v in pol.model.state_dict().items()}
    sd = merged_state_dict(pol.model)
    assert not any("lora_" in k or "base_layer" in k for k in sd)
    assert all(torch.equal(v, pol.model.state_dict()[k]) for k, v in before.items())
    tasks = make_tasks(envs.cls, "test", 3)
    assert rr.sync_weights(pol.model) == rr.version
    got, _ = rr(envs, PolicyActor(pol, GREEDY), tasks, max_turns=2)
    want, _ = rollout(envs, PolicyActor(pol, GREEDY), tasks, batch=3, max_turns=2)
    assert [_key(t) for t in got] == [_key(t) for t in want]
    assert {t.policy_version for t in got} == {rr.version}


def test_killed_worker_is_replaced_and_its_seeds_redispatched(rr, envs, tiny_policy):
    """ray.kill every worker when the first chunk returns: the other worker's chunk is in flight then, so
    it is retried, whatever the timing; the replacements load the synced weights."""
    tasks = make_tasks(envs.cls, "test", 8)  # 4 chunks of 2: chunks are still queued at the first result
    killed = []

    def kill_once(_t):
        if not killed:
            for victim in list(rr.workers):
                killed.append(ray.get(victim.pid.remote()))
                ray.kill(victim, no_restart=True)

    trajs, stats = rr(envs, PolicyActor(tiny_policy, GREEDY), tasks, max_turns=2, on_episode=kill_once)
    assert [t.seed for t in trajs] == [t.seed for t in tasks]  # every task once, in order
    assert len({t.id for t in trajs}) == 8 and stats.episodes == 8
    assert stats.retried > 0 and stats.restarts >= 1 and stats.to_dict()["retried"] == stats.retried
    assert {t.policy_version for t in trajs} == {rr.version}


def test_worker_exiting_on_a_seed_is_restarted(envs, tmp_path):
    """A worker process that os._exit()s when it meets a chosen seed (the first time only)."""
    tasks = make_tasks(envs.cls, "test", 9)
    bad = tasks[4].seed
    local, _ = rollout(envs, OracleActor(), tasks, batch=3, max_turns=40)
    with RayRollout(2, cpus_per_worker=0.25, chunk_size=2,
                    _crash_once={"seed": bad, "marker": str(tmp_path / "crashed")}) as r:
        out = tmp_path / "t.jsonl"
        trajs, stats = r(envs, OracleActor(), tasks, batch=3, max_turns=40, out_path=out)
    assert (tmp_path / "crashed").exists()
    assert stats.retried == 2 and stats.restarts == 1 and stats.duplicates == 0
    assert [_key(t) for t in trajs] == [_key(t) for t in local]
    back = list(read_jsonl(out))
    assert [t.seed for t in back] == [t.seed for t in tasks]  # no task written twice


def test_run_with_backend_ray_matches_in_process(tmp_path, tiny_model_dir):
    """`agentsd run ... backend.kind=ray`: the same phases and, with greedy evaluation, the same metrics."""
    import json

    from agentsd.evolve import run

    def cfg(name, *extra):
        return _run_cfg(tmp_path, tiny_model_dir, name, "eval.episodes=4", "rollout.batch=2", *extra)

    local = run(cfg("local"), log=lambda *a: None)
    remote = run(cfg("ray", "backend.kind=ray", "backend.workers=2", "backend.cpus_per_worker=0.25"),
                 log=lambda *a: None)
    recs = [json.loads(x) for x in (remote.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in recs] == ["warmstart", "eval_before", "iter_1", "eval_after"]
    assert recs[1]["rollout"]["backend"] == "ray" and recs[1]["rollout"]["workers"] == 2
    for a, b in zip(local.evals, remote.evals, strict=True):
        assert a["metrics"]["episodes"] == b["metrics"]["episodes"] == 4
        assert a["metrics"]["success"] == b["metrics"]["success"]
        assert abs(a["metrics"]["return"] - b["metrics"]["return"]) < 1e-6
    ev = list(read_jsonl(remote.run_dir / "trajectories" / "eval_after.jsonl"))
    assert {t.policy_version for t in ev} == {1}  # the warm-started weights reached the workers


# ------------------------------------------------------------------------------ environment actors


def local_env_reference(traj, k: int) -> str | None:
    """The oracle's answer before turn ``k`` of ``traj``, replayed in a fresh local env."""
    env = EnvFactory(traj.env, traj.env_kwargs)()
    env.reset(seed=traj.seed)
    for turn in traj.turns[:k]:
        env.step(turn.response)
    return env.oracle_action()


def test_env_actors_give_the_same_trajectories_as_in_process_envs(tiny_policy):
    """Environments on Ray actors, generation in this process: the same episodes, oracle and policy."""
    from agentsd.distributed import RayEnvFactory, RemoteEnv

    local = EnvFactory("sokoban", {"difficulty": "easy"})
    remote = RayEnvFactory("sokoban", {"difficulty": "easy"}, workers=2, cpus_per_worker=0.25)
    try:
        assert isinstance(remote(), RemoteEnv) and len(set(remote.pids())) == 2
        assert os.getpid() not in remote.pids()
        tasks = make_tasks(local.cls, "test", 6)
        a, _ = rollout(local, OracleActor(), tasks, batch=3, max_turns=40)
        b, _ = rollout(remote, OracleActor(), tasks, batch=3, max_turns=40)
        assert [_key(t) for t in b] == [_key(t) for t in a] and all(t.success for t in b)
        a, _ = rollout(local, PolicyActor(tiny_policy, GREEDY), tasks, batch=3, max_turns=3)
        b, _ = rollout(remote, PolicyActor(tiny_policy, GREEDY), tasks, batch=3, max_turns=3, reference=True)
        assert [_key(t) for t in b] == [_key(t) for t in a]
        assert [[x.reference for x in t.turns] for t in b] == [[local_env_reference(t, k) for k in range(len(t.turns))]
                                                              for t in a]
        assert [[x.info for x in t.turns] for t in b] == [[x.info for x in t.turns] for t in a]
    finally:
        remote.shutdown()


def test_apps_sandboxes_on_env_actors(tmp_path):
    """The apps env (a code sandbox per env) stepped on env actors: the reference programs still pass."""
    from agentsd.distributed import RayEnvFactory

    remote = RayEnvFactory("apps", {"action_format": "code"}, workers=2, cpus_per_worker=0.25)
    try:
        tasks = make_tasks(remote.cls, "test", 4)
        trajs, _ = rollout(remote, OracleActor(), tasks, batch=4, max_turns=10)
        assert all(t.success for t in trajs), [t.turns[-1].observation for t in trajs]
    finally:
        remote.shutdown()


def test_run_with_env_workers(tmp_path, tiny_model_dir):
    """`agentsd run ... backend.env_workers=2`: environments on actors, the same greedy metrics."""
    from agentsd.config import ConfigError, check_combinations
    from agentsd.evolve import run

    def cfg(name, *extra):
        return _run_cfg(tmp_path, tiny_model_dir, name, "eval.episodes=3", "rollout.batch=3", *extra)

    local = run(cfg("local"), log=lambda *a: None)
    remote = run(cfg("envs", "backend.env_workers=2", "backend.cpus_per_worker=0.25"), log=lambda *a: None)
    for a, b in zip(local.evals, remote.evals, strict=True):
        assert a["metrics"] == b["metrics"]
        assert a["meter"] == b["meter"]  # the meter's oracle walks a local env of the same kind
    with pytest.raises(ConfigError, match="env_workers"):
        check_combinations(cfg("x", "backend.env_workers=2", "backend.kind=ray"))


def test_killed_env_actor_is_replaced_and_its_episodes_replayed():
    """SIGKILL an environment actor mid-rollout: a new actor replaces it, its environments are rebuilt by
    replaying their reset and steps, and every episode ends exactly as in-process (no step lost or
    applied twice); the rollout's stats count the restart."""
    import signal

    from agentsd.distributed import RayEnvFactory

    class KillingOracle(OracleActor):
        """The oracle, which SIGKILLs environment actor 0 before its third turn."""

        def __init__(self, factory):
            super().__init__()
            self.factory, self.turn, self.killed = factory, 0, None

        def act(self, prompts, envs):
            self.turn += 1
            if self.turn == 3:
                self.killed = ray.get(self.factory.hosts[0].pid.remote())
                os.kill(self.killed, signal.SIGKILL)
            return super().act(prompts, envs)

    local = EnvFactory("sokoban", {"difficulty": "easy"})
    remote = RayEnvFactory("sokoban", {"difficulty": "easy"}, workers=2, cpus_per_worker=0.25)
    try:
        tasks = make_tasks(local.cls, "test", 6)
        a, _ = rollout(local, OracleActor(), tasks, batch=4, max_turns=40)
        actor = KillingOracle(remote)
        b, stats = rollout(remote, actor, tasks, batch=4, max_turns=40)
        assert actor.killed is not None and actor.killed not in remote.pids()
        assert [_key(t) for t in b] == [_key(t) for t in a] and all(t.success for t in b)
        assert [[x.info for x in t.turns] for t in b] == [[x.info for x in t.turns] for t in a]
        assert remote.restarts == 1 and remote.replayed == 2  # envs 0 and 2 of the 4 lived on actor 0
        assert stats.env_restarts == 1 and stats.to_dict()["env_restarts"] == 1
    finally:
        remote.shutdown()


# ------------------------------------------------------------------------- memory actor: skills and planner


def test_remote_memory_is_the_same_store_as_a_local_one(tmp_path, envs):
    """RemoteMemory (one actor) vs SkillMemory in this process: the same entries, retrieval and stats
    from the same train episodes; the proxy pickles (workers get it) and reads the actor's store."""
    import pickle

    from agentsd.distributed import RemoteMemory
    from agentsd.memory import SkillMemory

    trajs, _ = rollout(envs, OracleActor(), make_tasks(envs.cls, "train", 4), batch=4, max_turns=40)
    local = SkillMemory(tmp_path / "local")
    remote = RemoteMemory.start(tmp_path / "remote")
    try:
        a, b = local.ingest(trajs), remote.ingest(trajs)
        assert a.to_dict() == b.to_dict() and a.to_dict()["added"] > 0
        q = dict(k=3, env="sokoban", budget_tokens=200)
        ha, hb = local.retrieve("push the box onto the target", **q), remote.retrieve("push the box onto the target", **q)
        assert len(ha) == len(hb) > 0 and remote.render(hb) == SkillMemory.render(hb)  # ids differ per store
        assert [h.entry.model_dump(exclude={"id", "created", "updated"}) for h in ha] == \
            [h.entry.model_dump(exclude={"id", "created", "updated"}) for h in hb]
        assert local.stats()["by_kind"] == remote.stats()["by_kind"]
        assert remote.path == tmp_path / "remote" and remote.iteration == 0
        again = pickle.loads(pickle.dumps(remote))
        assert again.stats()["by_kind"] == remote.stats()["by_kind"]
        with pytest.raises(ValueError, match="train split"):
            remote.ingest(rollout(envs, OracleActor(), make_tasks(envs.cls, "test", 1), max_turns=40)[0])
    finally:
        local.close()
        remote.close()


def test_run_skill_prompt_on_ray_matches_in_process(tmp_path, tiny_model_dir):
    """skill_prompt with backend.kind=ray: the workers retrieve from the memory actor, so every prompt
    carries the same skills block as in-process and greedy evaluation gives the same metrics."""
    from agentsd.evolve import run

    def cfg(name, *extra):
        return _run_cfg(tmp_path, tiny_model_dir, name, "eval.episodes=3", "rollout.batch=3", "memory.enabled=true",
                        "learning.algo=skill_prompt", "learning.onpolicy.micro_batch=2", *extra)

    local = run(cfg("local"), log=lambda *a: None)
    remote = run(cfg("ray", "backend.kind=ray", "backend.workers=2", "backend.cpus_per_worker=0.25"),
                 log=lambda *a: None)
    for a, b in zip(local.evals, remote.evals, strict=True):
        assert a["metrics"] == b["metrics"]
    la = list(read_jsonl(local.run_dir / "trajectories" / "eval_after.jsonl"))
    ra = list(read_jsonl(remote.run_dir / "trajectories" / "eval_after.jsonl"))
    import re

    def system(trajs):  # entry ids (random per store) masked
        return [re.sub(r"\| [0-9a-f]{6} \|", "| id |", t.turns[0].messages[0]["content"]) for t in trajs]

    assert system(ra) == system(la)
    assert all("[skill | id |" in s for s in system(la))  # the block is there, not just equal and empty


def test_run_planner_on_ray(tmp_path, tiny_model_dir):
    """mode=memory with backend.kind=ray: the planner loop runs on the workers; their reflect nodes write
    into the one memory actor on train seeds (the driver sees it grow), evaluation never writes; each
    worker keeps LangGraph checkpoints of its episodes in its own SQLite file in the run directory."""
    import json

    from agentsd.config import ConfigError
    from agentsd.evolve import run
    from agentsd.memory import SkillMemory

    def cfg(name, *extra):
        return _run_cfg(tmp_path, tiny_model_dir, name, "eval.episodes=2", "rollout.batch=2", "memory.enabled=true",
                        "mode=memory", "learning.algo=none", "planner.plan_max_new_tokens=8",
                        "backend.kind=ray", "backend.workers=2", "backend.cpus_per_worker=0.25", *extra)

    with pytest.raises(ConfigError, match="summarizer"):
        cfg("bad", "memory.summarizer=llm")
    res = run(cfg("planner"), log=lambda *a: None)
    d = res.run_dir
    recs = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in recs] == ["warmstart", "eval_before", "iter_1", "eval_after"]
    it = recs[2]
    assert it["rollout"]["backend"] == "ray" and {"vetoes", "replans"} <= set(it["rollout"]["planner"])
    train = list(read_jsonl(d / "trajectories" / "iter_1.jsonl"))
    evals = list(read_jsonl(d / "trajectories" / "eval_after.jsonl"))
    assert all(t.meta["planner"]["reflect"].get("skipped") is None for t in train)
    assert all(t.meta["planner"]["reflect"]["skipped"] == "frozen" for t in evals)
    assert all(t.meta["planner"]["plans"] and "planner" in t.turns[0].info for t in evals)
    with SkillMemory(d / "memory") as mem:
        ops = [h["op"] for e in mem.entries(status=None) for h in mem.history(e.id)]
    assert "vote" in ops  # the workers' reflect nodes voted through the memory actor

    from agentsd.distributed import find_planner_checkpoint
    from agentsd.planner import PlannerConfig, PlannerLoop
    from agentsd.policy.base import Sampling

    files = sorted(d.glob("planner-*.sqlite"))
    assert files and not (d / "planner.sqlite").exists()
    for t in evals:  # every episode is checkpointed under its in-process thread id, in some worker's file
        tid = f"eval_after/test-{t.seed}-{t.group}"
        saver = find_planner_checkpoint(d, tid)
        loop = PlannerLoop(None, None, PlannerConfig(), sampling=Sampling(), checkpointer=saver)
        snap = loop.graph.get_state({"configurable": {"thread_id": tid}})
        assert snap.values["seed"] == t.seed and snap.values["actions"] == [x.response for x in t.turns]
        assert not snap.next  # finished
    with pytest.raises(KeyError, match="no planner checkpoint"):
        find_planner_checkpoint(d, "eval_after/test-999-0")

"""`agentsd run --mode memory|both`: the planner inside the run recipe (tiny model)."""

from __future__ import annotations

import json

import pytest

from agentsd.config import ConfigError, load_config
from agentsd.evolve import run
from agentsd.memory import SkillMemory
from agentsd.trajectory import read_jsonl


def _cfg(tmp_path, model_dir, *extra):
    ov = [
        f"output_dir={tmp_path}", "name=p", f"model.name={model_dir}", "env.kwargs.brief=true",
        "learning.warmstart.episodes=2", "learning.warmstart.batch_size=4", "eval.episodes=2",
        "rollout.batch=2", "rollout.max_turns=3", "learning.iterations=1",
        "eval.sampling.max_new_tokens=4", "rollout.sampling.max_new_tokens=4", "planner.plan_max_new_tokens=8",
        *extra,
    ]
    return load_config("sokoban", ov)


def test_memory_mode_grows_memory_on_train_and_freezes_it_for_eval(tmp_path, tiny_model_dir):
    res = run(_cfg(tmp_path, tiny_model_dir, "mode=memory"), log=lambda *a: None)
    d = res.run_dir
    recs = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in recs] == ["warmstart", "eval_before", "iter_1", "eval_after"]
    it = recs[2]
    assert it["learn"] == {} and it["memory"]["size"]
    assert {"vetoes", "replans", "expansions", "plan_tokens"} <= set(it["rollout"]["planner"])
    train = list(read_jsonl(d / "trajectories" / "iter_1.jsonl"))
    evals = list(read_jsonl(d / "trajectories" / "eval_after.jsonl"))
    assert all(t.meta["planner"]["reflect"].get("skipped") is None for t in train)
    assert all(t.meta["planner"]["reflect"]["skipped"] == "frozen" for t in evals)
    assert all("planner" in turn.info for t in evals for turn in t.turns)
    assert (d / "planner.sqlite").exists()
    with SkillMemory(d / "memory") as mem:
        ev = [h["op"] for e in mem.entries(status=None) for h in mem.history(e.id)]
    assert "vote" in ev  # reflection voted on the entries the train episodes used


def test_both_mode_trains_then_plans(tmp_path, tiny_model_dir):
    res = run(_cfg(tmp_path, tiny_model_dir, "mode=both", "learning.algo=grpo", "learning.onpolicy.micro_batch=2"),
              log=lambda *a: None)
    recs = [json.loads(x) for x in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert recs[2]["learn"]["steps"] == 1  # the student learned on plain rollouts ...
    train = list(read_jsonl(res.run_dir / "trajectories" / "iter_1.jsonl"))
    assert all("planner" not in t.meta for t in train)
    evals = list(read_jsonl(res.run_dir / "trajectories" / "eval_after.jsonl"))
    assert all("planner" in t.meta for t in evals)  # ... and is evaluated inside the planner


def test_mode_needs_memory_and_memory_mode_refuses_a_learner(tmp_path, tiny_model_dir):
    with pytest.raises(ConfigError, match="memory.enabled"):
        _cfg(tmp_path, tiny_model_dir, "mode=memory", "memory.enabled=false")
    with pytest.raises(ConfigError, match="mode=both"):
        _cfg(tmp_path, tiny_model_dir, "mode=memory", "learning.algo=grpo")
    with pytest.raises(ConfigError, match="planner.retrievl"):
        _cfg(tmp_path, tiny_model_dir, "planner.retrievl=false")


def test_cli_mode_flag_enables_memory_and_reports_bad_combinations():
    from typer.testing import CliRunner

    from agentsd.cli import app

    r = CliRunner().invoke(app, ["run", "--env", "sokoban", "--mode", "memory", "learning.algo=grpo"])
    assert r.exit_code == 2 and "mode=both" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["run", "--env", "sokoban", "--mode", "sideways"])
    assert r.exit_code == 2 and "mode" in r.output


def test_planner_runs_on_an_openai_compatible_server_and_craft(tiny_policy):
    """Any backend: the planner's batched calls go through the `openai` client to `agentsd serve`."""
    from servutil import running

    from agentsd.planner import PlannerConfig, PlannerLoop
    from agentsd.policy.base import Sampling
    from agentsd.policy.openai_backend import OpenAIPolicy
    from agentsd.rollout import EnvFactory, make_tasks
    from agentsd.serve import create_app

    envs = EnvFactory("craft", {"tier": "wood"})
    with running(create_app(tiny_policy, "tiny")) as url:
        client = OpenAIPolicy(url, timeout=60, max_retries=0)
        loop = PlannerLoop(client, None, PlannerConfig(plan_max_new_tokens=8),
                           sampling=Sampling(max_new_tokens=4, temperature=0.0))
        trajs, stats = loop.run(envs, make_tasks(envs.cls, "train", 2), max_turns=2, env_name="craft")
        client.close()
    assert [len(t.turns) for t in trajs] == [2, 2] and stats.tokens > 0
    assert max(stats.batch_sizes) == 2  # both episodes' calls went out as one request batch
    assert all(t.turns[0].info["planner"]["path"][:2] == ["retrieve", "plan"] for t in trajs)

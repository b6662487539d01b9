"""The planner graph with the real embedded model on Sokoban and craft: a guardrail veto, a replan and a
memory update show up in the trace. Memory comes from the run's own kind of experience: oracle demos
(skills) and one episode of unparseable answers (the invalid-format guardrail)."""

from __future__ import annotations

import pytest

from agentsd.memory import DiagnosticSummarizer, SkillMemory
from agentsd.planner import PlannerConfig, PlannerLoop
from agentsd.policy.base import Generation, Sampling
from agentsd.rollout import EnvFactory, OracleActor, make_tasks, rollout

pytestmark = pytest.mark.integration


class Rambling:
    name = "rambling"

    def act(self, prompts, envs):
        return [Generation(text="I think I should look around first") for _ in prompts]


@pytest.fixture(scope="module")
def embedded_policy(embedded_model_dir):
    from agentsd.policy.hf import HFPolicy

    return HFPolicy(embedded_model_dir, name="smollm2-135m")


@pytest.mark.parametrize("env,kwargs", [("sokoban", {"difficulty": "easy"}), ("craft", {"tier": "wood"})])
def test_embedded_model_in_the_planner_vetoes_replans_and_reflects(tmp_path, embedder, embedded_policy, env, kwargs):
    envs = EnvFactory(env, kwargs)
    demos, _ = rollout(envs, OracleActor(), make_tasks(envs.cls, "train", 2), max_turns=10**6)
    bad, _ = rollout(envs, Rambling(), make_tasks(envs.cls, "train", 1, start=2), max_turns=1)
    with SkillMemory(tmp_path / "m", embedder=embedder) as mem:
        mem.ingest(demos + bad, DiagnosticSummarizer())
        def events() -> int:
            return sum(len(mem.history(e.id)) for e in mem.entries(status=None))

        n0 = events()
        cfg = PlannerConfig(max_vetoes=1, failure_window=2, cooldown=0, budget_tokens=400, plan_max_new_tokens=24)
        loop = PlannerLoop(embedded_policy, mem, cfg, sampling=Sampling(max_new_tokens=12, temperature=0.0))
        (traj,), stats = loop.run(envs, make_tasks(envs.cls, "train", 1, start=3), max_turns=3, env_name=env)
        assert events() > n0  # reflection: the episode was added / merged into memory, used entries voted
    vetoes = [v for t in traj.turns for v in t.info["planner"]["vetoes"]]
    assert vetoes and vetoes[0]["failure_type"] == "invalid_format"
    assert traj.meta["planner"]["replans"] >= 1
    assert any("replan" in t.info["planner"]["path"] for t in traj.turns)
    ref = traj.meta["planner"]["reflect"]
    assert "skipped" not in ref and ref["voted"] >= 1
    assert stats.tokens > 0 and all(t.token_ids for t in traj.turns)

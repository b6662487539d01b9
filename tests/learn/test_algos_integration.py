"""Every on-policy algorithm for two iterations of `agentsd run` on the real embedded SmolLM2-135M:
real rollouts, real learner steps, weights that change, finite stats. Budgets are tiny (2 episodes x
2 turns x 8 tokens per iteration, one test episode) so the five runs stay around a minute each on CPU.

The env is Sokoban with a distinct small bonus per episode (tests/toyenv.py:TippedSokobanEnv): the two
episodes of a group never tie, so GRPO's advantages are nonzero whatever the model samples (a
warm-started model often samples the same answer twice, and a group of equal returns has no gradient)."""

from __future__ import annotations

import json
import math

import pytest

from agentsd.config import load_config
from agentsd.envs import register
from agentsd.evolve import run

pytestmark = pytest.mark.integration
register("sokoban-tipped", "toyenv:TippedSokobanEnv")


@pytest.mark.parametrize("algo", ["grpo", "opd", "skill_sd", "skill_prompt", "sft"])
def test_two_iterations_of_each_algorithm_on_the_embedded_model(algo, tmp_path, embedded_model_dir):
    from safetensors.torch import load_file

    cfg = load_config("sokoban", [
        f"output_dir={tmp_path}", f"name={algo}", f"model.name={embedded_model_dir}", "env.name=sokoban-tipped",
        "env.kwargs.brief=true",
        "learning.warmstart.episodes=1", "learning.warmstart.batch_size=4", "eval.episodes=1",
        "rollout.batch=2", "rollout.group_size=2", "rollout.max_turns=2", "learning.iterations=2",
        f"learning.algo={algo}", "learning.onpolicy.lr=1e-3", "memory.enabled=true",
        "eval.sampling.max_new_tokens=8", "rollout.sampling.max_new_tokens=8", "tracking.tensorboard=false",
    ])
    res = run(cfg, log=lambda *a: None)
    recs = [json.loads(x) for x in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in recs] == ["warmstart", "eval_before", "iter_1", "iter_2", "eval_after"]
    for rec in recs[2:4]:
        learn = rec["learn"]
        assert learn["episodes"] == 2 and all(math.isfinite(v) for v in learn.values() if isinstance(v, float))
        if algo == "sft":  # trains on successful episodes only; 135M rarely succeeds in 2 turns
            assert learn["stepped"] in (0.0, 1.0)
        else:  # a gradient every time: opd and skill_sd from the KL to the teacher, the rest from advantages
            assert learn["stepped"] == 1.0 and learn["tokens"] > 0 and learn["grad_norm"] > 0
        if algo in ("skill_sd", "opd"):
            assert learn["kl"] >= 0.0 and "rho_mean" in learn
    if algo == "opd":  # the initial weights shown the oracle's answer differ from the student from the start
        assert recs[2]["learn"]["kl"] > 1e-4
    if algo != "sft":
        a = load_file(str(res.run_dir / "checkpoints" / "iter_2" / "model.safetensors"))
        b = load_file(str(tmp_path / algo / "checkpoints" / "base" / "model.safetensors"))
        assert any(not (a[k] == b[k]).all() for k in a if k in b)  # the learner moved the weights

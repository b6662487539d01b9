"""The learnability meter: held-out oracle states, their prompts and verdicts, scoring, the CLI."""

import json

import pytest
from typer.testing import CliRunner

from agentsd.cli import app
from agentsd.envs.sokoban.env import SokobanEnv
from agentsd.learnability import (
    REFERENCE_HEADER,
    VERDICTS_HEADER,
    context_messages,
    format_report,
    measure,
    oracle_states,
    verdicts,
)
from agentsd.prompts import SKILLS_HEADER, Step, build_messages
from agentsd.rollout import EnvFactory
from tests.memutil import guardrail

EASY = EnvFactory("sokoban", {"difficulty": "easy", "brief": True})
CORRIDOR = "#######\n#@ $ .#\n#######"  # Up and Down walk into walls; Left too; Right is the way


def test_states_are_test_tasks_along_the_oracle_walk_with_the_rollout_prompt():
    states = oracle_states(EASY, 10, per_episode=3, history=1)
    assert len(states) == 10
    assert all(s.seed in SokobanEnv.test_seeds for s in states)
    by_seed: dict[int, list] = {}
    for s in states:
        by_seed.setdefault(s.seed, []).append(s)
    assert len(by_seed) >= 4 and all(len(v) <= 3 for v in by_seed.values())
    # Replay one task: the prompt is the one rollouts build after the oracle's moves, the label the oracle's.
    seed, picked = next(iter(by_seed.items()))
    env = EASY()
    obs, _ = env.reset(seed=seed)
    past, turn = [], 0
    for s in picked:
        while turn < s.turn:
            a = env.oracle_action()
            past.append(Step(obs, a))
            obs, *_ = env.step(a)
            turn += 1
        assert s.messages == build_messages(env.instructions(), env.task_description(), obs, past, 1)
        assert s.candidates[s.oracle] == env.oracle_action()
        assert s.query == f"{env.task_description()}\n{obs}"


def test_student_prompt_has_no_privileged_block_and_each_context_adds_one():
    s = oracle_states(EASY, 1)[0]
    student = context_messages(s, "student")
    text = json.dumps(student)
    for header in (SKILLS_HEADER, VERDICTS_HEADER, REFERENCE_HEADER):
        assert header not in text
    ref = context_messages(s, "reference")
    assert ref[0]["content"].endswith(REFERENCE_HEADER + "\n" + s.candidates[s.oracle])
    assert ref[1:] == student[1:]
    g = context_messages(s, "guardrails")
    assert g[0]["content"].endswith(VERDICTS_HEADER + "\n" + s.verdicts) and g[1:] == student[1:]
    sk = context_messages(s, "skills", skills=lambda q: "[skill] push right" if q == s.query else None)
    assert sk[0]["content"].endswith(SKILLS_HEADER + "\n[skill] push right")
    with pytest.raises(ValueError, match="needs a memory"):
        context_messages(s, "skills")
    with pytest.raises(ValueError, match="unknown context 'oracle'"):
        context_messages(s, "oracle")


def test_verdicts_from_env_predicates_and_from_memory_guardrails():
    env = SokobanEnv(level=CORRIDOR, brief=True)
    env.reset(seed=0)
    cands = env.action_candidates()
    assert verdicts(env, cands) == "Moves that break no guardrail here: <answer>Right</answer>"
    wall = guardrail(text="mind the walls", ft="wall_bump", risk_predicate={"name": "move_into_wall"},
                     forbidden="walking into a wall")
    assert verdicts(env, cands, [wall]) == "Moves that break no guardrail here: <answer>Right</answer>"
    # A guardrail without a predicate vetoes nothing: every move is listed safe.
    assert verdicts(env, cands, [guardrail()]) == "Moves that break no guardrail here: " + ", ".join(cands)
    boxed = SokobanEnv(level="#####\n#@$.#\n#####", brief=True, check_solvable=False)
    boxed.reset(seed=0)
    assert verdicts(boxed, cands, [wall]) == "Moves that break no guardrail here: <answer>Right</answer>"


def test_an_env_without_candidates_is_refused():
    with pytest.raises(ValueError, match="lists no action candidates"):
        oracle_states(EnvFactory("craft", {}), 2)


def test_measure_on_a_tiny_model_gives_distributions_and_paired_gaps(tiny_model_dir):
    from agentsd.policy import load_policy

    policy = load_policy(tiny_model_dir, dtype="float32", autocast=False)
    states = oracle_states(EASY, 4)
    r = measure(policy, states, ("reference", "guardrails"))
    assert r["contexts"] == ["student", "reference", "guardrails"] and r["states"] == 4
    for row in r["rows"]:
        for p in row["p"].values():
            assert len(p) == 4 and sum(p) == pytest.approx(1.0, abs=1e-5)
    st = r["summary"]["student"]
    assert st["gap"] == 0.0 and st["gap_ci"] == [0.0, 0.0]
    ref = r["summary"]["reference"]
    expected = sum(row["p"]["reference"][row["oracle"]] - row["p"]["student"][row["oracle"]] for row in r["rows"]) / 4
    assert ref["gap"] == pytest.approx(expected) and ref["gap_ci"][0] <= ref["gap"] <= ref["gap_ci"][1]
    assert sum(ref["top_counts"].values()) == 4
    assert "reference" in format_report(r) and "P(oracle)" in format_report(r)


@pytest.mark.integration
def test_the_reference_teacher_knows_more_than_the_embedded_student(embedded_model_dir):
    """The meter must see the one context known to carry the answer (measured +0.34 on 48 states)."""
    from agentsd.policy import load_policy

    policy = load_policy(embedded_model_dir, dtype="float32", autocast=False)
    r = measure(policy, oracle_states(EASY, 16), ("reference",))
    ref = r["summary"]["reference"]
    assert ref["gap"] > 0.1 and ref["gap_ci"][0] > 0, ref


def test_diagnose_command(tmp_path, tiny_model_dir):
    runner = CliRunner()
    out = tmp_path / "meter.json"
    r = runner.invoke(app, ["diagnose", "--env", "sokoban", "--model", tiny_model_dir, "--states", "3",
                            "--out", str(out), "env.kwargs.grid_format=cells"])
    assert r.exit_code == 0, r.output
    rep = json.loads(out.read_text())
    assert rep["states"] == 3 and rep["env"]["kwargs"]["grid_format"] == "cells"
    assert set(rep["summary"]) == {"student", "guardrails", "reference"} and rep["guardrails"] == "env predicates"
    bad = runner.invoke(app, ["diagnose", "--model", tiny_model_dir, "--contexts", "oracle"])
    assert bad.exit_code == 2 and "unknown context 'oracle'" in bad.output
    nomem = runner.invoke(app, ["diagnose", "--model", tiny_model_dir, "--contexts", "skills"])
    assert nomem.exit_code == 2 and "needs --run" in nomem.output

"""The planner graph on real Sokoban episodes and a real skill memory (scripted policy)."""

from __future__ import annotations

import re
import threading

import pytest
from planutil import CORNER_RIGHT, ScriptedPolicy, is_plan_prompt

from agentsd.envs import make
from agentsd.memory import DiagnosticSummarizer, SkillMemory
from agentsd.planner import PlannerConfig, PlannerLoop, sqlite_checkpointer
from agentsd.policy.base import Policy, Sampling
from agentsd.rollout import EnvFactory, OracleActor, Task, rollout

# a one-box level the oracle solves in a few moves; facts (num_boxes ...) are the same in every seed
SMALL = "#######\n#.  $@#\n#     #\n#######"


def _deadlock_memory(path, embedder) -> SkillMemory:
    """Memory holding the guardrail learned from pushing the box into the corner in CORNER_RIGHT."""
    from agentsd.policy.base import Generation

    class Once:
        name = "once"

        def act(self, prompts, envs):
            return [Generation(text="<answer>Right</answer>") for _ in prompts]

    trajs, _ = rollout(EnvFactory("sokoban", {"level": CORNER_RIGHT}), Once(), [Task(0, "train")], max_turns=1)
    mem = SkillMemory(path, embedder=embedder)
    mem.ingest(trajs, DiagnosticSummarizer())
    return mem


class _FirstFrom(Policy):
    """Plan requests and the first act request from ``first``, every later call from ``rest``."""

    def __init__(self, first, rest):
        self.first, self.rest, self.acts = first, rest, 0

    def generate(self, batch, sampling=None):
        if all(is_plan_prompt(m) for m in batch):
            return self.first.generate(batch, sampling)
        self.acts += 1
        return (self.first if self.acts == 1 else self.rest).generate(batch, sampling)


def _run(policy, memory=None, level=CORNER_RIGHT, split="train", max_turns=4, **cfg):
    loop = PlannerLoop(policy, memory, PlannerConfig(**cfg))
    return loop, loop.run_episode(make("sokoban", level=level), 0, split=split, max_turns=max_turns)


def test_guardrail_vetoes_the_deadlock_push_and_the_policy_proposes_again(tmp_path, embedder):
    with _deadlock_memory(tmp_path / "m", embedder) as mem:
        pol = ScriptedPolicy(["<answer>Right</answer>", "<answer>Down</answer>"])
        _, traj = _run(pol, mem, max_turns=1, reflect=False)
    t0 = traj.turns[0]
    assert t0.response == "<answer>Down</answer>"  # the corner push never reached the env
    (veto,) = t0.info["planner"]["vetoes"]
    assert veto["failure_type"] == "deadlock_corner" and veto["action"] == "<answer>Right</answer>"
    assert t0.info["planner"]["path"] == ["retrieve", "plan", "act", "check", "act", "check", "step"]
    retry = [p for p in pol.prompts if not is_plan_prompt(p)][1]
    assert "Refused:" in retry[0]["content"] and "deadlock_corner" in retry[0]["content"]
    assert t0.info["diagnosis"]["failure_type"] != "deadlock_corner"
    assert traj.meta["planner"]["vetoes"] == 1


def test_guardrail_checks_off_lets_the_push_run(tmp_path, embedder):
    with _deadlock_memory(tmp_path / "m", embedder) as mem:
        pol = ScriptedPolicy(["<answer>Right</answer>"])
        _, traj = _run(pol, mem, max_turns=1, reflect=False, guardrails=False)
        assert traj.turns[0].info["diagnosis"]["failure_type"] == "deadlock_corner"
        assert traj.turns[0].info["planner"]["vetoes"] == []
        # text-only memory still reaches the prompt
        assert "guardrail deadlock_corner" in pol.prompts[-1][0]["content"]


def test_retrieval_off_reads_no_memory(tmp_path, embedder):
    with _deadlock_memory(tmp_path / "m", embedder) as mem:
        pol = ScriptedPolicy(["<answer>Right</answer>"])
        _, traj = _run(pol, mem, max_turns=1, reflect=False, retrieval=False)
    assert traj.turns[0].info["planner"]["retrieved"] == [] and traj.meta["planner"]["used"] == []
    assert all("guardrail" not in p[0]["content"] for p in pol.prompts)
    assert traj.turns[0].info["diagnosis"]["failure_type"] == "deadlock_corner"  # nothing vetoed it


def test_exhausted_vetoes_step_the_last_proposal_without_the_mask(tmp_path, embedder):
    with _deadlock_memory(tmp_path / "m", embedder) as mem:
        pol = ScriptedPolicy(["<answer>Right</answer>"])  # keeps proposing the vetoed push
        _, traj = _run(pol, mem, max_turns=1, reflect=False, max_vetoes=2, mask_vetoed=False)
    vetoes = traj.turns[0].info["planner"]["vetoes"]
    assert len(vetoes) == 3 and vetoes[-1]["exhausted"] and not vetoes[0]["exhausted"]
    assert traj.turns[0].response == "<answer>Right</answer>"
    assert not any(p.regex for p in pol.samplings)  # re-proposals unconstrained


def test_a_veto_masks_the_forbidden_move_in_the_reproposal(tmp_path, embedder):
    """The re-proposal is decoded within the moves no guardrail forbids; a policy that ignores the
    constraint (this scripted one repeats the push) gets an allowed move instead: the vetoed push
    never runs, with no veto exhausted."""
    with _deadlock_memory(tmp_path / "m", embedder) as mem:
        pol = ScriptedPolicy(["<answer>Right</answer>"])
        _, traj = _run(pol, mem, max_turns=1, reflect=False, max_vetoes=2)
    t0 = traj.turns[0]
    first, second = t0.info["planner"]["vetoes"]
    allowed = ["<answer>Up</answer>", "<answer>Down</answer>", "<answer>Left</answer>"]
    assert first["allowed"] == allowed and not first["exhausted"]  # Right is the corner push
    assert second["replaced_by"] in allowed and not second["exhausted"]
    assert t0.response == second["replaced_by"] and t0.info["planner"]["source"] == "mask"
    assert t0.info["diagnosis"]["failure_type"] != "deadlock_corner"
    masked = [p for p in pol.samplings if p.regex]
    assert len(masked) == 1 and all(re.fullmatch(masked[0].regex, a) for a in allowed)
    assert not re.fullmatch(masked[0].regex, "<answer>Right</answer>")


def test_the_mask_decodes_an_allowed_move_with_a_real_model(tmp_path, embedder, tiny_policy):
    """With a real backend (the tiny random model, which never writes a valid answer on its own) the
    masked re-proposal is one of the allowed moves, sampled by the policy itself (its own token ids)."""
    with _deadlock_memory(tmp_path / "m", embedder) as mem:
        loop = PlannerLoop(tiny_policy, mem, PlannerConfig(reflect=False, plan_max_new_tokens=8),
                           sampling=Sampling(max_new_tokens=16, temperature=0.0))
        guard = mem.entries(kind="guardrail")[0]
        scripted = ScriptedPolicy(["<answer>Right</answer>"])
        loop.bp.policy = _FirstFrom(scripted, tiny_policy)  # the first act proposal is the corner push
        traj = loop.run_episode(make("sokoban", level=CORNER_RIGHT), 0, split="train", max_turns=1)
    t0 = traj.turns[0]
    (veto,) = t0.info["planner"]["vetoes"]
    assert veto["veto"] == guard.id and veto["allowed"] == ["<answer>Up</answer>", "<answer>Down</answer>",
                                                            "<answer>Left</answer>"]
    assert t0.response in veto["allowed"] and t0.info["planner"]["source"] == "policy"
    assert t0.token_ids and len(t0.logprobs) == len(t0.token_ids)


def test_failures_trigger_a_replan_that_keeps_finished_subgoals():
    # Left walks onto the goal square (progress stays 0: the box is not there), then into the wall.
    pol = ScriptedPolicy(["<answer>Left</answer>"], plan="1. step left\n2. step down\n3. push the box")
    loop, traj = _run(pol, max_turns=6, failure_window=3, cooldown=1)
    replans = [e for t in traj.turns for e in t.info["planner"]["events"] if e["node"] == "replan"]
    assert replans and "failure rate" in replans[0]["reason"]
    assert any("replan" in t.info["planner"]["path"] for t in traj.turns)
    assert traj.meta["planner"]["replans"] == len(replans)
    ask = [p for p in pol.prompts if "not working" in p[-1]["content"]]
    assert ask and "failure rate" in ask[0][-1]["content"]


def test_replanning_off_records_the_trigger_but_keeps_the_plan():
    pol = ScriptedPolicy(["<answer>Left</answer>"])
    _, traj = _run(pol, max_turns=6, failure_window=3, cooldown=1, replan=False)
    assert traj.meta["planner"]["replans"] == 0
    assert len(traj.meta["planner"]["plans"]) == 1
    events = [e for t in traj.turns for e in t.info["planner"]["events"]]
    assert any(e.get("ignored") for e in events if e["node"] == "diagnose")


def test_reflection_writes_memory_on_train_only_and_votes_used_entries(tmp_path, embedder):
    with _deadlock_memory(tmp_path / "m", embedder) as mem:
        n0 = len(mem)
        gid = mem.entries(kind="guardrail")[0].id
        pol = ScriptedPolicy(["<answer>Left</answer>"])
        _, traj = _run(pol, mem, split="test", max_turns=3)
        assert len(mem) == n0 and mem.get(gid).usage == 0  # evaluation never writes memory
        assert traj.meta["planner"]["reflect"]["skipped"] == "frozen"
        _, traj = _run(pol, mem, split="train", max_turns=3)
        ref = traj.meta["planner"]["reflect"]
        assert "skipped" not in ref and ref["voted"] >= 1
        assert mem.get(gid).usage == 1 and mem.get(gid).downvotes == 1  # used in a failed episode
        assert len(mem) > n0  # the wall bumps became a guardrail


def test_a_matching_skill_expands_into_its_workflow_and_is_verified(tmp_path, embedder):
    demos, _ = rollout(EnvFactory("sokoban", {"level": SMALL}), OracleActor(), [Task(0, "train")], max_turns=50)
    assert demos[0].success
    with SkillMemory(tmp_path / "m", embedder=embedder) as mem:
        mem.ingest(demos, DiagnosticSummarizer())
        (sk,) = mem.entries(kind="skill")
        pol = ScriptedPolicy(["<answer>Up</answer>"])  # the policy alone would never solve it
        _, traj = _run(pol, mem, level=SMALL, max_turns=20, reflect=False, expand_min_similarity=0.3)
    assert traj.success
    assert sk.actions and [t.response for t in traj.turns] == sk.actions
    assert all(t.info["planner"]["source"] == f"skill:{sk.id}" for t in traj.turns)
    events = [e for t in traj.turns for e in t.info["planner"]["events"]]
    assert any(e.get("expand") == sk.id for e in events)
    assert any(e.get("workflow_done") == sk.id and e["verified"] is True for e in events)


def test_expansion_off_leaves_acting_to_the_policy(tmp_path, embedder):
    demos, _ = rollout(EnvFactory("sokoban", {"level": SMALL}), OracleActor(), [Task(0, "train")], max_turns=50)
    with SkillMemory(tmp_path / "m", embedder=embedder) as mem:
        mem.ingest(demos, DiagnosticSummarizer())
        pol = ScriptedPolicy(["<answer>Up</answer>"])
        _, traj = _run(pol, mem, level=SMALL, max_turns=3, reflect=False, expand_skills=False,
                       expand_min_similarity=0.3)
    assert not traj.success and all(t.info["planner"]["source"] == "policy" for t in traj.turns)


def test_a_crashed_episode_resumes_from_its_checkpoint(tmp_path):
    saver = sqlite_checkpointer(tmp_path / "planner.sqlite")
    moves = ["<answer>Down</answer>", "<answer>Left</answer>", "<answer>Left</answer>", "<answer>Up</answer>"]
    crash = ScriptedPolicy(moves, fail_after=2)
    loop = PlannerLoop(crash, None, PlannerConfig(), checkpointer=saver)
    with pytest.raises(RuntimeError, match="scripted crash"):
        loop.run_episode(make("sokoban", level=SMALL), 0, max_turns=4, thread_id="ep-1")
    done = loop.graph.get_state({"configurable": {"thread_id": "ep-1"}}).values["actions"]
    assert done == moves[:2]
    good = ScriptedPolicy(moves[2:])
    loop2 = PlannerLoop(good, None, PlannerConfig(), checkpointer=saver)
    traj = loop2.resume(make("sokoban", level=SMALL), "ep-1")
    assert [t.response for t in traj.turns] == moves
    assert traj.turns[0].info["resumed"] and "resumed" not in traj.turns[-1].info
    assert len(traj.turns) == 4 and traj.turns[-1].truncated
    # the uninterrupted episode ends in the same place
    ref = PlannerLoop(ScriptedPolicy(moves), None, PlannerConfig()).run_episode(
        make("sokoban", level=SMALL), 0, max_turns=4)
    assert ref.turns[-1].observation == traj.turns[-1].observation


def test_concurrent_episodes_share_batched_generate_calls():
    pol = ScriptedPolicy(["<answer>Left</answer>", "<answer>Right</answer>"])
    loop = PlannerLoop(pol, None, PlannerConfig(batch=4))
    tasks = [Task(s, "train") for s in range(4)]
    trajs, stats = loop.run(EnvFactory("sokoban", {"difficulty": "easy"}), tasks, max_turns=3)
    assert [t.seed for t in trajs] == [0, 1, 2, 3] and all(len(t.turns) == 3 for t in trajs)
    assert max(pol.batches) == 4  # four episodes waiting -> one call
    assert stats.episodes == 4 and stats.turns == 12 and stats.tokens == 4 * 3 * 2 + 4 * 3
    # the factory's env and kwargs are recorded (the memory's summarizer replays episodes with them)
    assert all(t.env == "sokoban" and t.env_kwargs == {"difficulty": "easy"} for t in trajs)


def test_an_error_in_the_policy_reaches_the_caller():
    pol = ScriptedPolicy(["<answer>Left</answer>"], fail_after=0)
    loop = PlannerLoop(pol, None, PlannerConfig(batch=2))
    with pytest.raises(RuntimeError, match="scripted crash"):
        loop.run(EnvFactory("sokoban", {"difficulty": "easy"}), [Task(0), Task(1)], max_turns=2)
    assert threading.active_count() < 50

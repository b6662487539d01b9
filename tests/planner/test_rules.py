"""Replanning triggers, plan parsing, preconditions and the batching policy wrapper."""

from __future__ import annotations

import threading
import time

from agentsd.planner import BatchingPolicy, PlannerConfig, parse_plan, preconditions_hold, replan_trigger
from agentsd.policy.base import Generation, Policy, Sampling

CFG = PlannerConfig(cooldown=0)


def rec(failure=None, stagnation=0, subgoal=0):
    return {"failure": failure, "stagnation": stagnation, "subgoal": subgoal}


def test_failure_rate_over_the_window_triggers():
    assert replan_trigger([rec(), rec("x"), rec(), rec("y")], CFG, 4, 0).startswith("failure rate 2/4")
    assert replan_trigger([rec(), rec(), rec(), rec("y")], CFG, 4, 0) is None
    # only steps since the last replan count
    assert replan_trigger([rec("x"), rec("x"), rec(), rec()], CFG, 2, 0) is None


def test_stagnation_and_repeated_failure_types_trigger():
    assert "no progress" in replan_trigger([rec(stagnation=4)], CFG, 1, 0)
    steps = [rec("wall", subgoal=0), rec(), rec(), rec(), rec(), rec("wall", subgoal=1)]
    assert "repeated across 2 subgoals" in replan_trigger(steps, CFG, 6, 0)
    steps[0]["subgoal"] = 1
    assert replan_trigger(steps, CFG, 6, 0) is None


def test_cooldown_and_replan_cap_suppress_triggers():
    bad = [rec("x")] * 4
    assert replan_trigger(bad, PlannerConfig(cooldown=2), 2, 0) is None
    assert replan_trigger(bad, PlannerConfig(cooldown=2), 3, 0) is not None
    assert replan_trigger(bad, PlannerConfig(max_replans=1, cooldown=0), 4, 1) is None


def test_parse_plan_reads_numbered_and_bulleted_lines_and_caps():
    text = "Here is my plan:\n1. get wood\n2) craft planks\n- place table\n* get wood\n3. mine stone\n4. done"
    assert parse_plan(text, 4) == ["get wood", "craft planks", "place table", "mine stone"]
    assert parse_plan("walk to the box\n\npush it", 5) == ["walk to the box", "push it"]
    assert parse_plan("1. <answer>Left</answer>", 5) == ["Left"]
    assert parse_plan("", 5) == [] and parse_plan("   \n", 3) == []


def test_preconditions_need_confirmed_facts():
    facts = {"num_boxes": 1, "tier": "wood"}
    assert preconditions_hold(["num_boxes = 1", "tier = wood"], facts)
    assert preconditions_hold([], facts)
    assert not preconditions_hold(["num_boxes = 2"], facts)
    assert not preconditions_hold(["day = 1"], facts)  # unknown fact
    assert not preconditions_hold(["the box is near a wall"], facts)  # cannot be checked


class SlowEcho(Policy):
    name = "echo"

    def __init__(self):
        self.batches = []

    def generate(self, batch, sampling=None):
        self.batches.append((len(batch), sampling.temperature))
        time.sleep(0.01)
        return [Generation(text=m[-1]["content"], token_ids=[1]) for m in batch]


def _call(bp, text, temp, out, barrier=None):
    with bp.session():
        if barrier is not None:
            barrier.wait()  # all six are running before any asks (as PlannerLoop.run arranges)
        out[text] = bp.generate_one([{"role": "user", "content": text}], Sampling(temperature=temp)).text


def test_batching_policy_groups_waiting_threads_and_keeps_answers_apart():
    pol = SlowEcho()
    bp = BatchingPolicy(pol, max_wait=5.0)  # a long wait: the batch must go out when all are waiting
    out: dict[str, str] = {}
    bar = threading.Barrier(6)
    ts = [threading.Thread(target=_call, args=(bp, f"q{i}", 0.0 if i < 4 else 1.0, out, bar)) for i in range(6)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert time.monotonic() - t0 < 4.0  # nobody waited for the timeout
    assert out == {f"q{i}": f"q{i}" for i in range(6)}
    assert sorted(pol.batches) == [(2, 1.0), (4, 0.0)]  # one call per sampling setting
    assert bp.stats()["calls"] == 2 and bp.tokens == 6


def test_batching_policy_does_not_wait_for_a_busy_episode():
    pol = SlowEcho()
    bp = BatchingPolicy(pol, max_wait=0.05)
    out: dict[str, str] = {}
    with bp.session():  # an episode that is busy elsewhere (env, memory) and never asks
        _call(bp, "alone", 0.0, out)
    assert out == {"alone": "alone"} and pol.batches == [(1, 0.0)]

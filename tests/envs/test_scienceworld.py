"""ScienceWorld adapter: its own splits, failure kinds, gold-sequence oracle, fuzz (one JVM per module).

Skipped where no java binary exists, except under CI=true, where that is a failure (.ci/run installs
Debian's default-jre-headless)."""

import os
import shutil
import sys

import numpy as np
import pytest

from agentsd.envs import make
from agentsd.envs.scienceworld import SPLITS, ScienceWorldFailure, deal, variations
from agentsd.envs.scienceworld.tasks import N_TEST, N_TRAIN

F = ScienceWorldFailure
JAVA = shutil.which("java")
IN_CI = os.environ.get("CI", "").lower() == "true"
needs_java = pytest.mark.skipif(JAVA is None and not IN_CI, reason="no java on PATH (apt-get install default-jre-headless)")


@pytest.fixture(scope="module")
def env():
    if JAVA is None:  # only reached under CI=true
        pytest.fail("CI=true but no java on PATH: .ci/run installs it (apt-get install default-jre-headless)")
    e = make("scienceworld", task="find-animal", variation=variations("find-animal", "test")[0])
    yield e
    e.close()


def test_deal_covers_each_split_once():
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        d = deal(split)
        assert len(d) == len(set(d)) == n
        assert {t for t, _ in d[: len(SPLITS)]} == set(SPLITS)  # the first 30 seeds: every task once
    assert not set(deal("train")) & set(deal("test"))


def test_seed_out_of_range():
    e = make("scienceworld")
    with pytest.raises(ValueError, match="out of range: train 0..3591, test 1000000..1001818"):
        e.reset(seed=N_TRAIN)


def test_missing_java_and_package_are_one_line(monkeypatch):
    from agentsd.envs.scienceworld import env as mod

    monkeypatch.setattr(mod.shutil, "which", lambda _: None)
    with pytest.raises(RuntimeError, match="default-jre-headless"):
        make("scienceworld").reset(seed=0)
    monkeypatch.setitem(sys.modules, "scienceworld", None)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[benchmarks\]'"):
        make("scienceworld").reset(seed=0)


@needs_java
def test_splits_match_the_simulator(env):
    env.reset(seed=0)  # starts the JVM
    sim = env._sim
    for task in SPLITS:
        sim.load(task, 0)
        assert list(sim.get_variations_train()) == list(variations(task, "train")), task
        assert list(sim.get_variations_dev()) == list(variations(task, "dev")), task
        assert list(sim.get_variations_test()) == list(variations(task, "test")), task
    env._loaded = None  # the fixture's task must be loaded again


@needs_java
def test_failure_kinds_and_predicates(env):
    obs, info = env.reset(seed=0)
    assert "find a(n) animal" in obs and info["task"]["split"] == "fixed"
    _, r, _, _, info = env.step("no block")
    assert info["diagnosis"]["failure_type"] == F.INVALID_ACTION.value and not info["action_is_valid"] and r == -0.1
    info = env.step("<answer>fly to the moon</answer>")[4]
    assert info["diagnosis"]["failure_type"] == F.INVALID_ACTION.value
    for _ in range(env.patience - 3):
        info = env.step("<answer>look around</answer>")[4]
    assert info["action_is_valid"] and info["diagnosis"]["failure_type"] is None
    info = env.step("<answer>look around</answer>")[4]
    assert info["diagnosis"]["failure_type"] == F.NO_SCORE_CHANGE.value
    assert env.oracle_action() is None  # off the gold path
    assert not env.check("task_done") and env.check("score_ge", n=0)


@needs_java
def test_gold_sequence_solves_and_focus_on_wrong_thing_fails(env):
    env.reset(seed=0)
    n = 0
    while (a := env.oracle_action()) is not None:
        _, r, term, trunc, info = env.step(a)
        n += 1
        if term or trunc:
            break
    assert term and info["success"] and info["score"] == 100 and env.check("task_done") and n < env.max_steps
    env.reset(seed=0)
    info = env.step("<answer>focus on air</answer>")[4]
    assert info["diagnosis"]["failure_type"] == F.TASK_FAILED.value and not info["success"]


@needs_java
def test_fuzz_random_text_never_crashes(env):
    rng = np.random.default_rng(0)
    alphabet = list("abcdefghijklmnopqrstuvwxyz 0123456789") + ["<answer>", "</answer>", "go to ", "open ",
                                                                 "focus on ", "pick up ", "door"]
    env.reset(seed=0)
    for _ in range(60):
        text = "".join(rng.choice(alphabet, size=int(rng.integers(0, 25))))
        _, r, term, trunc, info = env.step(text)
        assert isinstance(r, float) and info["diagnosis"]["failure_type"] in {f.value for f in F} | {None}
        if term or trunc:
            env.reset(seed=0)

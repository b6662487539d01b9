"""The Gymnasium adapter: gym:<id> names, the toy-text tables, disjoint splits, failures agreeing
with the "before" predicates, random-text fuzzing, and the value-iteration oracle."""

import random

import pytest

from agentsd.envs import make
from agentsd.envs.gymtext import FrozenLakeEnv, TaxiEnv, is_test_map

NAMES = ["frozenlake", "frozenlake-8x8", "frozenlake-slippery", "cliffwalking", "taxi"]


def play_oracle(env, seed):
    env.reset(seed=seed)
    while True:
        a = env.oracle_action()
        assert a is not None
        _, _, term, trunc, info = env.step(a)
        if term or trunc:
            return info["success"]


@pytest.mark.parametrize("name", ["frozenlake", "frozenlake-8x8", "cliffwalking", "taxi"])
def test_oracle_solves_deterministic_test_tasks(name):
    env = make(name)
    seeds = env.test_seeds[:200]
    assert sum(play_oracle(env, s) for s in seeds) == len(seeds)


def test_slippery_oracle_is_good_not_perfect():
    env = make("frozenlake-slippery")
    rate = sum(play_oracle(env, s) for s in env.test_seeds[:100]) / 100
    assert 0.3 < rate <= 1.0


def test_gym_prefix_wraps_gymnasium_env():
    env = make("gym:FrozenLake-v1", is_slippery=False)
    assert isinstance(env, FrozenLakeEnv) and not env.slippery
    obs, _ = env.reset(seed=0)
    assert obs.startswith("P___\n_O_O\n___O\nO__G")  # gymnasium's 4x4 map
    info = env.step("<answer>Up</answer>")[4]
    assert info["diagnosis"]["failure_type"] == "wall_bump" and not info["action_is_effective"]
    assert make("gym:Taxi-v4").max_steps == 200
    with pytest.raises(ValueError, match="unknown gymnasium env"):
        make("gym:NoSuchEnv-v0")
    with pytest.raises(ValueError, match="Discrete"):
        make("gym:MountainCarContinuous-v0")
    with pytest.raises(ValueError, match="no text"):
        make("gym:CartPole-v1")


def test_fell_in_hole_and_predicate_agree():
    env = make("gym:FrozenLake-v1", is_slippery=False)
    env.reset(seed=0)
    env.step("<answer>Right</answer>")  # (0,1): a hole is below
    assert env.check("move_into_hole", "<answer>Down</answer>")
    assert not env.check("move_into_hole", "<answer>Right</answer>")
    _, r, term, _, info = env.step("<answer>down</answer>")
    assert term and r == 0 and not info["success"]
    assert info["diagnosis"]["failure_type"] == "fell_in_hole"
    assert env.oracle_action() is None


def test_slippery_predicates_cover_every_failure():
    """On slippery ice a predicate says a move *may* fail: every failure that happens was flagged."""
    env = make("frozenlake-slippery")
    rng = random.Random(0)
    flagged = failed = 0
    for seed in env.train_seeds[:20]:
        env.reset(seed=seed)
        for _ in range(30):
            a = rng.choice(env.action_candidates())
            risks = {f for f, p in env.failure_predicates.items() if f != "invalid_format" and env.check(p, a)}
            flagged += bool(risks)
            _, _, term, trunc, info = env.step(a)
            got = info["diagnosis"]["failure_type"]
            if got not in (None, "timeout"):
                failed += 1
                assert got in risks, (a, risks, got)
            if term or trunc:
                break
    assert failed > 0 and flagged >= failed


@pytest.mark.parametrize("name", [n for n in NAMES if n != "frozenlake-slippery"])
def test_predicates_match_step_when_deterministic(name):
    env = make(name)
    rng = random.Random(0)
    for seed in env.train_seeds[:10]:
        env.reset(seed=seed)
        for _ in range(30):
            a = rng.choice(env.action_candidates())
            risks = {f for f, p in env.failure_predicates.items() if f != "invalid_format" and env.check(p, a)}
            _, _, term, trunc, info = env.step(a)
            got = info["diagnosis"]["failure_type"]
            if got != "timeout":
                assert risks == ({got} if got else set()), (name, a, risks, got)
            if term or trunc:
                break


@pytest.mark.parametrize("name", NAMES)
def test_fuzz_random_text_is_a_penalized_step(name):
    env = make(name)
    rng = random.Random(1)
    env.reset(seed=env.train_seeds[0])
    alphabet = "abcdefghijklmnopqrstuvwxyz <>/|\n\x00ÿ" + "".join(env.names)
    for k in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        if k % 3 == 0:
            text = f"<answer>{text}</answer>"
        obs, r, term, trunc, info = env.step(text)
        assert isinstance(obs, str)
        if not info["action_is_valid"]:
            assert r == env.format_penalty and info["diagnosis"]["failure_type"] in ("invalid_format", "timeout")
        if term or trunc:
            env.reset(seed=env.train_seeds[k + 1])


def test_frozenlake_splits_share_no_map():
    env = make("frozenlake")
    train = {tuple(env.reset(seed=s)[0].split("\n")[:4]) for s in env.train_seeds[:300]}
    test = {tuple(env.reset(seed=s)[0].split("\n")[:4]) for s in env.test_seeds[:300]}
    assert train and test and not train & test
    env.reset(seed=env.test_seeds[5])
    assert is_test_map(env.map)


def test_taxi_tasks_and_bad_input():
    env = make("taxi")
    train = {env.reset(seed=s)[1] and env.task_id for s in env.train_seeds[:100]}
    test = {env.reset(seed=s)[1] and env.task_id for s in env.test_seeds[:200]}
    assert len(train) == 100 and len(test) == 200 and not train & test
    assert len(TaxiEnv.TASKS) == len(set(TaxiEnv.TASKS)) == 300
    with pytest.raises(ValueError, match="out of range"):
        env.reset(seed=0, options={"task": 300})
    with pytest.raises(ValueError, match="outside taxi's train seeds"):
        env.reset(seed=10**7)
    env.reset(seed=0, options={"task": 7})
    assert env._env.s == TaxiEnv.TASKS[7]


def test_taxi_failures():
    env = make("taxi")
    env.reset(seed=0)
    info = env.step("<answer>Dropoff</answer>")[4]
    assert info["diagnosis"]["failure_type"] == "illegal_dropoff"
    assert "passenger" in env.describe().lower() and "T" in env.describe()

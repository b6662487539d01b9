"""Every registered env passes gymnasium's env checker and follows the TextEnv contract."""

import warnings

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env

import agentsd.envs
from agentsd.envs import TextEnv, list_envs, make

SPECS = list_envs()


def checked(env) -> None:
    with warnings.catch_warnings():
        # The checker cannot test other render modes without a gymnasium spec; that warning is noise.
        warnings.filterwarnings("ignore", message=".*alternative render modes.*")
        check_env(env)


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_check_env(spec):
    checked(make(spec.name))


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_text_env_contract(spec):
    env = make(spec.name)
    assert isinstance(env, TextEnv)
    tr, te = env.train_seeds, env.test_seeds
    assert tr.step == te.step == 1 and (tr.stop <= te.start or te.stop <= tr.start)  # disjoint
    obs, info = env.reset(seed=env.train_seeds[0])
    assert isinstance(obs, str)
    for k in ("action_is_valid", "action_is_effective", "success", "diagnosis"):
        assert k in info
    assert env.instructions()
    _, r, term, trunc, info = env.step("\x00 definitely not an action \x00")
    assert not info["action_is_valid"] and isinstance(r, float)
    fail = info["diagnosis"]["failure_type"]
    assert fail in {f.value for f in env.failure_types}
    env.reset(seed=env.train_seeds[0])
    oracle = env.oracle_action()
    assert oracle is not None and env.step(oracle)[4]["action_is_valid"]


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_gymnasium_make(spec):
    assert agentsd.envs.spec(spec.name).gym_id == spec.gym_id
    env = gymnasium.make(spec.gym_id)
    obs, info = env.reset(seed=0)
    assert isinstance(obs, str) and "action_is_valid" in info
    env.close()


def test_check_env_sokoban_ansi():
    checked(make("sokoban", difficulty="medium", render_mode="ansi", max_actions_per_turn=2))


def test_sokoban_gym_id():
    env = gymnasium.make("agentsd/Sokoban-v0", difficulty="medium", render_mode="ansi")
    obs, _ = env.reset(seed=3)
    assert obs == make("sokoban", difficulty="medium").reset(seed=3)[0]
    assert env.render() == obs.split("\n", 1)[1]

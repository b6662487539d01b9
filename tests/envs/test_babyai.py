"""The BabyAI adapter over the real minigrid package: the text view, actions, failures agreeing with
the "before" predicates, fuzzing, disjoint seeds and minigrid's own bot as oracle."""

import random
import warnings

import numpy as np
import pytest

from agentsd.envs import make
from agentsd.envs.babyai import ACTIONS, BabyAIEnv, BabyAIFailure, describe_view
from agentsd.envs.babyai import text as T

F = BabyAIFailure
NAMES = ["babyai", "babyai-goto", "babyai-pickup"]


@pytest.fixture(scope="module")
def env():
    return make("babyai")


def answer(a: str) -> str:
    return f"<answer>{a}</answer>"


def play_oracle(env, seed):
    env.reset(seed=seed)
    info = {"success": False}
    while (a := env.oracle_action()) is not None:
        _, r, term, trunc, info = env.step(a)
        assert info["diagnosis"]["failure_type"] is None, (seed, a, info["diagnosis"])
        if term or trunc:
            break
    return info["success"]


# --- registration, checker, seeds ------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_check_env(name):
    from gymnasium.utils.env_checker import check_env

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*alternative render modes.*")
        check_env(make(name))


def test_gym_ids_and_levels():
    import gymnasium

    for gid, level in (("agentsd/BabyAI-v0", "BabyAI-MixedTrainLocal-v0"),
                       ("agentsd/BabyAIGoTo-v0", "BabyAI-GoToLocal-v0"),
                       ("agentsd/BabyAIPickup-v0", "BabyAI-PickupLoc-v0")):
        e = gymnasium.make(gid)
        obs, info = e.reset(seed=1_000_004)
        assert obs.startswith("Mission: ") and info["action_is_valid"] and e.unwrapped.level_id == level
        e.close()


def test_a_seed_is_a_task(env):
    a = env.reset(seed=7)[0]
    assert env.reset(seed=7)[0] == a and make("babyai").reset(seed=7)[0] == a
    # an ordinary minigrid level gets the seed itself: the same task as minigrid's own reset
    import gymnasium

    mine = make("babyai-goto")
    mine.reset(seed=1_000_123)
    theirs = gymnasium.make("BabyAI-GoToLocal-v0").unwrapped
    theirs.reset(seed=1_000_123)
    assert mine.mission == theirs.mission and (mine.grid_env.grid.encode() == theirs.grid.encode()).all()
    with pytest.raises(ValueError, match="out of range: train 0..999999, test 1000000..1099999"):
        env.reset(seed=env.test_seeds.stop)
    with pytest.raises(ValueError, match="out of range"):
        env.reset(seed=-1)


def _task(env, seed):
    env.reset(seed=seed)
    g = env.grid_env
    return g.mission, g.grid.encode().tobytes(), tuple(int(x) for x in g.agent_pos), int(g.agent_dir)


def test_train_and_test_tasks_are_disjoint(env):
    train = {_task(env, s) for s in env.train_seeds[:300]}
    test = {_task(env, s) for s in env.test_seeds[:300]}
    assert len(train) == len(test) == 300 and not train & test


def test_mixed_level_has_all_five_kinds_and_no_held_out_words(env):
    from agentsd.envs.babyai.levels import HELD_OUT, KINDS

    kinds = set()
    for s in env.test_seeds[:60]:
        obs, info = env.reset(seed=s)
        kinds.add(info["kind"])
        assert not any(w in info["mission"] for w in HELD_OUT)
        assert env.max_steps == {"goto": 64, "pickup": 64}.get(info["kind"], 128)
    assert kinds == set(KINDS)


# --- text ------------------------------------------------------------------------------------
def test_text_tables_are_minigrid_constants():
    from minigrid.core.actions import Actions
    from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX

    assert [OBJECT_TO_IDX[o] for o in T.OBJECTS] == list(range(len(OBJECT_TO_IDX)))
    assert [COLOR_TO_IDX[c] for c in T.COLORS] == list(range(len(COLOR_TO_IDX)))
    assert [STATE_TO_IDX[s] for s in T.DOOR_STATES] == [0, 1, 2]
    names = ["left", "right", "forward", "pickup", "drop", "toggle", "done"]
    assert [Actions[n].value for n in names] == list(range(7)) and len(ACTIONS) == len(Actions)


def test_describe_view_hand_made():
    from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX

    img = np.zeros((7, 7, 3), dtype=np.uint8)
    img[:, :, 0] = OBJECT_TO_IDX["empty"]
    img[:, 2, 0] = OBJECT_TO_IDX["wall"]  # a wall across, 4 ahead
    img[:, :2, 0] = OBJECT_TO_IDX["unseen"]  # behind it: not visible
    img[6, 6, 0] = OBJECT_TO_IDX["wall"]  # 3 to the right
    img[4, 5] = (OBJECT_TO_IDX["ball"], COLOR_TO_IDX["red"], 0)  # 1 right, 1 forward
    img[1, 6] = (OBJECT_TO_IDX["door"], COLOR_TO_IDX["blue"], STATE_TO_IDX["locked"])  # 2 left: hides the wall
    img[0, 3] = (OBJECT_TO_IDX["door"], COLOR_TO_IDX["green"], STATE_TO_IDX["open"])  # 3 left, 3 forward
    img[3, 6] = (OBJECT_TO_IDX["key"], COLOR_TO_IDX["grey"], 0)  # the agent's own cell: what it carries
    assert describe_view(img) == [
        "a wall 4 steps forward",
        "a wall 3 steps right",
        "a locked blue door 2 steps left",  # nearest first (2 steps), then the nearer ahead
        "a red ball 1 step right and 1 step forward",
        "an open green door 3 steps left and 3 steps forward",
    ]
    assert T.carrying_text(("key", "grey")) == "You carry a grey key." and T.carrying_text(None) == "You carry nothing."


def test_observation_on_a_seeded_state():
    """A known task, checked cell by cell against minigrid's own grid printout."""
    env = make("babyai", render_mode="ansi")
    obs, info = env.reset(seed=1_000_003)
    g = env.grid_env
    assert info["kind"] == "goto" and tuple(int(x) for x in g.agent_pos) == (4, 4) and g.agent_dir == 2  # west
    assert env.render().splitlines()[4] == "WGAB    <<    WG"
    assert obs == (
        "Mission: go to a purple box\n"
        "Step 0/64. You carry nothing.\n"
        "You see:\n"
        "- a purple key 2 steps left\n"
        "- a green ball 2 steps right\n"
        "- a purple box 1 step left and 1 step forward\n"
        "- a blue ball 3 steps forward\n"
        "- a green box 2 steps left and 2 steps forward\n"
        "- a blue key 2 steps left and 3 steps forward\n"
        "Last: a new episode"
    )


def test_view_text_matches_the_world_grid():
    """Every visible object is told at its place: walk the world cells ahead of and beside the agent."""
    env = make("babyai")
    told = 0
    for seed in env.test_seeds[:40]:
        env.reset(seed=seed)
        g = env.grid_env
        seen = env.describe()
        fwd, right = np.array(g.dir_vec), np.array(g.right_vec)
        img = g.gen_obs()["image"]
        for f in range(7):
            for s in range(-3, 4):
                if (f, s) == (0, 0) or img[3 + s, 6 - f, 0] == 0:  # the agent, or not visible
                    continue
                x, y = np.array(g.agent_pos) + f * fwd + s * right
                obj = g.grid.get(int(x), int(y))
                if obj is None or obj.type == "wall":
                    continue
                name = obj.color + " " + obj.type
                if obj.type == "door":
                    name = ("locked " if obj.is_locked else "open " if obj.is_open else "closed ") + name
                assert f"- a{'n' if name[0] == 'o' else ''} {name} {T.where(s, f)}\n" in seen + "\n", (seed, name)
                told += 1
    assert told > 100


# --- actions, fuzz ---------------------------------------------------------------------------
def test_every_action_name_parses(env):
    for k, name in enumerate(ACTIONS):
        assert env.parse_action(f"I think <answer>{name.upper()}</answer>") == [k]
        assert env.parse_action(answer("  " + name.replace(" ", "_") + ". ")) == [k]
    assert env.parse_action(answer("Pick   Up")) == [3] and env.parse_action(answer("pickup")) == [3]
    assert env.parse_action("<answer>left</answer> then <answer>go forward</answer>") == [2]
    for bad in ("go forward", answer("fly"), answer(""), answer("go forward " * 10), None, 3):
        assert env.parse_action(bad) is None
    assert env.action_candidates() == [answer(n) for n in ACTIONS]


def test_fuzz_random_text_is_a_penalized_step(env):
    rng = random.Random(1)
    env.reset(seed=env.train_seeds[0])
    alphabet = list("abcdefghijklmnopqrstuvwxyz <>/_\n\x00ÿ") + ["<answer>", "</answer>", *ACTIONS]
    invalid = 0
    for k in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        if k % 3 == 0:
            text = answer(text)
        before = env._snapshot(), env.steps
        valid = env.parse_action(text) is not None
        obs, r, term, trunc, info = env.step(text)
        assert isinstance(obs, str) and isinstance(r, float) and info["action_is_valid"] == valid
        assert info["diagnosis"]["failure_type"] in {f.value for f in F} | {None}
        if not valid:
            invalid += 1
            assert r == env.format_penalty and not info["action_is_effective"]
            assert env._snapshot() == before[0] and env.steps == before[1] + 1
            assert info["diagnosis"]["failure_type"] in ("invalid_action", "timeout")
        if term or trunc:
            env.reset(seed=env.train_seeds[k + 1])
    assert invalid > 100


# --- failures and predicates -----------------------------------------------------------------
def test_predicates_match_step_failures_over_random_play(env):
    """Each "before" predicate is True exactly when step reports its failure."""
    rng = random.Random(0)
    seen: set = set()
    for seed in env.train_seeds[:80]:
        env.reset(seed=seed)
        for _ in range(40):
            a = rng.choice(env.action_candidates() + ["<answer>jump</answer>"])
            risks = {f for f, p in env.failure_predicates.items() if env.check(p, a)}
            _, _, term, trunc, info = env.step(a)
            got = info["diagnosis"]["failure_type"]
            if got != "timeout":
                assert risks == ({got} if got else set()), (seed, a, risks, got)
            seen |= risks
            if term or trunc:
                break
    assert seen == {f.value for f in F} - {"timeout", "door_locked"}  # door_locked: see the next test


def test_locked_door_key_and_done():
    env = make("babyai")
    seed = next(s for s in env.test_seeds if env.reset(seed=s)[1]["kind"] == "open")
    env.reset(seed=seed)
    door = env.grid_env.grid.get(*env.grid_env.instrs.desc.obj_poss[0])
    assert door.is_locked
    pos = np.array(door.cur_pos)
    # stand in front of the door, inside the agent's room, facing it
    side = -1 if env.grid_env.agent_pos[0] < pos[0] else 1
    env.grid_env.grid.set(int(pos[0] + side), int(pos[1]), None)
    env.grid_env.agent_pos = (int(pos[0] + side), int(pos[1]))
    env.grid_env.agent_dir = 0 if side == -1 else 2
    assert env.check("facing", type="door", color=door.color) and env.check("door_locked", answer("toggle"))
    info = env.step(answer("toggle"))[4]
    assert info["diagnosis"]["failure_type"] == "door_locked" and not info["action_is_effective"]
    assert env.check("wrong_done", answer("done"))
    info = env.step(answer("done"))[4]
    assert info["diagnosis"]["failure_type"] == "wrong_done"


def test_carrying_dropping_and_after_predicates():
    env = make("babyai-pickup")
    env.reset(seed=0)
    assert env.step(answer("drop"))[4]["diagnosis"]["failure_type"] == "nothing_to_drop"
    while not env.done:  # the bot picks the object up: the episode ends on that pick up
        _, r, term, _, info = env.step(env.oracle_action())
    held = env.grid_env.carrying
    assert term and info["success"] and r > 0.5 and env.check("solved")
    assert env.check("carrying", type=held.type, color="any") and env.check("carrying", type=held.type, color=held.color)
    assert not env.check("carrying", type="door", color="any")
    assert info["diagnosis"]["state_diff"]["carrying"] == [None, f"{held.color} {held.type}"]
    assert info["diagnosis"]["progress"] == 1.0 and env.oracle_action() is None


def test_opening_a_box_vanishes_it_and_turns_the_bot_off():
    env = make("babyai")
    for seed in env.train_seeds:
        env.reset(seed=seed)
        for a in ("turn left", "turn right", "go forward") * 6:
            if env.check("facing", type="box", color="any"):
                break
            env.step(answer(a))
        if env.check("facing", type="box", color="any") and not env.done:
            break
    assert env.check("opened_box", answer("toggle"))
    info = env.step(answer("toggle"))[4]
    assert info["diagnosis"]["failure_type"] == "opened_box" and info["action_is_effective"]
    assert env.oracle_action() is None and "DisappearedBox" in env.bot_error


def test_timeout_and_rewards():
    env = BabyAIEnv(level="BabyAI-GoToLocal-v0", max_steps=2)
    env.reset(seed=0)
    _, r, _, _, _ = env.step(answer("turn left"))
    assert r == pytest.approx(env.step_penalty)
    _, r, term, trunc, info = env.step("no answer")
    assert trunc and not term and info["diagnosis"]["failure_type"] == "timeout" and r == env.format_penalty
    assert env.oracle_action() is None


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown BabyAI level"):
        BabyAIEnv(level="MiniGrid-Empty-5x5-v0")
    with pytest.raises(ValueError, match="max_steps"):
        BabyAIEnv(max_steps=0)
    with pytest.raises(RuntimeError, match="reset"):
        BabyAIEnv().step(answer("done"))


# --- oracle ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_oracle_is_the_babyai_bot_and_solves_test_tasks(name):
    env = make(name)
    seeds = env.test_seeds[:200]
    assert sum(play_oracle(env, s) for s in seeds) / len(seeds) >= 0.99


def test_oracle_follows_when_the_agent_deviates(env):
    """The bot is told every action taken (``replan(action_taken)``): after random detours, picking
    things up and dropping them included, it still finishes. (Told nothing, it solves ~87% here.)"""
    rng = random.Random(3)
    solved = 0
    for seed in env.test_seeds[:100]:
        env.reset(seed=seed)
        for _ in range(6):
            env.step(answer(rng.choice(["turn left", "turn right", "go forward", "pick up", "drop"])))
        env.step("not an action")  # an invalid turn changes nothing, the bot keeps its plan
        while (a := env.oracle_action()) is not None:
            _, _, term, trunc, info = env.step(a)
            if term or trunc:
                break
        solved += env.solved
    assert solved >= 99


# --- install, CLI, config ----------------------------------------------------------------------
def test_missing_package_is_one_line_with_install_command(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "minigrid.utils.baby_ai_bot", None)  # import now fails
    with pytest.raises(ImportError, match=r"^the babyai env needs the minigrid package: pip install -e '\.\[benchmarks\]'$"):
        make("babyai")


def test_play_command():
    from typer.testing import CliRunner

    from agentsd.cli import app

    res = CliRunner().invoke(app, ["play", "--env", "babyai", "--seed", "1000003"],
                             input="turn left\ngo forward\nfly\nq\n")
    assert res.exit_code == 0, res.output
    assert "Mission: go to a purple box" in res.output and "invalid_action" in res.output


def test_config_loads():
    from agentsd.config import load_config

    cfg = load_config("babyai")
    assert cfg.env.name == "babyai"
    make(cfg.env.name, **cfg.env.kwargs).reset(seed=0)

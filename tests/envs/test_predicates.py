"""Env predicates: the generic ``check`` contract, and Sokoban's vocabulary agreeing with ``step``."""

import copy

import numpy as np
import pytest
from toyenv import CounterEnv

from agentsd.envs import list_envs, make
from agentsd.envs.base import Predicate, TextEnv
from agentsd.envs.sokoban.board import MOVES
from agentsd.envs.sokoban.env import LOOP_REVISITS, SokobanEnv
from agentsd.envs.sokoban.text import SEVERITY, SokobanFailure

F = SokobanFailure
LINE = "#####\n#@$.#\n#####"
CORNER = "######\n#    #\n# $@ #\n#   .#\n######"  # Left puts the box on a dead square
FREEZE = "#######\n#.$  .#\n#  $  #\n#  @  #\n#######"  # Up freezes two boxes against the wall
JAM = "######\n#@$$.#\n#   .#\n######"  # Right pushes a box into another box
#: No dead squares (a target at each end of every wall); pushing two neighbours up freezes them.
ROOM = "#########\n#.     .#\n# $$ $$ #\n#       #\n#.  @  .#\n#########"
HALF = "#######\n#     #\n#@$ . #\n#  *  #\n#     #\n#######"  # one of two boxes on target
BEFORE = (
    "invalid_format",
    "move_into_wall",
    "push_blocked_box",
    "push_into_dead_square",
    "push_freezes_box",
    "revisits_recent_position",
)
MOVE_RISKS = BEFORE[1:5]  # one move triggers at most one of these
#: The note ``step`` writes into ``diagnosis.detail`` for each move that runs the risk.
NOTES = {
    "move_into_wall": "walked into a wall",
    "push_blocked_box": "is blocked by a",
    "push_into_dead_square": "can never reach a target from there",
    "push_freezes_box": "frozen off target",
    "revisits_recent_position": "keeps coming back",
}


def A(*moves: str) -> str:
    return "<answer>" + " || ".join(moves) + "</answer>"


def level(xsb: str, **kw) -> SokobanEnv:
    env = SokobanEnv(level=xsb, check_solvable=False, **kw)
    env.reset(seed=0)
    return env


def predicted(env: TextEnv, action: str) -> str | None:
    """The failure ``step`` should report, from the "before" predicates alone: the worst that holds."""
    if env.check("invalid_format", action):
        return F.INVALID_FORMAT.value
    hits = [F(f) for f, p in env.failure_predicates.items() if p != "invalid_format" and env.check(p, action)]
    worst = max(hits, key=SEVERITY.__getitem__, default=None)
    return worst.value if worst is not None else None


def stepped(env: SokobanEnv, action: str) -> tuple[SokobanEnv, dict]:
    """Step ``action`` on a deep copy of ``env`` (sharing only the RNG and the static layout tables)."""
    memo = {
        id(x): x for x in (env.board, env.level, env.np_random, env._fixed, env._layout, env._at, env._base)
    }
    twin = copy.deepcopy(env, memo)
    return twin, twin.step(action)[4]


def assert_agrees(env: SokobanEnv, action: str, info: dict) -> dict[str, bool]:
    """Each "before" predicate of ``action`` (checked on ``env``) against what stepping it reported."""
    diag = info["diagnosis"]
    got = {p: env.check(p, action) for p in BEFORE}
    assert diag["failure_type"] == predicted(env, action), (action, got, diag)
    assert got["invalid_format"] == (not info["action_is_valid"])
    for p, note in NOTES.items():  # "any move": every move's risk leaves its note in the detail
        assert got[p] == (note in diag["detail"]), (p, action, diag["detail"])
    return got


# --- the generic contract -----------------------------------------------------------------------
def test_predicate_dataclass():
    p = Predicate("x", "an example", "after", {"n": "int"})
    assert p.params == {"n": "int"} and Predicate("y", "d", "before").params == {}
    assert hash(p) == hash(Predicate("x", "an example", "after", {"n": "int"}))
    with pytest.raises(ValueError, match="before"):
        Predicate("x", "d", "during")
    with pytest.raises(AttributeError):
        p.name = "z"  # frozen


def test_base_env_has_no_predicates():
    env = CounterEnv()
    env.reset(seed=0)
    assert TextEnv.failure_predicates == {} and CounterEnv.failure_predicates == {}
    assert env.predicates() == {}
    with pytest.raises(KeyError, match="unknown predicate 'solved'.*known: none"):
        env.check("solved")


class PredicateCounter(CounterEnv):
    """CounterEnv with a before and an after predicate, and two names that must not dispatch."""

    failure_predicates = {"wrong_way": "moves_away"}

    def predicates(self) -> dict[str, Predicate]:
        return {
            "moves_away": Predicate("moves_away", "the answer moves away from the target", "before"),
            "at_least": Predicate("at_least", "the value is at least k", "after", {"k": "int"}),
            "listed_only": Predicate("listed_only", "listed but not implemented", "after"),
        }

    def _pred_moves_away(self, action: str) -> bool:
        acts = self.parse_action(action)
        return acts is not None and (acts[0] == "inc") != (self.value < self.target)

    def _pred_at_least(self, action: None, k: int) -> int:
        return int(self.value >= k)  # check() turns it into a bool

    def _pred_not_listed(self, action: None) -> bool:
        return True


def test_check_dispatches_and_validates():
    env = PredicateCounter()
    env.reset(seed=0)
    assert env.check("moves_away", "<answer>dec</answer>") is True
    assert env.check("moves_away", "<answer>inc</answer>") is False
    assert env.check("at_least", k=0) is True and env.check("at_least", k=1) is False
    for name in ("nope", "listed_only", "not_listed"):
        with pytest.raises(KeyError, match=f"'{name}'.*known: at_least, listed_only, moves_away"):
            env.check(name)
    with pytest.raises(ValueError, match="action"):
        env.check("moves_away")
    with pytest.raises(ValueError, match="no action"):
        env.check("at_least", "<answer>inc</answer>", k=1)
    with pytest.raises(TypeError, match=r"\(k\)"):
        env.check("at_least")
    with pytest.raises(TypeError, match="got \\(j, k\\)"):
        env.check("at_least", k=1, j=2)


@pytest.mark.parametrize("spec", list_envs(), ids=[s.name for s in list_envs()])
def test_registered_envs_predicate_vocabulary(spec):
    env = make(spec.name)
    env.reset(seed=env.train_seeds[0])
    preds = env.predicates()
    failures = {f.value for f in env.failure_types}
    for failure, name in env.failure_predicates.items():
        assert failure in failures, failure
        assert name in preds and preds[name].when == "before", name
    for name, p in preds.items():
        assert isinstance(p, Predicate) and p.name == name and p.description
        # dispatchable: its own method, or (a "before" risk) the env's shared step simulation
        assert callable(getattr(env, f"_pred_{name}", None)) or (p.when == "before" and callable(env._risk)), name
        if p.when == "before":
            assert isinstance(env.check(name, "\x00 not an action \x00"), bool)
        elif not p.params:
            assert isinstance(env.check(name), bool)
    with pytest.raises(KeyError, match="known"):
        env.check("\x00no such predicate")


# --- Sokoban: "before" predicates agree with step --------------------------------------------------
def test_sokoban_vocabulary():
    env = SokobanEnv()
    assert SokobanEnv.failure_predicates == dict(
        zip([f.value for f in F if f is not F.TIMEOUT], BEFORE, strict=True)
    )
    preds = env.predicates()
    assert [p for p in preds if preds[p].when == "before"] == list(BEFORE)
    assert [p for p in preds if preds[p].when == "after"] == [
        "solved",
        "boxes_on_target_at_least",
        "no_deadlock",
    ]
    assert preds["boxes_on_target_at_least"].params == {"n": "int, number of boxes"}
    env.predicates().clear()  # a copy: callers cannot break the vocabulary
    assert env.predicates() == preds
    for name in ("Predicates", *preds):
        assert name in SokobanEnv.__doc__, name


@pytest.mark.parametrize(
    "kw, seeds, moves, floors",
    [
        # one box: a frozen box is always on a dead square too, so push_freezes_box never holds
        ({"difficulty": "easy"}, 200, 10, {"push_freezes_box": 0}),
        ({"difficulty": "medium"}, 50, 25, {"push_freezes_box": 3}),
        ({"level": ROOM}, 20, 40, {"push_into_dead_square": 0, "push_freezes_box": 15}),
    ],
    ids=["easy", "medium", "room"],
)
def test_single_moves_agree_with_step(kw, seeds, moves, floors):
    """From every position of random play, each of the four moves is checked, then stepped on a copy."""
    rng = np.random.default_rng(0)
    seen = dict.fromkeys(BEFORE[1:], 0)
    for seed in range(seeds):
        env = SokobanEnv(**kw, max_steps=10_000)
        env.reset(seed=seed)
        for _ in range(moves):
            twins = []
            for m in MOVES:
                twin, info = stepped(env, A(m))
                got = assert_agrees(env, A(m), info)
                assert sum(got[p] for p in MOVE_RISKS) <= 1, got
                for p in seen:
                    seen[p] += got[p]
                twins.append((twin, info))
            moving = [t for t in twins if t[1]["action_is_effective"]] or twins
            env, info = moving[int(rng.integers(len(moving)))]  # play on from one that moved
            if info["success"]:
                break
    # the run must have exercised every risk, or agreeing would prove little
    assert all(n >= floors.get(p, 20) for p, n in seen.items()), seen


@pytest.mark.parametrize(
    "kw, seeds", [({"difficulty": "easy"}, 60), ({"difficulty": "medium"}, 20), ({"level": ROOM}, 20)]
)
def test_multi_move_turns_agree_with_step(kw, seeds):
    rng = np.random.default_rng(1)
    several = 0  # turns where more than one risk holds (step reports only the worst)
    for seed in range(seeds):
        env = SokobanEnv(**kw, max_steps=10_000, max_actions_per_turn=3)
        env.reset(seed=seed)
        for _ in range(10):
            action = A(*(MOVES[k] for k in rng.integers(4, size=int(rng.integers(1, 4)))))
            twin, info = stepped(env, action)
            several += sum(assert_agrees(env, action, info).values()) > 1
            env = twin
            if info["success"]:
                break
    assert several >= 20, several


def test_multi_move_any_move_counts():
    env = level(JAM, max_actions_per_turn=3)
    action = A("Up", "Right", "Down")  # wall bump, then a blocked box, then a step down
    assert env.check("move_into_wall", action) and env.check("push_blocked_box", action)
    assert not env.check("push_into_dead_square", action) and not env.check("invalid_format", action)
    assert predicted(env, action) == env.step(action)[4]["diagnosis"]["failure_type"] == "box_blocked"
    env = level(CORNER, max_actions_per_turn=3)
    assert env.check("push_into_dead_square", A("Up", "Down", "Left"))  # the third move deadlocks
    assert not env.check("push_into_dead_square", A("Up", "Left", "Down"))  # that Left walks, no box there
    assert env.check("push_freezes_box", A("Left")) is False


def test_moves_step_would_drop_are_not_checked():
    env = level(LINE, max_actions_per_turn=2)
    # the first Right solves the level; step drops the second, which would push the box into the wall
    assert not env.check("push_blocked_box", A("Right", "Right"))
    assert env.step(A("Right", "Right"))[4]["diagnosis"]["failure_type"] is None
    # Right walks, the second Right bumps the wall; with one step left step drops that
    assert level(CORNER, max_actions_per_turn=2, max_steps=2).check("move_into_wall", A("Right", "Right"))
    env = level(CORNER, max_actions_per_turn=2, max_steps=1)
    assert not env.check("move_into_wall", A("Right", "Right"))
    assert env.step(A("Right", "Right"))[4]["diagnosis"]["failure_type"] == "timeout"


@pytest.mark.parametrize("window, loops", [(2, False), (3, True), (20, True)])
def test_loop_predicate_tracks_the_window_within_a_turn(window, loops):
    # bumping the wall keeps the start position; its (LOOP_REVISITS + 1)-th sighting in the window loops
    assert LOOP_REVISITS == 3
    env = level(LINE, max_actions_per_turn=3, loop_window=window)
    assert not env.check("revisits_recent_position", A("Up", "Up"))
    assert env.check("revisits_recent_position", A("Up", "Up", "Up")) is loops
    assert_agrees(env, A("Up", "Up", "Up"), stepped(env, A("Up", "Up", "Up"))[1])
    env.step(A("Up", "Up"))
    assert env.check("revisits_recent_position", A("Up")) is loops


def test_invalid_text():
    env = level(CORNER, max_actions_per_turn=2)
    for text in ("Left", "<answer>Jump</answer>", A("Left", "Left", "Left"), "", "<answer></answer>"):
        assert env.check("invalid_format", text), text
        assert not any(env.check(p, text) for p in BEFORE[1:]), text
    assert not env.check("invalid_format", "I think <answer> left </answer>")
    with pytest.raises(ValueError, match="action"):
        env.check("move_into_wall")
    with pytest.raises(ValueError, match="action"):
        env.check("move_into_wall", None)


def test_unknown_predicate_lists_known_names():
    env = level(LINE)
    with pytest.raises(KeyError) as e:
        env.check("box_in_corner", A("Up"))
    msg = str(e.value)
    assert "'box_in_corner'" in msg and all(name in msg for name in env.predicates())


def test_check_before_reset_is_an_error():
    env = SokobanEnv()
    with pytest.raises(RuntimeError, match="reset"):
        env.check("move_into_wall", A("Up"))
    with pytest.raises(RuntimeError, match="reset"):
        env.check("solved")


def snapshot(env: SokobanEnv) -> dict:
    state = {k: copy.deepcopy(v) for k, v in vars(env).items() if k not in ("board", "_np_random")}
    state["board"] = copy.deepcopy(vars(env.board))
    state["rng"] = copy.deepcopy(env.np_random.bit_generator.state)
    return state


@pytest.mark.parametrize("difficulty", ["easy", "medium", "hard"])
def test_check_changes_nothing(difficulty):
    env = SokobanEnv(difficulty=difficulty, max_actions_per_turn=3, render_mode="ansi")
    env.reset(seed=7)
    rng = np.random.default_rng(7)
    for _ in range(15):
        obs, grid, before = env._obs(), env.render(), snapshot(env)
        for p in BEFORE:
            for k in range(4):
                env.check(p, A(*(MOVES[j] for j in rng.integers(4, size=k + 1))))
        for p in ("solved", "no_deadlock"):
            env.check(p)
        env.check("boxes_on_target_at_least", n=1)
        assert env._obs() == obs and env.render() == grid and snapshot(env) == before
        env.step(A(MOVES[int(rng.integers(4))]))


# --- Sokoban: "after" predicates -------------------------------------------------------------------
def test_after_predicates_on_a_level():
    env = level(HALF)
    assert not env.check("solved") and env.check("no_deadlock")
    assert env.check("boxes_on_target_at_least", n=0) and env.check("boxes_on_target_at_least", n=1)
    assert not env.check("boxes_on_target_at_least", n=2)
    env.step(A("Right"))
    assert not env.check("solved") and not env.check("boxes_on_target_at_least", n=2)
    env.step(A("Right"))
    assert env.check("solved") and env.check("boxes_on_target_at_least", n=2) and env.check("no_deadlock")


def test_no_deadlock_follows_the_state():
    env = level(CORNER)
    assert env.check("no_deadlock") and env.check("push_into_dead_square", A("Left"))
    env.step(A("Left"))
    assert not env.check("no_deadlock")
    env = level(FREEZE)
    assert env.check("no_deadlock") and env.check("push_freezes_box", A("Up"))
    assert not env.check("push_into_dead_square", A("Up"))
    env.step(A("Up"))
    assert not env.check("no_deadlock") and not env.check("solved")
    # a level that starts deadlocked (the env's own deadlocked flag only counts pushes)
    env = level("#####\n#$ .#\n# @ #\n#####")
    assert not env.check("no_deadlock")

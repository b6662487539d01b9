"""SokobanEnv episodes: seeds, rewards, episode end, diagnosis, oracle (the docstring's claims)."""

from pathlib import Path

import pytest

import agentsd.envs.sokoban.env as env_mod
from agentsd.envs.base import Diagnosis, TextEnv
from agentsd.envs.sokoban.board import INF
from agentsd.envs.sokoban.env import LOOP_REVISITS, SokobanEnv, SokobanFailure
from agentsd.envs.sokoban.level import Level, parse_level

LINE = "#####\n#@$.#\n#####"
TWO = "#######\n#@$. .#\n#     #\n#  $  #\n#     #\n#######"  # push the top box on, off, on again
JAM = "######\n#@$$.#\n#   .#\n######"  # a box pushed into another box
CORNER = "######\n#    #\n# $@ #\n#   .#\n######"  # Left puts the box on a dead square
FREEZE = "#######\n#.$  .#\n#  $  #\n#  @  #\n#######"  # Up freezes two boxes against the wall
OPEN = "#########\n#       #\n# @     #\n#    $ .#\n#########"


def A(*moves: str) -> str:
    return "<answer>" + " || ".join(moves) + "</answer>"


def make(level: str, **kw) -> SokobanEnv:
    env = SokobanEnv(level=level, check_solvable=False, **kw)  # some scenarios here are deadlocked on purpose
    env.reset(seed=0)
    return env


def failure(info: dict) -> str | None:
    return info["diagnosis"]["failure_type"]


# --- class attributes, seeds, construction ---------------------------------------------------
def test_class_attributes():
    assert SokobanEnv.name == "sokoban"
    assert SokobanEnv.train_seeds == range(0, 1_000_000)
    assert SokobanEnv.test_seeds == range(1_000_000, 1_100_000)
    assert SokobanEnv.seeds("train").stop <= SokobanEnv.seeds("test").start  # disjoint
    assert SokobanEnv.failure_types is SokobanFailure
    assert {f.value for f in SokobanFailure} == {
        "invalid_format",
        "wall_bump",
        "box_blocked",
        "deadlock_corner",
        "deadlock_freeze",
        "no_progress_loop",
        "timeout",
    }


@pytest.mark.parametrize("difficulty, rows", [("easy", 6), ("medium", 8), ("hard", 10)])
def test_same_seed_same_level(difficulty, rows):
    env = SokobanEnv(difficulty=difficulty)
    a, _ = env.reset(seed=123)
    env.step(A("Up"))
    b, _ = env.reset(seed=123)
    assert a == b and len(a.split("\n")) == rows + 1
    assert SokobanEnv(difficulty=difficulty).reset(seed=123)[0] == a


def test_seeds_differ_and_unseeded_reset_works():
    env = SokobanEnv()
    assert len({env.reset(seed=s)[0] for s in range(20)}) >= 18
    obs, info = env.reset()
    assert obs.startswith("Legend:") and info["action_is_valid"]


def test_reset_options_accepted():
    obs, _ = SokobanEnv().reset(seed=1, options={})
    assert obs == SokobanEnv().reset(seed=1)[0]


def test_fixed_level_ignores_seed():
    env = SokobanEnv(level=TWO)
    assert env.reset(seed=1)[0] == env.reset(seed=99)[0]
    assert SokobanEnv(level=parse_level(TWO)).reset(seed=5)[0] == env.reset(seed=1)[0]


def test_levels_picked_by_seed_modulo(tmp_path: Path):
    levels = [LINE, TWO, OPEN]
    env = SokobanEnv(levels=levels)
    assert env.reset(seed=4)[0] == SokobanEnv(level=TWO).reset(seed=0)[0]
    assert env.reset(seed=6)[0] == SokobanEnv(level=LINE).reset(seed=0)[0]
    p = tmp_path / "levels.xsb"
    p.write_text("".join(f"; {k}\n{x}\n\n" for k, x in enumerate(levels)))
    assert SokobanEnv(levels=p).reset(seed=5)[0] == SokobanEnv(level=OPEN).reset(seed=0)[0]
    assert SokobanEnv(levels=str(p)).reset(seed=5)[0] == SokobanEnv(level=OPEN).reset(seed=0)[0]


def test_bad_construction():
    with pytest.raises(ValueError, match="difficulty"):
        SokobanEnv(difficulty="extreme")
    with pytest.raises(ValueError, match="either"):
        SokobanEnv(level=LINE, levels=[LINE])
    with pytest.raises(ValueError, match="exactly one"):
        SokobanEnv(level=LINE + "\n\n" + TWO)
    with pytest.raises(ValueError):
        SokobanEnv(levels=[])
    with pytest.raises(ValueError):
        SokobanEnv(max_actions_per_turn=0)
    with pytest.raises(ValueError, match="max_steps"):
        SokobanEnv(max_steps=0)
    with pytest.raises(RuntimeError, match="reset"):
        SokobanEnv().step(A("Up"))


def test_default_max_steps():
    assert SokobanEnv().max_steps == 30
    assert SokobanEnv(difficulty="medium").max_steps == 80
    assert SokobanEnv(difficulty="hard").max_steps == 120
    assert SokobanEnv(level=LINE).max_steps == 300
    assert SokobanEnv(max_steps=7).max_steps == 7


def test_generator_overrides():
    env = SokobanEnv(difficulty="easy", size=(7, 9), boxes=2)
    obs, _ = env.reset(seed=0)
    assert [len(r) for r in obs.split("\n")[1:]] == [9] * 7
    assert env.state.num_boxes == 2


# --- rewards ---------------------------------------------------------------------------------
def test_rewards_on_off_and_move():
    env = make(TWO)
    _, r, term, trunc, info = env.step(A("Right"))  # onto the target
    assert r == pytest.approx(-0.1 + 1.0) and not term and not trunc
    assert info["diagnosis"]["extra"]["boxes_on_target"] == 1
    _, r, *_ = env.step(A("Right"))  # off it again
    assert r == pytest.approx(-0.1 - 1.0)
    _, r, *_ = env.step(A("Right"))  # onto the other target
    assert r == pytest.approx(0.9)
    _, r, _, _, info = env.step(A("Down"))  # a plain move
    assert r == pytest.approx(-0.1) and info["action_is_effective"]


def test_solve_reward_and_termination():
    env = make(LINE)
    _, r, term, trunc, info = env.step(A("Right"))
    assert r == pytest.approx(-0.1 + 1.0 + 10.0)
    assert term and not trunc and info["success"]
    assert info["diagnosis"]["progress"] == 1.0 and failure(info) is None


def test_custom_rewards():
    env = make(LINE, step_penalty=-0.5, box_reward=2.0, solve_reward=3.0, format_penalty=-7.0)
    assert env.step("nope")[1] == -7.0
    assert env.step(A("Right"))[1] == pytest.approx(-0.5 + 2.0 + 3.0)


def test_invalid_turn():
    env = make(TWO)
    before = env.render_xsb()
    obs, r, term, trunc, info = env.step("I will go up")
    assert r == -1.0 and not term and not trunc
    assert not info["action_is_valid"] and not info["action_is_effective"] and not info["success"]
    assert failure(info) == "invalid_format" and info["actions"] == []
    assert "no <answer>" in info["diagnosis"]["detail"]
    assert env.render_xsb() == before and info["diagnosis"]["extra"]["steps"] == 1


def test_multi_move_turn_rewards_sum():
    env = make(TWO, max_actions_per_turn=3)
    _, r, _, _, info = env.step(A("Right", "Right", "Down"))
    assert r == pytest.approx(0.9 - 1.1 - 0.1)
    assert info["actions"] == ["Right", "Right", "Down"] and info["diagnosis"]["extra"]["steps"] == 3


# --- episode end -----------------------------------------------------------------------------
def test_solving_drops_remaining_moves():
    env = make(LINE, max_actions_per_turn=3)
    _, r, term, _, info = env.step(A("Right", "Left", "Left"))
    assert term and r == pytest.approx(10.9) and info["diagnosis"]["extra"]["steps"] == 1


def test_timeout_truncates():
    env = make(OPEN, max_steps=3)
    for _ in range(2):
        _, _, term, trunc, info = env.step(A("Right"))
        assert not term and not trunc
    _, _, term, trunc, info = env.step(A("Up"))
    assert trunc and not term and failure(info) == "timeout"
    assert "ran out of steps" in info["diagnosis"]["detail"]


def test_invalid_turn_uses_a_step_and_can_time_out():
    env = make(OPEN, max_steps=1)
    _, r, term, trunc, info = env.step("???")
    assert trunc and not term and r == -1.0 and failure(info) == "timeout"


def test_moves_past_the_limit_are_dropped():
    env = make(OPEN, max_steps=2, max_actions_per_turn=3)
    _, r, _, trunc, info = env.step(A("Right", "Right", "Right"))
    assert trunc and r == pytest.approx(-0.2)
    assert info["diagnosis"]["state_diff"]["player"] == [[2, 2], [2, 4]]


def test_deadlock_is_diagnosed_not_ended_and_beats_timeout():
    env = make(CORNER, max_steps=1)
    _, _, term, trunc, info = env.step(A("Left"))
    assert failure(info) == "deadlock_corner" and trunc and not term
    env = make(CORNER)
    _, _, term, trunc, info = env.step(A("Left"))
    assert not term and not trunc
    # end_on_deadlock: the turn that makes the deadlock ends the episode (truncated, unsolved, diagnosed)
    env = make(CORNER, end_on_deadlock=True)
    _, _, term, trunc, info = env.step(A("Left"))
    assert failure(info) == "deadlock_corner" and trunc and not term and not info["success"]
    assert "end_on_deadlock" in info["diagnosis"]["detail"]


# --- diagnosis -------------------------------------------------------------------------------
def test_wall_bump():
    env = make(LINE)
    _, r, _, _, info = env.step(A("Up"))
    assert failure(info) == "wall_bump" and r == pytest.approx(-0.1)
    assert info["action_is_valid"] and not info["action_is_effective"]
    assert "wall" in info["diagnosis"]["detail"] and info["diagnosis"]["state_diff"] == {}


def test_box_blocked_by_box_and_by_wall():
    env = make(JAM)
    _, _, _, _, info = env.step(A("Right"))
    assert failure(info) == "box_blocked" and "box" in info["diagnosis"]["detail"]
    assert not info["action_is_effective"]
    env = make(TWO)
    for _ in range(3):
        env.step(A("Right"))
    _, _, _, _, info = env.step(A("Right"))
    assert failure(info) == "box_blocked" and "blocked by a wall" in info["diagnosis"]["detail"]


def test_deadlock_corner():
    env = make(CORNER)
    _, _, _, _, info = env.step(A("Left"))
    assert failure(info) == "deadlock_corner"
    assert info["diagnosis"]["extra"]["deadlocked"] and info["action_is_effective"]
    _, _, _, _, info = env.step(A("Down"))  # the flag stays: the level can no longer be solved
    assert info["diagnosis"]["extra"]["deadlocked"] and failure(info) is None


def test_deadlock_freeze():
    env = make(FREEZE)
    _, _, term, _, info = env.step(A("Up"))
    assert failure(info) == "deadlock_freeze" and info["diagnosis"]["extra"]["deadlocked"] and not term


def test_no_progress_loop():
    env = make(OPEN)
    seen = []
    for k in range(8):
        _, _, _, _, info = env.step(A("Left" if k % 2 == 0 else "Right"))
        seen.append(failure(info))
    # the start position comes back after every second move; its (LOOP_REVISITS + 1)-th visit is a loop
    first = 2 * LOOP_REVISITS - 1
    assert seen[:first] == [None] * first and seen[first] == "no_progress_loop"
    assert "circles" in info["diagnosis"]["detail"]
    assert not env.step(A("Left"))[2]  # diagnosed, not ended


def test_loop_window():
    env = make(OPEN, loop_window=3)
    for k in range(10):
        _, _, _, _, info = env.step(A("Left" if k % 2 == 0 else "Right"))
        assert failure(info) is None


def test_repeated_wall_bumps_become_a_loop():
    env = make(LINE)
    kinds = [failure(env.step(A("Up"))[4]) for _ in range(4)]
    assert kinds == ["wall_bump"] * 2 + ["no_progress_loop"] * 2


def test_worst_failure_of_a_turn_wins():
    env = make(JAM, max_actions_per_turn=2)
    _, _, _, _, info = env.step(A("Up", "Right"))  # wall bump, then a blocked box
    assert failure(info) == "box_blocked"
    assert "wall" in info["diagnosis"]["detail"] and "blocked" in info["diagnosis"]["detail"]
    env = make(JAM, max_actions_per_turn=4)
    assert failure(env.step(A("Up", "Up", "Up", "Right"))[4]) == "no_progress_loop"  # loop > box_blocked
    env = make(CORNER, max_actions_per_turn=7)
    info = env.step(A("Up", "Down", "Up", "Down", "Up", "Down", "Left"))[4]
    assert failure(info) == "deadlock_corner" and "circles" in info["diagnosis"]["detail"]  # deadlock > loop


def test_timeout_beats_a_loop():
    env = make(LINE, max_steps=3)
    for _ in range(3):
        _, _, _, trunc, info = env.step(A("Up"))
    assert trunc and failure(info) == "timeout" and "circles" in info["diagnosis"]["detail"]


def test_info_keys_and_state_diff():
    env = SokobanEnv(level=TWO)
    _, info = env.reset(seed=0)
    for k in ("action_is_valid", "action_is_effective", "success", "diagnosis", "actions"):
        assert k in info
    d = info["diagnosis"]
    assert set(d) == {"failure_type", "detail", "state_diff", "progress", "stagnation", "extra"}
    assert set(d["extra"]) == {"boxes_on_target", "num_boxes", "steps", "max_steps", "deadlocked"}
    _, _, _, _, info = env.step(A("Right"))
    assert info["actions"] == ["Right"]
    assert info["diagnosis"]["state_diff"] == {"player": [[1, 1], [1, 2]], "boxes_moved": [[[1, 2], [1, 3]]]}
    assert info["diagnosis"]["extra"] == {
        "boxes_on_target": 1,
        "num_boxes": 2,
        "steps": 1,
        "max_steps": 300,
        "deadlocked": False,
    }


def test_diagnosis_to_dict_matches_dataclass():
    from dataclasses import asdict

    d = Diagnosis("wall_bump", "x", {"player": [[1, 1], [1, 2]]}, 0.5, 2, {"steps": 1})
    assert d.to_dict() == asdict(d)


def test_progress_formula_and_bounds():
    env = make(TWO)
    b = env.board
    assert env.step(A("Down"))[4]["diagnosis"]["progress"] == 0.0  # no box moved yet
    env = make(TWO)
    h0 = b.lower_bound(tuple(sorted(env.state.boxes)))
    info = env.step(A("Right"))[4]
    lb = b.lower_bound(tuple(sorted(env.state.boxes)))
    assert lb < INF and info["diagnosis"]["progress"] == pytest.approx(0.5 * 1 / 2 + 0.5 * (1 - lb / h0))
    assert 0.0 < info["diagnosis"]["progress"] < 1.0


def test_stagnation_counts_turns_without_a_new_best():
    env = make(TWO)
    stag = [env.step(A(m))[4]["diagnosis"]["stagnation"] for m in ("Down", "Up", "Right", "Down")]
    assert stag == [1, 2, 0, 1]
    assert env.step("bad")[4]["diagnosis"]["stagnation"] == 2


def test_state_and_render_xsb():
    env = make(TWO)
    env.step(A("Right"))
    assert env.render_xsb() == "#######\n# @* .#\n#     #\n#  $  #\n#     #\n#######"
    st = env.state
    assert isinstance(st, Level) and st.player == st.idx(1, 2) and st.walls == parse_level(TWO).walls


def test_action_candidates_are_the_four_valid_single_moves():
    env = make(TWO)
    cands = env.action_candidates()
    assert [env.parse_action(c) for c in cands] == [["Up"], ["Down"], ["Left"], ["Right"]]
    for c in cands:  # each is a valid answer in any state
        e = make(TWO)
        assert e.step(c)[4]["action_is_valid"]
    assert TextEnv.action_candidates(env) is None  # the base contract: open-ended unless an env lists them


# --- oracle ----------------------------------------------------------------------------------
def drive(env: SokobanEnv, limit: int = 1000) -> dict:
    for _ in range(limit):
        text = env.oracle_action()
        assert text is not None and env.parse_action(text) is not None
        _, _, term, trunc, info = env.step(text)
        if term or trunc:
            return info
    raise AssertionError("oracle did not finish")


@pytest.mark.parametrize("difficulty, seeds", [("easy", 10), ("medium", 8), ("hard", 5)])
@pytest.mark.parametrize("per_turn", [1, 3])
def test_oracle_solves_within_default_max_steps(difficulty, seeds, per_turn):
    for s in range(seeds):
        env = SokobanEnv(difficulty=difficulty, max_actions_per_turn=per_turn)
        env.reset(seed=s)
        info = drive(env)
        assert info["success"]
        assert env.oracle_action() is None  # solved: nothing left to do


def test_oracle_format():
    env = make(OPEN, max_actions_per_turn=2)
    text = env.oracle_action()
    assert text.startswith("<answer>") and text.endswith("</answer>") and " || " in text


def test_oracle_follows_its_plan_and_replans_after_a_detour(monkeypatch):
    calls = []
    real = env_mod.solve
    monkeypatch.setattr(env_mod, "solve", lambda *a, **k: calls.append(1) or real(*a, **k))
    env = make(OPEN)
    env.step(env.oracle_action())
    env.step(env.oracle_action())
    assert len(calls) == 1  # still on the cached plan
    env.step(A("Up"))
    env.step(A("Up"))  # off the plan
    assert drive(env)["success"] and len(calls) == 2


def test_oracle_none_when_deadlocked_or_out_of_time():
    env = make(CORNER)
    env.step(A("Left"))
    assert env.oracle_action() is None
    assert make(OPEN, oracle_time_limit=0.0).oracle_action() is None


def test_brief_instructions_are_short_and_name_the_format():
    full, brief = SokobanEnv().instructions(), SokobanEnv(brief=True).instructions()
    assert len(brief) < len(full) / 2
    for word in ("<answer>Up</answer>", "Down", "Left", "Right", "pushed"):
        assert word in brief
    assert "||" in SokobanEnv(brief=True, max_actions_per_turn=3).instructions()


def test_statically_unsolvable_level_is_a_clear_error():
    from agentsd.envs.sokoban.level import LevelError

    bad = "#####\n#$ .#\n#  @#\n#####\n"
    with pytest.raises(LevelError, match="level 0 is unsolvable"):
        SokobanEnv(level=bad)
    SokobanEnv(level=bad, check_solvable=False).reset(seed=0)


# --- observation formats --------------------------------------------------------------------------
def test_cells_format_spaces_cells_and_uses_single_char_box_on_target():
    env = make("######\n#@*$.#\n######", grid_format="cells")
    obs = env._obs()
    legend, *rows = obs.split("\n")
    assert rows == ["# # # # # #", "# P * X O #", "# # # # # #"]
    assert "* box on target" in legend and "√" not in obs
    # A user's symbol wins over the format's default.
    env = make("######\n#@*$.#\n######", grid_format="cells", symbols={"box_on_target": "B"})
    assert env._obs().split("\n")[2] == "# P B X O #"
    # The default stays compact, √ and all.
    assert make("######\n#@*$.#\n######")._obs().split("\n")[2] == "#P√XO#"


def test_positions_lines_count_from_one_at_the_top_left():
    env = make("######\n#@$ .#\n#  * #\n######", positions=True)
    lines = env._obs().split("\n")[-4:]
    assert lines == ["You are at row 2 column 2.", "Box at row 2 column 3.",
                     "Box at row 3 column 4 (on a target).", "Empty target at row 2 column 5."]
    obs, *_ = env.step(A("Right"))
    assert obs.split("\n")[-4:] == ["You are at row 2 column 3.", "Box at row 2 column 4.",
                                    "Box at row 3 column 4 (on a target).", "Empty target at row 2 column 5."]
    assert "You are at" not in make(LINE)._obs()


def test_bad_grid_format_names_the_choices():
    with pytest.raises(ValueError, match="grid_format must be one of compact, cells"):
        SokobanEnv(grid_format="spaced")
    with pytest.raises(ValueError, match="no symbol may be a space"):
        SokobanEnv(grid_format="cells", symbols={"floor": " "})


@pytest.mark.parametrize("difficulty", ["easy", "medium", "hard"])
def test_cells_format_is_one_token_per_cell_for_the_default_model(difficulty, embedded_model_dir):
    """Every row of generated levels of every preset, every state symbol: one token per cell with the
    default model's tokenizer (the compact grid is not: the reason the format exists)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(embedded_model_dir)
    env = SokobanEnv(difficulty=difficulty, grid_format="cells")
    seen: set[str] = set()
    for seed in range(6):
        env.reset(seed=seed)
        for move in ("Up", "Left", "Down", "Right", "Right", "Up"):  # a few states, boxes moved too
            grid = env._grid()
            for row in grid.split("\n"):
                cells = row.split(" ")
                ids = tok(row, add_special_tokens=False).input_ids
                assert len(ids) == len(cells), (row, [tok.decode([i]) for i in ids])
                seen.update(cells)
            # rows are separated by one newline token
            assert len(tok(grid, add_special_tokens=False).input_ids) == grid.count(" ") + 2 * grid.count("\n") + 1
            env.step(A(move))
    for sym in env.symbols.values():  # also symbols the walk did not reach (box on target, player on target)
        assert len(tok(f"# {sym} #", add_special_tokens=False).input_ids) == 3, sym
    compact = SokobanEnv(difficulty=difficulty)
    compact.reset(seed=0)
    rows = compact._grid().split("\n")
    assert any(len(tok(r, add_special_tokens=False).input_ids) != len(r) for r in rows)

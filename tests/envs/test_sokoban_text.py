"""What the agent reads and writes: answer parsing, observation text, symbols, instructions."""

import time

import pytest

from agentsd.envs.sokoban.env import SokobanEnv
from agentsd.envs.sokoban.text import (
    DEFAULT_SYMBOLS,
    check_symbols,
    explain_invalid,
    format_answer,
    parse_answer,
)

LINE = "#####\n#@$.#\n#####"
OUTSIDE = "  ####\n###  #\n#+$* #\n# $. #\n######"


@pytest.mark.parametrize(
    "text, moves",
    [
        ("<answer>Up</answer>", ["Up"]),
        ("<answer> up </answer>", ["Up"]),
        ("<ANSWER>LEFT</ANSWER>", ["Left"]),
        ("<Answer>\n  dOwN\t</aNsWeR>", ["Down"]),
        ("The box is to my right, so <answer>Right</answer>.", ["Right"]),
        ("<answer>Up</answer> no wait <answer>Left</answer>", ["Left"]),  # the last block counts
        ("<answer>nonsense</answer> then <answer>Down</answer>", ["Down"]),
        ("<answer>Right</answer> trailing <answer>unclosed", ["Right"]),
        ("ünïcödé thoughts → <answer>Up</answer> ✓", ["Up"]),
    ],
)
def test_parse_valid(text, moves):
    assert parse_answer(text, 1) == moves
    assert SokobanEnv().parse_action(text) == moves


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Up",
        "up",
        "garbage",
        "<answer></answer>",
        "<answer>   </answer>",
        "<answer>Upp</answer>",
        "<answer>U</answer>",
        "<answer>Up Left</answer>",
        "<answer>Up.</answer>",
        "<answer>Up",
        "Up</answer>",
        "</answer>Up<answer>",
        "<answer>上</answer>",
        "<answer>Ｕｐ</answer>",
        "<answer>Up || Left</answer>",  # two moves, but only one allowed by default
        "<answer>" + "x" * 10_000 + "</answer>",
    ],
)
def test_parse_invalid(text):
    assert parse_answer(text, 1) is None


def test_parse_non_string():
    assert parse_answer(None, 1) is None  # type: ignore[arg-type]
    assert parse_answer(b"<answer>Up</answer>", 1) is None  # type: ignore[arg-type]


def test_parse_several_moves():
    assert parse_answer("<answer>Up || Left</answer>", 2) == ["Up", "Left"]
    assert parse_answer("<answer>up||down|| RIGHT </answer>", 3) == ["Up", "Down", "Right"]
    assert parse_answer("<answer>Up || Left || Down</answer>", 2) is None  # too many: invalid, not cut
    assert parse_answer("<answer>Up || </answer>", 2) is None
    assert parse_answer("<answer>Up | Left</answer>", 2) is None
    assert SokobanEnv(max_actions_per_turn=4).parse_action("<answer>Up||Up||Up||Up</answer>") == ["Up"] * 4


def test_parse_huge_inputs_fast():
    t = time.perf_counter()
    assert parse_answer("a" * 1_000_000, 1) is None
    assert parse_answer("<answer>" * 100_000, 1) is None
    assert parse_answer("<answer>" * 100_000 + "</answer>", 1) is None
    assert parse_answer("x" * 1_000_000 + "<answer>Up</answer>", 1) == ["Up"]
    assert time.perf_counter() - t < 1.0


@pytest.mark.parametrize(
    "text, words",
    [
        ("go up", "no <answer>"),
        ("<answer>Up || Left</answer>", "2 moves in one answer, at most 1"),
        ("<answer>jump</answer>", "'jump' is not a move"),
        ("<answer></answer>", "'' is not a move"),
        ("<answer>" + "x" * 500 + "</answer>", "is not a move"),
        (None, "not text"),
        ("<answer>" + " " * 100 + "Up</answer>", "longer than"),
    ],
)
def test_explain_invalid(text, words):
    msg = explain_invalid(text, 1)
    assert words in msg and "<answer>Up</answer>" in msg and "\n" not in msg and len(msg) < 200


def test_format_answer_round_trips():
    assert format_answer(["Up"]) == "<answer>Up</answer>"
    assert format_answer(["Up", "Left"]) == "<answer>Up || Left</answer>"
    assert parse_answer(format_answer(["Down", "Right", "Up"]), 3) == ["Down", "Right", "Up"]


def test_observation_is_legend_then_grid():
    env = SokobanEnv(level=LINE)
    obs, _ = env.reset(seed=0)
    first, *rows = obs.split("\n")
    assert first == "Legend: # wall, _ floor, O target, X box, √ box on target, P player, S player on target"
    assert rows == ["#####", "#PXO#", "#####"]


def test_outside_cells_drawn_as_walls_and_on_target_symbols():
    env = SokobanEnv(level=OUTSIDE)
    obs, _ = env.reset(seed=0)
    assert obs.split("\n")[1:] == ["######", "###__#", "#SX√_#", "#_XO_#", "######"]


def test_custom_symbols():
    env = SokobanEnv(level=LINE, symbols={"box": "B", "floor": ".", "target": "T"}, render_mode="ansi")
    obs, _ = env.reset(seed=0)
    assert "B box" in obs and ". floor" in obs and "T target" in obs
    assert env.render() == "#####\n#PBT#\n#####"
    assert "B" in env.instructions()


@pytest.mark.parametrize(
    "bad", [{"crate": "B"}, {"box": "BB"}, {"box": ""}, {"box": "\n"}, {"box": "#"}, {"box": 1}]
)
def test_bad_symbols(bad):
    with pytest.raises(ValueError):
        check_symbols(bad)
    with pytest.raises(ValueError):
        SokobanEnv(symbols=bad)


def test_default_symbols_distinct_single_chars():
    assert all(len(v) == 1 for v in DEFAULT_SYMBOLS.values())
    assert len(set(DEFAULT_SYMBOLS.values())) == len(DEFAULT_SYMBOLS)


def test_render_modes():
    env = SokobanEnv(level=LINE, render_mode="ansi")
    obs, _ = env.reset(seed=0)
    assert env.render() == obs.split("\n", 1)[1]
    env = SokobanEnv(level=LINE)
    env.reset(seed=0)
    assert env.render() is None
    with pytest.raises(ValueError):
        SokobanEnv(render_mode="human")


def test_instructions_seed_independent_and_describe_format():
    env = SokobanEnv()
    before = env.instructions()
    env.reset(seed=1)
    assert env.instructions() == before
    env.reset(seed=2)
    assert env.instructions() == before
    assert "<answer>Up</answer>" in before and "||" not in before
    assert "Legend:" in before and "push" in before.lower()
    multi = SokobanEnv(max_actions_per_turn=3).instructions()
    assert "<answer>Up || Left</answer>" in multi and "up to 3 moves" in multi
    assert "-0.1 per move" in before and "+10" in before


def test_task_description():
    assert SokobanEnv().task_description() == "Push the 1 box onto the 1 target."
    env = SokobanEnv(difficulty="medium")
    assert env.task_description() == "Push the 2 boxes onto the 2 targets."
    env.reset(seed=0)
    assert env.task_description() == "Push the 2 boxes onto the 2 targets."

"""Level representation and XSB reading / writing."""

from pathlib import Path

import pytest

from agentsd.envs.sokoban.level import Level, LevelError, load_levels, parse_level, render_xsb

SIMPLE = "#####\n#@$.#\n#####"
ALL_CHARS = "  ####\n###  #\n#+$* #\n# $. #\n######"  # player on goal, box on goal, outside space

BOXOBAN = """; 0
##########
#  ###   #
#  ##  $.#
#    #   #
#  . $   #
#  ###   #
#   @    #
#        #
#        #
##########

; 1
##########
##########
#####  ###
#### .$ ##
#### $  ##
####  . ##
#### @  ##
##########
##########
##########
"""


def test_parse_simple_fields():
    lv = parse_level(SIMPLE)
    assert (lv.h, lv.w) == (3, 5)
    assert lv.player == lv.idx(1, 1)
    assert lv.boxes == {lv.idx(1, 2)} and lv.goals == {lv.idx(1, 3)}
    assert lv.rc(lv.player) == (1, 1)
    assert lv.num_boxes == 1 and not lv.solved
    assert lv.idx(0, 0) in lv.walls and lv.idx(1, 1) not in lv.walls


def test_player_and_box_on_goal():
    lv = parse_level(ALL_CHARS)
    assert lv.player in lv.goals
    assert lv.idx(2, 3) in lv.boxes and lv.idx(2, 3) in lv.goals
    assert len(lv.boxes) == len(lv.goals) == 3


@pytest.mark.parametrize("text", [SIMPLE, ALL_CHARS, "######\n#    #\n# $@ #\n#.   #\n######"])
def test_round_trip_exact(text):
    assert render_xsb(parse_level(text)) == text
    assert render_xsb(load_levels(text)[0]) == text
    assert str(parse_level(text)) == text


@pytest.mark.parametrize("floor", ["-", "_"])
def test_floor_variants(floor):
    text = "######\n#    #\n# $@ #\n#.   #\n######"
    assert parse_level(text.replace(" ", floor)) == parse_level(text)
    assert render_xsb(parse_level(text), floor=floor) == text.replace(" ", floor)


def test_boxoban_multi_level():
    levels = load_levels(BOXOBAN)
    assert len(levels) == 2
    grids = [b.strip("\n").split("\n", 1)[1] for b in BOXOBAN.split("\n\n")]
    for lv, grid in zip(levels, grids, strict=True):
        assert (lv.h, lv.w) == (10, 10)
        assert render_xsb(lv) == grid.strip("\n")
        assert len(lv.boxes) == 2


def test_blank_line_separated_and_crlf():
    text = SIMPLE + "\n\n\n" + ALL_CHARS + "\n"
    assert [render_xsb(x) for x in load_levels(text)] == [SIMPLE, ALL_CHARS]
    assert [render_xsb(x) for x in load_levels(text.replace("\n", "\r\n"))] == [SIMPLE, ALL_CHARS]


def test_load_from_path(tmp_path: Path):
    p = tmp_path / "levels.xsb"
    p.write_text(BOXOBAN)
    assert load_levels(p) == load_levels(str(p)) == load_levels(BOXOBAN)


def test_with_state_and_solved():
    lv = parse_level(SIMPLE)
    done = lv.with_state([lv.idx(1, 3)], lv.idx(1, 2))
    assert done.solved and done.walls is lv.walls
    assert render_xsb(done) == "#####\n# @*#\n#####"


def test_level_is_immutable():
    lv = parse_level(SIMPLE)
    with pytest.raises(AttributeError):
        lv.player = 0  # type: ignore[misc]
    assert isinstance(hash(lv), int)


@pytest.mark.parametrize(
    "text, words",
    [
        ("#####\n# $.#\n#####", "no player"),
        ("######\n#@$.@#\n######", "2 players"),
        ("######\n#@$$.#\n######", "2 boxes but 1 goals"),
        ("#######\n#@$.. #\n#######", "1 boxes but 2 goals"),
        ("#####\n#@  #\n#####", "no boxes"),
        ("#####\n#@$x#\n#####", "unknown character 'x' at row 1, col 3"),
        ("#####\n#@$.#\n#\t  #\n#####", "unknown character '\\t' at row 2, col 1"),
        ("#####\n #@$.\n#####", "not closed"),
        ("", "no level"),
        ("; 0\n\n; 1\n", "no level"),
    ],
)
def test_malformed_levels(text, words):
    with pytest.raises(LevelError) as e:
        load_levels(text if "\n" in text or "#" in text else text + "\n")
    msg = str(e.value)
    assert words in msg and "\n" not in msg
    assert isinstance(e.value, ValueError)


def test_error_names_the_level_in_multi_level_input():
    with pytest.raises(LevelError, match=r"level 1: no player"):
        load_levels(SIMPLE + "\n\n#####\n# $.#\n#####")


def test_unreadable_file(tmp_path: Path):
    with pytest.raises(LevelError, match="cannot read level file"):
        load_levels(tmp_path / "missing.xsb")
    with pytest.raises(LevelError, match="cannot read level file"):
        load_levels("no/such/file.txt")
    bad = tmp_path / "bad.xsb"
    bad.write_bytes(b"\xff\xfe\x00#")
    with pytest.raises(LevelError, match="cannot read level file"):
        load_levels(bad)


def test_construct_directly():
    lv = Level(3, 5, frozenset({0, 1, 2, 3, 4, 5, 9, 10, 11, 12, 13, 14}), frozenset({8}), frozenset({7}), 6)
    assert render_xsb(lv) == SIMPLE

"""Reverse-play level generation: deterministic per rng, solvable, non-trivial."""

import numpy as np
import pytest

from agentsd.envs.sokoban.board import Board
from agentsd.envs.sokoban.generator import PRESETS, generate, generate_preset
from agentsd.envs.sokoban.level import load_levels, render_xsb
from agentsd.envs.sokoban.solver import solve_pushes


@pytest.mark.parametrize("difficulty", sorted(PRESETS))
def test_deterministic_per_seed(difficulty):
    a = generate_preset(np.random.default_rng(7), difficulty)
    b = generate_preset(np.random.default_rng(7), difficulty)
    assert a == b


@pytest.mark.parametrize("difficulty", sorted(PRESETS))
def test_seeds_differ(difficulty):
    levels = {render_xsb(generate_preset(np.random.default_rng(s), difficulty)) for s in range(20)}
    assert len(levels) >= 18


def test_uses_only_the_given_rng():
    np.random.seed(0)
    a = generate_preset(np.random.default_rng(3), "medium")
    np.random.seed(1)
    b = generate_preset(np.random.default_rng(3), "medium")
    assert a == b


@pytest.mark.parametrize("difficulty", sorted(PRESETS))
def test_presets_shape_and_quality(difficulty):
    p = PRESETS[difficulty]
    pushes = []
    for s in range(30):
        lv = generate_preset(np.random.default_rng(s), difficulty)
        assert (lv.h, lv.w) == p.size and lv.num_boxes == p.boxes == len(lv.goals)
        assert not lv.boxes & lv.goals, "no box should start on a goal"
        assert lv.player not in lv.boxes and lv.player not in lv.walls
        # the border is wall, so the level is closed; it also survives an XSB round trip
        assert all(lv.idx(r, c) in lv.walls for r in range(lv.h) for c in (0, lv.w - 1))
        assert load_levels(render_xsb(lv))[0] == lv
        plan = solve_pushes(lv, Board(lv))
        assert plan is not None and len(plan) >= 1
        pushes.append(len(plan))
    assert np.mean(pushes) >= 2 * p.boxes * 0.9  # non-trivial on average


def test_fill_controls_room_size():
    def floor(fill):
        return np.mean(
            [100 - len(generate(np.random.default_rng(s), size=10, fill=fill).walls) for s in range(20)]
        )

    assert floor((0.3, 0.35)) < floor((0.8, 0.9))


def test_presets_named():
    assert PRESETS["easy"].size == (6, 6) and PRESETS["easy"].boxes == 1
    assert PRESETS["medium"].size == (8, 8) and PRESETS["medium"].boxes == 2
    assert PRESETS["hard"].size == (10, 10) and PRESETS["hard"].boxes == 3


def test_overrides_and_rectangular_size():
    lv = generate_preset(np.random.default_rng(0), "easy", size=(7, 9), boxes=2, search_depth=10)
    assert (lv.h, lv.w) == (7, 9) and lv.num_boxes == 2
    lv = generate(np.random.default_rng(0), size=8, boxes=2)
    assert (lv.h, lv.w) == (8, 8)


def test_search_depth_caps_pushes():
    for s in range(10):
        lv = generate(np.random.default_rng(s), size=8, boxes=2, search_depth=3, max_states=5000)
        assert len(solve_pushes(lv, Board(lv))) <= 3


@pytest.mark.parametrize(
    "kwargs",
    [{"size": 3}, {"size": 6, "boxes": 0}, {"size": 5, "boxes": 9}, {"size": 8, "fill": (0.8, 0.5)}],
)
def test_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        generate(np.random.default_rng(0), **kwargs)
    with pytest.raises(ValueError, match="difficulty"):
        generate_preset(np.random.default_rng(0), "impossible")

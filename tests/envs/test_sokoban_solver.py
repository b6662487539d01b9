"""Board analysis (dead squares, push distances, freeze deadlocks) and the A* solver."""

import time

import numpy as np
import pytest

from agentsd.envs.sokoban.board import INF, Board
from agentsd.envs.sokoban.env import SokobanEnv
from agentsd.envs.sokoban.generator import generate, generate_preset
from agentsd.envs.sokoban.level import Level, parse_level
from agentsd.envs.sokoban.solver import solve, solve_pushes

HAND = {
    "line": "#####\n#@$.#\n#####",
    "microban1": "####\n# .#\n#  ###\n#*@  #\n#  $ #\n#  ###\n####",
    "microban2": "######\n#    #\n# #@ #\n# $* #\n# .* #\n#    #\n######",
    "two_rooms": "########\n#  .   #\n# $##$ #\n#@ ##. #\n########",
    "boxoban": (
        "##########\n#  ###   #\n#  ##  $.#\n#    #   #\n#  . $   #\n"
        "#  ###   #\n#   @    #\n#        #\n#        #\n##########"
    ),
}
# A box wedged in a one-wide gap: it can go up, but then nobody can get behind it.
TRAPPED = "######\n#.   #\n##$###\n#  @ #\n######"


def replay(level: Level, moves: list[str]) -> bool:
    """Play moves through the env one turn at a time; True if it ends solved exactly at the end."""
    env = SokobanEnv(level=level, max_steps=10**6)
    env.reset(seed=0)
    for k, m in enumerate(moves):
        _, _, terminated, _, info = env.step(f"<answer>{m}</answer>")
        assert info["action_is_valid"]
        if terminated:
            return info["success"] and k == len(moves) - 1
    return False


@pytest.mark.parametrize("name", sorted(HAND))
def test_solves_hand_levels(name):
    lv = parse_level(HAND[name])
    plan = solve(lv, time_limit=5.0)
    assert plan is not None and set(plan) <= {"Up", "Down", "Left", "Right"}
    assert replay(lv, plan)


def test_line_plan_is_one_push():
    assert solve(parse_level(HAND["line"])) == ["Right"]


def test_push_optimal_against_bfs_depth():
    # The generator's BFS depth is the exact optimal push count; A* must match it.
    for seed in range(30):
        lv = generate_preset(np.random.default_rng(seed), "medium")
        pushes = solve_pushes(lv, Board(lv))
        assert pushes is not None
        exhaustive = _bfs_pushes(lv)
        assert len(pushes) == exhaustive


def _bfs_pushes(lv: Level) -> int:
    """Plain breadth-first search over pushes (no pruning): the reference optimum."""
    b = Board(lv)
    start = (tuple(sorted(lv.boxes)), min(b.distances(lv.player, lv.boxes)))
    frontier, seen, depth = [(start[0], lv.player)], {start}, 0
    while frontier:
        nxt = []
        for boxes, p in frontier:
            if all(b.goal[x] for x in boxes):
                return depth
            region = b.distances(p, boxes)
            for i, x in enumerate(boxes):
                for s in b.steps:
                    t = x + s
                    if x - s in region and not b.wall[t] and t not in boxes:
                        nb = tuple(sorted(boxes[:i] + (t,) + boxes[i + 1 :]))
                        key = (nb, min(b.distances(x, nb)))
                        if key not in seen:
                            seen.add(key)
                            nxt.append((nb, x))
        frontier, depth = nxt, depth + 1
    return -1


@pytest.mark.parametrize("difficulty, n", [("easy", 60), ("medium", 60), ("hard", 50)])
def test_solves_generated_levels(difficulty, n):
    times = []
    for seed in range(n):
        lv = generate_preset(np.random.default_rng(10_000 + seed), difficulty)
        t = time.perf_counter()
        plan = solve(lv, time_limit=10.0)
        times.append(time.perf_counter() - t)
        assert plan is not None, f"seed {seed} unsolved"
        assert replay(lv, plan)
    assert float(np.median(times)) < 0.1  # milliseconds in practice; loose for slow CI


def test_four_box_levels():
    for seed in range(5):
        lv = generate(np.random.default_rng(seed), size=10, boxes=4, search_depth=60, max_states=1500)
        plan = solve(lv, time_limit=10.0)
        assert plan is not None and replay(lv, plan)


def test_unsolvable_returns_none():
    corner = parse_level("#####\n#$  #\n# @.#\n#####")
    assert solve(corner) is None
    assert solve(parse_level(TRAPPED), time_limit=5.0) is None  # needs search, not just static checks


def test_time_and_node_limits_return_none():
    lv = parse_level(HAND["boxoban"])
    assert solve(lv, time_limit=0.0) is None
    assert solve(lv, max_nodes=1) is None
    assert solve(lv) is not None


def test_boxes_sealed_off_from_the_player():
    on_goal = parse_level("#####\n#@$.#\n#####*")  # a box on a goal outside the walls, at the edge
    assert solve(on_goal) == ["Right"]
    env = SokobanEnv(level=on_goal)
    env.reset(seed=0)
    assert env.step("<answer>Right</answer>")[2]
    off_goal = parse_level("#####.\n#@$.#\n#####$")
    assert solve(off_goal) is None


def test_already_solved_gives_empty_plan():
    assert solve(parse_level("#####\n#@ *#\n#####")) == []


def test_dead_squares_and_distances():
    lv = parse_level("######\n#    #\n# $@ #\n#   .#\n######")
    b = Board(lv)
    dead = {lv.rc(i) for i in range(lv.h * lv.w) if b.dead[i]}
    # Corners and the wall-side rows/columns without a goal are dead; the goal's row and column are not.
    assert {(1, 1), (1, 4), (3, 1), (2, 1), (1, 2), (1, 3)} <= dead
    assert not dead & {(3, 4), (3, 2), (3, 3), (2, 4), (2, 2), (2, 3)}
    g = lv.idx(3, 4)
    d = b.dist[b.goals.index(g)]
    assert d[g] == 0 and d[lv.idx(2, 2)] == 3 and d[lv.idx(1, 1)] >= INF


def test_lower_bound_is_assignment():
    lv = parse_level("#######\n#.   .#\n#  $$ #\n#  @  #\n#######")
    b = Board(lv)
    boxes = tuple(sorted(lv.boxes))
    # (2,3) -> (1,1): up, left, left; (2,4) -> (1,5): up, right. Five pushes, and the bound knows it.
    assert b.lower_bound(boxes) == sum(min(d[x] for d in b.dist) for x in boxes)
    assert b.lower_bound(boxes) == len(solve_pushes(lv, b))


def test_freeze_deadlock():
    lv = parse_level("#######\n#.$  .#\n#  $  #\n#  @  #\n#######")
    b = Board(lv)
    a, c = lv.idx(1, 2), lv.idx(1, 3)
    assert b.freeze_deadlock({a, c}, c)  # two boxes side by side against the top wall, off target
    assert not b.freeze_deadlock({a, lv.idx(2, 3)}, lv.idx(2, 3))
    on = parse_level("#######\n#**   #\n#     #\n#  @  #\n#######")
    bo = Board(on)
    x, y = on.idx(1, 1), on.idx(1, 2)
    assert bo.frozen({x, y}, y) is not None  # frozen ...
    assert not bo.freeze_deadlock({x, y}, y)  # ... but on targets, so not a deadlock
    square = parse_level("########\n#      #\n# $$   #\n# $$  @#\n#....  #\n########")
    bs = Board(square)
    four = {square.idx(2, 2), square.idx(2, 3), square.idx(3, 2), square.idx(3, 3)}
    assert bs.freeze_deadlock(four, square.idx(2, 3))  # a 2x2 block freezes anywhere

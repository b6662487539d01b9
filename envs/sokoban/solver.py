"""A push-level A* Sokoban solver.

Search nodes are (sorted box cells, player region); the region is named by its smallest cell, so all
player positions that can walk to each other are one node. Edges are single pushes (cost 1), so the
plan is optimal in pushes; walks between pushes are shortest walks, added when the plan is written.

Pruning: pushes onto simple-deadlock squares, pushes that freeze a box off a goal, and states whose
box-to-goal assignment is impossible. The heuristic is the min-cost assignment of boxes to goals by
push distance, which is consistent (one push changes it by at most 1), so the first goal popped is
push-optimal.
"""

from __future__ import annotations

import heapq
import time

from agentsd.envs.sokoban.board import INF, MOVES, Board
from agentsd.envs.sokoban.level import Level

#: Check the clock once every this many expansions (perf_counter is not free).
_CLOCK_EVERY = 256


def solve(
    level: Level, time_limit: float = 10.0, board: Board | None = None, max_nodes: int | None = None
) -> list[str] | None:
    """Moves ("Up", "Down", "Left", "Right") that solve ``level``, or None when it is unsolvable or
    the ``time_limit`` (seconds) or ``max_nodes`` runs out. ``board`` may be reused across states of
    the same layout."""
    board = board or Board(level)
    pushes = solve_pushes(level, board, time_limit, max_nodes)
    if pushes is None:
        return None
    return expand_pushes(level, board, pushes)


def solve_pushes(
    level: Level, board: Board, time_limit: float = 10.0, max_nodes: int | None = None
) -> list[tuple[int, int]] | None:
    """Push-optimal sequence of pushes ``(box cell, step index)``, or None."""
    deadline = time.perf_counter() + time_limit
    goal, dead, wall, steps = board.goal, board.dead, board.wall, board.steps
    start = tuple(sorted(level.boxes))
    if any(dead[b] for b in start) or any(board.freeze_deadlock(start, b) for b in start):
        return None
    h0 = board.lower_bound(start)
    if h0 >= INF:
        return None
    # Heap entries: (f, -g, moves, tie, boxes, player, parent node, push). Among equal f, deeper
    # first (reaches the goal sooner), then fewer player moves (shorter plans for the same pushes).
    heap = [(h0, 0, 0, 0, start, level.player, -1, None)]
    closed: dict[tuple[tuple[int, ...], int], int] = {}
    nodes: list[tuple[int, tuple[int, int] | None]] = []  # (parent node, push that led here)
    tie = 0
    while heap:
        _, ng, mv, _, boxes, player, parent, push = heapq.heappop(heap)
        region = board.distances(player, boxes)
        key = (boxes, min(region))
        if key in closed:
            continue
        node = len(nodes)
        closed[key] = node
        nodes.append((parent, push))
        if all(goal[b] for b in boxes):
            return _pushes_to(nodes, node)
        if node % _CLOCK_EVERY == 0 and time.perf_counter() > deadline:
            return None
        if max_nodes is not None and node >= max_nodes:
            return None
        g = 1 - ng
        for bi, b in enumerate(boxes):
            for k, s in enumerate(steps):
                t = b + s
                walk = region.get(b - s)
                if walk is None or wall[t] or dead[t] or t in boxes:
                    continue
                nb = tuple(sorted(boxes[:bi] + (t,) + boxes[bi + 1 :]))
                if board.freeze_deadlock(nb, t):
                    continue
                hv = board.lower_bound(nb)
                if hv >= INF:
                    continue
                tie += 1
                heapq.heappush(heap, (g + hv, -g, mv + walk + 1, tie, nb, b, node, (b, k)))
    return None


def _pushes_to(nodes: list[tuple[int, tuple[int, int] | None]], node: int) -> list[tuple[int, int]]:
    out = []
    while node >= 0:
        parent, push = nodes[node]
        if push is not None:
            out.append(push)
        node = parent
    return out[::-1]


def expand_pushes(level: Level, board: Board, pushes: list[tuple[int, int]]) -> list[str]:
    """Player moves for a push plan: a shortest walk to behind each box, then the push."""
    boxes, player, moves = set(level.boxes), level.player, []
    for b, k in pushes:
        s = board.steps[k]
        walk = board.walk(player, b - s, boxes)
        if walk is None:  # cannot happen for a plan from solve_pushes
            raise RuntimeError(f"plan step unreachable: box {b}, move {MOVES[k]}")
        moves.extend(MOVES[j] for j in walk)
        moves.append(MOVES[k])
        boxes.remove(b)
        boxes.add(b + s)
        player = b
    return moves

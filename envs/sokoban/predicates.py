"""The Sokoban predicate vocabulary: what guardrails can check before a move and skills after it.

"before" predicates are risks of a proposed answer (True = the risk is present); each matches one
:class:`SokobanFailure` that ``step`` would report for it (:data:`FAILURE_PREDICATES`). "after"
predicates verify the current position. :class:`SokobanEnv` evaluates them with ``check``; the move
simulation itself lives next to ``SokobanEnv._play``, which it mirrors.
"""

from __future__ import annotations

from agentsd.envs.base import Predicate
from agentsd.envs.sokoban.board import Board
from agentsd.envs.sokoban.text import SokobanFailure

F = SokobanFailure

_ALL = (
    Predicate("invalid_format", "the answer text does not parse into moves", "before"),
    Predicate("move_into_wall", "a move walks into a wall, so nothing moves", "before"),
    Predicate(
        "push_blocked_box", "a move pushes a box into a wall or another box, so nothing moves", "before"
    ),
    Predicate(
        "push_into_dead_square",
        "a move pushes a box onto a non-target square from which no target can be reached",
        "before",
    ),
    Predicate(
        "push_freezes_box",
        "a move pushes a box so that boxes off target can never move again (not a dead square)",
        "before",
    ),
    Predicate(
        "revisits_recent_position",
        "a move returns to a position already seen too often within the recent moves (a loop)",
        "before",
    ),
    Predicate("solved", "every box is on a target", "after"),
    Predicate(
        "boxes_on_target_at_least",
        "at least n boxes are on targets",
        "after",
        {"n": "int, number of boxes"},
    ),
    Predicate("no_deadlock", "no box is on a dead square and no box is frozen off target", "after"),
)

#: The vocabulary, by name.
PREDICATES: dict[str, Predicate] = {p.name: p for p in _ALL}

#: Failure type value -> the "before" predicate that detects it (timeout has none).
FAILURE_PREDICATES: dict[str, str] = {
    F.INVALID_FORMAT.value: "invalid_format",
    F.WALL_BUMP.value: "move_into_wall",
    F.BOX_BLOCKED.value: "push_blocked_box",
    F.DEADLOCK_CORNER.value: "push_into_dead_square",
    F.DEADLOCK_FREEZE.value: "push_freezes_box",
    F.NO_PROGRESS_LOOP.value: "revisits_recent_position",
}

#: "before" predicate name -> the failure it detects.
RISKS: dict[str, SokobanFailure] = {v: F(k) for k, v in FAILURE_PREDICATES.items()}


def deadlocked(board: Board, boxes) -> bool:
    """True if some box is on a dead square or frozen off target (the level can no longer be solved)."""
    dead = board.dead
    return any(dead[x] for x in boxes) or any(board.freeze_deadlock(boxes, x) for x in boxes)

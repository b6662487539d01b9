"""Sokoban levels: an immutable :class:`Level` and XSB reading/writing.

Cells are flat indices ``i = row * w + col`` (0-based) so the env, generator and solver can work on
plain ints; :meth:`Level.rc` and :meth:`Level.idx` convert. XSB characters: ``#`` wall, ``@`` player,
``+`` player on goal, ``$`` box, ``*`` box on goal, ``.`` goal, and `` ``, ``-`` or ``_`` floor.

``render_xsb(load_levels(text)[0]) == text`` for a *normalized* single level: floor written as a
space, no trailing spaces, no trailing newline.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

FLOOR_CHARS = " -_"
XSB_CHARS = "#@+$*." + FLOOR_CHARS


class LevelError(ValueError):
    """Malformed level input; the message is one line naming the problem."""


@dataclass(frozen=True, slots=True)
class Level:
    """A Sokoban position: a fixed layout (walls, goals) plus the movable part (boxes, player)."""

    h: int
    w: int
    walls: frozenset[int]
    goals: frozenset[int]
    boxes: frozenset[int]
    player: int

    def rc(self, i: int) -> tuple[int, int]:
        return divmod(i, self.w)

    def idx(self, r: int, c: int) -> int:
        return r * self.w + c

    @property
    def num_boxes(self) -> int:
        return len(self.boxes)

    @property
    def solved(self) -> bool:
        return self.boxes <= self.goals

    def with_state(self, boxes: Iterable[int], player: int) -> Level:
        """The same layout with other box and player positions."""
        return Level(self.h, self.w, self.walls, self.goals, frozenset(boxes), player)

    def __str__(self) -> str:
        return render_xsb(self)


def render_xsb(level: Level, floor: str = " ") -> str:
    """Write a level (or a state, which is also a :class:`Level`) as XSB text."""
    w = level.w
    cells = [floor] * (level.h * w)
    for i in level.walls:
        cells[i] = "#"
    for i in level.goals:
        cells[i] = "."
    for i in level.boxes:
        cells[i] = "*" if i in level.goals else "$"
    cells[level.player] = "+" if level.player in level.goals else "@"
    # Trailing floor is dropped, as XSB files do; rows stay ragged rather than padded.
    rows = ("".join(cells[r * w : (r + 1) * w]).rstrip(floor) for r in range(level.h))
    return "\n".join(rows)


def parse_level(text: str | list[str], name: str = "level") -> Level:
    """Parse one level (its grid lines only) into a :class:`Level`; raise :class:`LevelError`."""
    lines = text.splitlines() if isinstance(text, str) else list(text)
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise LevelError(f"{name}: empty level")
    h, w = len(lines), max(len(line) for line in lines)
    walls, goals, boxes, players = set(), set(), set(), []
    for r, line in enumerate(lines):
        for c, ch in enumerate(line):
            i = r * w + c
            if ch == "#":
                walls.add(i)
            elif ch in "@+":
                players.append(i)
            elif ch == "$":
                boxes.add(i)
            elif ch not in XSB_CHARS:
                raise LevelError(f"{name}: unknown character {ch!r} at row {r}, col {c}")
            if ch in "+*.":
                goals.add(i)
            if ch == "*":
                boxes.add(i)
    if not players:
        raise LevelError(f"{name}: no player ('@' or '+')")
    if len(players) > 1:
        where = ", ".join("row {}, col {}".format(*divmod(p, w)) for p in players)
        raise LevelError(f"{name}: {len(players)} players (at {where}); a level has exactly one")
    if not boxes:
        raise LevelError(f"{name}: no boxes")
    if len(boxes) != len(goals):
        raise LevelError(f"{name}: {len(boxes)} boxes but {len(goals)} goals; they must be equal")
    level = Level(h, w, frozenset(walls), frozenset(goals), frozenset(boxes), players[0])
    leak = _edge_leak(level)
    if leak is not None:
        r, c = level.rc(leak)
        raise LevelError(f"{name}: not closed by walls (the player can reach the edge at row {r}, col {c})")
    return level


def _edge_leak(level: Level) -> int | None:
    """A grid-edge cell the player can reach (walking through boxes), or None if walls enclose it."""
    h, w, walls = level.h, level.w, level.walls
    seen, stack = {level.player}, [level.player]
    while stack:
        i = stack.pop()
        r, c = divmod(i, w)
        if r in (0, h - 1) or c in (0, w - 1):
            return i
        for j in (i - w, i + w, i - 1, i + 1):
            if j not in walls and j not in seen:
                seen.add(j)
                stack.append(j)
    return None


def load_levels(source: str | os.PathLike) -> list[Level]:
    """Read levels from a path or from XSB text.

    Levels are separated by blank lines and/or comment lines starting with ``;`` (Boxoban files put
    ``; 0``, ``; 1`` ... before each grid). A ``str`` without a newline and without ``#`` is taken as
    a path.
    """
    if isinstance(source, os.PathLike) or ("\n" not in source and "#" not in source):
        try:
            text = Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise LevelError(f"cannot read level file {str(source)!r}: {type(e).__name__}") from None
    else:
        text = source
    blocks: list[list[str]] = [[]]
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith(";"):
            if blocks[-1]:
                blocks.append([])
        else:
            blocks[-1].append(line)
    blocks = [b for b in blocks if b]
    if not blocks:
        raise LevelError("no level found in the input")
    if len(blocks) == 1:
        return [parse_level(blocks[0])]
    return [parse_level(b, name=f"level {k}") for k, b in enumerate(blocks)]


def coerce_levels(
    level: str | os.PathLike | Level | None = None, levels: list | str | os.PathLike | None = None
) -> list[Level] | None:
    """The env's ``level=`` / ``levels=`` arguments as a list (None when neither is given). ``level``
    is one :class:`Level`, XSB text or file holding exactly one level; ``levels`` is a path or text
    (all its levels) or a list of such single levels."""
    if level is not None:
        return [_single(level)]
    if levels is None:
        return None
    out = load_levels(levels) if isinstance(levels, (str, os.PathLike)) else [_single(x) for x in levels]
    if not out:
        raise ValueError("levels is empty")
    return out


def _single(x: str | os.PathLike | Level) -> Level:
    if isinstance(x, Level):
        return x
    got = load_levels(x)
    if len(got) != 1:
        raise ValueError(f"level must hold exactly one level, got {len(got)}; use levels= for several")
    return got[0]

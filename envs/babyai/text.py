"""BabyAI in words: the action names and the egocentric view as sentences, as BALROG shows it.

Pure numpy, no minigrid import: the view is minigrid's encoded image (``gen_obs()["image"]``, shape
(7, 7, 3) of object, colour, state indices), the agent at column 3 of the bottom row, facing up.
Cell ``(i, j)`` is ``i - 3`` steps to the right (negative: left) and ``6 - j`` steps forward.
"""

from __future__ import annotations

import numpy as np

#: minigrid's Actions enum, by index, in words (tests/envs/test_babyai.py checks the order).
ACTIONS = ("turn left", "turn right", "go forward", "pick up", "drop", "toggle", "done")
ALIASES = {
    "left": 0, "right": 1, "forward": 2, "move forward": 2, "pickup": 3, "pick": 3, "pick up object": 3,
    "drop object": 4, "open": 5, "toggle object": 5,
}
WORDS = {" ".join(w.split()): k for k, w in enumerate(ACTIONS)} | ALIASES

# minigrid.core.constants (checked against it by the tests)
OBJECTS = ("unseen", "empty", "wall", "floor", "door", "key", "ball", "box", "goal", "lava", "agent")
COLORS = ("red", "green", "blue", "purple", "yellow", "grey")
DOOR_STATES = ("open", "closed", "locked")
_SILENT = {"unseen", "empty", "floor", "wall", "agent"}


def parse(body: str) -> int | None:
    """The action index an answer body names (case and spacing ignored, ``_``/``-`` as spaces)."""
    key = " ".join(body.replace("_", " ").replace("-", " ").split()).strip(" .!")
    return WORDS.get(key)


def steps(n: int, way: str) -> str:
    return f"{n} step{'s' if n != 1 else ''} {way}"


def where(right: int, forward: int) -> str:
    """``1 step left and 2 steps forward``: sideways first, then forward (BALROG's order)."""
    parts = []
    if right:
        parts.append(steps(abs(right), "right" if right > 0 else "left"))
    if forward:
        parts.append(steps(forward, "forward"))
    return " and ".join(parts)


def thing(cell: np.ndarray) -> str:
    """``a red ball``, ``a locked blue door``, ``an open green door``."""
    kind, color, state = (int(x) for x in cell[:3])
    name = OBJECTS[kind]
    words = f"{COLORS[color]} {name}" if name in ("door", "key", "ball", "box") else name
    if name == "door":
        words = f"{DOOR_STATES[state]} {words}"
    return ("an " if words[0] in "aeiou" else "a ") + words


def describe_view(image: np.ndarray) -> list[str]:
    """What the agent sees, nearest first: the closest wall straight ahead, to the left and to the
    right (walls elsewhere are not listed, as in BALROG), then every visible object and door."""
    size = image.shape[0]
    me_i, me_j = size // 2, size - 1
    lines: list[str] = []
    rays = ([(me_i, j) for j in range(me_j - 1, -1, -1)],  # forward, left, right
            [(i, me_j) for i in range(me_i - 1, -1, -1)],
            [(i, me_j) for i in range(me_i + 1, size)])
    for ray in rays:
        for i, j in ray:
            name = OBJECTS[int(image[i, j, 0])]
            if name in ("empty", "floor"):
                continue
            if name == "wall":  # the first thing on the line; an object or door in front hides it
                lines.append(f"a wall {where(i - me_i, me_j - j)}")
            break
    things = []
    for i in range(size):
        for j in range(size):
            if (i, j) == (me_i, me_j) or OBJECTS[int(image[i, j, 0])] in _SILENT:
                continue
            right, fwd = i - me_i, me_j - j
            things.append((abs(right) + fwd, fwd, right, f"{thing(image[i, j])} {where(right, fwd)}"))
    return lines + [t[-1] for t in sorted(things)]


def carrying_text(carried: tuple[str, str] | None) -> str:
    """``You carry a red key.`` / ``You carry nothing.`` from (type, colour)."""
    if carried is None:
        return "You carry nothing."
    return f"You carry a {carried[1]} {carried[0]}."

"""BabyAI levels: minigrid's registered ``BabyAI-*`` ids, plus ``BabyAI-MixedTrainLocal-v0``.

minigrid 3.x does not ship MixedTrainLocal, the level BALROG evaluates BabyAI on (it comes from
GLAM's ``babyai-text``, Carta et al. 2023). :class:`MixedLocal` rebuilds it from minigrid's own level
parts (``RoomGridLevel``, ``ObjDesc``, the instruction verifiers), following that level's description:
one 8x8 room with 9 objects (10 for putnext and the sequence), and one of five missions

- ``goto``: go to an object;
- ``pickup``: pick up an object;
- ``open``: open the door, a locked door to a second room whose key lies in the agent's room
  (doors are yellow, green, blue or purple);
- ``putnext``: put an object next to another;
- ``pickup_goto``: pick up A, then go to B (``... then ...`` or ``... after you ...``);

and never a mission naming a yellow box, a red key or door, a green ball or a grey door (the
combinations GLAM holds out for MixedTestLocal). Each object a mission names is reachable.

This module imports minigrid: load it through :func:`require_minigrid`.
"""

from __future__ import annotations

import gymnasium
from minigrid.core.roomgrid import RoomGrid
from minigrid.envs.babyai.core.roomgrid_level import RejectSampling, RoomGridLevel
from minigrid.envs.babyai.core.verifier import (
    AfterInstr,
    BeforeInstr,
    GoToInstr,
    ObjDesc,
    OpenInstr,
    PickupInstr,
    PutNextInstr,
)

MIXED = "BabyAI-MixedTrainLocal-v0"
KINDS = ("goto", "pickup", "open", "putnext", "pickup_goto")
HELD_OUT = ("yellow box", "red key", "red door", "green ball", "grey door")
DOOR_COLORS = ("yellow", "green", "blue", "purple")


class MixedLocal(RoomGridLevel):
    """One mission ``kind`` of MixedTrainLocal (see the module docstring). The kind fixes the layout
    (``open`` needs two rooms), so the adapter keeps one instance per kind and draws the kind."""

    def __init__(self, kind: str, room_size: int = 8, num_dists: int = 8, **kwargs):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        self.kind, self.num_dists = kind, num_dists
        super().__init__(room_size=room_size, num_rows=1, num_cols=2 if kind == "open" else 1, **kwargs)

    def gen_mission(self) -> None:
        # Rejection by rebuilding the rooms here, not by raising RejectSampling: minigrid prints a line
        # for each rejection it catches.
        while True:
            self.locked_room = None
            self.instrs = self._open() if self.kind == "open" else self._one_room()
            if self._acceptable():
                return
            RoomGrid._gen_grid(self, self.width, self.height)

    def _open(self):
        color = self._rand_elem(DOOR_COLORS)
        locked = self._rand_int(0, 2)  # which of the two rooms is behind the locked door
        here = 1 - locked
        self.add_door(here, 0, 0 if here == 0 else 2, color=color, locked=True)
        self.locked_room = self.get_room(locked, 0)
        self.add_object(here, 0, "key", color)
        self.add_distractors(here, 0, num_distractors=self.num_dists, all_unique=False)
        self.place_agent(here, 0)
        return OpenInstr(ObjDesc("door", self._rand_elem([None, color])))

    def _one_room(self):
        extra = 2 if self.kind in ("putnext", "pickup_goto") else 1
        objs = self.add_distractors(0, 0, num_distractors=self.num_dists + extra, all_unique=False)
        self.place_agent(0, 0)
        a = self._rand_elem(objs)
        if self.kind == "goto":
            return GoToInstr(ObjDesc(a.type, a.color))
        if self.kind == "pickup":
            return PickupInstr(ObjDesc(a.type, a.color))
        b = self._rand_elem([o for o in objs if o is not a])
        if self.kind == "putnext":
            return PutNextInstr(ObjDesc(a.type, a.color), ObjDesc(b.type, b.color))
        pick, go = PickupInstr(ObjDesc(a.type, a.color)), GoToInstr(ObjDesc(b.type, b.color))
        return BeforeInstr(pick, go) if self._rand_bool() else AfterInstr(go, pick)

    def _acceptable(self) -> bool:
        if not self.check_objs_reachable(raise_exc=False):
            return False
        try:
            self.validate_instrs(self.instrs)  # putnext: not already next to each other, not itself
        except RejectSampling:
            return False
        text = self.instrs.surface(self)
        return not any(s in text for s in HELD_OUT)


def babyai_levels() -> list[str]:
    """Every level id the adapter takes: minigrid's registered ``BabyAI-*`` ids and MixedTrainLocal."""
    return sorted({MIXED, *(k for k in gymnasium.registry if k.startswith("BabyAI-"))})


def build(level: str, kind: str | None, max_steps: int | None) -> RoomGridLevel:
    """A fresh, unwrapped level env (``kind`` only for MixedTrainLocal)."""
    kw = {} if max_steps is None else {"max_steps": max_steps}
    if level == MIXED:
        return MixedLocal(kind, **kw)
    return gymnasium.make(level, disable_env_checker=True, **kw).unwrapped

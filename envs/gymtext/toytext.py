"""Gymnasium toy-text envs with their own tables: FrozenLake, CliffWalking, Taxi.

Each subclass of :class:`GymTextEnv` adds action names, a drawn grid with a legend, its failure
enum, a success rule, and a seed -> task map whose train and test tasks are disjoint where the env
has more than one task.
"""

from __future__ import annotations

import zlib
from enum import Enum
from typing import Any, ClassVar

import numpy as np

from agentsd.envs.gymtext.env import GymTextEnv

_MOVES = {(0, -1): "west", (1, 0): "south", (0, 1): "east", (-1, 0): "north"}


class FrozenLakeFailure(str, Enum):
    INVALID_FORMAT = "invalid_format"  # the text did not name an action
    WALL_BUMP = "wall_bump"  # moved (or slipped) into the edge of the lake: nothing moved
    FELL_IN_HOLE = "fell_in_hole"  # walked (or slipped) into a hole: the episode ends
    TIMEOUT = "timeout"  # ran out of steps


class CliffFailure(str, Enum):
    INVALID_FORMAT = "invalid_format"
    WALL_BUMP = "wall_bump"  # moved into the edge of the grid: nothing moved
    FELL_OFF_CLIFF = "fell_off_cliff"  # stepped onto the cliff: -100 and back to the start
    TIMEOUT = "timeout"


class TaxiFailure(str, Enum):
    INVALID_FORMAT = "invalid_format"
    WALL_BUMP = "wall_bump"  # drove into a wall or the edge: the taxi did not move
    ILLEGAL_PICKUP = "illegal_pickup"  # pickup where the passenger is not (-10)
    ILLEGAL_DROPOFF = "illegal_dropoff"  # dropoff without the passenger or off the four pads (-10)
    TIMEOUT = "timeout"


def random_lake(rng: np.random.Generator, size: int, p: float) -> list[str]:
    """A ``size`` x ``size`` map: S top-left, G bottom-right, each other cell frozen with probability
    ``p``, else a hole; redrawn until G is reachable from S."""
    while True:
        cells = np.where(rng.random((size, size)) < p, "F", "H")
        cells[0, 0], cells[-1, -1] = "S", "G"
        rows = ["".join(r) for r in cells]
        if _reachable(rows):
            return rows


def _reachable(rows: list[str]) -> bool:
    n, m = len(rows), len(rows[0])
    seen, todo = {(0, 0)}, [(0, 0)]
    while todo:
        r, c = todo.pop()
        if rows[r][c] == "G":
            return True
        for dr, dc in _MOVES:
            rr, cc = r + dr, c + dc
            if 0 <= rr < n and 0 <= cc < m and (rr, cc) not in seen and rows[rr][cc] != "H":
                seen.add((rr, cc))
                todo.append((rr, cc))
    return False


def is_test_map(rows: list[str]) -> bool:
    """The split a map belongs to: a quarter of all maps (by CRC32 of the map text) are test maps."""
    return zlib.crc32("".join(rows).encode()) % 4 == 0


class FrozenLakeEnv(GymTextEnv):
    """Gymnasium FrozenLake: walk from S to G over a frozen lake without falling into a hole.

    ``random_map=True`` (the registered ``frozenlake*`` envs) draws a ``size`` x ``size`` map from the
    seed (cells frozen with probability ``p``, solvable); a quarter of all maps are test maps
    (:func:`is_test_map`), so train and test seeds never share a map. Otherwise the fixed map of
    ``desc`` / ``map_name`` (gymnasium's ``4x4`` or ``8x8``) is played by every seed and the split is
    nominal. ``is_slippery`` and ``success_rate`` are gymnasium's (slippery: the intended move
    happens with probability ``success_rate``, else one of the two perpendicular ones).

    Actions ``Left``, ``Down``, ``Right``, ``Up`` (also west/south/east/north). Observation: the
    grid (``P`` you, ``_`` frozen, ``O`` hole, ``G`` goal, ``X`` you in a hole, ``√`` you on the
    goal). Reward 1 on the goal. Failures :class:`FrozenLakeFailure`; "before" predicates
    ``move_into_edge`` and ``move_into_hole`` (slippery: any outcome of the move). Oracle: value
    iteration on the map (deterministic: a shortest path, 100% on solvable maps). ``max_steps``:
    100 (4x4), 200 (larger), as gymnasium registers them.
    """

    name = "frozenlake"
    env_id = "FrozenLake-v1"
    train_seeds = range(0, 1_000_000)
    test_seeds = range(1_000_000, 1_100_000)
    failure_types = FrozenLakeFailure
    failure_predicates = {"invalid_format": "invalid_format", "wall_bump": "move_into_edge",
                          "fell_in_hole": "move_into_hole"}
    action_names = ("Left", "Down", "Right", "Up")
    aliases = {"west": 0, "south": 1, "east": 2, "north": 3}

    def __init__(
        self,
        env_id: str | None = None,
        *,
        random_map: bool = False,
        size: int = 4,
        p: float = 0.8,
        max_steps: int | None = None,
        format_penalty: float = -1.0,
        render_mode: str | None = None,
        **env_kwargs: Any,
    ):
        if "map_name" in env_kwargs and env_kwargs["map_name"] is None and env_kwargs.get("desc") is None:
            env_kwargs.pop("map_name")
            random_map = True  # gymnasium's meaning of map_name=None: a random map (here: from the seed)
        if random_map:
            if not 2 <= size <= 32:
                raise ValueError(f"size must be in 2..32, got {size}")
            if not 0.0 < p <= 1.0:
                raise ValueError(f"p must be in (0, 1], got {p}")
            if "desc" in env_kwargs or "map_name" in env_kwargs:
                raise ValueError("random_map draws the map: give no desc or map_name")
            env_kwargs["desc"] = random_lake(np.random.default_rng(0), size, p)
            if max_steps is None:
                max_steps = 100 if size <= 4 else 200
        self.random_map, self.size, self.p = random_map, size, p
        super().__init__(env_id, max_steps=max_steps, format_penalty=format_penalty, render_mode=render_mode,
                         **env_kwargs)
        self.slippery = bool(self._env.is_slippery) if hasattr(self._env, "is_slippery") else self._slips()

    def _slips(self) -> bool:
        return any(len(out) > 1 for acts in self._env.P.values() for out in acts.values())

    def _start_task(self, split: str, seed: int | None) -> None:
        if self.random_map:
            while True:
                rows = random_lake(self.np_random, self.size, self.p)
                if is_test_map(rows) == (split == "test"):
                    break
            self._env = self._build(desc=rows)
            self._set_tables()
        self._env.reset(seed=int(self.np_random.integers(2**31)))

    @property
    def map(self) -> list[str]:
        return [bytes(r).decode() for r in self._env.desc]

    # --- text ---------------------------------------------------------------------------------
    def instructions(self) -> str:
        slip = (
            f"The ice is slippery: a move goes the way you chose with probability {self._env_rate():.2g}, "
            "otherwise to one side of it.\n" if self.slippery else ""
        )
        return (
            "You are on a frozen lake seen from above (row 1 is the top). Walk from the start to the goal G "
            "without falling into a hole O.\n"
            "Each turn you move one cell Left, Down, Right or Up; moving off the edge leaves you in place.\n"
            + slip +
            "Falling into a hole ends the episode with no reward; reaching G gives +1.\n"
            "Legend: P you, _ frozen ice, O hole, G goal.\n"
            f"An answer that is not a move costs {self.format_penalty:+g}.\n"
            "Answer format: think briefly if you like, then write one move, e.g. <answer>Right</answer>."
        )

    def _env_rate(self) -> float:
        out = self._env.P[0][0]
        return max(p for p, *_ in out)

    def task_description(self) -> str:
        n = len(self._env.desc)
        return f"Reach the goal G of this {n}x{n} lake within {self.max_steps} steps."

    def describe(self) -> str:
        rows = [list(r.replace("F", "_").replace("S", "_").replace("H", "O")) for r in self.map]
        r, c = divmod(int(self._env.s), self._env.ncol)
        here = rows[r][c]
        rows[r][c] = "X" if here == "O" else "√" if here == "G" else "P"
        return "\n".join("".join(row) for row in rows)

    # --- rules --------------------------------------------------------------------------------
    def _cell(self, s: int) -> str:
        r, c = divmod(int(s), self._env.ncol)
        return chr(self._env.desc[r, c][0])

    def _success(self, s, a, s2, r, done) -> bool:
        return self._cell(s2) == "G"

    def _classify(self, s, a, s2, r, done):
        if self._cell(s2) == "H":
            return FrozenLakeFailure.FELL_IN_HOLE
        if s2 == s:
            return FrozenLakeFailure.WALL_BUMP
        return None

    def _explain(self, s, a, s2, r, fail) -> str:
        w = self._env.ncol
        (r0, c0), (r1, c1) = divmod(int(s), w), divmod(int(s2), w)
        went = _MOVES.get((r1 - r0, c1 - c0))
        slip = f" (slipped: went {went})" if went is not None and went != self.aliases_of(a) else ""
        where = f"row {r1 + 1}, col {c1 + 1}"
        if fail is FrozenLakeFailure.FELL_IN_HOLE:
            return f"{self.names[a]}{slip}: fell into the hole at {where}"
        if fail is FrozenLakeFailure.WALL_BUMP:
            return f"{self.names[a]}: the edge of the lake, you stay at {where}"
        if self._cell(s2) == "G":
            return f"{self.names[a]}{slip}: reached the goal"
        return f"{self.names[a]}{slip}: now at {where}"

    def aliases_of(self, a: int) -> str:
        return next(w for w, k in self.aliases.items() if k == a)


class CliffWalkingEnv(GymTextEnv):
    """Gymnasium CliffWalking: cross a 4x12 grid from the bottom-left start to the bottom-right goal
    along a cliff. One layout, so every seed plays the same task (the split is nominal; with
    ``is_slippery`` the seeds differ in their slips).

    Actions ``Up``, ``Right``, ``Down``, ``Left``. Observation: the grid (``P`` you, ``_`` ground,
    ``S`` start, ``C`` cliff, ``G`` goal). Reward -1 per step, -100 for the cliff (back to the
    start). Failures :class:`CliffFailure`; "before" predicates ``move_into_edge``,
    ``move_into_cliff``. Oracle: value iteration (deterministic: the 13-step path). ``max_steps`` 100.
    """

    name = "cliffwalking"
    env_id = "CliffWalking-v1"
    failure_types = CliffFailure
    failure_predicates = {"invalid_format": "invalid_format", "wall_bump": "move_into_edge",
                          "fell_off_cliff": "move_into_cliff"}
    action_names = ("Up", "Right", "Down", "Left")
    aliases = {"north": 0, "east": 1, "south": 2, "west": 3}
    default_max_steps = 100

    def instructions(self) -> str:
        slip = ("The ground is slippery: a move may go to one side of the way you chose.\n"
                if getattr(self._env, "is_slippery", False) else "")
        return (
            "You walk on a 4x12 grid seen from above (row 1 is the top). Go from the start S (bottom left) "
            "to the goal G (bottom right). The cells between them on the bottom row are a cliff C.\n"
            "Each turn you move one cell Up, Right, Down or Left; moving off the edge leaves you in place.\n"
            + slip +
            "Rewards: -1 per move; stepping onto the cliff costs -100 and sends you back to the start.\n"
            "Legend: P you, _ ground, S start, C cliff, G goal.\n"
            f"An answer that is not a move costs {self.format_penalty:+g}.\n"
            "Answer format: think briefly if you like, then write one move, e.g. <answer>Up</answer>."
        )

    def task_description(self) -> str:
        return f"Reach the goal G without stepping onto the cliff, within {self.max_steps} steps."

    def describe(self) -> str:
        h, w = self._env.shape
        rows = [["_"] * w for _ in range(h)]
        for c in range(1, w - 1):
            rows[h - 1][c] = "C"
        rows[h - 1][0], rows[h - 1][w - 1] = "S", "G"
        r, c = divmod(int(self._env.s), w)
        rows[r][c] = "P"
        return "\n".join("".join(row) for row in rows)

    def _success(self, s, a, s2, r, done) -> bool:
        return bool(done)

    def _classify(self, s, a, s2, r, done):
        if r <= -100:
            return CliffFailure.FELL_OFF_CLIFF
        if s2 == s:
            return CliffFailure.WALL_BUMP
        return None

    def _explain(self, s, a, s2, r, fail) -> str:
        w = self._env.shape[1]
        r1, c1 = divmod(int(s2), w)
        if fail is CliffFailure.FELL_OFF_CLIFF:
            return f"{self.names[a]}: fell off the cliff (-100), back at the start"
        if fail is CliffFailure.WALL_BUMP:
            return f"{self.names[a]}: the edge of the grid, you stay at row {r1 + 1}, col {c1 + 1}"
        goal = int(np.prod(self._env.shape)) - 1
        return f"{self.names[a]}: " + ("reached the goal" if s2 == goal else f"now at row {r1 + 1}, col {c1 + 1}")


#: Taxi's start states (taxi anywhere, passenger on one pad, a different destination): 300 of them,
#: in a fixed shuffled order; tasks 0..99 are train tasks, 100..299 test tasks.
_TAXI_STARTS = [
    int(x) for x in np.random.default_rng(21).permutation(
        [((r * 5 + c) * 5 + p) * 4 + d for r in range(5) for c in range(5) for p in range(4) for d in range(4)
         if p != d]
    )
]
_PADS = "RGYB"


class TaxiEnv(GymTextEnv):
    """Gymnasium Taxi: drive to the passenger, pick them up, drive to the destination, drop them off.

    Each seed plays one of the 300 start states (:data:`_TAXI_STARTS`, task ids 0..299): train
    seed ``s`` task ``s % 100``, test seed ``s`` task ``100 + (s - 100000) % 200``, so the first 100
    train / 200 test seeds cover each split's tasks once and the splits never share one.
    ``reset(options={"task": k})`` plays task ``k`` (0..299). ``is_rainy`` / ``fickle_passenger``
    are gymnasium's.

    Actions ``South``, ``North``, ``East``, ``West``, ``Pickup``, ``Dropoff`` (also down/up/right/
    left, pick up, drop off). Observation: the map (``|`` walls block east-west moves, ``T`` the
    taxi, ``R G Y B`` the pads) and lines saying where the taxi, passenger and destination are.
    Reward -1 per step, +20 for the right dropoff, -10 for an illegal pickup or dropoff. Failures
    :class:`TaxiFailure`; "before" predicates ``move_into_wall``, ``pickup_without_passenger``,
    ``dropoff_wrong_place``. Oracle: value iteration (deterministic: a shortest plan). ``max_steps`` 200.
    """

    name = "taxi"
    env_id = "Taxi-v4"
    train_seeds = range(0, 100_000)
    test_seeds = range(100_000, 200_000)
    N_TRAIN = 100
    failure_types = TaxiFailure
    failure_predicates = {"invalid_format": "invalid_format", "wall_bump": "move_into_wall",
                          "illegal_pickup": "pickup_without_passenger", "illegal_dropoff": "dropoff_wrong_place"}
    action_names = ("South", "North", "East", "West", "Pickup", "Dropoff")
    aliases = {"down": 0, "up": 1, "right": 2, "left": 3, "pick up": 4, "drop off": 5, "drop": 5}
    TASKS: ClassVar[list[int]] = _TAXI_STARTS

    def _start_task(self, split: str, seed: int | None) -> None:
        n = len(self.TASKS)
        k = self._options.get("task") if self._options else None
        if k is not None:
            if not isinstance(k, int) or not 0 <= k < n:
                raise ValueError(f"taxi task {k!r} out of range: there are {n} start states (0..{n - 1})")
        elif seed is None:
            k = int(self.np_random.integers(self.N_TRAIN))
        elif split == "train":
            k = (seed - self.train_seeds.start) % self.N_TRAIN
        else:
            k = self.N_TRAIN + (seed - self.test_seeds.start) % (n - self.N_TRAIN)
        self.task_id = k
        self._env.reset(seed=int(self.np_random.integers(2**31)))
        self._env.s = self.TASKS[k]

    def instructions(self) -> str:
        rain = ("It is raining: a move sometimes goes to one side of the way you chose.\n"
                if getattr(self._env, "is_rainy", False) else "")
        return (
            "You drive a taxi on a 5x5 map seen from above (row 1 is the top). Pick up the passenger at "
            "their pad and drop them off at the destination pad. Pads: R, G, Y, B.\n"
            "Each turn: South, North, East or West moves one cell (a wall | or the edge stops you); Pickup "
            "takes the passenger when the taxi is on their pad; Dropoff lets them out.\n" + rain +
            "Rewards: -1 per turn, +20 for dropping the passenger at the destination (the episode ends), "
            "-10 for a pickup or dropoff in the wrong place.\n"
            "Legend: T taxi, | wall, R G Y B pads.\n"
            f"An answer that is not an action costs {self.format_penalty:+g}.\n"
            "Answer format: think briefly if you like, then write one action, e.g. <answer>North</answer>."
        )

    def task_description(self) -> str:
        if not self._started:
            return "Pick up the passenger and drop them off at the destination."
        _, _, p, d = self._env.decode(self._env.s)
        src = "the taxi" if p == 4 else f"pad {_PADS[p]}"
        return f"Take the passenger from {src} to pad {_PADS[d]} within {self.max_steps} steps."

    def describe(self) -> str:
        rows = [list(bytes(r).decode()) for r in self._env.desc]
        tr, tc, p, d = self._env.decode(self._env.s)
        rows[1 + tr][2 * tc + 1] = "T"
        locs = self._env.locs
        where = "in the taxi" if p == 4 else f"waiting at {_PADS[p]} (row {locs[p][0] + 1}, col {locs[p][1] + 1})"
        dr, dc = locs[d]
        return (
            "\n".join("".join(r) for r in rows)
            + f"\nTaxi: row {tr + 1}, col {tc + 1}. Passenger: {where}. "
            f"Destination: {_PADS[d]} (row {dr + 1}, col {dc + 1})."
        )

    def _success(self, s, a, s2, r, done) -> bool:
        return bool(done)

    def _classify(self, s, a, s2, r, done):
        if a == 4 and r <= -10:
            return TaxiFailure.ILLEGAL_PICKUP
        if a == 5 and r <= -10:
            return TaxiFailure.ILLEGAL_DROPOFF
        if a < 4 and s2 == s:
            return TaxiFailure.WALL_BUMP
        return None

    def _explain(self, s, a, s2, r, fail) -> str:
        tr, tc, p, _ = self._env.decode(s2)
        if fail is TaxiFailure.ILLEGAL_PICKUP:
            return "Pickup: the passenger is not here (-10)"
        if fail is TaxiFailure.ILLEGAL_DROPOFF:
            return "Dropoff: " + ("no passenger in the taxi" if p != 4 else "not the destination") + " (-10)"
        if fail is TaxiFailure.WALL_BUMP:
            return f"{self.names[a]}: a wall is in the way, the taxi stays at row {tr + 1}, col {tc + 1}"
        if a == 4:
            return "Pickup: the passenger is in the taxi"
        if a == 5:
            return ("Dropoff: the passenger is at the destination" if r > 0
                    else f"Dropoff: the passenger got out at pad {_PADS[p]}, not the destination")
        return f"{self.names[a]}: taxi at row {tr + 1}, col {tc + 1}"

"""BabyAI (minigrid) behind the TextEnv contract (see :class:`BabyAIEnv`)."""

from __future__ import annotations

import copy
from enum import Enum
from typing import Any

import numpy as np

from agentsd.envs.babyai import text as T
from agentsd.envs.base import Diagnosis, Predicate, TextEnv

INSTALL = "pip install -e '.[benchmarks]'"
DEFAULT_LEVEL = "BabyAI-MixedTrainLocal-v0"
_MAX_BODY = 40
LEFT, RIGHT, FORWARD, PICKUP, DROP, TOGGLE, DONE = range(7)


class BabyAIFailure(str, Enum):
    """Why a BabyAI step went wrong (``info["diagnosis"]["failure_type"]`` holds the value)."""

    INVALID_ACTION = "invalid_action"  # no answer block, or not one of the 7 actions
    BLOCKED_FORWARD = "blocked_forward"  # go forward into a wall, an object or a closed / locked door
    NOTHING_TO_PICK_UP = "nothing_to_pick_up"  # pick up facing floor, a wall or a door
    HANDS_FULL = "hands_full"  # pick up while already carrying something
    NOTHING_TO_DROP = "nothing_to_drop"  # drop while carrying nothing
    DROP_BLOCKED = "drop_blocked"  # drop while the cell ahead is not empty floor
    NOTHING_TO_TOGGLE = "nothing_to_toggle"  # toggle facing floor, a wall, a ball or a key
    DOOR_LOCKED = "door_locked"  # toggle a locked door without its key in hand
    OPENED_BOX = "opened_box"  # toggle a box: it opens and vanishes (an empty box holds nothing)
    WRONG_DONE = "wrong_done"  # done before the mission is met (done does nothing in BabyAI)
    TIMEOUT = "timeout"  # ran out of steps


F = BabyAIFailure
_PREDICATES = (
    Predicate("invalid_action", "the answer text does not name one of the 7 actions", "before"),
    Predicate("blocked_forward", "go forward while a wall, an object or a closed door is ahead", "before"),
    Predicate("nothing_to_pick_up", "pick up while nothing that can be carried is ahead", "before"),
    Predicate("hands_full", "pick up an object while already carrying one", "before"),
    Predicate("nothing_to_drop", "drop while carrying nothing", "before"),
    Predicate("drop_blocked", "drop while carrying something and the cell ahead is not free", "before"),
    Predicate("nothing_to_toggle", "toggle while no door or box is ahead", "before"),
    Predicate("door_locked", "toggle a locked door without carrying its key", "before"),
    Predicate("opened_box", "toggle a box (it vanishes)", "before"),
    Predicate("wrong_done", "done while the mission is not met", "before"),
    Predicate("carrying", "the agent carries an object of this type and colour", "after",
              {"type": "str, key | ball | box", "color": "str, a colour or 'any'"}),
    Predicate("facing", "the cell ahead holds an object of this type and colour", "after",
              {"type": "str, key | ball | box | door | wall", "color": "str, a colour or 'any'"}),
    Predicate("solved", "the mission is accomplished", "after"),
)
PREDICATES: dict[str, Predicate] = {p.name: p for p in _PREDICATES}
FAILURE_PREDICATES: dict[str, str] = {f.value: f.value for f in F if f is not F.TIMEOUT}

RULES = (
    "You are an agent in a BabyAI grid world (MiniGrid), seen from your own point of view. Each turn "
    "you get the mission, what you carry, and what you see: walls and objects (keys, balls, boxes, "
    "doors) with their position relative to you, e.g. 'a red ball 1 step left and 2 steps forward'. "
    "You see 3 cells to each side and 6 ahead, not through walls or closed doors.\n"
    "Actions: turn left, turn right (turn in place), go forward (one cell; walls, objects and closed "
    "doors block it), pick up (the object in front of you; you carry at most one), drop (what you "
    "carry onto the empty cell in front of you), toggle (open or close the door in front of you; a "
    "locked door opens only while you carry the key of its colour; a box opens and vanishes), done "
    "(does nothing: the episode ends by itself when the mission is met).\n"
    "'Go to X' means: stand next to X and face it. 'Put X next to Y': drop X on a cell beside Y.\n"
    "Reward: {solve} when the mission is met, {step:+g} per step, {fmt:+g} for text that is no action.\n"
    "Answer with one action, e.g. <answer>go forward</answer>."
)


def require_minigrid():
    """minigrid's bot class (and its levels loaded); a one-line error naming the install command."""
    try:
        import minigrid  # noqa: F401  (registers the BabyAI-* ids with gymnasium)
        from minigrid.utils.baby_ai_bot import BabyAIBot
    except ImportError as e:
        raise ImportError(f"the babyai env needs the minigrid package: {INSTALL}") from e
    return BabyAIBot


class BabyAIEnv(TextEnv):
    """BabyAI instruction-following levels of the PyPI ``minigrid`` package, described in text as
    BALROG does; by default ``BabyAI-MixedTrainLocal-v0`` (BALROG's level, rebuilt in
    :mod:`agentsd.envs.babyai.levels` since minigrid 3.x lacks it); ``level`` picks any ``BabyAI-*`` id.

    ## Action
    The last ``<answer>...</answer>`` block names one of minigrid's 7 actions: ``turn left``, ``turn
    right``, ``go forward``, ``pick up``, ``drop``, ``toggle``, ``done`` (any case and spacing; ``_``
    or ``-`` for a space; also ``left``, ``right``, ``forward``, ``pickup``, ``open``). Anything else is
    invalid: ``format_penalty``, the turn counts, the grid is unchanged.

    ## Observation
    The mission, the step counter, what the agent carries, then what it sees (its 7x7 egocentric view,
    from ``gen_obs()["image"]``): the nearest wall straight ahead, left and right, and each visible
    object and door relative to the agent, nearest first; then what the last action did.

    ## Reward
    ``step_penalty`` (-0.01) per valid turn, plus on success minigrid's own reward
    ``1 - 0.9 * step_count / max_steps`` (its ``step_count`` counts valid turns); an invalid turn
    gets ``format_penalty`` (-0.1).

    ## Episode end
    Terminated when the mission is met (minigrid's verifier); truncated after ``max_steps`` turns
    (default: the level's own limit, e.g. 64 for goto and 128 for putnext in MixedTrainLocal).

    ## Info
    ``action_is_valid``, ``action_is_effective`` (position, direction, carried object or the cell
    ahead changed), ``success``, ``action`` (index or None), ``mission``, ``kind`` (MixedTrainLocal's
    mission kind, else None) and ``diagnosis``: a :class:`BabyAIFailure` value, ``state_diff``
    (``pos`` / ``dir`` [from, to], ``carrying``), ``progress`` (share of the mission's sub-goals met;
    1.0 solved), ``stagnation``, ``extra`` (steps, max_steps). The turn that runs out reports
    ``timeout``.

    ## Predicates
    "before": one per failure but ``timeout`` (same names), each True exactly when ``step`` would
    report it; "after": ``carrying(type, color)``, ``facing(type, color)``, ``solved``.

    ## Oracle
    minigrid's ``BabyAIBot``, made at reset and told every action taken (``replan(action_taken)``),
    so it advises from any state the agent reaches; None once the episode is over or the bot gave up
    (it gives up after a box was opened).

    ## Tasks
    A seed is a task: seed ``s`` resets the level with ``seed=s`` (MixedTrainLocal also draws the
    mission kind from ``s``). Train seeds 0..999999, test seeds 1000000..1099999; another seed is an
    error. ``reset()`` without a seed draws a train seed.
    """

    name = "babyai"
    train_seeds = range(0, 1_000_000)
    test_seeds = range(1_000_000, 1_100_000)
    failure_types = BabyAIFailure
    failure_predicates = FAILURE_PREDICATES

    def __init__(
        self,
        level: str = DEFAULT_LEVEL,
        max_steps: int | None = None,
        render_mode: str | None = None,
        format_penalty: float = -0.1,
        step_penalty: float = -0.01,
    ):
        super().__init__(render_mode=render_mode)
        self._Bot = require_minigrid()
        from agentsd.envs.babyai import levels

        self._levels = levels
        if level not in levels.babyai_levels():
            raise ValueError(f"unknown BabyAI level {level!r}; e.g. {DEFAULT_LEVEL}, BabyAI-GoToLocal-v0, "
                             "BabyAI-PickupLoc-v0 (any BabyAI-* id minigrid registers)")
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.level_id, self.fixed_max_steps = level, max_steps
        self.format_penalty, self.step_penalty = format_penalty, step_penalty
        self._built: dict[str | None, Any] = {}
        self.grid_env: Any = None
        self.kind: str | None = None
        self._version = 0  # bumped by reset and step: keys the predicates' cached rule reading

    # --- text ---------------------------------------------------------------------------------
    def instructions(self) -> str:
        return RULES.format(solve="1 - 0.9 * steps used / step limit", step=self.step_penalty,
                            fmt=self.format_penalty)

    def task_description(self) -> str:
        if self.grid_env is None:
            return "Carry out the BabyAI mission (a new one each episode)."
        return f"{self.mission[0].upper()}{self.mission[1:]} within {self.max_steps} steps."

    @property
    def mission(self) -> str:
        return self.grid_env.mission

    def parse_action(self, text: str) -> list[int] | None:
        body = self.answer_body(text, _MAX_BODY)
        a = None if body is None else T.parse(body)
        return None if a is None else [a]

    def action_candidates(self) -> list[str]:
        return [f"<answer>{w}</answer>" for w in T.ACTIONS]

    # --- episode ------------------------------------------------------------------------------
    def _split(self, seed: int) -> str:
        if seed in self.train_seeds:
            return "train"
        if seed in self.test_seeds:
            return "test"
        tr, te = self.train_seeds, self.test_seeds
        raise ValueError(f"babyai task seed {seed} out of range: train {tr.start}..{tr.stop - 1}, "
                         f"test {te.start}..{te.stop - 1}")

    def _level(self, kind: str | None):
        if kind not in self._built:
            self._built[kind] = self._levels.build(self.level_id, kind, self.fixed_max_steps)
        return self._built[kind]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._split(seed)  # fail before touching any state
        super().reset(seed=seed)
        task = int(self.np_random.integers(self.train_seeds.stop)) if seed is None else int(seed)
        self.task = task
        self.kind = None
        if self.level_id == self._levels.MIXED:
            self.kind = self._levels.KINDS[int(np.random.default_rng(task).integers(len(self._levels.KINDS)))]
        self.grid_env = self._level(self.kind)
        self.grid_env.reset(seed=task)
        self.max_steps = self.fixed_max_steps or int(self.grid_env.max_steps)
        self.steps, self.solved, self.done, self.message = 0, False, False, "a new episode"
        self._version, self._risk_cache = self._version + 1, (None, None)
        self.bot_error: str | None = None
        self.bot = self._Bot(self.grid_env)
        self._suggested = self._replan(None)
        self._progress, self._stagnation = self._measure(), 0
        return self._obs(), self._info(True, False, self._diagnosis(None, "new episode", {}), None)

    def step(self, action: str):
        if self.grid_env is None:
            raise RuntimeError("call reset() before step()")
        self.steps += 1
        self._version += 1
        parsed = self.parse_action(action)
        diff: dict[str, Any] = {}
        terminated, effective = False, False
        if parsed is None:
            fail, reward, a = F.INVALID_ACTION, self.format_penalty, None
            detail = self._why_invalid(action)
        else:
            a = parsed[0]
            before = self._snapshot()
            _, r, terminated, _, _ = self.grid_env.step(a)
            after = self._snapshot()
            effective = before != after
            diff = self._diff(before, after)
            self.solved = self.solved or (terminated and r > 0)
            fail = self._outcome(a, before, after)
            reward = self.step_penalty + float(r)
            detail = f"{T.ACTIONS[a]}: " + (self._explain(fail) if fail is not None else "ok")
            if self.solved:
                detail += "; mission accomplished"
            self._suggested = None if terminated else self._replan(a)
        truncated = not terminated and self.steps >= self.max_steps
        if truncated:
            fail, detail = F.TIMEOUT, detail + f"; ran out of steps ({self.max_steps})"
        self.done = terminated or truncated
        self.message = detail
        prev, self._progress = self._progress, self._measure()
        self._stagnation = 0 if self._progress > prev + 1e-12 else self._stagnation + 1
        info = self._info(parsed is not None, effective, self._diagnosis(fail, detail, diff), a)
        return self._obs(), float(reward), bool(terminated), truncated, info

    # --- the dynamics, read from minigrid's state ---------------------------------------------
    def _ahead(self):
        return self.grid_env.grid.get(*self.grid_env.front_pos)

    def _rule(self, a: int) -> BabyAIFailure | None:
        """The failure minigrid's step would show for action ``a`` now (its ``step`` rules), for the
        "before" predicates."""
        ahead, held = self._ahead(), self.grid_env.carrying
        if a == FORWARD:
            return F.BLOCKED_FORWARD if ahead is not None and not ahead.can_overlap() else None
        if a == PICKUP:
            if ahead is None or not ahead.can_pickup():
                return F.NOTHING_TO_PICK_UP
            return F.HANDS_FULL if held is not None else None
        if a == DROP:
            if held is None:
                return F.NOTHING_TO_DROP
            return F.DROP_BLOCKED if ahead is not None else None
        if a == TOGGLE:
            kind = None if ahead is None else ahead.type
            if kind == "box":
                return F.OPENED_BOX
            if kind == "door":
                key = held is not None and held.type == "key" and held.color == ahead.color
                return F.DOOR_LOCKED if ahead.is_locked and not key else None
            return F.NOTHING_TO_TOGGLE
        if a == DONE:
            return None if self._done_succeeds() else F.WRONG_DONE
        return None

    def _outcome(self, a: int, before: tuple, after: tuple) -> BabyAIFailure | None:
        """The failure a step showed, read from what changed (the predicates read the rules instead:
        tests/envs/test_babyai.py checks that both agree)."""
        moved, held, cell = before[0] != after[0], before[2], before[3]
        ahead = None if cell is None else cell[1]
        if a == FORWARD:
            return None if moved else F.BLOCKED_FORWARD
        if a == PICKUP and after[2] == held:
            return F.HANDS_FULL if ahead in ("key", "ball", "box") and held is not None else F.NOTHING_TO_PICK_UP
        if a == DROP and after[2] == held:
            return F.NOTHING_TO_DROP if held is None else F.DROP_BLOCKED
        if a == TOGGLE:
            if ahead == "box":
                return F.OPENED_BOX
            if after[3] == cell:
                return F.DOOR_LOCKED if ahead == "door" and cell[3] else F.NOTHING_TO_TOGGLE
        if a == DONE and not self.solved:
            return F.WRONG_DONE
        return None

    def _done_succeeds(self) -> bool:
        """Whether ``done`` now would meet the mission: done moves nothing, but minigrid's verifier
        still checks every action (a go-to is met by facing the object), so ask a copy of the
        instruction tree that shares the env and its objects (a copy of the whole env costs 100x)."""
        g = self.grid_env
        memo = {id(g): g, id(g.grid): g.grid, id(g.carrying): g.carrying}
        memo.update((id(c), c) for c in g.grid.grid if c is not None)
        return copy.deepcopy(g.instrs, memo).verify(DONE) == "success"

    @staticmethod
    def _explain(fail: BabyAIFailure) -> str:
        return {
            F.BLOCKED_FORWARD: "blocked, you did not move",
            F.NOTHING_TO_PICK_UP: "nothing you can pick up in front of you",
            F.HANDS_FULL: "your hands are full (drop what you carry first)",
            F.NOTHING_TO_DROP: "you carry nothing",
            F.DROP_BLOCKED: "the cell in front of you is not free",
            F.NOTHING_TO_TOGGLE: "nothing to open or close in front of you",
            F.DOOR_LOCKED: "the door is locked; you need to carry the key of its colour",
            F.OPENED_BOX: "the box opened and vanished",
            F.WRONG_DONE: "the mission is not accomplished yet",
        }[fail]

    def _snapshot(self) -> tuple:
        g = self.grid_env
        ahead = self._ahead()
        cell = None if ahead is None else (id(ahead), ahead.type, getattr(ahead, "is_open", None),
                                           getattr(ahead, "is_locked", None))
        held = None if g.carrying is None else (g.carrying.type, g.carrying.color)
        return (tuple(int(x) for x in g.agent_pos), int(g.agent_dir), held, cell)

    @staticmethod
    def _diff(before: tuple, after: tuple) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if before[0] != after[0]:
            out["pos"] = [list(before[0]), list(after[0])]
        if before[1] != after[1]:
            out["dir"] = [before[1], after[1]]
        if before[2] != after[2]:
            out["carrying"] = [None if c is None else " ".join(reversed(c)) for c in (before[2], after[2])]
        return out

    @staticmethod
    def _why_invalid(action: Any) -> str:
        if TextEnv.answer_body(action, _MAX_BODY) is None:
            return "no <answer>...</answer> block (or it is too long)"
        return "not an action: " + ", ".join(T.ACTIONS)

    # --- diagnosis ----------------------------------------------------------------------------
    def _measure(self) -> float:
        """Share of the mission's parts met: sequences count their halves, putnext counts holding
        the object to move as half (0.99 at most until solved)."""
        if self.solved:
            return 1.0
        return min(0.99, self._part_done(self.grid_env.instrs))

    def _part_done(self, instr) -> float:
        a, b = getattr(instr, "instr_a", None), getattr(instr, "instr_b", None)
        if a is not None:  # Before: a then b; After: b then a; each half is worth 0.5
            first, second = (a, b) if type(instr).__name__ == "BeforeInstr" else (b, a)
            done_first = (instr.a_done if first is a else instr.b_done) == "success"
            return 0.5 + 0.5 * self._part_done(second) if done_first else 0.5 * self._part_done(first)
        move = getattr(instr, "desc_move", None)
        held = self.grid_env.carrying
        if move is not None and held is not None and any(held is o for o in move.obj_set):
            return 0.5
        return 0.0

    def _diagnosis(self, fail: BabyAIFailure | None, detail: str, diff: dict) -> Diagnosis:
        return Diagnosis(
            failure_type=None if fail is None else fail.value,
            detail=detail,
            state_diff=diff,
            progress=self._progress,
            stagnation=self._stagnation,
            extra={"steps": self.steps, "max_steps": self.max_steps},
        )

    def _info(self, valid: bool, effective: bool, diag: Diagnosis, a: int | None) -> dict[str, Any]:
        return self.make_info(valid=valid, effective=effective, success=self.solved, diagnosis=diag,
                              action=a, mission=self.mission, kind=self.kind)

    # --- predicates ---------------------------------------------------------------------------
    def predicates(self) -> dict[str, Predicate]:
        return dict(PREDICATES)

    def _ready(self) -> bool:
        if self.grid_env is None:
            raise RuntimeError("call reset() before check()")
        return True

    def _risk(self, name: str, action: str) -> bool:
        self._ready()
        parsed = self.parse_action(action)
        if parsed is None:
            return name == F.INVALID_ACTION.value
        key = (self._version, parsed[0])
        if self._risk_cache[0] != key:  # the checks of one proposal share one reading of the rules
            self._risk_cache = (key, self._rule(parsed[0]))
        fail = self._risk_cache[1]
        return fail is not None and fail.value == name

    def _pred_carrying(self, action: None, type: str, color: str) -> bool:
        self._ready()
        return self._matches(self.grid_env.carrying, type, color)

    def _pred_facing(self, action: None, type: str, color: str) -> bool:
        self._ready()
        return self._matches(self._ahead(), type, color)

    @staticmethod
    def _matches(obj, type: str, color: str) -> bool:
        if obj is None or obj.type != str(type).strip().lower():
            return False
        return str(color).strip().lower() in ("any", "", obj.color)

    def _pred_solved(self, action: None) -> bool:
        return self._ready() and self.solved

    # --- views --------------------------------------------------------------------------------
    def describe(self) -> str:
        """The view in words (one line each), without mission and counters."""
        seen = T.describe_view(self.grid_env.gen_obs()["image"])
        return "You see:\n" + "\n".join(f"- {s}" for s in seen) if seen else "You see nothing."

    def _obs(self) -> str:
        held = self.grid_env.carrying
        carried = None if held is None else (held.type, held.color)
        return (f"Mission: {self.mission}\nStep {self.steps}/{self.max_steps}. {T.carrying_text(carried)}\n"
                f"{self.describe()}\nLast: {self.message}")

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self.grid_env is None:
            return None
        return self.grid_env.pprint_grid()

    # --- oracle -------------------------------------------------------------------------------
    def _replan(self, action_taken: int | None) -> int | None:
        """Tell the bot what was done and take its next suggestion. The bot gives up (raises) after
        a box was opened and may assert on states it cannot plan from: then the oracle is off."""
        if self.bot is None:
            return None
        try:
            return int(self.bot.replan(action_taken))
        except Exception as e:  # noqa: BLE001 - third-party planner: any failure only turns the oracle off
            self.bot, self.bot_error = None, f"{type(e).__name__}: {e}"
            return None

    def oracle_action(self) -> str | None:
        if self.grid_env is None or self.done or self._suggested is None:
            return None
        return f"<answer>{T.ACTIONS[self._suggested]}</answer>"

    def close(self) -> None:
        for level in self._built.values():
            level.close()

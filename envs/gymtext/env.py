"""The generic Gymnasium adapter (see :class:`GymTextEnv`)."""

from __future__ import annotations

import re
from enum import Enum
from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces

from agentsd.envs.base import Diagnosis, Predicate, TextEnv
from agentsd.envs.gymtext.plan import Tables, distances, q_values, tables

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_MAX_BODY = 40


class GymFailure(str, Enum):
    """Why a step of a wrapped env without its own table went wrong."""

    INVALID_FORMAT = "invalid_format"  # the text did not name an action
    NO_EFFECT = "no_effect"  # the action left the state unchanged
    TIMEOUT = "timeout"  # ran out of steps


class GymTextEnv(TextEnv):
    """Any Gymnasium env with a ``Discrete`` action space and an ``ansi`` renderer, as a TextEnv.

    ``make("gym:<id>", **kwargs)`` builds it (or the tailored subclass for FrozenLake, CliffWalking
    and Taxi); keyword arguments other than the adapter's own go to ``gymnasium.make(<id>, ...)``.

    ## Action
    The last ``<answer>...</answer>`` block holds one action name from the env's table
    (``action_names``; any case), or, for an env without a table, the action's number (``0`` ..
    ``n-1``). Anything else is invalid: ``format_penalty`` (-1), nothing happens, the turn counts.

    ## Observation
    The env's own text (its ``ansi`` render without colour codes; subclasses draw their own grid),
    then the step counter and what the last action did.

    ## Reward
    The wrapped env's reward; ``format_penalty`` for an invalid turn.

    ## Episode end
    Terminated when the wrapped env terminates; truncated after ``max_steps`` turns (default: the
    gymnasium registration's ``max_episode_steps``, else ``default_max_steps``). The adapter keeps its
    own step limit, so the wrapped env is stepped without gymnasium's wrappers.

    ## Info
    ``action_is_valid``, ``action_is_effective`` (the state changed), ``success`` (the subclass's
    rule; generic: terminated with a positive reward), ``action`` (the action number or None) and
    ``diagnosis``: a value of ``failure_types``, the state diff (``state``: [from, to] where the env
    has a discrete state ``s``), ``progress`` (1 - fewest steps left to success / at the start,
    from the transition table; else 0 until success), ``stagnation``, ``extra`` (steps, max_steps).

    ## Predicates
    With a transition table ``env.unwrapped.P``: one "before" predicate per failure kind of the
    subclass (``failure_predicates``), True when some outcome of the action with probability > 0
    would be diagnosed as that failure (exactly ``step``'s diagnosis when the env is deterministic);
    always ``invalid_format``; "after": ``solved``.

    ## Oracle
    With a transition table: finite-horizon value iteration for the steps left (exact expected
    return; deterministic envs: a shortest successful path). Without one: none (``None``).

    ## Seeds
    The generic adapter passes the seed to the wrapped env (its task space decides whether train and
    test tasks differ); subclasses map seed ranges to disjoint task sets.
    """

    metadata = {**TextEnv.metadata, "render_fps": 4}
    name = "gym"
    failure_types: ClassVar[type[Enum]] = GymFailure
    failure_predicates: ClassVar[dict[str, str]] = {GymFailure.INVALID_FORMAT.value: "invalid_format"}
    #: The gymnasium id a subclass wraps (the generic adapter takes ``env_id``).
    env_id: ClassVar[str | None] = None
    #: Action names by index; None: the action numbers.
    action_names: ClassVar[tuple[str, ...] | None] = None
    #: Extra words accepted for an action (lower case) -> its index.
    aliases: ClassVar[dict[str, int]] = {}
    default_max_steps: ClassVar[int] = 100

    def __init__(
        self,
        env_id: str | None = None,
        *,
        max_steps: int | None = None,
        format_penalty: float = -1.0,
        render_mode: str | None = None,
        **env_kwargs: Any,
    ):
        super().__init__(render_mode=render_mode)
        env_id = env_id or type(self).env_id
        if not env_id:
            raise ValueError("GymTextEnv needs env_id, e.g. make('gym:FrozenLake-v1')")
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.gym_env_id = env_id
        self.env_kwargs = env_kwargs
        self.format_penalty = format_penalty
        self._env = self._build()
        n = self._env.action_space.n
        names = self.action_names or tuple(str(k) for k in range(n))
        if len(names) != n:
            raise ValueError(f"{env_id} has {n} actions but the table names {len(names)}")
        self.names = names
        self._words = {w.lower(): k for k, w in enumerate(names)} | dict(self.aliases)
        self.max_steps = max_steps or self._spec_steps or self.default_max_steps
        self._set_tables()
        self._started = False

    # --- the wrapped env ----------------------------------------------------------------------
    def _build(self, **extra: Any) -> gymnasium.Env:
        """``gymnasium.make`` with the ansi renderer, unwrapped (the adapter keeps its own time limit)."""
        try:
            spec_ = gymnasium.spec(self.gym_env_id)
        except gymnasium.error.Error as e:
            raise ValueError(f"unknown gymnasium env {self.gym_env_id!r}: {e}") from None
        self._spec_steps = spec_.max_episode_steps
        try:
            env = gymnasium.make(
                self.gym_env_id, render_mode="ansi", disable_env_checker=True, **{**self.env_kwargs, **extra}
            )
        except TypeError as e:
            raise ValueError(f"bad arguments for {self.gym_env_id}: {e}") from None
        if not isinstance(env.action_space, spaces.Discrete):
            raise ValueError(f"{self.gym_env_id} has a {type(env.action_space).__name__} action space; "
                             "the adapter needs Discrete")
        if "ansi" not in env.unwrapped.metadata.get("render_modes", []):
            raise ValueError(f"{self.gym_env_id} has no text ('ansi') renderer")
        return env.unwrapped

    def _set_tables(self) -> None:
        """Read the wrapped env's transition table (if any); planner caches start empty."""
        P = getattr(self._env, "P", None)
        self._tables: Tables | None = tables(P) if isinstance(P, dict) and P else None
        self._q: np.ndarray | None = None
        self._dist: np.ndarray | None = None

    def _state(self) -> Any:
        """A comparable snapshot of the wrapped state (toy-text: the state index)."""
        s = getattr(self._env, "s", None)
        return int(s) if s is not None else self._env.render()

    # --- text ---------------------------------------------------------------------------------
    def instructions(self) -> str:
        return (
            f"You control the Gymnasium environment {self.gym_env_id}; its state is shown as text.\n"
            f"Actions: {', '.join(self.names)}.\n"
            f"An answer that is not one of them costs {self.format_penalty:+g} and wastes a turn.\n"
            f"Answer format: think briefly if you like, then write one action, e.g. "
            f"{self.format_action(0)}."
        )

    def task_description(self) -> str:
        return f"Reach the goal of {self.gym_env_id} within {self.max_steps} steps."

    def describe(self) -> str:
        """The current state as text (generic: the ansi render without colour codes)."""
        return _ANSI.sub("", str(self._env.render())).rstrip("\n")

    def _obs(self) -> str:
        return f"{self.describe()}\nStep {self._steps}/{self.max_steps}. Last: {self._message}"

    def render(self) -> str | None:
        return self.describe() if self.render_mode == "ansi" and self._started else None

    def format_action(self, a: int) -> str:
        return f"<answer>{self.names[a]}</answer>"

    def parse_action(self, text: str) -> list[int] | None:
        body = self.answer_body(text, _MAX_BODY)
        if body is None:
            return None
        a = self._words.get(" ".join(body.split()))
        return None if a is None else [a]

    def explain_invalid(self, text: Any) -> str:
        how = f"answer with one of {', '.join(self.names)}, e.g. {self.format_action(0)}"
        if not isinstance(text, str):
            return f"the answer is not text; {how}"
        if self.answer_body(text, _MAX_BODY) is None:
            low = text.lower()
            if low.rfind("</answer>") >= 0 and low.rfind("<answer>") >= 0:
                return f"the answer block is too long; {how}"
            return f"no <answer>...</answer> block; {how}"
        return f"{self.answer_body(text, _MAX_BODY).strip()[:20]!r} is not an action; {how}"

    def action_candidates(self) -> list[str]:
        return [self.format_action(a) for a in range(len(self.names))]

    # --- seeds and tasks (subclasses map seeds to disjoint task sets) -------------------------
    def _check_seed(self, seed: int | None) -> str:
        """The split a seed belongs to ("train" for None); a seed outside both ranges is an error."""
        if seed is None or seed in self.train_seeds:
            return "train"
        if seed in self.test_seeds:
            return "test"
        tr, te = self.train_seeds, self.test_seeds
        raise ValueError(
            f"seed {seed} is outside {self.name}'s train seeds {tr.start}..{tr.stop - 1} "
            f"and test seeds {te.start}..{te.stop - 1}"
        )

    def _start_task(self, split: str, seed: int | None) -> None:
        """Reset the wrapped env to a task of ``split``. Generic: the seed goes to the wrapped env."""
        self._env.reset(seed=seed)

    # --- episode ------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        split = self._check_seed(seed)
        super().reset(seed=seed)
        self._options = dict(options or {})
        self._start_task(split, seed)
        self._started = True
        self._steps, self._solved, self._done = 0, False, False
        self._message = "a new episode"
        if self._tables is not None and self._dist is None:
            self._dist = distances(self._tables, self._success)
        self._d0 = self._distance()
        self._progress = self._measure()
        self._best, self._stagnation = self._progress, 0
        diag = self._diagnosis(None, "new episode", {})
        return self._obs(), self.make_info(valid=True, effective=False, success=False, diagnosis=diag, action=None)

    def step(self, action: str):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        self._steps += 1
        parsed = self.parse_action(action)
        diff: dict[str, Any] = {}
        terminated = False
        if parsed is None:
            fail, reward, effective = self.failure_types("invalid_format"), self.format_penalty, False
            detail = self.explain_invalid(action)
        else:
            a = parsed[0]
            s0 = self._state()
            _, reward, terminated, _, _ = self._env.step(a)
            s1 = self._state()
            effective = s1 != s0
            if effective and isinstance(s0, int):
                diff["state"] = [s0, s1]
            fail = self._classify(s0, a, s1, float(reward), bool(terminated))
            self._solved = self._solved or self._success(s0, a, s1, float(reward), bool(terminated))
            detail = self._explain(s0, a, s1, float(reward), fail)
            self._progress = self._measure()
        truncated = not terminated and self._steps >= self.max_steps
        if truncated:
            fail = self.failure_types("timeout")
            detail += f"; ran out of steps ({self.max_steps})"
        self._done = terminated or truncated
        self._message = detail
        if self._progress > self._best + 1e-12:
            self._best, self._stagnation = self._progress, 0
        else:
            self._stagnation += 1
        diag = self._diagnosis(fail, detail, diff)
        info = self.make_info(
            valid=parsed is not None, effective=effective, success=self._solved, diagnosis=diag,
            action=parsed[0] if parsed else None,
        )
        return self._obs(), float(reward), bool(terminated), truncated, info

    # --- per-env rules (subclasses refine) -----------------------------------------------------
    def _success(self, s: Any, a: int, s2: Any, r: float, done: bool) -> bool:
        return done and r > 0

    def _classify(self, s: Any, a: int, s2: Any, r: float, done: bool) -> Enum | None:
        """The failure a transition shows, or None. Generic: an unchanged state is ``no_effect``."""
        return GymFailure.NO_EFFECT if s2 == s and not done else None

    def _explain(self, s: Any, a: int, s2: Any, r: float, fail: Enum | None) -> str:
        note = f"{self.names[a]}: reward {r:+g}"
        return note + (f" ({fail.value.replace('_', ' ')})" if fail is not None else "")

    # --- progress and diagnosis ---------------------------------------------------------------
    def _distance(self) -> float:
        if self._dist is None:
            return float("inf")
        return float(self._dist[self._state()])

    def _measure(self) -> float:
        if self._solved:
            return 1.0
        d, d0 = self._distance(), self._d0
        if not np.isfinite(d) or not np.isfinite(d0) or d0 <= 0:
            return 0.0
        return float(min(0.99, max(0.0, 1.0 - d / d0)))

    def _diagnosis(self, fail: Enum | None, detail: str, diff: dict) -> Diagnosis:
        return Diagnosis(
            failure_type=fail.value if fail is not None else None,
            detail=detail,
            state_diff=diff,
            progress=self._progress,
            stagnation=self._stagnation,
            extra={"steps": self._steps, "max_steps": self.max_steps},
        )

    # --- predicates ---------------------------------------------------------------------------
    def predicates(self) -> dict[str, Predicate]:
        out = {"invalid_format": Predicate("invalid_format", "the answer text does not name an action", "before"),
               "solved": Predicate("solved", "the task is solved", "after")}
        if self._tables is not None:
            for fail, pred in self.failure_predicates.items():
                if pred not in out:
                    out[pred] = Predicate(pred, f"the action may be diagnosed {fail}", "before")
        return out

    def _ready(self) -> bool:
        if not self._started:
            raise RuntimeError("call reset() before check()")
        return True

    def _risk(self, name: str, action: str) -> bool:
        self._ready()
        parsed = self.parse_action(action)
        if parsed is None or self._tables is None:
            return False
        want = next(f for f, p in self.failure_predicates.items() if p == name)
        s, a = self._state(), parsed[0]
        for p, s2, r, d in self._env.P[s][a]:
            f = self._classify(s, a, int(s2), float(r), bool(d))
            if p > 0 and f is not None and f.value == want:
                return True
        return False

    def _pred_invalid_format(self, action: str) -> bool:
        return self._ready() and self.parse_action(action) is None

    def _pred_solved(self, action: None) -> bool:
        return self._ready() and self._solved

    # --- oracle -------------------------------------------------------------------------------
    def oracle_action(self) -> str | None:
        """Best action for the steps left by finite-horizon value iteration on ``P``; None without a
        table, before reset, or once the episode is over."""
        if self._tables is None or not self._started or self._done:
            return None
        left = self.max_steps - self._steps
        if self._q is None or self._q.shape[0] <= left:
            self._q = q_values(self._tables, self.max_steps)
        return self.format_action(int(np.argmax(self._q[left, self._state()])))

    def close(self) -> None:
        self._env.close()

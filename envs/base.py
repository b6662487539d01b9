"""The TextEnv contract every agentsd environment follows.

A TextEnv is a ``gymnasium.Env`` whose observations are strings and whose actions are the model's raw
text. The env parses that text itself (``parse_action``) so parsing is testable without a model, and
unparseable text is an ordinary step: a format penalty and ``info["action_is_valid"] = False``, never an
exception.

Every ``info`` dict returned by ``reset`` and ``step`` carries:

- ``action_is_valid``: the text parsed into at least one legal action (``True`` after ``reset``);
- ``action_is_effective``: the action(s) changed the state;
- ``success``: the task is solved;
- ``diagnosis``: a plain dict made by :class:`Diagnosis` (failure type from the env's own enum,
  state diff, progress score in [0, 1], stagnation count).

Tasks come from seeds. Each env declares disjoint ``train_seeds`` and ``test_seeds`` ranges so that
memory and learning only ever see train tasks.

Predicates: an env may expose a small vocabulary of executable checks (``predicates()``, each a
:class:`Predicate`), so that guardrails learned from failures can be checked before an action runs and
skills verified after. ``check(name, action, **params)`` evaluates one on the current state and never
changes the env (state, counters, RNG):

- a ``"before"`` predicate takes the proposed raw action text, exactly as the model would write it,
  and says whether stepping it now would run the named risk (``True`` = the risk is present); it
  simulates the action, it does not run it;
- an ``"after"`` predicate looks at the current state only (no action), e.g. ``check("solved")``.

``failure_predicates`` maps a failure type (a value of the env's ``failure_types`` enum) to the
"before" predicate that detects it ahead of time. A subclass lists its predicates in ``predicates()``
and implements each as a method ``_pred_<name>(self, action, **params) -> bool``; ``check`` validates,
then dispatches: an unknown name (or one without its method) raises ``KeyError`` listing the known
names, a "before" predicate without an action or an "after" one with an action raises ``ValueError``,
and parameters must be exactly those the predicate declares (all required), else ``TypeError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

import gymnasium as gym
from gymnasium import spaces

#: Text spaces accept any string up to this many characters (gymnasium's Text space needs a bound).
MAX_TEXT = 1_000_000


class AnyText(spaces.Text):
    """A Text space whose ``contains`` accepts any string: model output is arbitrary text."""

    def __init__(self, max_length: int = MAX_TEXT, seed: int | None = None):
        super().__init__(max_length=max_length, min_length=0, seed=seed)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and len(x) <= self.max_length


@dataclass
class Diagnosis:
    """What an env says about one step, for memory summarizers and planners.

    ``failure_type`` is a value of the env's own failure enum, or ``None`` when the step was fine.
    ``progress`` is in [0, 1] (1 = solved). ``stagnation`` counts consecutive steps without progress.
    """

    failure_type: str | None = None
    detail: str = ""
    state_diff: dict[str, Any] = field(default_factory=dict)
    progress: float = 0.0
    stagnation: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        # A shallow dict, not dataclasses.asdict: its recursive deep copy was ~75% of a Sokoban step,
        # and every field is built fresh for each step anyway.
        return {
            "failure_type": self.failure_type,
            "detail": self.detail,
            "state_diff": self.state_diff,
            "progress": self.progress,
            "stagnation": self.stagnation,
            "extra": self.extra,
        }


@dataclass(frozen=True)
class Predicate:
    """One executable check an env offers (see the module docstring).

    ``when`` is ``"before"`` (a risk check on the current state and a proposed raw action text,
    without running it) or ``"after"`` (a verification of the current state). ``params`` maps each
    parameter name to a short type and meaning, e.g. ``{"n": "int, number of boxes"}``.
    """

    name: str
    description: str
    when: str
    params: dict[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.when not in ("before", "after"):
            raise ValueError(f"Predicate.when must be 'before' or 'after', got {self.when!r}")


class UnknownPredicateError(KeyError):
    """``TextEnv.check`` got a name the env has no predicate for; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError quotes its message; we want a readable line
        return str(self.args[0])


class TextEnv(gym.Env[str, str]):
    """Base class for text environments.

    Subclasses set ``name``, ``train_seeds``, ``test_seeds``, ``failure_types`` and implement
    ``reset``, ``step``, ``parse_action``, ``instructions`` and ``oracle_action``; optionally
    ``predicates``, their ``_pred_<name>`` methods and ``failure_predicates``.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 4}
    name: ClassVar[str] = "text-env"
    train_seeds: ClassVar[range] = range(0, 1_000_000)
    test_seeds: ClassVar[range] = range(1_000_000, 1_100_000)
    failure_types: ClassVar[type[Enum] | None] = None
    #: failure type value -> name of the "before" predicate that detects that failure ahead of time.
    failure_predicates: ClassVar[dict[str, str]] = {}

    observation_space = AnyText()
    action_space = AnyText()

    def __init__(self, render_mode: str | None = None):
        super().__init__()
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode

    # --- what the agent is told -------------------------------------------------------------
    def instructions(self) -> str:
        """Task rules and the action format, for the system prompt. Must not depend on the seed."""
        raise NotImplementedError

    def task_description(self) -> str:
        """The current task's goal in one or two sentences (may depend on the seed). Default: none."""
        return ""

    # --- parsing and oracle -------------------------------------------------------------------
    def parse_action(self, text: str) -> list[Any] | None:
        """Parse raw model text into a list of actions, or ``None`` when the text is invalid."""
        raise NotImplementedError

    def oracle_action(self) -> str | None:
        """Raw text (in the exact format the model should produce) of a correct next turn from the
        current state, or ``None`` when the oracle has no answer (e.g. unsolvable or timed out)."""
        raise NotImplementedError

    def action_candidates(self) -> list[str] | None:
        """Every well-formed action text worth proposing in the current state, in the exact format the
        model should produce, when that set is small and finite (Sokoban: the four moves); ``None``
        when actions are open-ended text. The planner uses it to mask a vetoed action: the re-proposal
        is decoded within the candidates no guardrail forbids. Default: ``None``."""
        return None

    # --- predicates ---------------------------------------------------------------------------
    def predicates(self) -> dict[str, Predicate]:
        """The env's predicate vocabulary, by name. Default: none."""
        return {}

    def check(self, name: str, action: str | None = None, **params: Any) -> bool:
        """Evaluate predicate ``name`` on the current state without changing the env.

        Dispatch: ``_pred_<name>(action, **params)``; a "before" predicate without such a method goes
        to the env's ``_risk(name, action)`` (one step simulation serving all its risks). A "before" predicate needs ``action`` (the raw text the model would write) and says whether
        stepping it would run the risk; an "after" predicate takes no action. Raises
        :class:`UnknownPredicateError` (a ``KeyError``) for an unknown name, ``ValueError`` for a
        missing or superfluous action, ``TypeError`` for missing or unknown parameters.
        """
        preds = self.predicates()
        pred = preds.get(name)
        fn = getattr(self, f"_pred_{name}", None) if pred is not None else None
        if fn is None and pred is not None and pred.when == "before" and hasattr(self, "_risk"):
            # a "before" predicate without its own method is one of the env's simulated step risks
            fn = lambda action: self._risk(name, action)  # noqa: E731
        if fn is None:
            known = ", ".join(sorted(preds)) or "none"
            raise UnknownPredicateError(f"unknown predicate {name!r} for env {self.name!r} (known: {known})")
        if pred.when == "before" and action is None:
            raise ValueError(f"predicate {name!r} is checked before an action: give the proposed action text")
        if pred.when == "after" and action is not None:
            raise ValueError(f"predicate {name!r} verifies the current state: it takes no action")
        if set(params) != set(pred.params):
            want = ", ".join(sorted(pred.params)) or "none"
            raise TypeError(f"predicate {name!r} takes parameters ({want}), got ({', '.join(sorted(params))})")
        return bool(fn(action, **params))

    # --- helpers ------------------------------------------------------------------------------
    @staticmethod
    def answer_body(text: Any, max_body: int) -> str | None:
        """Lower-cased content of the last ``<answer>...</answer>`` block, or None when there is no
        block or it is longer than ``max_body``. ``rfind`` keeps this linear on huge adversarial text
        (a lazy regex would backtrack)."""
        if not isinstance(text, str):
            return None
        low = text.lower()
        end = low.rfind("</answer>")
        if end < 0:
            return None
        start = low.rfind("<answer>", 0, end)
        if start < 0 or end - start - 8 > max_body:
            return None
        return low[start + 8 : end]

    @classmethod
    def seeds(cls, split: str) -> range:
        if split == "train":
            return cls.train_seeds
        if split == "test":
            return cls.test_seeds
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")

    @staticmethod
    def make_info(
        *, valid: bool, effective: bool, success: bool, diagnosis: Diagnosis, **extra: Any
    ) -> dict[str, Any]:
        info = {
            "action_is_valid": valid,
            "action_is_effective": effective,
            "success": success,
            "diagnosis": diagnosis.to_dict(),
        }
        info.update(extra)
        return info

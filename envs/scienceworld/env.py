"""The ScienceWorld benchmark behind the TextEnv contract (see :class:`ScienceWorldEnv`)."""

from __future__ import annotations

import shutil
from enum import Enum
from typing import Any

from agentsd.envs.base import Diagnosis, Predicate, TextEnv
from agentsd.envs.scienceworld.tasks import N_TEST, N_TRAIN, TASKS, deal

INSTALL = "pip install -e '.[benchmarks]'"
JAVA = "apt-get install -y --no-install-recommends default-jre-headless"
_MAX_BODY = 300
_UNKNOWN = "No known action matches that input."


class ScienceWorldFailure(str, Enum):
    """Why a ScienceWorld step went wrong (``info["diagnosis"]["failure_type"]`` holds the value)."""

    INVALID_ACTION = "invalid_action"  # no answer block, or the simulator knows no such action
    AMBIGUOUS_ACTION = "ambiguous_action"  # the simulator asks which of several objects was meant
    NO_SCORE_CHANGE = "no_score_change"  # ``patience`` valid steps in a row without a score gain
    TASK_FAILED = "task_failed"  # the score fell below 0: the simulator ends the task as failed
    TIMEOUT = "timeout"  # ran out of steps


F = ScienceWorldFailure

RULES = (
    "You are an agent in ScienceWorld, a text simulation of elementary science tasks (thermodynamics, "
    "electricity, biology, chemistry, measurement). Act with one simulator command per turn, e.g. "
    "<answer>look around</answer>, <answer>open door to kitchen</answer>, <answer>go to kitchen</answer>, "
    "<answer>pick up thermometer</answer>, <answer>focus on red box</answer>, <answer>use thermometer on "
    "water</answer>, <answer>move metal pot to stove</answer>, <answer>activate stove</answer>, "
    "<answer>wait1</answer>, <answer>inventory</answer>. When the simulator lists numbered choices for an "
    "ambiguous command, answer with the number. The score runs 0-100; focusing on the wrong object ends "
    "the task. Reward: the score gain / 100 per step, {fmt:+g} for text that is no known action."
)


def _simulator():
    """A fresh ScienceWorld simulator (one JVM); one-line errors for a missing package or Java."""
    try:
        from scienceworld import ScienceWorldEnv as Sim
    except ImportError as e:
        raise ImportError(f"the scienceworld env needs the scienceworld package: {INSTALL}") from e
    if shutil.which("java") is None:
        raise RuntimeError(f"the scienceworld env needs Java 17 (no java on PATH): {JAVA}")
    return Sim("", envStepLimit=10**9)  # step limits are ours (max_steps)


class ScienceWorldEnv(TextEnv):
    """ScienceWorld (Wang et al. 2022): 30 task types of elementary-science procedures, scored 0-100,
    over the simulator (a JVM) shipped by the PyPI ``scienceworld`` package.

    ## Action
    The last ``<answer>...</answer>`` block holds one simulator command (free text, e.g. ``open door
    to kitchen``). Text without a block, or a command the simulator does not know, is invalid:
    ``format_penalty`` and no change.

    ## Observation
    The task description, the step and score, and the simulator's response to the last command
    (after ``reset``: ``look around``).

    ## Reward
    The score gain / 100 per step (the score may also fall); ``format_penalty`` (-0.1) on an invalid
    turn.

    ## Episode end
    Terminated when the simulator completes the task (score 100: success) or fails it (score < 0);
    truncated after ``max_steps`` (100, the simulator's own default limit).

    ## Info
    ``action_is_valid``, ``action_is_effective`` (the score changed), ``success``, ``score`` (0-100),
    ``task`` (name, variation, split) and ``diagnosis``: a :class:`ScienceWorldFailure` value,
    ``state_diff`` (``score`` [before, after]), ``progress`` (score / 100, at least 0), ``stagnation``
    (steps without a score gain) and ``extra`` (steps, max_steps, score). ``no_score_change`` is
    reported once ``stagnation`` reaches ``patience`` (10).

    ## Predicates
    "after" only: ``score_ge(n)`` and ``task_done``. The simulator's set of valid actions is too
    costly to build per check for exact "before" predicates.

    ## Tasks
    ScienceWorld's own variation splits: seed ``s`` in ``train_seeds`` (0..3591) is the ``s``-th
    train (task, variation) of :func:`~agentsd.envs.scienceworld.tasks.deal` (tasks dealt round robin),
    in ``test_seeds`` (1000000..1001818) the ``s - 1000000``-th test one; dev variations are not used.
    ``task`` (a task name) and ``variation`` fix the task instead. Another seed is an error.

    ## Oracle
    The simulator's gold action sequence for the variation (``gold=True`` generates it at load),
    replayed while the episode has followed it; off that path the oracle has no answer (None).
    """

    name = "scienceworld"
    train_seeds = range(0, N_TRAIN)
    test_seeds = range(1_000_000, 1_000_000 + N_TEST)
    failure_types = ScienceWorldFailure

    def __init__(
        self,
        task: str | None = None,
        variation: int = 0,
        max_steps: int = 100,
        patience: int = 10,
        gold: bool = True,
        simplifications: str = "",
        render_mode: str | None = None,
        format_penalty: float = -0.1,
    ):
        super().__init__(render_mode=render_mode)
        if task is not None and task not in TASKS:
            raise ValueError(f"unknown scienceworld task {task!r} (known: {', '.join(TASKS)})")
        if max_steps < 1 or patience < 1:
            raise ValueError("max_steps and patience must be >= 1")
        self.fixed = None if task is None else (task, int(variation))
        self.max_steps, self.patience, self.gold = max_steps, patience, gold
        self.simplifications, self.format_penalty = simplifications, format_penalty
        self._sim = None
        self._loaded: tuple[str, int] | None = None
        self.task: tuple[str, int] | None = None

    # --- text ---------------------------------------------------------------------------------
    def instructions(self) -> str:
        return RULES.format(fmt=self.format_penalty)

    def task_description(self) -> str:
        return self.description if self.task is not None else "A ScienceWorld task (a new one each episode)."

    def parse_action(self, text: str) -> list[str] | None:
        body = self.answer_body(text, _MAX_BODY)
        body = None if body is None else " ".join(body.split())
        return [body] if body else None

    # --- episode ------------------------------------------------------------------------------
    def task_of(self, seed: int) -> tuple[str, int, str]:
        """(task name, variation, split) of a seed; ValueError outside both splits."""
        if seed in self.train_seeds:
            return (*deal("train")[seed - self.train_seeds.start], "train")
        if seed in self.test_seeds:
            return (*deal("test")[seed - self.test_seeds.start], "test")
        raise ValueError(
            f"scienceworld task seed {seed} out of range: train {self.train_seeds.start}..{self.train_seeds.stop - 1}, "
            f"test {self.test_seeds.start}..{self.test_seeds.stop - 1}"
        )

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None and self.fixed is None:
            self.task_of(seed)  # fail before starting anything
        super().reset(seed=seed)
        if self.fixed is not None:
            name, var, split = (*self.fixed, "fixed")
        else:
            name, var, split = self.task_of(int(self.np_random.integers(N_TRAIN)) if seed is None else seed)
        if self._sim is None:
            self._sim = _simulator()
        if self._loaded != (name, var):
            self._sim.load(name, var, self.simplifications, generateGoldPath=self.gold)
            self._loaded = (name, var)
            self._gold = list(self._sim.get_gold_action_sequence()) if self.gold else []
        # The package's own step() also lists every valid action each turn (~0.3 s): we step its server.
        self._sim.server.reset()
        self.task, self.split = (name, var), split
        self.description = str(self._sim.taskdescription()).strip()
        self.response = str(self._sim.server.step("look around")).strip()
        self.score, self.steps, self.done, self.solved = 0, 0, False, False
        self._on_gold, self._stagnation = True, 0
        diag = self._diagnosis(None, "new task", {})
        return self._obs(), self._info(True, False, diag)

    def step(self, action: str):
        if self.task is None:
            raise RuntimeError("call reset() before step()")
        if self.done:
            raise RuntimeError("the episode is over: call reset()")
        parsed = self.parse_action(action)
        gold = self._gold[self.steps] if self._on_gold and self.steps < len(self._gold) else None
        self.steps += 1
        before, diff, fail, valid = self.score, {}, None, True
        if parsed is None:
            fail, valid, reward = F.INVALID_ACTION, False, self.format_penalty
            detail = "no <answer>...</answer> block (or it is empty or too long)"
            self._on_gold = False
        else:
            self._on_gold = gold is not None and parsed[0] == " ".join(gold.lower().split())
            resp = str(self._sim.server.step(parsed[0])).strip()
            self.response = resp
            self.score = int(round(100 * float(self._sim.server.getScore())))
            completed = bool(self._sim.server.getCompleted())
            reward = (self.score - before) / 100
            detail = resp.splitlines()[0] if resp else ""
            if resp.startswith(_UNKNOWN):
                fail, valid, reward = F.INVALID_ACTION, False, self.format_penalty
            elif resp.lower().startswith("ambiguous request"):
                fail = F.AMBIGUOUS_ACTION
            if self.score != before:
                diff["score"] = [before, self.score]
            if self.score < 0:
                fail, self.done = F.TASK_FAILED, True
            elif completed:
                self.done, self.solved = True, self.score >= 100
        self._stagnation = 0 if self.score > before else self._stagnation + 1
        if fail is None and self._stagnation >= self.patience:
            fail = F.NO_SCORE_CHANGE
        truncated = self.steps >= self.max_steps and not self.done
        if truncated:
            fail, detail = F.TIMEOUT, detail + f"; ran out of steps ({self.max_steps})"
            self.done = True
        info = self._info(valid, bool(diff), self._diagnosis(fail, detail, diff))
        terminated = self.done and not truncated
        return self._obs(), float(reward), terminated, truncated, info

    def close(self) -> None:
        if self._sim is not None:
            self._sim.close()
            self._sim, self._loaded = None, None

    # --- diagnosis ----------------------------------------------------------------------------
    def _diagnosis(self, fail: ScienceWorldFailure | None, detail: str, diff: dict) -> Diagnosis:
        return Diagnosis(
            failure_type=None if fail is None else fail.value,
            detail=detail,
            state_diff=diff,
            progress=1.0 if self.solved else min(0.99, max(0.0, self.score / 100)),
            stagnation=self._stagnation,
            extra={"steps": self.steps, "max_steps": self.max_steps, "score": self.score},
        )

    def _info(self, valid: bool, effective: bool, diag: Diagnosis) -> dict[str, Any]:
        name, var = self.task
        return self.make_info(valid=valid, effective=effective, success=self.solved, diagnosis=diag,
                              score=self.score, task={"name": name, "variation": var, "split": self.split})

    # --- predicates ---------------------------------------------------------------------------
    def predicates(self) -> dict[str, Predicate]:
        return {
            "score_ge": Predicate("score_ge", "the task score is at least n (0-100)", "after", {"n": "int, score"}),
            "task_done": Predicate("task_done", "the task is completed with score 100", "after"),
        }

    def _pred_score_ge(self, action: None, n: int) -> bool:
        return self.task is not None and self.score >= int(n)

    def _pred_task_done(self, action: None) -> bool:
        return self.task is not None and self.solved

    # --- views --------------------------------------------------------------------------------
    def _obs(self) -> str:
        return (f"{self.description}\nStep {self.steps}/{self.max_steps}, score {self.score}/100.\n"
                f"{self.response}")

    def render(self) -> str | None:
        return self.response if self.render_mode == "ansi" and self.task is not None else None

    # --- oracle -------------------------------------------------------------------------------
    def oracle_action(self) -> str | None:
        if self.task is None or self.done or not self._on_gold or self.steps >= len(self._gold):
            return None
        return f"<answer>{self._gold[self.steps]}</answer>"

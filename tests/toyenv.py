"""A tiny TextEnv used by tests of the generic machinery (registry, rollout, CLI plumbing).

Counter: reach ``target`` by answering <answer>inc</answer> (+1) or <answer>dec</answer> (-1).
TippedSokoban: Sokoban whose episodes never tie in return (for learner tests that must not depend on luck).
"""

from __future__ import annotations

import itertools
import re
from enum import Enum

from agentsd.envs.base import Diagnosis, TextEnv
from agentsd.envs.sokoban.env import SokobanEnv


class CounterFailure(str, Enum):
    invalid_format = "invalid_format"
    wrong_way = "wrong_way"
    timeout = "timeout"


class CounterEnv(TextEnv):
    name = "counter"
    train_seeds = range(0, 1000)
    test_seeds = range(1000, 2000)
    failure_types = CounterFailure
    _re = re.compile(r"<answer>\s*(inc|dec)\s*</answer>", re.I)

    def __init__(self, max_steps: int = 8, render_mode: str | None = None):
        super().__init__(render_mode=render_mode)
        self.max_steps = max_steps

    def instructions(self) -> str:
        return "Reach the target number. Answer <answer>inc</answer> or <answer>dec</answer>."

    def task_description(self) -> str:
        return f"Target: {self.target}."

    def _obs(self) -> str:
        return f"Value: {self.value}"

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.value = 0
        self.target = int(self.np_random.integers(1, 4))
        self.steps = 0
        return self._obs(), self.make_info(valid=True, effective=False, success=False, diagnosis=Diagnosis())

    def parse_action(self, text: str):
        m = self._re.search(text)
        return [m.group(1).lower()] if m else None

    def step(self, action: str):
        self.steps += 1
        acts = self.parse_action(action)
        truncated = self.steps >= self.max_steps
        if acts is None:
            d = Diagnosis(failure_type=CounterFailure.invalid_format.value)
            info = self.make_info(valid=False, effective=False, success=False, diagnosis=d)
            return self._obs(), -1.0, False, truncated, info
        before = abs(self.target - self.value)
        self.value += 1 if acts[0] == "inc" else -1
        after = abs(self.target - self.value)
        success = self.value == self.target
        fail = None if after < before else CounterFailure.wrong_way.value
        d = Diagnosis(failure_type=fail, progress=1.0 if success else 0.0)
        info = self.make_info(valid=True, effective=True, success=success, diagnosis=d)
        return self._obs(), (10.0 if success else -0.1), success, truncated and not success, info

    def oracle_action(self) -> str:
        return "<answer>inc</answer>" if self.value < self.target else "<answer>dec</answer>"


class TippedSokobanEnv(SokobanEnv):
    """Sokoban whose every episode gets its own small bonus on its first step (0.01 to 0.09, by a counter
    of resets), so that two episodes of one task never have equal returns: every GRPO group has nonzero
    advantages whatever the model samples (Sokoban's own rewards are multiples of 0.1 apart). For tests
    that must see the learner move the weights on any machine."""

    _resets = itertools.count()

    def reset(self, *, seed=None, options=None):
        out = super().reset(seed=seed, options=options)
        self._tip = 0.01 * (next(TippedSokobanEnv._resets) % 9 + 1)
        return out

    def step(self, action: str):
        obs, reward, terminated, truncated, info = super().step(action)
        reward, self._tip = reward + self._tip, 0.0
        return obs, reward, terminated, truncated, info

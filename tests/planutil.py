"""Helpers for the planner tests: a scripted policy (the real hf policy runs in the integration tests)."""

from __future__ import annotations

import threading

from agentsd.policy.base import Generation, Policy

# goal (1,1); the player right of it pushes the box Right into the non-goal corner (1,4): a deadlock
CORNER_RIGHT = "######\n#.@$ #\n#    #\n#    #\n######"


def is_plan_prompt(messages) -> bool:
    last = messages[-1]["content"].lower()
    return "write a short plan" in last or "write new numbered subgoals" in last


class ScriptedPolicy(Policy):
    """Answers plan requests with ``plan`` and act requests with ``actions`` in order (the last one
    repeats). Records every prompt and every batch size; ``fail_after`` act calls raise (crash tests)."""

    name = "scripted"

    def __init__(self, actions, plan="1. reach the box\n2. push it onto the goal", fail_after=None):
        self.actions = list(actions)
        self.plan = plan
        self.fail_after = fail_after
        self.prompts: list[list[dict[str, str]]] = []
        self.samplings: list = []  # the sampling of every act request
        self.batches: list[int] = []
        self.acts = 0
        self._lock = threading.Lock()

    def generate(self, batch, sampling=None):
        out = []
        with self._lock:
            self.batches.append(len(batch))
            for msgs in batch:
                self.prompts.append(msgs)
                if is_plan_prompt(msgs):
                    out.append(Generation(text=self.plan, token_ids=[1, 2, 3], logprobs=[0.0] * 3))
                    continue
                if self.fail_after is not None and self.acts >= self.fail_after:
                    raise RuntimeError("scripted crash")
                text = self.actions[min(self.acts, len(self.actions) - 1)]
                self.acts += 1
                self.samplings.append(sampling)
                out.append(Generation(text=text, token_ids=[5, 6], logprobs=[-0.1, -0.2]))
        return out

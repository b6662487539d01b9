"""Trajectory records: what happened in one episode, enough to re-score it offline.

Per turn we keep the prompt messages the policy saw, the generated token ids and their behaviour
log-probs, the action text, the reward and the env's info (with its diagnosis). Trajectories are
written one JSON object per line; a partly written file (Ctrl-C) stays valid up to its last line.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field


class Turn(BaseModel):
    messages: list[dict[str, str]]
    response: str
    token_ids: list[int] = Field(default_factory=list)
    logprobs: list[float] = Field(default_factory=list)
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    info: dict[str, Any] = Field(default_factory=dict)
    observation: str = ""  # the observation after this step
    #: privileged ground truth for the state this turn acted in (the env oracle's answer), recorded only
    #: when the rollout is asked to (``rollout(..., reference=True)``: opd's teacher context); never
    #: shown to the policy
    reference: str | None = None


class Trajectory(BaseModel):
    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    env: str
    seed: int
    split: str = "train"
    group: int = 0  # index within a group of rollouts of the same seed
    policy: str = ""
    policy_version: int = 0
    env_kwargs: dict[str, Any] = Field(default_factory=dict)
    initial_observation: str = ""
    turns: list[Turn] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)

    @property
    def total_reward(self) -> float:
        return float(sum(t.reward for t in self.turns))

    @property
    def success(self) -> bool:
        return bool(self.turns) and bool(self.turns[-1].info.get("success", False))

    @property
    def done(self) -> bool:
        return bool(self.turns) and (self.turns[-1].terminated or self.turns[-1].truncated)

    @property
    def num_tokens(self) -> int:
        return sum(len(t.token_ids) for t in self.turns)

    @property
    def invalid_actions(self) -> int:
        return sum(1 for t in self.turns if not t.info.get("action_is_valid", True))

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "env": self.env,
            "seed": self.seed,
            "split": self.split,
            "group": self.group,
            "success": self.success,
            "return": self.total_reward,
            "turns": len(self.turns),
            "invalid": self.invalid_actions,
            "tokens": self.num_tokens,
        }


def write_jsonl(path: str | os.PathLike, trajectories: Iterable[Trajectory], append: bool = True) -> int:
    """Append trajectories as JSON lines; each line is flushed whole so an interrupt leaves valid JSONL."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "a" if append else "w", encoding="utf-8") as f:
        for t in trajectories:
            f.write(t.model_dump_json() + "\n")
            f.flush()
            n += 1
    return n


def read_jsonl(path: str | os.PathLike) -> Iterator[Trajectory]:
    """Read trajectories; a truncated last line (from a hard kill mid-write) is skipped, not fatal."""
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            yield Trajectory.model_validate(json.loads(line))
        except (json.JSONDecodeError, ValueError):
            if i == len(lines) - 1:
                return
            raise

"""The Policy interface every model backend implements.

A policy maps a batch of chat conversations to completions, recording for each completion the
generated token ids and their behaviour log-probs (the log-probs of the distribution actually sampled
from, after temperature / top-p / constraints), which on-policy learning needs for importance weights.
``score`` re-scores given completion token ids under given prompts (token-in, token-out: the completion
is never re-tokenized) and is what a teacher uses.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}
Conversation = list[Message]


class Sampling(BaseModel):
    """Decoding parameters. ``temperature == 0`` means greedy."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(64, ge=1)
    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0)
    stop: list[str] = Field(default_factory=list)
    #: hf: a generator seeded with this on every generate call (each call reproducible; successive calls,
    #: e.g. the turns of a rollout, reuse the same random numbers); None = torch's global RNG
    seed: int | None = None
    #: Constrain the completion to this regular expression (grammar-constrained decoding), or None.
    regex: str | None = None
    #: Constrain the completion to JSON matching this schema, or None.
    json_schema: dict[str, Any] | None = None


@dataclass
class Generation:
    """One completion. ``logprobs[i]`` is the behaviour log-prob of ``token_ids[i]``; both empty when
    the backend cannot report tokens (e.g. an OpenAI-compatible server without logprobs)."""

    text: str
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    finish_reason: str = "stop"  # "stop" | "length"


class Policy(ABC):
    """A language-model policy. Backends: ``hf`` (transformers), ``openai`` (any compatible server)."""

    name: str = "policy"

    @abstractmethod
    def generate(self, batch: list[Conversation], sampling: Sampling | None = None) -> list[Generation]:
        """Complete every conversation in ``batch`` (one completion each), in order."""

    def score(self, prompts: list[Conversation], completions: list[list[int]]) -> list[list[float]]:
        """Per-token log-probs of each completion's token ids given its prompt (generation prompt added)."""
        raise NotImplementedError(f"{type(self).__name__} cannot score completions")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (servers, processes)."""

"""Summarizers turn trajectories into memory entries.

Two are built in: :class:`~agentsd.memory.diagnostic.DiagnosticSummarizer` (deterministic, from the env's
diagnosis signals; no model; the default on CPU) and :class:`~agentsd.memory.llm.LLMSummarizer` (asks a
:class:`~agentsd.policy.base.Policy` for schema-constrained JSON; validates, repairs or rejects).
Both return a :class:`SummaryResult`; rejected candidates carry a reason and are logged, never raised.
:func:`summarize_async` runs any summarizer off the caller's thread so rollouts are not blocked.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from agentsd.memory.schema import Guardrail, Skill
from agentsd.trajectory import Trajectory

log = logging.getLogger("agentsd.memory")


@dataclass
class SummaryResult:
    entries: list[Skill | Guardrail] = field(default_factory=list)
    #: (trajectory id, reason) for every candidate that was rejected.
    rejected: list[tuple[str, str]] = field(default_factory=list)

    def reject(self, traj_id: str, reason: str) -> None:
        log.warning("memory: rejected a summary of trajectory %s: %s", traj_id, reason)
        self.rejected.append((traj_id, reason))

    def extend(self, other: SummaryResult) -> None:
        self.entries.extend(other.entries)
        self.rejected.extend(other.rejected)


class Summarizer(Protocol):
    name: str

    def summarize(self, trajectories: list[Trajectory]) -> SummaryResult: ...


_POOL: ThreadPoolExecutor | None = None


def summarize_async(summarizer: Summarizer, trajectories: list[Trajectory]) -> Future[SummaryResult]:
    """Summarize on a background thread (one shared worker, so calls run in submission order)."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agentsd-summarize")
    return _POOL.submit(summarizer.summarize, list(trajectories))

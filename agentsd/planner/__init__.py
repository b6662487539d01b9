"""Non-parametric evolution: a LangGraph planner loop over skill memory.

``PlannerLoop(policy, memory, PlannerConfig())`` runs episodes through a ``StateGraph`` that
retrieves skills and guardrails, plans subgoals, proposes actions, vetoes the ones an executable
guardrail flags, steps the env, diagnoses, replans, and (on train tasks) reflects the episode into
memory. See :mod:`agentsd.planner.graph`.

Names load lazily, so that ``agentsd.config`` (which needs :class:`PlannerConfig`) and
``agentsd --help`` do not import LangGraph.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "BatchingPolicy": "agentsd.planner.batching",
    "PlannerConfig": "agentsd.planner.config",
    "NODES": "agentsd.planner.graph",
    "PlannerLoop": "agentsd.planner.graph",
    "PlannerState": "agentsd.planner.graph",
    "sqlite_checkpointer": "agentsd.planner.graph",
    "parse_plan": "agentsd.planner.rules",
    "preconditions_hold": "agentsd.planner.rules",
    "replan_trigger": "agentsd.planner.rules",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'agentsd.planner' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)

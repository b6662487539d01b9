"""Non-parametric evolution: a LangGraph planner loop over skill memory.

``PlannerLoop(policy, memory, PlannerConfig())`` runs episodes through a ``StateGraph`` that
retrieves skills and guardrails, plans subgoals, proposes actions, vetoes the ones an executable
guardrail flags, steps the env, diagnoses, replans, and (on train tasks) reflects the episode into
memory. See :mod:`agentsd.planner.graph`.
"""

from agentsd.planner.batching import BatchingPolicy
from agentsd.planner.config import PlannerConfig
from agentsd.planner.graph import NODES, PlannerLoop, PlannerState, sqlite_checkpointer
from agentsd.planner.rules import parse_plan, preconditions_hold, replan_trigger

__all__ = [
    "NODES",
    "BatchingPolicy",
    "PlannerConfig",
    "PlannerLoop",
    "PlannerState",
    "parse_plan",
    "preconditions_hold",
    "replan_trigger",
    "sqlite_checkpointer",
]

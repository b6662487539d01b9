"""Apps: an AppWorld-style world of apps and people, driven by Python code against ``apis``.

Six apps with their own relational state in one SQLite database per episode (phone, email,
calendar, notes, payments, music) plus ``api_docs`` and ``supervisor``: 78 typed APIs with success
and failure responses and per-app access tokens. The agent's code runs in a warm sandboxed worker
process (``worker.py``; CPU, wall-clock, memory and output limits, an import and builtin allow-list,
an AST check, an API-call budget). Tasks come from seeds over 33 templates, from one-app lookups to
multi-app workflows, and are judged by database diff (required changes present, answer right,
nothing else changed). ``agentsd.envs.make("apps")`` builds :class:`AppsEnv`;
:func:`scenario_goal_completion` turns per-task results into TGC and SGC.
"""

from agentsd.envs.apps.apis import REGISTRY, ApiSpec, Backend, Param, api_count
from agentsd.envs.apps.env import (
    FAILURE_PREDICATES,
    PREDICATES,
    AppsEnv,
    AppsFailure,
    extract_call,
    extract_code,
    scenario_goal_completion,
)
from agentsd.envs.apps.evaluate import Change, Contains, Ref, SetOf, answers_match, diff, snapshot
from agentsd.envs.apps.sandbox import CellResult, Sandbox
from agentsd.envs.apps.tasks import TASKS_PER_SCENARIO, TEMPLATES, Task, build_task
from agentsd.envs.apps.world import NOW, World, generate

__all__ = [
    "FAILURE_PREDICATES",
    "NOW",
    "PREDICATES",
    "REGISTRY",
    "TASKS_PER_SCENARIO",
    "TEMPLATES",
    "ApiSpec",
    "AppsEnv",
    "AppsFailure",
    "Backend",
    "CellResult",
    "Change",
    "Contains",
    "Param",
    "Ref",
    "Sandbox",
    "SetOf",
    "Task",
    "World",
    "answers_match",
    "api_count",
    "build_task",
    "diff",
    "extract_call",
    "extract_code",
    "generate",
    "scenario_goal_completion",
    "snapshot",
]

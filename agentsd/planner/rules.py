"""Pure pieces of the planner loop: replanning triggers, plan parsing and prompts, preconditions.

Nothing here knows an environment: triggers read the env's generic diagnosis (failure type, progress,
stagnation), preconditions are the ``key = value`` facts the diagnostic summarizer records from the
diagnosis ``extra`` dict, and plans are free text the policy writes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from agentsd.planner.config import PlannerConfig


def replan_trigger(recent: Sequence[dict[str, Any]], cfg: PlannerConfig, since_replan: int,
                   replans: int) -> str | None:
    """The reason to replan now, or None.

    ``recent`` holds one record per step so far (oldest first): ``failure`` (failure type or None),
    ``stagnation`` (the env's count of steps without progress) and ``subgoal`` (index of the subgoal the
    step served). ``since_replan`` counts steps since the plan was last (re)made.
    """
    if replans >= cfg.max_replans or since_replan <= cfg.cooldown or not recent:
        return None
    window = list(recent[-min(cfg.failure_window, since_replan):])
    if len(window) >= 2:
        failed = sum(1 for r in window if r.get("failure"))
        if failed / len(window) >= cfg.failure_rate:
            return f"failure rate {failed}/{len(window)} over the last {len(window)} steps"
    if int(recent[-1].get("stagnation") or 0) >= cfg.stagnation:
        return f"no progress for {recent[-1]['stagnation']} steps"
    last = recent[-1].get("failure")
    if last:
        subgoals = {r.get("subgoal") for r in recent if r.get("failure") == last}
        if len(subgoals) >= cfg.repeat_subgoals:
            return f"failure {last!r} repeated across {len(subgoals)} subgoals"
    return None


_ITEM = re.compile(r"^\s*(?:\d+\s*[.):]|[-*\u2022])\s*(.+?)\s*$")


def parse_plan(text: str, max_steps: int) -> list[str]:
    """Subgoals from the policy's plan text: numbered or bulleted lines (other lines are ignored when any
    such line exists, else each non-empty line is a subgoal). Deduplicated, each capped at 160 chars."""
    lines = [ln for ln in (text or "").splitlines() if ln.strip()]
    items = [m.group(1) for ln in lines if (m := _ITEM.match(ln))]
    if not items:
        items = [ln.strip() for ln in lines]
    out: list[str] = []
    for it in items:
        it = re.sub(r"</?[a-z_]+>", "", it).strip()[:160]  # tags (e.g. <answer>) are not subgoals
        if it and it.lower() not in (o.lower() for o in out):
            out.append(it)
    return out[:max_steps]


PLAN_REQUEST = (
    "Before acting, write a short plan for this task: at most {n} numbered subgoals, one per line, "
    "each a few words. Write only the plan."
)
REPLAN_REQUEST = (
    "The plan is not working ({reason}). Subgoals already done: {done}. Write new numbered subgoals for "
    "the rest of the task, at most {n}, one per line. Write only the plan."
)


def plan_messages(instructions: str, task: str, observation: str, memory_block: str,
                  n: int, reason: str | None = None, done: Sequence[str] = ()) -> list[dict[str, str]]:
    system = instructions.strip()
    if memory_block:
        system += "\n\nUseful skills from past experience:\n" + memory_block
    ask = (REPLAN_REQUEST.format(reason=reason, done="; ".join(done) or "none", n=n) if reason
           else PLAN_REQUEST.format(n=n))
    user = "\n".join(p for p in (task.strip(), observation.strip(), ask) if p)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def plan_block(plan: Sequence[str], current: int, feedback: Sequence[str]) -> str:
    """What the act prompt shows about the plan and about vetoed proposals this turn."""
    lines = []
    if plan:
        lines.append("Plan:")
        for i, sg in enumerate(plan):
            mark = "done" if i < current else ("current" if i == current else "next")
            lines.append(f"{i + 1}. {sg} ({mark})")
    for fb in feedback:
        lines.append(f"Refused: {fb}")
    if feedback:
        lines.append("Propose a different action.")
    return "\n".join(lines)


_FACT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.+?)\s*$")


def preconditions_hold(preconditions: Sequence[str], facts: dict[str, Any]) -> bool:
    """True when every precondition is a ``key = value`` fact that the current facts confirm. A
    precondition in any other form cannot be checked, so it does not hold (no blind expansion)."""
    for p in preconditions:
        m = _FACT.match(p)
        if m is None or m.group(1) not in facts or str(facts[m.group(1)]) != m.group(2):
            return False
    return True

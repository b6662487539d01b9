"""The deterministic summarizer: entries from the env's own diagnosis signals, no model needed.

- A trajectory the env marked successful yields a **skill**: the task and start state as triggers, the
  effective actions in order (runs compressed, "Right x3") as the golden workflow, the task's constant
  facts (from the diagnosis ``extra``) as preconditions, the mistakes made on the way, and as
  verification an env predicate that was false at the start and true at the end.
- Every failure type diagnosed in a trajectory yields a **guardrail**: the failure type, its root cause
  and risk pattern (the env predicate that detects it before the action runs, when the env declares one
  in ``failure_predicates``), the operation to forbid, a repair, and a scope.

When the env is registered, the trajectory is replayed from its seed: the guardrail's predicate is
attached only if it actually flags the recorded action in the recorded state, and a skill is written
only if the replay reaches success too (a wrong success verdict never plants a skill). Replays that
diverge (a non-deterministic env) fall back to text-only entries. Coordinates and other per-episode
numbers and quoted snippets of the model's answer are kept out of guardrail text, so the same mistake
in different levels or with different wrong words is one entry with growing support instead of a
flood of near-copies.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agentsd.memory.safety import clean
from agentsd.memory.schema import Guardrail, PredicateRef, Skill
from agentsd.memory.summarize import SummaryResult, log
from agentsd.trajectory import Trajectory

_COORDS = re.compile(r"\s*(?:\[[-\d,\s\[\]]*\]|\(\s*-?\d+\s*,\s*-?\d+\s*\))")
#: "Right: " labels naming the move that failed (the failure is the same whichever move it was).
_LABEL = re.compile(r"(?:^|(?<=; ))\w+: ")
#: Quoted snippets of what the model wrote ("'closed' is not a move"): per-episode text, not a cause.
_QUOTED = re.compile(r"(['\"])(?:(?!\1).){1,120}\1")
_COUNTERS = {"steps", "max_steps", "turn", "turns"}


class DiagnosticSummarizer:
    name = "diagnostic"

    def __init__(
        self,
        namespace: str = "default",
        replay: bool = True,
        skill_confidence: float = 0.6,
        guardrail_confidence: float = 0.6,
        text_only_confidence: float = 0.4,
        skills_from_failures: bool = False,
    ):
        self.namespace = namespace
        self.replay = replay
        self.skill_confidence = skill_confidence
        self.guardrail_confidence = guardrail_confidence
        self.text_only_confidence = text_only_confidence
        self.skills_from_failures = skills_from_failures
        self._envs: dict[str, Any] = {}

    # --- env access ---------------------------------------------------------------------------------------
    def _env(self, traj: Trajectory):
        key = traj.env + json.dumps(traj.env_kwargs, sort_keys=True, default=str)
        if key not in self._envs:
            try:
                from agentsd.envs import make

                self._envs[key] = make(traj.env, **traj.env_kwargs)
            except Exception as e:  # noqa: BLE001 - an unknown env only disables replay
                log.info("diagnostic summarizer: cannot build env %r (%s); text-only entries", traj.env, e)
                self._envs[key] = None
        return self._envs[key]

    def _replay(self, traj: Trajectory) -> dict[str, Any] | None:
        """Step the env through the trajectory. Returns per-turn predicate confirmations and the
        verification predicates; None when the env is unavailable; ``{"diverged": True}`` when the
        replay does not reproduce the recorded diagnoses and success flags."""
        env = self._env(traj) if self.replay else None
        if env is None:
            return None
        diverged = {"diverged": True}
        preds = env.predicates() if hasattr(env, "predicates") else {}
        fmap: dict[str, str] = dict(getattr(env, "failure_predicates", {}) or {})
        after = [n for n, p in preds.items() if p.when == "after" and not p.params]
        obs, _ = env.reset(seed=traj.seed)
        if traj.initial_observation and obs != traj.initial_observation:
            return diverged
        start = {n: _safe_check(env, n, None) for n in after}
        confirmed: dict[int, bool] = {}
        for k, turn in enumerate(traj.turns):
            ft = (turn.info.get("diagnosis") or {}).get("failure_type")
            pred = fmap.get(ft) if ft else None
            if pred in preds:
                confirmed[k] = _safe_check(env, pred, turn.response) is True
            _, _, _, _, info = env.step(turn.response)
            if (info.get("diagnosis") or {}).get("failure_type") != ft or bool(info.get("success")) != bool(
                turn.info.get("success")
            ):
                return diverged
        end = {n: _safe_check(env, n, None) for n in after}
        gained = [n for n in after if end[n] is True and start[n] is False]
        return {"diverged": False, "preds": preds, "fmap": fmap, "confirmed": confirmed, "gained": gained, "success": end}

    # --- summarizing --------------------------------------------------------------------------------------
    def summarize(self, trajectories: list[Trajectory]) -> SummaryResult:
        res = SummaryResult()
        for traj in trajectories:
            try:
                res.extend(self._one(traj))
            except Exception as e:  # noqa: BLE001 - one odd trajectory must not stop the memory stage
                res.reject(traj.id, f"{type(e).__name__}: {e}")
        return res

    def _one(self, traj: Trajectory) -> SummaryResult:
        res = SummaryResult()
        if not traj.turns:
            res.reject(traj.id, "empty trajectory")
            return res
        rep = self._replay(traj)
        if rep is not None and rep["diverged"]:
            log.info("diagnostic summarizer: replay of %s diverged; text-only entries", traj.id)
        task = _task_text(traj)
        if traj.success:
            if rep is not None and rep["diverged"]:
                res.reject(traj.id, "the replay does not reproduce this episode's success; no skill written")
            else:
                res.entries.append(self._skill(traj, task, rep))
        if rep is not None and rep["diverged"]:
            rep = None
        for k, ft in _first_failures(traj).items():
            res.entries.append(self._guardrail(traj, task, k, ft, rep))
        return res

    def _skill(self, traj: Trajectory, task: str, rep: dict[str, Any] | None) -> Skill:
        actions = _effective_actions(traj)
        fails = _failure_counts(traj)
        p0 = _progress(traj.turns[0])
        verification, vtext = None, ""
        effects = ["the task was solved"]
        if rep is not None and rep["gained"]:
            gained = sorted(rep["gained"], key=lambda n: (not re.search(r"solv|success|complete|done", n), n))
            verification = PredicateRef(name=gained[0])
            vtext = rep["preds"][gained[0]].description
            effects = [rep["preds"][n].description for n in gained]
        mistakes = ", ".join(f"{n} x {ft}" for ft, n in fails.items())
        return Skill(
            env=traj.env,
            namespace=self.namespace,
            triggers=[t for t in (task, _state_line(traj.initial_observation)) if t],
            summary=f"{task or 'task'} solved in {len(traj.turns)} turns with {len(actions)} effective actions",
            success_analysis=(
                f"progress went from {p0:.2f} to 1.00 over {len(traj.turns)} turns; "
                f"{sum(1 for t in traj.turns if t.info.get('action_is_effective'))} turns changed the state"
            ),
            mistake_analysis=f"recovered from {mistakes}" if mistakes else "",
            golden_workflow=_compress(actions) or ["(no effective actions)"],
            actions=[t.response for t in traj.turns if t.info.get("action_is_effective")],
            preconditions=_constants(traj),
            verification=verification,
            verification_text=vtext,
            effects=effects,
            confidence=self.skill_confidence,
            evidence=[traj.id],
            source=self.name,
        )

    def _guardrail(self, traj: Trajectory, task: str, k: int, ft: str, rep: dict[str, Any] | None) -> Guardrail:
        turn = traj.turns[k]
        diag = turn.info.get("diagnosis") or {}
        detail = _QUOTED.sub("the answer", _COORDS.sub("", clean(str(diag.get("detail", "")), 300)))
        detail = _LABEL.sub("", detail).strip(" ;,")
        pred_name = None
        pred_desc = ""
        if rep is not None:
            name = rep["fmap"].get(ft)
            if name in rep["preds"] and rep["confirmed"].get(k):
                pred_name, pred_desc = name, rep["preds"][name].description
        what = ft.replace("_", " ")
        if pred_name:  # general wording: the executable check carries the specifics
            summary, cause = f"avoid {what}: {pred_desc}", pred_desc
            risk = f"{pred_name} holds for the proposed action"
            forbidden = f"any action for which {pred_name} holds"
            repair = ["check the proposed action first; if it is flagged, choose another one"]
        else:
            # envs append the note that names the failure last ("...; ran out of steps (40)"); the
            # notes before it describe whatever else the turn did and would make every copy unique
            detail = detail.rsplit("; ", 1)[-1]
            summary, cause = f"avoid {what}", detail or what
            risk = f"actions that led to {what}" + (f": {detail}" if detail else "")
            forbidden = f"repeating what caused {what}"
            repair = [f"change approach after a {what}"]
        scope = "step" if pred_name else ("task" if "timeout" in ft or "time" in ft else "subgoal")
        return Guardrail(
            env=traj.env,
            namespace=self.namespace,
            # no task text in the trigger: the failure and its check hold across tasks of the env, so
            # the same mistake under "obtain 8 planks" and "obtain 1 stick" is one entry with support
            triggers=[f"{traj.env}: choosing the next action; risk of {what}"],
            summary=summary,
            failure_type=ft,
            root_cause=cause,
            risk_pattern=risk,
            risk_predicate=PredicateRef(name=pred_name) if pred_name else None,
            forbidden=forbidden,
            repair=repair,
            scope=scope,
            confidence=self.guardrail_confidence if pred_name else self.text_only_confidence,
            evidence=[traj.id],
            source=self.name,
        )


# --- helpers -------------------------------------------------------------------------------------------------
def _safe_check(env: Any, name: str, action: str | None) -> bool | None:
    try:
        return bool(env.check(name, action))
    except Exception:  # noqa: BLE001
        return None


def _task_text(traj: Trajectory) -> str:
    task = traj.meta.get("task")
    if not task and traj.turns and traj.turns[0].messages:
        user = traj.turns[0].messages[-1].get("content", "")
        task = user.split("\n", 1)[0] if user else ""
    return clean(str(task or ""), 160)


def _state_line(obs: str) -> str:
    lines = [ln for ln in obs.splitlines() if ln.strip() and not ln.lower().startswith("legend")]
    return clean("start: " + " / ".join(lines), 200) if lines else ""


def _progress(turn) -> float:
    return float((turn.info.get("diagnosis") or {}).get("progress", 0.0) or 0.0)


def _effective_actions(traj: Trajectory) -> list[str]:
    out: list[str] = []
    for t in traj.turns:
        if not t.info.get("action_is_valid", True) or not t.info.get("action_is_effective", True):
            continue
        acts = t.info.get("actions")
        if isinstance(acts, list) and acts:
            out.extend(str(a) for a in acts)
        else:
            out.append(clean(t.response, 120))
    return out


def _compress(actions: list[str]) -> list[str]:
    steps: list[str] = []
    i = 0
    while i < len(actions):
        j = i
        while j + 1 < len(actions) and actions[j + 1] == actions[i]:
            j += 1
        n = j - i + 1
        steps.append(actions[i] if n == 1 else f"{actions[i]} x{n}")
        i = j + 1
    if len(steps) > 24:
        steps = steps[:23] + [f"... {len(steps) - 23} more steps"]
    return steps


def _failure_counts(traj: Trajectory) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in traj.turns:
        ft = (t.info.get("diagnosis") or {}).get("failure_type")
        if ft:
            out[ft] = out.get(ft, 0) + 1
    return out


def _first_failures(traj: Trajectory) -> dict[int, str]:
    seen: dict[str, int] = {}
    for k, t in enumerate(traj.turns):
        ft = (t.info.get("diagnosis") or {}).get("failure_type")
        if ft and ft not in seen:
            seen[ft] = k
    return {k: ft for ft, k in seen.items()}


def _constants(traj: Trajectory) -> list[str]:
    """Facts of the task that never changed in the episode (e.g. ``num_boxes = 1``)."""
    extras = [(t.info.get("diagnosis") or {}).get("extra") or {} for t in traj.turns]
    if not extras:
        return []
    out = []
    for key, v in extras[0].items():
        if key in _COUNTERS or isinstance(v, bool) or not isinstance(v, int | str):
            continue
        if all(e.get(key) == v for e in extras):
            out.append(f"{key} = {v}")
    return out[:8]

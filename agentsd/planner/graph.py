"""The planner loop as a LangGraph ``StateGraph`` of plain-function nodes.

```
START -> retrieve -> plan -> act -> check --veto--> act
            ^                         |
            |                         v
            +------- replan <---- diagnose <- step
            +-----------------------/   \\--done--> reflect -> END
```

- ``retrieve``: skills and guardrails for the task and the current observation (token budget);
- ``plan``: once per episode the policy writes a short subgoal plan, with the retrieved memory in view;
- ``act``: the next step of an expanded skill workflow, or the policy's proposal for the current
  subgoal (the rollout prompt plus the memory block, the plan and any veto reasons);
- ``check``: every retrieved guardrail with an executable predicate (or a literal forbidden action)
  runs on the proposal before it reaches the env; a hit sends the reason back to ``act``, and where the
  env lists its actions (``action_candidates``) also the mask: the candidates no guardrail forbids,
  which the re-proposal is decoded within (``PlannerConfig.mask_vetoed``);
- ``step``: the env runs the action; the turn is recorded with its planner trace;
- ``diagnose``: the env's diagnosis feeds the triggers (:func:`agentsd.planner.rules.replan_trigger`);
  progress finishes the current subgoal;
- ``replan``: finished subgoals stay; the rest is rewritten, task-scoped guardrails' repairs first;
- ``reflect``: at the end of a train episode, the episode goes into memory and the entries it used are
  voted up (success) or down (failure). Evaluation runs with the memory frozen.

The graph state is a plain typed dict, so LangGraph's checkpointer can store every super-step; the env
and the full turn records live beside it and are rebuilt on resume by replaying the recorded actions
from the task seed (environments are deterministic given seed and actions).
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

from agentsd.envs import TextEnv
from agentsd.planner.batching import BatchingPolicy
from agentsd.planner.config import PlannerConfig
from agentsd.planner.rules import (
    parse_plan,
    plan_block,
    plan_messages,
    preconditions_hold,
    replan_trigger,
)
from agentsd.policy.base import Policy, Sampling
from agentsd.prompts import Step, build_messages
from agentsd.trajectory import Trajectory, Turn, write_jsonl

NODES = ("retrieve", "plan", "act", "check", "step", "diagnose", "replan", "reflect")


class PlannerState(TypedDict, total=False):
    """What the checkpointer stores for an episode (JSON-like values only)."""

    env: str
    seed: int
    split: str
    group: int
    task: str
    observation: str
    max_turns: int
    turn: int
    done: bool
    success: bool
    actions: list[str]  # every action stepped so far (the resume replay)
    facts: dict[str, Any]  # the latest diagnosis ``extra`` (for skill preconditions)
    progress: float
    retrieved: list[dict[str, Any]]  # this turn's hits: id, kind, similarity
    memory_block: str
    used: list[str]  # ids of entries retrieved at any point of the episode
    plan: list[str]
    subgoal: int  # index of the current subgoal; earlier ones are finished and frozen
    planned: bool
    workflow: list[str]  # remaining steps of an expanded skill
    workflow_skill: str | None
    tried_skills: list[str]
    proposal: dict[str, Any] | None  # text, source, token_ids, logprobs
    feedback: list[str]  # veto reasons this turn
    mask: list[str] | None  # after a veto: the candidate actions no guardrail forbids (decoding is kept to them)
    vetoes_turn: int
    vetoed: bool
    recent: list[dict[str, Any]]  # per step: failure, stagnation, subgoal, progress
    since_replan: int
    replans: int
    trigger: str | None
    vetoes: int  # whole episode
    plan_tokens: int
    path: list[str]  # nodes visited since the last step
    events: list[dict[str, Any]]  # the episode's planner events (plans, vetoes, replans, reflection)


@dataclass
class _Episode:
    """The parts of an episode that are not graph state: live objects and full turn records."""

    env: TextEnv
    traj: Trajectory
    past: list[Step] = field(default_factory=list)
    messages: list[dict[str, str]] = field(default_factory=list)  # the act prompt of the proposal
    entries: dict[str, Any] = field(default_factory=dict)  # id -> memory entry, for checks and expansion
    env_seconds: float = 0.0


class PlannerLoop:
    """Runs episodes through the planner graph.

    ``policy``: any :class:`Policy` (``hf``, ``openai``...); calls of concurrent episodes are batched.
    ``memory``: a :class:`agentsd.memory.SkillMemory` or None (the loop then plans and acts without it).
    ``frozen``: never write memory (evaluation). ``summarizer``: for reflection (default diagnostic).
    ``checkpointer``: a LangGraph checkpointer (e.g. ``SqliteSaver``); None keeps no checkpoints.
    """

    def __init__(
        self,
        policy: Policy | BatchingPolicy,
        memory: Any = None,
        cfg: PlannerConfig | None = None,
        *,
        sampling: Sampling | None = None,
        history: int = 0,
        summarizer: Any = None,
        frozen: bool = False,
        checkpointer: Any = None,
    ):
        self.bp = policy if isinstance(policy, BatchingPolicy) else BatchingPolicy(policy)
        self.memory = memory
        self.cfg = cfg or PlannerConfig()
        self.sampling = sampling or Sampling(max_new_tokens=24, temperature=0.0)
        self.history = history
        self.summarizer = summarizer
        self.frozen = frozen
        self.checkpointer = checkpointer
        self._episodes: dict[str, _Episode] = {}
        self._lock = threading.Lock()  # memory and bookkeeping shared by episode threads
        self.graph = self._build().compile(checkpointer=checkpointer)

    # --- graph --------------------------------------------------------------------------------------
    def _build(self) -> StateGraph:
        g = StateGraph(PlannerState)
        for name in NODES:
            g.add_node(name, getattr(self, f"_n_{name}"))
        g.add_edge(START, "retrieve")
        g.add_conditional_edges("retrieve", lambda s: "act" if s.get("planned") else "plan", ["plan", "act"])
        g.add_edge("plan", "act")
        g.add_edge("act", "check")
        g.add_conditional_edges("check", lambda s: "act" if s.get("vetoed") else "step", ["act", "step"])
        g.add_edge("step", "diagnose")
        g.add_conditional_edges("diagnose", self._route_diagnose, ["reflect", "replan", "retrieve"])
        g.add_edge("replan", "retrieve")
        g.add_edge("reflect", END)
        return g

    def _route_diagnose(self, s: PlannerState) -> str:
        if s.get("done"):
            return "reflect"
        if s.get("trigger") and self.cfg.replan:
            return "replan"
        return "retrieve"

    @staticmethod
    def _tid(config: dict[str, Any]) -> str:
        return config["configurable"]["thread_id"]

    def _ep(self, config: dict[str, Any]) -> _Episode:
        return self._episodes[self._tid(config)]

    # --- nodes --------------------------------------------------------------------------------------
    def _n_retrieve(self, s: PlannerState, config) -> dict[str, Any]:
        ep = self._ep(config)
        path = [*s.get("path", []), "retrieve"]
        if not self.cfg.retrieval or self.memory is None:
            return {"retrieved": [], "memory_block": "", "path": path}
        fails = [r["failure"] for r in s.get("recent", [])[-self.cfg.failure_window:] if r.get("failure")]
        query = f"{s['task']}\n{s['observation']}".strip()
        with self._lock:
            hits = self.memory.retrieve(query, k=self.cfg.k, env=s["env"], budget_tokens=self.cfg.budget_tokens,
                                        recent_failures=fails)
            block = self.memory.render(hits)
        for h in hits:
            ep.entries[h.entry.id] = h.entry
        got = [{"id": h.entry.id, "kind": h.entry.kind, "similarity": round(h.similarity, 3)} for h in hits]
        used = list(dict.fromkeys([*s.get("used", []), *(h["id"] for h in got)]))
        return {"retrieved": got, "memory_block": block, "used": used, "path": path}

    def _generate(self, messages: list[dict[str, str]], sampling: Sampling):
        return self.bp.generate_one(messages, sampling)

    def _n_plan(self, s: PlannerState, config) -> dict[str, Any]:
        ep = self._ep(config)
        msgs = plan_messages(ep.env.instructions(), s["task"], s["observation"], s.get("memory_block", ""),
                             self.cfg.max_plan_steps)
        gen = self._generate(msgs, Sampling(max_new_tokens=self.cfg.plan_max_new_tokens, temperature=0.0))
        plan = parse_plan(gen.text, self.cfg.max_plan_steps)
        fallback = not plan
        plan = plan or [s["task"].strip()[:160] or "solve the task"]
        ev = {"node": "plan", "turn": s["turn"], "plan": plan, "fallback": fallback}
        return {"plan": plan, "subgoal": 0, "planned": True, "plan_tokens": s.get("plan_tokens", 0) + len(gen.token_ids),
                "events": [*s.get("events", []), ev], "path": [*s.get("path", []), "plan"]}

    def _expandable(self, s: PlannerState, ep: _Episode) -> Any:
        """A retrieved skill to expand now: similar enough, preconditions confirmed, not tried yet."""
        if not (self.cfg.expand_skills and self.cfg.retrieval):
            return None
        for hit in s.get("retrieved", []):
            e = ep.entries.get(hit["id"])
            if (hit["kind"] == "skill" and e is not None and e.actions and hit["id"] not in s.get("tried_skills", [])
                    and hit["similarity"] >= self.cfg.expand_min_similarity
                    and preconditions_hold(e.preconditions, s.get("facts", {}))):
                return e
        return None

    def _n_act(self, s: PlannerState, config) -> dict[str, Any]:
        ep = self._ep(config)
        out: dict[str, Any] = {"path": [*s.get("path", []), "act"]}
        workflow, skill = list(s.get("workflow", [])), s.get("workflow_skill")
        events = list(s.get("events", []))
        if not workflow and not s.get("feedback"):
            e = self._expandable(s, ep)
            if e is not None:
                workflow, skill = list(e.actions), e.id
                out["tried_skills"] = [*s.get("tried_skills", []), e.id]
                events.append({"node": "act", "turn": s["turn"], "expand": e.id, "steps": len(workflow)})
        if workflow and not s.get("feedback"):
            out.update(workflow=workflow, workflow_skill=skill, events=events,
                       proposal={"text": workflow[0], "source": f"skill:{skill}", "token_ids": [], "logprobs": []})
            ep.messages = []
            return out
        if workflow:  # a vetoed workflow step: the skill does not fit here
            events.append({"node": "act", "turn": s["turn"], "abandon": skill, "why": "vetoed"})
            workflow, skill = [], None
        extra = "\n\n".join(p for p in (s.get("memory_block", ""),
                                        plan_block(s.get("plan", []), s.get("subgoal", 0), s.get("feedback", [])))
                            if p)
        msgs = build_messages(ep.env.instructions(), s["task"], s["observation"], ep.past, self.history,
                              skills=extra or None)
        sampling = self.sampling
        mask = s.get("mask")
        if mask:  # decode within the allowed candidates at the act temperature; a token is >= 1 character,
            # so len + 1 new tokens always complete the longest candidate (constrained decoding may spell it
            # in short tokens) and its end; generation stops as soon as the constraint is complete
            sampling = sampling.model_copy(update={
                "regex": "|".join(f"(?:{re.escape(c)})" for c in mask),
                "max_new_tokens": max(sampling.max_new_tokens, max(len(c) for c in mask) + 1)})
        elif s.get("feedback"):
            sampling = sampling.model_copy(update={"temperature": max(sampling.temperature, self.cfg.retry_temperature)})
        ep.messages = msgs
        try:
            gen = self._generate(msgs, sampling)
        except NotImplementedError:  # a backend without constrained decoding
            if not mask:
                raise
            out.update(workflow=workflow, workflow_skill=skill, events=events,
                       proposal={"text": self._pick(s, mask), "source": "mask", "token_ids": [], "logprobs": []})
            return out
        out.update(workflow=workflow, workflow_skill=skill, events=events,
                   proposal={"text": gen.text, "source": "policy", "token_ids": list(gen.token_ids),
                             "logprobs": list(gen.logprobs)})
        return out

    def _n_check(self, s: PlannerState, config) -> dict[str, Any]:
        ep = self._ep(config)
        path = [*s.get("path", []), "check"]
        if not self.cfg.guardrails:
            return {"vetoed": False, "path": path}
        text = s["proposal"]["text"]
        hit = None
        for r in s.get("retrieved", []):
            g = ep.entries.get(r["id"])
            if r["kind"] == "guardrail" and g is not None and self._forbids(g, ep.env, text):
                hit = g
                break
        if hit is None:
            return {"vetoed": False, "path": path}
        n = s.get("vetoes_turn", 0) + 1
        reason = f"{text.strip()[:80]!r} breaks guardrail {hit.id[:6]} ({hit.failure_type}): never {hit.forbidden}"
        allowed = self._allowed(s, ep) if self.cfg.mask_vetoed else None
        exhausted = n > self.cfg.max_vetoes and not allowed
        ev = {"node": "check", "turn": s["turn"], "veto": hit.id, "failure_type": hit.failure_type,
              "action": text.strip()[:120], "exhausted": exhausted}
        out = {"vetoed": not exhausted, "vetoes_turn": n, "vetoes": s.get("vetoes", 0) + 1,
               "feedback": [*s.get("feedback", []), reason[:300]], "events": [*s.get("events", []), ev],
               "path": path}
        if allowed:
            ev["allowed"] = allowed
            if s.get("mask"):  # proposed under the mask and still forbidden: the policy ignored it
                ev["replaced_by"] = pick = self._pick(s, allowed)
                out.update(vetoed=False, proposal={"text": pick, "source": "mask", "token_ids": [], "logprobs": []})
            else:
                out["mask"] = allowed
        return out

    @staticmethod
    def _forbids(g: Any, env: TextEnv, text: str) -> bool:
        return bool((g.executable or g.forbidden_action) and g.check(env, text))

    def _allowed(self, s: PlannerState, ep: _Episode) -> list[str] | None:
        """The env's action candidates that no retrieved guardrail forbids now (None: the env lists none)."""
        cands = ep.env.action_candidates()
        if not cands:
            return None
        guards = [g for r in s.get("retrieved", []) if r["kind"] == "guardrail"
                  and (g := ep.entries.get(r["id"])) is not None]
        return [c for c in cands if not any(self._forbids(g, ep.env, c) for g in guards)]

    @staticmethod
    def _pick(s: PlannerState, allowed: list[str]) -> str:
        """An allowed candidate for a policy that cannot keep to the mask: random, seeded by the task and
        turn (so a resumed episode picks the same)."""
        return random.Random(f"{s['env']}:{s['seed']}:{s['turn']}:{s.get('vetoes', 0)}").choice(allowed)

    def _n_step(self, s: PlannerState, config) -> dict[str, Any]:
        ep = self._ep(config)
        prop = s["proposal"]
        t0 = time.perf_counter()
        obs, reward, terminated, truncated, info = ep.env.step(prop["text"])
        ep.env_seconds += time.perf_counter() - t0
        turn = s["turn"] + 1
        if turn >= s["max_turns"] and not terminated:
            truncated = True
        diag = info.get("diagnosis") or {}
        events = list(s.get("events", []))
        workflow, skill = list(s.get("workflow", [])), s.get("workflow_skill")
        if prop["source"].startswith("skill:") and workflow:
            workflow.pop(0)
            failed = diag.get("failure_type") or not info.get("action_is_valid", True) \
                or not info.get("action_is_effective", True)
            if failed and workflow:
                events.append({"node": "step", "turn": s["turn"], "abandon": skill,
                               "why": diag.get("failure_type") or "ineffective"})
                workflow = []
            elif not workflow:
                events.append({"node": "step", "turn": s["turn"], "workflow_done": skill,
                               "verified": self._verify(ep, skill)})
        turn_events = [e for e in events if e.get("turn") == s["turn"]]
        info = dict(info)
        plan = s.get("plan") or [""]
        info["planner"] = {
            "path": [*s.get("path", []), "step"],
            "subgoal": plan[min(s.get("subgoal", 0), len(plan) - 1)],
            "source": prop["source"],
            "retrieved": [r["id"] for r in s.get("retrieved", [])],
            "vetoes": [e for e in turn_events if "veto" in e],
            "events": [e for e in turn_events if "veto" not in e],
        }
        ep.traj.turns.append(Turn(
            messages=ep.messages, response=prop["text"], token_ids=prop["token_ids"], logprobs=prop["logprobs"],
            reward=float(reward), terminated=bool(terminated), truncated=bool(truncated), info=info,
            observation=obs,
        ))
        ep.past.append(Step(s["observation"], prop["text"], bool(info.get("action_is_valid", True))))
        return {
            "observation": obs, "turn": turn, "actions": [*s.get("actions", []), prop["text"]],
            "done": bool(terminated or truncated), "success": bool(info.get("success")),
            "facts": diag.get("extra") or {}, "feedback": [], "mask": None, "vetoes_turn": 0, "vetoed": False, "path": [],
            "proposal": None, "events": events, "workflow": workflow, "workflow_skill": skill if workflow else None,
        }

    @staticmethod
    def _verify(ep: _Episode, skill_id: str | None) -> bool | None:
        """The finished skill's verification predicate on the current state (None: it has none)."""
        ver = getattr(ep.entries.get(skill_id), "verification", None)
        if ver is None:
            return None
        try:
            return bool(ep.env.check(ver.name, **ver.params))
        except (KeyError, ValueError, TypeError):
            return None

    def _n_diagnose(self, s: PlannerState, config) -> dict[str, Any]:
        ep = self._ep(config)
        info = ep.traj.turns[-1].info
        diag = info.get("diagnosis") or {}
        failure = diag.get("failure_type")
        if failure is None and not info.get("action_is_valid", True):
            failure = "invalid"
        progress = float(diag.get("progress") or 0.0)
        sub = s.get("subgoal", 0)
        rec = {"failure": failure, "stagnation": int(diag.get("stagnation") or 0), "subgoal": sub,
               "progress": progress}
        recent = [*s.get("recent", []), rec][-32:]
        out: dict[str, Any] = {"recent": recent, "progress": progress, "since_replan": s.get("since_replan", 0) + 1,
                               "trigger": None, "path": ["diagnose"]}
        if progress > s.get("progress", 0.0) and sub < len(s.get("plan", [])) - 1:
            out["subgoal"] = sub + 1  # progress finishes the current subgoal; it is frozen from now on
        if s.get("done"):
            return out
        why = replan_trigger(recent, self.cfg, out["since_replan"], s.get("replans", 0))
        if why:
            out["trigger"] = why
            if not self.cfg.replan:
                out["events"] = [*s.get("events", []), {"node": "diagnose", "turn": s["turn"], "trigger": why,
                                                        "ignored": True}]
        return out

    def _n_replan(self, s: PlannerState, config) -> dict[str, Any]:
        ep = self._ep(config)
        plan, cur = list(s.get("plan", [])), s.get("subgoal", 0)
        done = plan[:cur]
        msgs = plan_messages(ep.env.instructions(), s["task"], s["observation"], s.get("memory_block", ""),
                             self.cfg.max_plan_steps, reason=s["trigger"], done=done)
        gen = self._generate(msgs, Sampling(max_new_tokens=self.cfg.plan_max_new_tokens, temperature=0.0))
        new = parse_plan(gen.text, self.cfg.max_plan_steps)
        # Prerequisites first: the repairs of task-scoped guardrails in view for the failures seen.
        seen = {r["failure"] for r in s.get("recent", []) if r.get("failure")}
        prereq = []
        for r in s.get("retrieved", []):
            g = ep.entries.get(r["id"])
            if r["kind"] == "guardrail" and g is not None and g.scope == "task" and g.repair \
                    and (g.failure_type in seen or not seen):
                prereq.append(g.repair[0][:160])
        rest = list(dict.fromkeys([*prereq, *new])) or plan[cur:] or [s["task"].strip()[:160] or "solve the task"]
        room = max(1, self.cfg.max_plan_steps - len(done))
        plan = done + rest[:room]
        ev = {"node": "replan", "turn": s["turn"], "reason": s["trigger"], "kept": len(done), "plan": plan,
              "prerequisites": prereq[:room]}
        return {"plan": plan, "subgoal": len(done), "replans": s.get("replans", 0) + 1, "since_replan": 0,
                "trigger": None, "plan_tokens": s.get("plan_tokens", 0) + len(gen.token_ids),
                "workflow": [], "workflow_skill": None,
                "events": [*s.get("events", []), ev], "path": [*s.get("path", []), "replan"]}

    def _n_reflect(self, s: PlannerState, config) -> dict[str, Any]:
        ep = self._ep(config)
        ev: dict[str, Any] = {"node": "reflect", "turn": s["turn"], "success": bool(s.get("success"))}
        if self.memory is None or not self.cfg.reflect:
            ev["skipped"] = "off"
        elif self.frozen or s["split"] != "train":
            ev["skipped"] = "frozen"
        else:
            used = s.get("used", [])
            with self._lock:
                report = self.memory.ingest([ep.traj], self.summarizer)
                retired = self.memory.record_outcome(used, bool(s.get("success"))) if used else []
            rep = report.to_dict()
            ev.update(added=rep.get("added", 0), merged=rep.get("merged", 0), voted=len(used),
                      vote=1 if s.get("success") else -1, retired=retired)
        return {"events": [*s.get("events", []), ev], "path": []}

    # --- running episodes -------------------------------------------------------------------------------
    def _config(self, thread_id: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": thread_id}, "recursion_limit": 100_000}

    def _finish(self, tid: str, final: PlannerState) -> Trajectory:
        ep = self._episodes.pop(tid)
        traj = ep.traj
        evs = final.get("events", [])
        traj.meta["planner"] = {
            "thread_id": tid,
            "flags": {k: getattr(self.cfg, k) for k in ("retrieval", "guardrails", "replan", "reflect", "expand_skills")},
            "plans": [e["plan"] for e in evs if e["node"] in ("plan", "replan")],
            "replans": final.get("replans", 0),
            "vetoes": final.get("vetoes", 0),
            "expansions": sum(1 for e in evs if "expand" in e),
            "used": final.get("used", []),
            "plan_tokens": final.get("plan_tokens", 0),
            "reflect": next((e for e in reversed(evs) if e["node"] == "reflect"), None),
            "env_seconds": round(ep.env_seconds, 4),
        }
        return traj

    def run_episode(self, env: TextEnv, seed: int, *, split: str = "train", group: int = 0, max_turns: int = 30,
                    thread_id: str | None = None, env_name: str | None = None,
                    env_kwargs: dict[str, Any] | None = None) -> Trajectory:
        """Run one episode from reset to the end through the graph; returns its trajectory."""
        with self.bp.session():
            return self._episode(env, seed, split=split, group=group, max_turns=max_turns, thread_id=thread_id,
                                 env_name=env_name, env_kwargs=env_kwargs)

    def _episode(self, env: TextEnv, seed: int, *, split: str, group: int, max_turns: int,
                 thread_id: str | None, env_name: str | None, env_kwargs: dict[str, Any] | None) -> Trajectory:
        tid = thread_id or f"{env_name or env.name}/{split}-{seed}-{group}-{time.time_ns()}"
        if self.checkpointer is not None and hasattr(self.checkpointer, "delete_thread"):
            self.checkpointer.delete_thread(tid)  # a redone episode starts clean
        obs, info0 = env.reset(seed=seed)
        name = env_name or env.name
        traj = Trajectory(env=name, seed=seed, split=split, group=group, policy=self.bp.name,
                          env_kwargs=dict(env_kwargs or {}), initial_observation=obs,
                          meta={"task": env.task_description()})
        self._episodes[tid] = _Episode(env, traj)
        init: PlannerState = {
            "env": name, "seed": seed, "split": split, "group": group, "task": env.task_description(),
            "observation": obs, "max_turns": max_turns, "turn": 0, "done": False, "success": False,
            "actions": [], "facts": dict((info0.get("diagnosis") or {}).get("extra") or {}), "progress": 0.0,
            "retrieved": [], "memory_block": "", "used": [],
            "plan": [], "subgoal": 0, "planned": False, "workflow": [], "workflow_skill": None,
            "tried_skills": [], "proposal": None, "feedback": [], "vetoes_turn": 0, "vetoed": False,
            "recent": [], "since_replan": 0, "replans": 0, "trigger": None, "vetoes": 0, "plan_tokens": 0,
            "path": [], "events": [],
        }
        try:
            final = self.graph.invoke(init, self._config(tid))
        except BaseException:
            self._episodes.pop(tid, None)
            raise
        return self._finish(tid, final)

    def resume(self, env: TextEnv, thread_id: str) -> Trajectory:
        """Continue a checkpointed episode that stopped early (a crash, a kill): the env is rebuilt by
        replaying the recorded actions from the task seed, then the graph continues from its last
        finished node. Turns before the interruption keep their actions, rewards and infos; their prompts
        and token ids are not kept (``info["resumed"] = True``)."""
        if self.checkpointer is None:
            raise ValueError("resume needs a checkpointer (PlannerLoop(checkpointer=...))")
        snap = self.graph.get_state(self._config(thread_id))
        s = snap.values
        if not s:
            raise KeyError(f"no checkpointed planner episode {thread_id!r}")
        obs, _ = env.reset(seed=s["seed"])
        traj = Trajectory(env=s["env"], seed=s["seed"], split=s["split"], group=s["group"], policy=self.bp.name,
                          initial_observation=obs, meta={"task": env.task_description(), "resumed": True})
        ep = _Episode(env, traj)
        for a in s.get("actions", []):
            prev = obs
            obs, reward, term, trunc, info = env.step(a)
            traj.turns.append(Turn(messages=[], response=a, reward=float(reward), terminated=bool(term),
                                   truncated=bool(trunc), info={**info, "resumed": True}, observation=obs))
            ep.past.append(Step(prev, a, bool(info.get("action_is_valid", True))))
        if obs != s["observation"]:
            raise RuntimeError(f"replaying {thread_id!r} did not reproduce its observation: the env is not "
                               "deterministic given seed and actions")
        self._episodes[thread_id] = ep
        if self.memory is not None:
            for r in s.get("retrieved", []):
                e = self.memory.get(r["id"])
                if e is not None:
                    ep.entries[e.id] = e
        try:
            with self.bp.session():
                final = self.graph.invoke(None, self._config(thread_id)) if snap.next else s
        except BaseException:
            self._episodes.pop(thread_id, None)
            raise
        return self._finish(thread_id, final)

    def run(self, envs: Callable[[], TextEnv], tasks: list[Any], *, max_turns: int = 30, batch: int | None = None,
            out_path: str | Path | None = None, on_episode: Callable[[Trajectory], None] | None = None,
            phase: str = "planner", env_name: str | None = None,
            env_kwargs: dict[str, Any] | None = None) -> tuple[list[Trajectory], Any]:
        """Run ``tasks`` (``agentsd.rollout.Task``) with ``batch`` episodes at a time; returns the
        trajectories in task order and :class:`agentsd.rollout.RolloutStats`. ``env_name`` and
        ``env_kwargs`` default to the factory's (an :class:`~agentsd.rollout.EnvFactory`): trajectories
        record them so the memory's summarizer can replay an episode in the same env."""
        from agentsd.rollout import RolloutStats

        if env_name is None:
            env_name = getattr(envs, "name", None)
        if env_kwargs is None:
            env_kwargs = getattr(envs, "kwargs", None)

        stats = RolloutStats()
        t0 = time.perf_counter()
        calls0, sec0, tok0 = len(self.bp.batch_sizes), self.bp.seconds, self.bp.tokens
        out: list[Trajectory | None] = [None] * len(tasks)
        write = threading.Lock()

        todo = list(range(len(tasks)))
        take = threading.Lock()
        workers = max(1, min(batch or self.cfg.batch, len(tasks)))
        barrier = threading.Barrier(workers)

        def worker() -> None:
            # Every worker counts as running before any asks the model, so the first turn batches too.
            with self.bp.session():
                barrier.wait()
                while True:
                    with take:
                        if not todo:
                            return
                        i = todo.pop(0)
                    task = tasks[i]
                    traj = self._episode(envs(), task.seed, split=task.split, group=task.group,
                                         max_turns=max_turns, thread_id=f"{phase}/{task.split}-{task.seed}-{task.group}",
                                         env_name=env_name, env_kwargs=env_kwargs)
                    out[i] = traj
                    with write:
                        if out_path is not None:
                            write_jsonl(out_path, [traj])
                        if on_episode is not None:
                            on_episode(traj)

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="planner") as pool:
            futures = [pool.submit(worker) for _ in range(workers)]
            errors = [f.exception() for f in futures]
        if any(errors):
            raise next(e for e in errors if e is not None)
        trajs = [t for t in out if t is not None]
        stats.episodes = len(trajs)
        stats.turns = sum(len(t.turns) for t in trajs)
        stats.tokens = self.bp.tokens - tok0
        stats.act_seconds = self.bp.seconds - sec0
        stats.env_seconds = sum(t.meta["planner"]["env_seconds"] for t in trajs)
        stats.batch_sizes = list(self.bp.batch_sizes[calls0:])
        stats.wall_seconds = time.perf_counter() - t0
        return trajs, stats


def sqlite_checkpointer(path: str | Path) -> Any:
    """A LangGraph ``SqliteSaver`` on ``path`` (created), usable from the episode threads."""
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False)
    saver = SqliteSaver(conn)
    saver.setup()
    return saver

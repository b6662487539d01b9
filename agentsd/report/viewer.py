"""Trajectories -> the compact JSON the HTML viewer steps through (capped: a few episodes per run).

Per turn the viewer shows the observation the agent saw, its prompt (collapsed), its response, the reward
and running return, the env's diagnosis, and every other ``info`` key as it is (``planner`` decisions,
retrieved skills, guardrail vetoes... whatever a component put there), then the observation after.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentsd.report.collect import read_metrics, read_trajectories
from agentsd.trajectory import Trajectory

MAX_TEXT = 4000
MAX_TURNS = 60


def _clip(text: str, n: int = MAX_TEXT) -> str:
    return text if len(text) <= n else text[:n] + f"\n… ({len(text) - n} more characters)"


def _turn(t: Any, before: str, ret: float) -> dict[str, Any]:
    info = dict(t.info)
    diagnosis = info.pop("diagnosis", None)
    return {
        "obs": _clip(before),
        # system messages are the same every turn: kept once per episode (``system``)
        "prompt": [{"role": m.get("role", ""), "content": _clip(m.get("content", ""))} for m in t.messages
                   if m.get("role") != "system"],
        "response": _clip(t.response, 1000), "reward": t.reward, "return": ret, "terminated": t.terminated,
        "truncated": t.truncated, "diagnosis": diagnosis, "info": info, "after": _clip(t.observation),
        "tokens": len(t.token_ids),
    }


def episode(traj: Trajectory, phase: str) -> dict[str, Any]:
    turns, ret = [], 0.0
    before = traj.initial_observation
    for t in traj.turns[:MAX_TURNS]:
        ret += t.reward
        turns.append(_turn(t, before, ret))
        before = t.observation
    system = next((m.get("content", "") for t in traj.turns for m in t.messages if m.get("role") == "system"), "")
    return {"id": traj.id, "system": _clip(system), "phase": phase, "seed": traj.seed, "split": traj.split, "env": traj.env,
            "success": traj.success, "return": traj.total_reward, "n_turns": len(traj.turns),
            "shown_turns": len(turns), "meta": traj.meta, "turns": turns}


def run_episodes(run_dir: Path, per_run: int) -> list[dict[str, Any]]:
    """The first ``per_run`` episodes of the run's final evaluation and up to half as many of its last
    training phase (policy rollouts, not warm-start demonstrations)."""
    if per_run <= 0:
        return []
    records = read_metrics(run_dir)
    evals = [r["phase"] for r in records if r.get("kind") == "eval"]
    trains = [r["phase"] for r in records if r.get("kind") == "train" and r["phase"] != "warmstart"]
    out = []
    if evals:
        out += [episode(t, evals[-1]) for t in read_trajectories(run_dir, evals[-1])[:per_run]]
    if trains:
        out += [episode(t, trains[-1]) for t in read_trajectories(run_dir, trains[-1])[: max(1, per_run // 2)]]
    return out

"""Fake run directories in the real formats (config.yaml, metrics.jsonl records shaped like evolve's,
Trajectory JSONL, summary.json, sweep_run.json), written without any model."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from agentsd.metrics import summarize
from agentsd.trajectory import Trajectory, Turn, write_jsonl

GRID0 = "Legend: # wall, _ floor, O target, X box, √ box on target, P player, S player on target\n" \
        "######\n#____#\n#_X_##\n#___##\n#_PO##\n######"
GRID1 = "Legend: # wall, _ floor, O target, X box, √ box on target, P player, S player on target\n" \
        "######\n#____#\n#_X_##\n#_P_##\n#__O##\n######"


def make_traj(seed: int, success: bool, *, split: str = "test", turns: int = 3, tgc: float | None = None,
              scenario: str | None = None, planner: bool = False) -> Trajectory:
    ts = []
    for i in range(turns):
        last = i == turns - 1
        info = {"action_is_valid": i != 1, "action_is_effective": True, "success": success and last,
                "diagnosis": {"failure_type": None if i != 1 else "invalid_format", "detail": f"turn {i}",
                              "progress": 0.5 * i, "stagnation": 0, "extra": {"steps": i + 1}},
                "actions": ["Up"]}
        if planner:
            info["planner"] = {"decision": "replan" if i == 1 else "act", "plan": ["Up", "Left"]}
            info["retrieved"] = [{"id": "abc123", "kind": "skill", "score": 0.8}]
        if tgc is not None and last:
            info["tgc"] = tgc
            info["scenario_id"] = scenario
        ts.append(Turn(messages=[{"role": "system", "content": "Sokoban rules."},
                                 {"role": "user", "content": "Push the box.\n" + (GRID0 if i % 2 == 0 else GRID1)}],
                       response="<answer>Up</answer>", token_ids=[1, 2, 3, 4], logprobs=[-0.1] * 4,
                       reward=10.0 if (success and last) else -0.1, terminated=success and last,
                       truncated=not success and last, info=info, observation=GRID1 if i % 2 == 0 else GRID0))
    return Trajectory(env="sokoban", seed=seed, split=split, initial_observation=GRID0, turns=ts,
                      env_kwargs={"difficulty": "easy"})


def write_run(root: Path, name: str, *, outcomes: dict[int, bool], before: dict[int, bool] | None = None,
              env: str = "sokoban", seed: int = 0, complete: bool = True, wall_s: float | None = 12.5,
              peak_rss_mb: float | None = 900.0, learner_steps: int = 1, memory_entries: int | None = 3,
              tgc: dict[int, float] | None = None, planner: bool = False) -> Path:
    """A run directory as evolve writes it: warmstart, eval_before, iter_1, eval_after (unless not complete)."""
    d = root / name
    (d / "trajectories").mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump({"name": name, "seed": seed, "env": {"name": env}}))
    before = before if before is not None else {k: False for k in outcomes}
    phases = []

    def add(phase: str, kind: str, trajs: list[Trajectory], **extra) -> None:
        write_jsonl(d / "trajectories" / f"{phase}.jsonl", trajs)
        tokens = sum(t.num_tokens for t in trajs)
        phases.append({"phase": phase, "kind": kind, "metrics": summarize(trajs),
                       "rollout": {"episodes": len(trajs), "turns": sum(len(t.turns) for t in trajs),
                                   "tokens": tokens, "wall_seconds": 1.0, "tokens_per_s": 10.0},
                       "time": 1.0, **extra})

    add("warmstart", "train", [make_traj(s, True, split="train") for s in range(2)],
        sft={"examples": 6, "final_loss": 0.5, "seconds": 3.0}, memory={"added": 2, "size": {"skill": 2}})
    add("eval_before", "eval", [make_traj(s, v) for s, v in before.items()])
    add("iter_1", "train", [make_traj(100 + s, s == 0, split="train", planner=planner) for s in range(4)],
        learn={"stepped": 1.0, "steps": learner_steps, "loss": 0.1, "tokens": 64.0},
        memory={"added": 1, "size": {"skill": 2, "guardrail": 1}})
    if complete:
        add("eval_after", "eval", [make_traj(s, v, planner=planner,
                                             tgc=(tgc or {}).get(s), scenario=f"sc{s // 2}") for s, v in outcomes.items()])
    with open(d / "metrics.jsonl", "w") as f:
        for p in phases:
            f.write(json.dumps(p) + "\n")
    (d / "state.json").write_text(json.dumps({"done": [p["phase"] for p in phases], "checkpoint": None,
                                              "phases": phases}))
    if complete:
        summary = {"name": name, "phases": phases}
        if memory_entries is not None:
            summary["memory"] = {"entries": memory_entries, "by_kind": {"skill": memory_entries}}
        (d / "summary.json").write_text(json.dumps(summary))
    if wall_s is not None:
        (d / "sweep_run.json").write_text(json.dumps({"attempts": [{"wall_s": wall_s, "peak_rss_mb": peak_rss_mb,
                                                                     "rc": 0, "resumed": False}]}))
    return d

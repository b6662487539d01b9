"""Craft env speed: steps per second, world generation, and the oracle.

    python bench/bench_craft.py [--steps 100000] [--seconds 2]

Runs pinned to one CPU core. Rows:
- ``step (random commands)``: ``CraftEnv.step`` on a seeded random mix of valid commands (moves,
  mine in a direction, craft, smelt, place, inventory) and some invalid text, observation included;
  the episode is reset when it ends (resets are not timed);
- ``step (oracle replay)``: the oracle's commands for test seeds, recorded first, then replayed
  (only the replay is timed);
- ``reset (world generation)``: ``reset(seed)`` per second (a new 24x24 world, task and chain);
- ``oracle``: ``oracle_action`` calls per second along its own episodes (plan + Dijkstra).
Target: >= 10,000 steps/s. Prints a table and writes bench/results/bench_craft.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from agentsd.envs.craft.env import CraftEnv

TARGETS = {"step (random commands)": 10_000, "step (oracle replay)": 10_000}
COMMANDS = [
    "move north", "move south 2", "move east 3", "move west",
    "mine north", "mine south", "mine east", "mine west", "mine",
    "craft planks 4", "craft stick", "craft crafting_table", "craft wooden_pickaxe",
    "smelt iron_ore", "place crafting_table", "inventory", "look",
]


def pin_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"core {core}"
    return "unpinned"  # pragma: no cover - macOS / Windows


def bench_random(n: int) -> float:
    env = CraftEnv(max_steps=10**9)
    env.reset(seed=0)
    texts = [f"<answer>{c}</answer>" for c in COMMANDS] + ["no answer here"]
    picks = np.random.default_rng(0).integers(len(texts), size=n).tolist()
    spent, done = 0.0, 0
    t0 = time.perf_counter()
    for k in picks:
        _, _, term, trunc, _ = env.step(texts[k])
        done += 1
        if term or trunc:
            t1 = time.perf_counter()
            env.reset(seed=done)
            spent += time.perf_counter() - t1
    return n / (time.perf_counter() - t0 - spent)


def record_oracle(episodes: int) -> tuple[list[tuple[int, str, list[str]]], float, int]:
    """(seed, tier, commands) per episode; also oracle calls per second."""
    out, calls, t_oracle = [], 0, 0.0
    for k in range(episodes):
        tier = ("wood", "stone", "iron", "diamond")[k % 4]
        env = CraftEnv(tier=tier)
        seed = CraftEnv.test_seeds[0] + k
        env.reset(seed=seed)
        cmds = []
        while True:
            t0 = time.perf_counter()
            a = env.oracle_action()
            t_oracle += time.perf_counter() - t0
            calls += 1
            if a is None:
                break
            cmds.append(a)
            _, _, term, trunc, _ = env.step(a)
            if term or trunc:
                break
        out.append((seed, tier, cmds))
    return out, calls / t_oracle, calls


def bench_replay(episodes: list[tuple[int, str, list[str]]], rounds: int) -> tuple[float, float]:
    envs = {t: CraftEnv(tier=t) for t in ("wood", "stone", "iron", "diamond")}
    steps, spent, solved, total = 0, 0.0, 0, 0
    for _ in range(rounds):
        for seed, tier, cmds in episodes:
            env = envs[tier]
            env.reset(seed=seed)
            info = {}
            t0 = time.perf_counter()
            for a in cmds:
                info = env.step(a)[4]
            spent += time.perf_counter() - t0
            steps += len(cmds)
            solved += bool(info.get("success"))
            total += 1
    return steps / spent, solved / total


def bench_reset(seconds: float) -> float:
    env = CraftEnv()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        env.reset(seed=n)
        n += 1
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--episodes", type=int, default=40, help="oracle episodes recorded for the replay row")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--out", default="bench/results/bench_craft.json")
    args = ap.parse_args()
    where = pin_one_core()
    rows = [{"name": "step (random commands)", "value": bench_random(args.steps), "unit": "steps/s"}]
    episodes, oracle_rate, calls = record_oracle(args.episodes)
    replay, solved = bench_replay(episodes, rounds=max(1, 20_000 // max(1, sum(len(c) for *_, c in episodes))))
    rows.append({"name": "step (oracle replay)", "value": replay, "unit": "steps/s", "solved": solved})
    rows.append({"name": "reset (world generation)", "value": bench_reset(args.seconds), "unit": "resets/s"})
    rows.append({"name": "oracle", "value": oracle_rate, "unit": "calls/s", "n": calls})
    for r in rows:
        r["target"] = TARGETS.get(r["name"])
        r["pass"] = None if r["target"] is None else r["value"] >= r["target"]
    t = Table(title=f"Craft bench (one CPU, {where})")
    for h in ("row", "value", "target", "pass"):
        t.add_column(h)
    for r in rows:
        ok = "" if r["pass"] is None else ("PASS" if r["pass"] else "FAIL")
        t.add_row(r["name"], f"{r['value']:,.1f} {r['unit']}", "" if r["target"] is None else f">= {r['target']:,}", ok)
    Console(width=120).print(t)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(), "cpu": where}
    out.write_text(json.dumps({"rows": rows, "meta": meta}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""Apps env speed: sandboxed code steps on a warm worker, resets, the oracle, a cold worker start.

    python bench/bench_apps.py [--steps 300] [--episodes 68]

Runs pinned to one CPU core (the sandbox worker is a second process; it is pinned to the same core).
Rows (latencies are ``AppsEnv.step`` wall time, observation and DB diff included):
- ``step: print (warm worker)``: a cell that prints one value (no API call);
- ``step: 1 API call``: a cell that calls one read API and prints the response;
- ``step: oracle cells``: the reference programs' cells (a login cell with 2-4 API calls, then the
  work: reads, writes, complete_task and the database-diff judgement), over test seeds of every template;
- ``step: JSON call``: one JSON tool call (``action_format="json"``, no sandbox);
- ``reset``: world generation, SQLite load, snapshot and the worker's namespace reset;
- ``worker cold start``: a fresh sandbox process until it is ready;
- ``oracle success``: the fraction of oracle episodes that pass.
Target: step p50 <= 50 ms on a warm worker. Prints a table and writes bench/results/bench_apps.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from agentsd.envs.apps import TASKS_PER_SCENARIO, TEMPLATES, AppsEnv, Sandbox

TARGET_P50_MS = 50.0


def pin_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})  # the worker inherits the affinity
        return f"core {core}"
    return "unpinned"  # pragma: no cover - macOS / Windows


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def row(name: str, times: list[float], **extra) -> dict:
    ms = [t * 1000 for t in times]
    return {"name": name, "n": len(ms), "p50_ms": pct(ms, 0.5), "p99_ms": pct(ms, 0.99),
            "mean_ms": statistics.fmean(ms), **extra}


def timed_steps(env: AppsEnv, code: str, n: int) -> list[float]:
    env.reset(seed=AppsEnv.test_seeds.start)
    text = f"```python\n{code}\n```"
    env.step(text)  # warm
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        env.step(text)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--episodes", type=int, default=2 * len(TEMPLATES))
    ap.add_argument("--out", default="bench/results/bench_apps.json")
    args = ap.parse_args()
    where = pin_one_core()
    env = AppsEnv(max_steps=10**9)
    rows = [row("step: print (warm worker)", timed_steps(env, "print('hello')", args.steps))]
    rows.append(row("step: 1 API call", timed_steps(env, "print(apis.supervisor.show_profile())", args.steps)))

    oracle_steps, resets, solved = [], [], 0
    start = AppsEnv.test_seeds.start // TASKS_PER_SCENARIO
    for k in range(args.episodes):
        seed = (start + k) * TASKS_PER_SCENARIO + k % TASKS_PER_SCENARIO
        t0 = time.perf_counter()
        env.reset(seed=seed)
        resets.append(time.perf_counter() - t0)
        info = {}
        while (a := env.oracle_action()) is not None:
            t0 = time.perf_counter()
            _, _, term, trunc, info = env.step(a)
            oracle_steps.append(time.perf_counter() - t0)
            if term or trunc:
                break
        solved += bool(info.get("success"))
    rows.append(row("step: oracle cells", oracle_steps))
    env.close()

    jenv = AppsEnv(action_format="json", max_steps=10**9)
    jenv.reset(seed=AppsEnv.test_seeds.start)
    jtimes = []
    call = json.dumps({"app": "api_docs", "api": "search_api_docs", "args": {"query": "send money"}})
    for _ in range(args.steps):
        t0 = time.perf_counter()
        jenv.step(call)
        jtimes.append(time.perf_counter() - t0)
    rows.append(row("step: JSON call", jtimes))
    jenv.close()
    rows.append(row("reset", resets))
    cold = []
    for _ in range(5):
        sb = Sandbox()
        t0 = time.perf_counter()
        sb.start()
        cold.append(time.perf_counter() - t0)
        sb.close()
    rows.append(row("worker cold start", cold))
    for r in rows:
        r["target_p50_ms"] = TARGET_P50_MS if r["name"].startswith("step") else None
        r["pass"] = None if r["target_p50_ms"] is None else r["p50_ms"] <= TARGET_P50_MS
    success = {"name": "oracle success", "value": solved / max(1, args.episodes), "n": args.episodes}

    t = Table(title=f"Apps bench (one CPU, {where})")
    for h in ("row", "n", "p50", "p99", "mean", "target", "pass"):
        t.add_column(h)
    for r in rows:
        ok = "" if r["pass"] is None else ("PASS" if r["pass"] else "FAIL")
        t.add_row(r["name"], str(r["n"]), f"{r['p50_ms']:.2f} ms", f"{r['p99_ms']:.2f} ms", f"{r['mean_ms']:.2f} ms",
                  "" if r["target_p50_ms"] is None else f"p50 <= {TARGET_P50_MS:g} ms", ok)
    t.add_row("oracle success", str(success["n"]), f"{success['value']:.1%}", "", "", "", "")
    Console(width=120).print(t)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(), "cpu": where}
    out.write_text(json.dumps({"rows": rows, "oracle": success, "meta": meta}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

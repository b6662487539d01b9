"""Community benchmarks behind the TextEnv contract: oracle success on test tasks and env speed.

    OMP_NUM_THREADS=1 .venv/bin/python bench/benchmarks.py [--tasks 200] [--only frozenlake,taxi]

Per adapter: the oracle's success on the first ``--tasks`` test seeds, env steps/s while the oracle
plays (oracle time excluded), and random-text steps/s (parse + invalid step). Published numbers of
other systems go in each entry's ``published`` (with the citation) or stay "n/a". Prints a table and
writes bench/results/benchmarks.json. Add an adapter by adding an entry to ``ADAPTERS``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from agentsd.envs import make

#: name -> make kwargs, whether the oracle is exact (then >= 99% is expected), published figures.
ADAPTERS: dict[str, dict] = {
    "frozenlake": {"kwargs": {}, "exact": True, "published": "n/a"},
    "frozenlake-8x8": {"kwargs": {}, "exact": True, "published": "n/a"},
    "frozenlake-slippery": {"kwargs": {}, "exact": False, "published": "n/a"},
    "cliffwalking": {"kwargs": {}, "exact": True, "published": "n/a"},
    "taxi": {"kwargs": {}, "exact": True, "published": "n/a"},
}


def oracle_run(env, seed: int) -> tuple[bool, int, float]:
    """(success, env steps, seconds spent in reset + step) of one oracle episode."""
    t = time.perf_counter()
    env.reset(seed=seed)
    spent, steps = time.perf_counter() - t, 0
    while True:
        a = env.oracle_action()
        if a is None:
            return False, steps, spent
        t = time.perf_counter()
        _, _, term, trunc, info = env.step(a)
        spent += time.perf_counter() - t
        steps += 1
        if term or trunc:
            return bool(info["success"]), steps, spent


def invalid_steps_per_s(env, n: int = 2000) -> float:
    env.reset(seed=env.train_seeds[0])
    t = time.perf_counter()
    for k in range(n):
        _, _, term, trunc, _ = env.step(f"I think <answer>maybe {k}</answer>")
        if term or trunc:
            env.reset(seed=env.train_seeds[0])
    return n / (time.perf_counter() - t)


def measure(name: str, entry: dict, tasks: int) -> dict:
    env = make(name, **entry["kwargs"])
    seeds = env.test_seeds[:tasks]
    wins = steps = 0
    spent = 0.0
    for s in seeds:
        ok, k, dt = oracle_run(env, s)
        wins, steps, spent = wins + ok, steps + k, spent + dt
    return {
        "env": name,
        "test_tasks": len(seeds),
        "oracle_success": wins / len(seeds),
        "oracle_exact": entry["exact"],
        "mean_oracle_steps": steps / len(seeds),
        "env_steps_per_s": steps / spent if spent else float("nan"),
        "invalid_steps_per_s": invalid_steps_per_s(env),
        "published": entry["published"],
    }


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--only", default="", help="comma-separated adapter names")
    ap.add_argument("--out", default="bench/results/benchmarks.json")
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n] or list(ADAPTERS)
    rows = [measure(n, ADAPTERS[n], args.tasks) for n in names]
    print(f"{'env':22} {'tasks':>5} {'oracle':>7} {'steps':>6} {'env st/s':>9} {'inv st/s':>9}  published")
    for r in rows:
        print(f"{r['env']:22} {r['test_tasks']:5d} {r['oracle_success']:7.1%} {r['mean_oracle_steps']:6.1f} "
              f"{r['env_steps_per_s']:9.0f} {r['invalid_steps_per_s']:9.0f}  {r['published']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpu": cpu_name(), "python": platform.python_version(), "threads": 1}
    out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out} ({machine['cpu']})")


if __name__ == "__main__":
    main()

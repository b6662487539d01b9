"""Community benchmarks behind the TextEnv contract: oracle success on test tasks and env speed.

    python bench/benchmarks.py [--only textcraft] [--tasks 210] [--seconds 2]
    python bench/benchmarks.py --runs runs/textcraft-*   # add `agentsd run` results to the rows

One row per adapter in ``ADAPTERS``: the oracle (its own solver or gold sequences) played on the first
``tasks`` test seeds (``success``, mean oracle turns), env ``step``s per second replaying those oracle
turns (actions recorded first, only the replay timed; resets not timed), and published numbers of other
systems where we are confident of them (else "n/a"). ``--runs`` adds the embedded model's test success
before and after from ``agentsd run --env NAME`` directories (their summary.json). Pinned to one CPU core. Prints a table and writes
bench/results/benchmarks.json. An adapter entry is an :class:`Adapter`: add one per env to ``ADAPTERS``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from agentsd.envs import make


@dataclass(frozen=True)
class Adapter:
    env: str  # registered name
    kwargs: dict = field(default_factory=dict)
    tasks: int = 200  # test seeds the oracle plays (fewer for slow envs: the row says how many)
    published: str = "n/a"  # other systems' numbers, with citation
    exact: bool = True  # the oracle is optimal on a deterministic env: >= 99% success is expected


ADAPTERS: dict[str, Adapter] = {
    "frozenlake": Adapter("frozenlake"),
    "frozenlake-8x8": Adapter("frozenlake-8x8"),
    # slippery ice: the value-iteration policy maximizes the success probability, which is below 1
    "frozenlake-slippery": Adapter(
        "frozenlake-slippery", exact=False,
        published="not comparable: RAGEN (arXiv:2504.20073) and SPA report slippery FrozenLake success of "
        "RL-trained Qwen2.5 models on their own map generators and turn limits",
    ),
    "cliffwalking": Adapter("cliffwalking"),
    "taxi": Adapter("taxi"),
    "babyai": Adapter(
        "babyai",
        published="n/a (BALROG, Paglieri et al. 2024, arXiv:2411.13543, reports zero-shot LLM progress on "
        "these five MixedTrainLocal task kinds under its own prompts and step limits; no figure copied here)",
    ),
    "textcraft": Adapter(
        "textcraft",
        tasks=210,  # every test goal once
        published="ReAct 19.0%, ADaPT 52.0% success (gpt-3.5-turbo-instruct, their 200-task test set; "
        "Prasad et al. 2024, ADaPT, arXiv:2311.05772)",
    ),
    "scienceworld": Adapter(
        "scienceworld",
        {"max_steps": 1000},  # some gold paths exceed the default 100 turns (mendelian genetics: 263)
        tasks=30,  # the first 30 test seeds: one test variation of every task type (gold paths take seconds)
        published="n/a (its paper reports mean 0-100 scores per task type, not success rates)",
    ),
}


def pin_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"core {core}"
    return "unpinned"  # pragma: no cover - macOS / Windows


def cpu_kind() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # pragma: no cover - not Linux
        return platform.processor() or "unknown"
    model = next((ln.split(":", 1)[1].strip() for ln in flags.splitlines() if ln.startswith("model name")), "?")
    return f"{model} ({'AVX512-BF16' if 'avx512_bf16' in flags else 'AVX2 only'})"


def play_oracle(env, seed: int) -> tuple[bool, list[str]]:
    """One oracle episode: (success, the action texts it took)."""
    env.reset(seed=seed)
    actions: list[str] = []
    info = {"success": False}
    while (a := env.oracle_action()) is not None:
        actions.append(a)
        _, _, term, trunc, info = env.step(a)
        if term or trunc:
            break
    return bool(info["success"]), actions


def replay_speed(env, episodes: list[tuple[int, list[str]]], seconds: float) -> float:
    """Steps per second replaying recorded oracle episodes until ``seconds`` of stepping are spent."""
    steps, spent = 0, 0.0
    while spent < seconds:
        for seed, actions in episodes:
            env.reset(seed=seed)
            t0 = time.perf_counter()
            for a in actions:
                env.step(a)
            spent += time.perf_counter() - t0
            steps += len(actions)
            if spent >= seconds:
                break
    return steps / spent if spent else 0.0


def bench(name: str, ad: Adapter, tasks: int | None, seconds: float) -> dict:
    env = make(ad.env, **ad.kwargs)
    n = min(tasks or ad.tasks, len(env.test_seeds))
    seeds = list(env.test_seeds[:n])
    t0 = time.perf_counter()
    runs = [(s, *play_oracle(env, s)) for s in seeds]
    oracle_s = time.perf_counter() - t0
    wins = sum(ok for _, ok, _ in runs)
    sps = replay_speed(env, [(s, acts) for s, _, acts in runs if acts], seconds)
    env.close()
    return {
        "adapter": name,
        "tasks": n,
        "oracle_success": wins / n,
        "oracle_turns_mean": sum(len(a) for _, _, a in runs) / n,
        "oracle_seconds": round(oracle_s, 2),
        "steps_per_s": round(sps),
        "oracle_exact": ad.exact,
        "published": ad.published,
    }


def run_result(run_dir: Path) -> tuple[str, dict]:
    """(env name, the embedded model's test success before and after) from an ``agentsd run`` directory."""
    import yaml

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    phases = {p["phase"]: p for p in json.loads((run_dir / "summary.json").read_text())["phases"]}
    res = {"run": run_dir.name, "model": cfg["model"]["name"]}
    for tag in ("eval_before", "eval_after"):
        m = phases[tag]["metrics"]
        res[tag] = {"success": m["success"], "episodes": m["episodes"], "return": m["return"]}
    return cfg["env"]["name"], res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", choices=sorted(ADAPTERS), help="adapters to run (default: all)")
    ap.add_argument("--tasks", type=int, default=None, help="test tasks per adapter (default: its own)")
    ap.add_argument("--seconds", type=float, default=2.0, help="stepping time per speed measurement")
    ap.add_argument("--runs", nargs="*", type=Path, default=[],
                    help="agentsd run directories: add their eval_before / eval_after success to the rows "
                    "(no oracle rerun unless --only is given too)")
    args = ap.parse_args()
    pinned = pin_one_core()
    out = Path(__file__).parent / "results" / "benchmarks.json"
    kept = json.loads(out.read_text())["rows"] if out.exists() else []
    todo = args.only if args.only is not None else ([] if args.runs else list(ADAPTERS))
    rows = [bench(k, ADAPTERS[k], args.tasks, args.seconds) for k in todo]
    for run_dir in args.runs:
        env, res = run_result(run_dir)
        row = next((r for r in rows + kept if r["adapter"] == env), None)
        if row is None:
            raise SystemExit(f"{run_dir}: env {env!r} has no row; run bench/benchmarks.py --only {env} first")
        row["embedded_model"] = res
        if row not in rows:
            rows.append(row)
    table = Table(title=f"community benchmarks, oracle on test tasks ({pinned}, {cpu_kind()})")
    for col in ("adapter", "tasks", "oracle success", "oracle turns", "steps/s", "model before -> after",
                "published (others)"):
        table.add_column(col)
    for r in rows:
        m = r.get("embedded_model")
        model = (f"{m['eval_before']['success']:.0%} -> {m['eval_after']['success']:.0%} "
                 f"({m['eval_after']['episodes']} test ep.)" if m else "-")
        table.add_row(r["adapter"], str(r["tasks"]), f"{r['oracle_success']:.1%}", f"{r['oracle_turns_mean']:.1f}",
                      f"{r['steps_per_s']:,}", model, r["published"])
    Console(width=200).print(table)
    out.parent.mkdir(exist_ok=True)
    meta = {"cpu": cpu_kind(), "pinned": pinned, "python": platform.python_version(),
            "command": "python bench/benchmarks.py [--only NAME] [--runs RUN_DIR ...]: each row from its latest run"}
    # --only / --runs replace their adapters' rows and keep the others'
    mine = {r["adapter"] for r in rows}
    rows = [r for r in kept if r["adapter"] not in mine] + rows
    rows.sort(key=lambda r: list(ADAPTERS).index(r["adapter"]) if r["adapter"] in ADAPTERS else len(ADAPTERS))
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

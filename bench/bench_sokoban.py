"""Sokoban env speed: steps, level generation, solver, and a naive generator for comparison.

    python bench/bench_sokoban.py [--solver-levels 200] [--seconds 3] [--steps 100000]

Runs pinned to one CPU core. Rows:
- ``step+render``: ``SokobanEnv.step`` on a valid one-move answer plus ``render()``, on hard levels;
- ``generate easy/medium/hard``: ``generate_preset`` levels per second (reverse-play BFS);
- ``naive generate easy/hard``: a gym-sokoban-style reference written here: a random room, random
  goals, then repeated random reverse-play walks (move or pull, chosen at random) scored by pulls x
  box displacement, re-drawing the room when every walk scores 0. Same one core, same run;
- ``solve hard``: ``solve`` on ``--solver-levels`` generated hard levels (rate, median/p90/max time,
  mean pushes and moves).
Quality columns give the mean optimal push count of sampled levels (from the solver), so faster does
not mean easier. Targets: >= 20,000 steps/s, >= 2,000 easy levels/s, >= 10 hard levels/s.
Prints a table and writes bench/results/sokoban.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from agentsd.envs.sokoban.board import Board
from agentsd.envs.sokoban.env import SokobanEnv
from agentsd.envs.sokoban.generator import PRESETS, generate_preset
from agentsd.envs.sokoban.level import Level
from agentsd.envs.sokoban.solver import expand_pushes, solve_pushes

TARGETS = {"step+render": 20_000, "generate easy": 2_000, "generate hard": 10}


def pin_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"core {core}"
    return "unpinned"  # pragma: no cover - macOS / Windows


# --- naive reference generators --------------------------------------------------------------
def naive_room(rng: np.random.Generator, h: int, w: int, boxes: int):
    """Random-walk room (one rng call per step), random goals and player; None if too small."""
    floor = bytearray(h * w)
    r, c = int(rng.integers(1, h - 1)), int(rng.integers(1, w - 1))
    for _ in range(int((h - 2) * (w - 2) * 1.5)):
        floor[r * w + c] = 1
        d = int(rng.integers(4))
        nr, nc = r + (-1, 1, 0, 0)[d], c + (0, 0, -1, 1)[d]
        if 0 < nr < h - 1 and 0 < nc < w - 1:
            r, c = nr, nc
    cells = [i for i in range(h * w) if floor[i]]
    if len(cells) < boxes + 2:
        return None
    pick = [cells[int(k)] for k in rng.permutation(len(cells))[: boxes + 1]]
    return floor, pick[:boxes], pick[boxes]


def displacement(bx, goals, w: int) -> int:
    return sum(abs(b // w - g // w) + abs(b % w - g % w) for b, g in zip(bx, goals, strict=True))


def naive_walks(
    rng: np.random.Generator, size: tuple[int, int], boxes: int, walks: int = 10, walk_len: int = 300
):
    """Random reverse-play walks (move, or move and pull the box behind) with restarts; the walk end
    with the best pulls x displacement wins; a new room when no walk moved every box off its goal."""
    h, w = size
    steps = (-w, w, -1, 1)
    while True:
        room = naive_room(rng, h, w, boxes)
        if room is None:
            continue
        floor, goals, start = room
        best, best_score = None, 0
        for _ in range(walks):
            bx, p, pulls = list(goals), start, 0
            for _ in range(walk_len):
                s = steps[int(rng.integers(4))]
                t = p + s
                if not floor[t] or t in bx:
                    continue
                if rng.random() < 0.5 and p - s in bx:
                    bx[bx.index(p - s)] = p
                    pulls += 1
                p = t
            score = pulls * displacement(bx, goals, w)
            if score > best_score and not set(bx) & set(goals):
                best, best_score = (tuple(bx), p), score
        if best is not None:
            return _level(h, w, floor, goals, *best)


def naive_dfs(
    rng: np.random.Generator,
    size: tuple[int, int],
    boxes: int,
    ttl: int = 300,
    cap: int = 300_000,
    tries: int = 4,
):
    """gym-sokoban-style: exhaustive depth-first reverse play over exact (player, boxes) states, up to
    ``ttl`` deep and ``cap`` states, scored by box switches x displacement (0 unless all boxes left
    their goals); a new room (up to ``tries``) when the best score is 0."""
    h, w = size
    steps = (-w, w, -1, 1)
    for _ in range(1000):
        room = naive_room(rng, h, w, boxes)
        if room is None:
            continue
        floor, goals, start = room
        goalset, seen, best, best_score = set(goals), set(), None, 0
        stack = [(start, tuple(goals), -1, 0, ttl)]
        while stack and len(seen) < cap:
            p, bx, last, swaps, left = stack.pop()
            key = (p, frozenset(bx))
            if key in seen:
                continue
            seen.add(key)
            score = swaps * displacement(bx, goals, w) if not set(bx) & goalset else 0
            if score > best_score:
                best, best_score = (bx, p), score
            if left <= 1:
                continue
            for s in steps:
                t = p + s
                if not floor[t] or t in bx:
                    continue
                stack.append((t, bx, last, swaps, left - 1))
                if p - s in bx:  # pull the box behind us along
                    k = bx.index(p - s)
                    nb = bx[:k] + (p,) + bx[k + 1 :]
                    stack.append((t, nb, k, swaps + (k != last), left - 1))
        if best is not None:
            return _level(h, w, floor, goals, *best)
        tries -= 1
    raise RuntimeError("naive_dfs found no level")


def _level(h: int, w: int, floor: bytearray, goals, bx, p) -> Level:
    walls = frozenset(i for i in range(h * w) if not floor[i])
    return Level(h, w, walls, frozenset(goals), frozenset(bx), p)


# --- measurements ----------------------------------------------------------------------------
def rate(make_one, seconds: float, min_n: int = 5) -> tuple[float, int, list]:
    """Calls per second of ``make_one(k)`` over at least ``seconds`` and ``min_n`` calls."""
    out, t0, n = [], time.perf_counter(), 0
    while n < min_n or time.perf_counter() - t0 < seconds:
        out.append(make_one(n))
        n += 1
    return n / (time.perf_counter() - t0), n, out


def mean_pushes(levels: list[Level], k: int = 40) -> float:
    got = [solve_pushes(lv, Board(lv), time_limit=10.0) for lv in levels[:k]]
    return statistics.mean(len(p) for p in got if p is not None)


def bench_steps(n: int) -> float:
    env = SokobanEnv(difficulty="hard", render_mode="ansi", max_steps=10**9)
    env.reset(seed=0)
    moves = np.random.default_rng(0).integers(4, size=n).tolist()
    texts = [f"<answer>{m}</answer>" for m in ("Up", "Down", "Left", "Right")]
    t0 = time.perf_counter()
    for k in moves:
        env.step(texts[k])
        env.render()
    return n / (time.perf_counter() - t0)


def bench_solver(n: int) -> dict:
    times, pushes, moves, solved = [], [], [], 0
    for s in range(n):
        lv = generate_preset(np.random.default_rng(1_000_000 + s), "hard")
        t0 = time.perf_counter()
        board = Board(lv)
        plan = solve_pushes(lv, board, time_limit=10.0)
        mv = expand_pushes(lv, board, plan) if plan is not None else None
        times.append(time.perf_counter() - t0)
        if plan is not None:
            solved += 1
            pushes.append(len(plan))
            moves.append(len(mv))
    times.sort()
    return {
        "levels": n,
        "solve_rate": solved / n,
        "median_ms": 1e3 * statistics.median(times),
        "p90_ms": 1e3 * times[int(0.9 * (n - 1))],
        "max_ms": 1e3 * times[-1],
        "mean_pushes": statistics.mean(pushes) if pushes else 0.0,
        "mean_moves": statistics.mean(moves) if moves else 0.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--solver-levels", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=3.0, help="time per generation row")
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--out", default="bench/results/sokoban.json")
    args = ap.parse_args()
    where = pin_one_core()

    rows: list[dict] = []
    rows.append({"name": "step+render", "value": bench_steps(args.steps), "unit": "steps/s"})
    for diff in ("easy", "medium", "hard"):
        v, n, lvls = rate(lambda k, d=diff: generate_preset(np.random.default_rng(k), d), args.seconds)
        rows.append(
            {"name": f"generate {diff}", "value": v, "unit": "levels/s", "n": n, "pushes": mean_pushes(lvls)}
        )
    for kind, fn in (("walks", naive_walks), ("dfs", naive_dfs)):
        for diff in ("easy", "hard"):
            p = PRESETS[diff]
            v, n, lvls = rate(
                lambda k, p=p, fn=fn: fn(np.random.default_rng(k), p.size, p.boxes), args.seconds, 2
            )
            pushes = mean_pushes(lvls)
            rows.append(
                {"name": f"naive {kind} {diff}", "value": v, "unit": "levels/s", "n": n, "pushes": pushes}
            )
    solver = bench_solver(args.solver_levels)
    for r in rows:
        target = TARGETS.get(r["name"])
        r["target"] = target
        r["pass"] = None if target is None else r["value"] >= target
    by = {r["name"]: r["value"] for r in rows}
    speedup = {
        f"{d} vs naive {kind}": by[f"generate {d}"] / by[f"naive {kind} {d}"]
        for kind in ("walks", "dfs")
        for d in ("easy", "hard")
    }

    print_table(rows, solver, speedup, where)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(), "cpu": where}
    result = {"rows": rows, "solver_hard": solver, "speedup_vs_naive": speedup, "meta": meta}
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


def print_table(rows: list[dict], solver: dict, speedup: dict, where: str) -> None:
    lines = [(f"Sokoban bench (one CPU, {where})", "", "", "", "")]
    lines.append(("row", "value", "target", "pass", "mean pushes"))
    for r in rows:
        ok = "" if r["pass"] is None else ("PASS" if r["pass"] else "FAIL")
        tgt = "" if r["target"] is None else f">= {r['target']:,}"
        pushes = f"{r['pushes']:.1f}" if "pushes" in r else ""
        lines.append((r["name"], f"{r['value']:,.1f} {r['unit']}", tgt, ok, pushes))
    for d, x in speedup.items():
        lines.append((f"speedup {d}", f"{x:,.2f}x", "", "", ""))
    s = solver
    lines.append(
        (
            f"solve hard ({s['levels']} levels)",
            f"{100 * s['solve_rate']:.1f}% solved",
            "",
            "",
            f"{s['mean_pushes']:.1f}",
        )
    )
    lines.append(
        (
            "solve hard time",
            f"median {s['median_ms']:.2f} ms, p90 {s['p90_ms']:.2f} ms, max {s['max_ms']:.1f} ms",
            "",
            "",
            f"moves {s['mean_moves']:.1f}",
        )
    )
    t = Table(title=lines[0][0])
    for h in lines[1]:
        t.add_column(h)
    for row in lines[2:]:
        t.add_row(*row)
    Console(width=140).print(t)


if __name__ == "__main__":
    main()

"""SkillMemory at scale: retrieval latency, raw Chroma latency, insertion throughput and curation cost.

    python bench/bench_memory.py [--sizes 10000,100000] [--queries 200] [--dir DIR] [--keep]

One store (a temp dir, or ``--dir``, which must be new or empty) grows through the sizes in order. It
is filled with generated, distinct skills and guardrails across three envs (sokoban, alfworld,
webshop) and several failure types, from a seeded RNG, word lists and templates with varied numbers,
in batches of 500 through ``SkillMemory.add`` (embedding + curation + writes). At each size:

- ``retrieve``: ``SkillMemory.retrieve(q, k=5, env=...)`` on ``--queries`` fresh query texts (never
  embedded before, so the embedder's per-process LRU cannot answer: the JSON counts LRU hits, which
  must be 0), query embedding included; p50 / p99 in ms;
- ``raw chroma``: the same query text embedded again with ``mem.embedder`` (its LRU entry dropped
  first, so it is computed again) plus ``collection.query(n_results=5)`` on the same collections
  retrieve searches (the env's skill and guardrail collections). The two are interleaved per query,
  in alternating order, so load from other processes hits both alike. ``overhead`` = retrieve p50 /
  raw p50;
- ``inserts/s``: 1,000 further fresh entries added in batches of 100, end to end;
- ``curation ms/insert``: (time of those adds - time of ``mem.embedder.embed`` on 1,000 other fresh
  entries of the same generator, i.e. the same length distribution, in batches of 100) / 1,000: what
  dedup, near-duplicate and conflict checks and the writes cost per entry. It should not grow
  linearly with the store size.

Targets (issue): retrieve p50 <= 20 ms, p99 <= 60 ms, >= 200 inserts/s. Prints a table and writes
bench/results/bench_memory.json. 100k entries take several minutes to build (embedding is ~250
texts/s on 2 cores); progress is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from agentsd.memory import Guardrail, PredicateRef, Skill, SkillMemory  # noqa: E402
from agentsd.memory.embeddings import text_hash  # noqa: E402
from agentsd.memory.store import collection_name  # noqa: E402

TARGETS = {"p50_ms": 20.0, "p99_ms": 60.0, "inserts_per_s": 200.0}
ENVS = ("sokoban", "alfworld", "webshop")

# --- word lists ----------------------------------------------------------------------------------------
DIRS = ["up", "down", "left", "right"]
MOVES = ["Up", "Down", "Left", "Right"]
WALLS = ["north", "south", "east", "west"]
REGIONS = ["upper-left", "upper-right", "lower-left", "lower-right", "central", "narrow", "dead-end", "side"]
SHAPES = ["corridor", "room", "alcove", "doorway", "loop", "chamber", "passage", "bend"]
ADVERBS = ["carefully", "first", "early", "only", "always", "immediately", "deliberately", "patiently"]
NUMWORDS = ["two", "three", "four", "five", "six"]

OBJECTS = ["apple", "egg", "mug", "plate", "knife", "spoon", "potato", "tomato", "lettuce", "bread", "cup",
           "pan", "pot", "book", "pen", "pencil", "cd", "cellphone", "keychain", "vase", "watch", "towel",
           "soapbar", "spraybottle", "candle", "pillow", "laptop", "remotecontrol", "creditcard", "statue"]
RECEPTACLES = ["fridge", "countertop", "cabinet", "drawer", "microwave", "sinkbasin", "shelf", "diningtable",
               "stoveburner", "garbagecan", "desk", "dresser", "sidetable", "bed", "sofa", "coffeetable",
               "bathtubbasin", "toilet", "safe", "armchair"]
ACTIONS = {"heat": "microwave", "cool": "fridge", "clean": "sinkbasin", "slice": "countertop"}

PRODUCTS = ["running shoes", "rain jacket", "wireless headphones", "coffee maker", "yoga mat", "desk lamp",
            "backpack", "water bottle", "phone case", "wool socks", "hiking boots", "bluetooth speaker",
            "face moisturizer", "shampoo", "protein powder", "office chair", "throw pillow", "laptop sleeve",
            "sunglasses", "kitchen scale", "electric toothbrush", "winter gloves", "denim jeans", "tea kettle"]
COLORS = ["black", "white", "navy", "red", "olive", "grey", "beige", "pink", "teal", "brown", "silver", "gold"]
MATERIALS = ["cotton", "leather", "stainless steel", "bamboo", "wool", "nylon", "ceramic", "glass", "organic"]
SIZES = ["small", "medium", "large", "x-large", "8", "9", "10", "11", "12", "6.5", "7.5", "32w 30l", "34w 32l"]
OPTIONS = ["size", "color", "pack count", "flavor", "material", "style", "capacity", "scent"]

FAILURES = {
    "sokoban": ["deadlock_corner", "deadlock_wall", "no_progress", "invalid_action", "box_blocked"],
    "alfworld": ["wrong_object", "missing_precondition", "invalid_action", "loop", "wrong_receptacle"],
    "webshop": ["wrong_item", "over_budget", "missing_option", "search_loop", "invalid_click"],
}


class Generator:
    """Distinct, varied skills and guardrails (and query texts); every text it returns is new."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.seen: set[str] = set()
        self.n = 0

    def _fresh(self, make):
        for _ in range(100):
            e = make()
            key = e.embed_text() if not isinstance(e, str) else e
            if key not in self.seen:
                self.seen.add(key)
                return e
        raise RuntimeError("generator ran out of distinct texts")

    # --- entries --------------------------------------------------------------------------------------
    def entries(self, n: int) -> list[Skill | Guardrail]:
        out = []
        for _ in range(n):
            env = self.rng.choice(ENVS)
            kind = "skill" if self.rng.random() < 0.5 else "guardrail"
            out.append(self._fresh(lambda env=env, kind=kind: getattr(self, f"_{env}_{kind}")()))
        return out

    def _ev(self) -> list[str]:
        self.n += 1
        return [f"traj-{self.n:07d}"]

    def _common(self) -> dict:
        r = self.rng
        return {"confidence": round(r.uniform(0.3, 0.95), 2), "support": r.randint(1, 6), "evidence": self._ev(),
                "upvotes": r.choice([0, 0, 0, 1, 2]), "downvotes": r.choice([0, 0, 0, 0, 1])}

    def _sokoban_skill(self) -> Skill:
        r = self.rng
        d, n, k = r.choice(DIRS), r.randint(1, 9), r.randint(1, 6)
        trig = r.choice([
            f"a box sits {n} squares {d} of its target along the {r.choice(WALLS)} wall",
            f"{k} boxes remain off target in a {r.randint(5, 12)}x{r.randint(5, 12)} {r.choice(SHAPES)}",
            f"the player stands {n} steps {d} of the only box in the {r.choice(REGIONS)} {r.choice(SHAPES)}",
            f"{r.choice(NUMWORDS)} boxes are lined up in the {r.choice(REGIONS)} {r.choice(SHAPES)}",
            f"the last box is {n} cells from target {k} with the {r.choice(WALLS)} wall behind it",
        ])
        moves = [r.choice(MOVES) for _ in range(r.randint(2, 9))]
        summary = r.choice([
            f"walk around the box and push it {d} {n} times to reach target {k}",
            f"{r.choice(ADVERBS)} clear the {r.choice(REGIONS)} {r.choice(SHAPES)} before pushing box {k} {d}",
            f"line the box up with its target, then push {d} exactly {n} times",
            f"solve box {k} first: it blocks the {r.choice(SHAPES)} that the other {n} boxes need",
            f"approach from the {r.choice(WALLS)} side so box {k} can go {d} without touching a wall",
        ])
        pred = PredicateRef(name="box_on_target", params={"box": k}) if r.random() < 0.3 else None
        return Skill(env="sokoban", triggers=[trig], summary=summary, golden_workflow=moves,
                     preconditions=[f"box {k} is not against a wall"] if r.random() < 0.4 else [],
                     verification=pred, success_analysis=f"solved in {r.randint(4, 60)} moves", **self._common())

    def _sokoban_guardrail(self) -> Guardrail:
        r = self.rng
        ft = r.choice(FAILURES["sokoban"])
        d, w, n = r.choice(DIRS), r.choice(WALLS), r.randint(1, 9)
        region, shape = r.choice(REGIONS), r.choice(SHAPES)
        summary = {
            "deadlock_corner": f"never push a box {d} into the {region} corner unless a target is there",
            "deadlock_wall": f"do not push box {n} flat against the {w} wall when no target lies along it",
            "no_progress": f"stop pacing in the {shape}: {n} moves passed without any box moving",
            "invalid_action": f"answer with one direction word; '{d} {n}' was rejected {n} times",
            "box_blocked": f"a box {n} squares {d} blocks the {shape}; move it aside before going {d}",
        }[ft]
        return Guardrail(
            env="sokoban", failure_type=ft, summary=summary,
            triggers=[f"a box {n} squares from the {w} wall in the {region} {shape}"],
            root_cause=f"after {r.randint(2, 40)} steps the box could no longer reach any of {n} targets",
            risk_pattern=f"pushing {d} toward the {w} wall with {r.randint(1, 5)} boxes left",
            forbidden=f"pushing {d} in the {region} {shape} when the next square is a dead square",
            forbidden_action=r.choice(MOVES) if r.random() < 0.2 else None,
            risk_predicate=PredicateRef(name="push_into_dead_square", params={"direction": d}) if r.random() < 0.3 else None,
            repair=[f"undo and approach from the {r.choice(WALLS)}", f"push box {n} {r.choice(DIRS)} first"],
            **self._common(),
        )

    def _alfworld_skill(self) -> Skill:
        r = self.rng
        act, tool = r.choice(list(ACTIONS.items()))
        obj, src, dst = r.choice(OBJECTS), r.choice(RECEPTACLES), r.choice(RECEPTACLES)
        i, j, k = r.randint(1, 12), r.randint(1, 12), r.randint(1, 4)
        trig = r.choice([
            f"the task asks to {act} a {obj} and put it in {dst} {j}",
            f"put a {act}ed {obj} on the {dst}",
            f"find {r.choice(NUMWORDS)} {obj}s and place them in {dst} {j}",
            f"examine the {obj} under the desklamp {k}",
            f"the {obj} is probably in {src} {i} or on a {r.choice(RECEPTACLES)}",
        ])
        steps = [f"go to {src} {i}", f"open {src} {i}", f"take {obj} {k} from {src} {i}",
                 f"go to {tool} 1", f"{act} {obj} {k} with {tool} 1", f"go to {dst} {j}",
                 f"put {obj} {k} in/on {dst} {j}"]
        steps = steps[: r.randint(4, 7)] if r.random() < 0.5 else steps
        summary = r.choice([
            f"look in {src} {i} first for the {obj}, {act} it with {tool} 1, then bring it to {dst} {j}",
            f"{r.choice(ADVERBS)} check {src}s before {r.choice(RECEPTACLES)}s when searching for a {obj}",
            f"to {act} a {obj}: take it, use {tool} 1, and only then go to {dst} {j}",
            f"open closed receptacles such as {src} {i} before looking inside for {obj} {k}",
        ])
        return Skill(env="alfworld", triggers=[trig], summary=summary, golden_workflow=steps,
                     preconditions=[f"holding nothing before taking {obj} {k}"] if r.random() < 0.4 else [],
                     effects=[f"{obj} {k} is in {dst} {j}"], **self._common())

    def _alfworld_guardrail(self) -> Guardrail:
        r = self.rng
        ft = r.choice(FAILURES["alfworld"])
        obj, rec, other = r.choice(OBJECTS), r.choice(RECEPTACLES), r.choice(OBJECTS)
        i, n = r.randint(1, 12), r.randint(2, 15)
        summary = {
            "wrong_object": f"check the object name: picking up {other} {i} instead of {obj} failed the task",
            "missing_precondition": f"open {rec} {i} before trying to take the {obj} from it",
            "invalid_action": f"use the exact action syntax: 'take {obj} {i} from {rec} {i}', not '{r.choice(['grab', 'pick', 'get'])} {obj}'",
            "loop": f"after visiting {rec} {i} {n} times without finding the {obj}, search another receptacle",
            "wrong_receptacle": f"the goal says {rec}, not {r.choice(RECEPTACLES)}: put the {obj} where asked",
        }[ft]
        return Guardrail(
            env="alfworld", failure_type=ft, summary=summary,
            triggers=[f"looking for a {obj} near {rec} {i}", f"the goal mentions {obj} and {rec}"],
            root_cause=f"the agent spent {n} steps on {rec} {i} without the {obj}",
            risk_pattern=f"repeating 'go to {rec} {i}' while holding {r.choice(['nothing', other])}",
            forbidden=f"taking {other} when the task names {obj}",
            repair=[f"go to {r.choice(RECEPTACLES)} {r.randint(1, 9)}", f"look for {obj} elsewhere"],
            scope=r.choice(["step", "subgoal", "task"]), **self._common(),
        )

    def _webshop_skill(self) -> Skill:
        r = self.rng
        prod, color, mat, size = r.choice(PRODUCTS), r.choice(COLORS), r.choice(MATERIALS), r.choice(SIZES)
        price = r.choice([10, 15, 20, 25, 30, 40, 50, 60, 75, 100, 150, 200]) + r.choice([0, 0, 0.99, 0.5])
        trig = r.choice([
            f"the instruction asks for {color} {prod} under {price} dollars",
            f"find {mat} {prod} in size {size}",
            f"buy a {prod} that is {color}, {mat} and below ${price}",
            f"the results page lists {r.randint(3, 50)} {prod} but none mention {mat}",
        ])
        steps = [f"search[{color} {mat} {prod}]", f"click[item {r.randint(1, 10)}]", f"click[{size}]",
                 f"click[{color}]", "click[buy now]"]
        summary = r.choice([
            f"search with the key attributes ({color}, {mat}) and pick the first item under ${price}",
            f"select {r.choice(OPTIONS)} and {r.choice(OPTIONS)} on the item page before buying the {prod}",
            f"compare the first {r.randint(2, 6)} results' prices before opening a {prod}",
            f"if no {prod} matches {mat}, {r.choice(ADVERBS)} search again with fewer words",
        ])
        return Skill(env="webshop", triggers=[trig], summary=summary, golden_workflow=steps,
                     verification_text=f"the cart holds a {color} {prod} at most ${price}", **self._common())

    def _webshop_guardrail(self) -> Guardrail:
        r = self.rng
        ft = r.choice(FAILURES["webshop"])
        prod, opt, color = r.choice(PRODUCTS), r.choice(OPTIONS), r.choice(COLORS)
        price, n = r.choice([20, 30, 45, 60, 80, 120]), r.randint(2, 9)
        summary = {
            "wrong_item": f"a {r.choice(COLORS)} {prod} was bought although {color} was asked",
            "over_budget": f"never buy a {prod} above ${price}: check the price on the item page",
            "missing_option": f"the {opt} option of the {prod} was left unset before buying",
            "search_loop": f"{n} searches for '{prod}' returned the same page; change the query",
            "invalid_click": f"click only buttons that exist; 'click[{opt} {n}]' is not on the page",
        }[ft]
        return Guardrail(
            env="webshop", failure_type=ft, summary=summary,
            triggers=[f"shopping for a {color} {prod}", f"the {prod} page offers {opt} choices"],
            root_cause=f"the agent clicked buy after {n} steps without checking the {opt}",
            risk_pattern=f"click[buy now] while the {opt} is unset and the price exceeds ${price}",
            forbidden=f"buying a {prod} before {opt} and price are verified",
            forbidden_action="click[buy now]" if r.random() < 0.2 else None,
            repair=[f"click[{opt}]", f"search[{color} {prod} under {price} dollars]"],
            **self._common(),
        )

    # --- queries --------------------------------------------------------------------------------------
    def query(self) -> tuple[str, str]:
        """(env, situation text): phrased as an agent's current state, not as an entry."""
        r = self.rng
        env = r.choice(ENVS)

        def make() -> str:
            if env == "sokoban":
                return r.choice([
                    f"I am {r.randint(1, 9)} squares {r.choice(DIRS)} of a box that touches the {r.choice(WALLS)} wall",
                    f"{r.randint(1, 6)} boxes left, one of them in the {r.choice(REGIONS)} corner of a {r.choice(SHAPES)}",
                    f"which way should I push the box {r.randint(2, 8)} cells from its target?",
                    f"stuck: my last {r.randint(3, 20)} moves did not move any box in the {r.choice(SHAPES)}",
                ])
            if env == "alfworld":
                return r.choice([
                    f"task: {r.choice(list(ACTIONS))} some {r.choice(OBJECTS)} and put it in {r.choice(RECEPTACLES)} {r.randint(1, 12)}",
                    f"I am at {r.choice(RECEPTACLES)} {r.randint(1, 12)} and cannot find the {r.choice(OBJECTS)}",
                    f"you see a {r.choice(OBJECTS)} {r.randint(1, 5)} and a {r.choice(OBJECTS)} {r.randint(1, 5)} on the {r.choice(RECEPTACLES)}",
                    f"nothing happens when I try to take the {r.choice(OBJECTS)} from {r.choice(RECEPTACLES)} {r.randint(1, 12)}",
                ])
            return r.choice([
                f"i need {r.choice(COLORS)} {r.choice(PRODUCTS)}, price lower than {r.randint(10, 200)} dollars",
                f"search results for {r.choice(PRODUCTS)} show {r.randint(2, 40)} items, which to open?",
                f"the item page has {r.choice(OPTIONS)} options; the goal wants {r.choice(SIZES)}",
                f"looking for {r.choice(MATERIALS)} {r.choice(PRODUCTS)} in {r.choice(COLORS)}",
            ])

        return env, self._fresh(make)


# --- measurements ----------------------------------------------------------------------------------------
def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


def fill(mem: SkillMemory, gen: Generator, target: int, batch: int = 500) -> dict:
    """Add entries until the store holds ``target`` active entries; prints progress."""
    start, t0, last = len(mem), time.perf_counter(), time.perf_counter()
    merged = 0
    while (have := len(mem)) < target:
        r = mem.add(gen.entries(min(batch, target - have)))
        merged += len(r.merged)
        now = time.perf_counter()
        if now - last > 15 or len(mem) >= target:
            done = len(mem) - start
            rate = done / (now - t0)
            eta = (target - len(mem)) / rate if rate else 0
            print(f"  build: {len(mem):,}/{target:,} entries, {rate:,.0f}/s, eta {eta:,.0f} s", flush=True)
            last = now
    secs = time.perf_counter() - t0
    return {"added": len(mem) - start, "seconds": secs, "entries_per_s": (len(mem) - start) / secs if secs else 0,
            "merged": merged}


def bench_queries(mem: SkillMemory, gen: Generator, n: int) -> dict:
    emb = mem.embedder
    lru = emb._lru  # the embedder's in-process LRU, keyed by text hash
    for _ in range(5):  # warm-up: first-call allocations in onnxruntime and hnswlib
        env, q = gen.query()
        mem.retrieve(q, k=5, env=env)
    ours, raw, hits = [], [], {"retrieve": 0, "raw": 0}
    cols: dict[str, list] = {}
    for i in range(n):
        env, q = gen.query()
        if env not in cols:
            cols[env] = [c for kind in ("skill", "guardrail")
                         if (c := mem.index.collection(collection_name(mem.namespace, env, kind), create=False))]

        def run_ours(q=q, env=env):
            hits["retrieve"] += text_hash(q) in lru
            t = time.perf_counter()
            mem.retrieve(q, k=5, env=env)
            ours.append(time.perf_counter() - t)
            lru.pop(text_hash(q), None)

        def run_raw(q=q, env=env):
            hits["raw"] += text_hash(q) in lru
            t = time.perf_counter()
            v = emb.embed([q])
            for c in cols[env]:
                c.query(query_embeddings=v, n_results=5)
            raw.append(time.perf_counter() - t)
            lru.pop(text_hash(q), None)

        for f in ((run_ours, run_raw) if i % 2 == 0 else (run_raw, run_ours)):
            f()
    ms = 1000.0
    return {
        "store_size": len(mem), "queries": n, "lru_hits": hits,
        "p50_ms": pct(ours, 50) * ms, "p99_ms": pct(ours, 99) * ms, "mean_ms": statistics.mean(ours) * ms,
        "raw_p50_ms": pct(raw, 50) * ms, "raw_p99_ms": pct(raw, 99) * ms, "raw_mean_ms": statistics.mean(raw) * ms,
        "overhead_p50": pct(ours, 50) / pct(raw, 50),
    }


def bench_inserts(mem: SkillMemory, gen: Generator, n: int = 1000, batch: int = 100) -> dict:
    fresh = gen.entries(n)
    size = len(mem)
    t = time.perf_counter()
    added = 0
    for i in range(0, n, batch):
        added += len(mem.add(fresh[i : i + batch]).added)
    add_s = time.perf_counter() - t
    other = [e.embed_text() for e in gen.entries(n)]  # same generator, same length distribution, never embedded
    t = time.perf_counter()
    for i in range(0, n, batch):
        mem.embedder.embed(other[i : i + batch])
    embed_s = time.perf_counter() - t
    return {"store_size": size, "inserted": n, "added": added, "seconds": add_s, "inserts_per_s": n / add_s,
            "embed_ms_per_entry": embed_s / n * 1000, "curation_ms_per_insert": (add_s - embed_s) / n * 1000}


def machine() -> dict:
    def ver(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"python": platform.python_version(), "platform": platform.platform(), "machine": platform.machine(),
            "processor": platform.processor() or None, "cpus": cpus,
            "chromadb": ver("chromadb"), "onnxruntime": ver("onnxruntime")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000", help="comma-separated store sizes, measured in order")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--inserts", type=int, default=1000, help="entries added for the insertion measurement")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", help="store directory (new or empty); default: a temp dir")
    ap.add_argument("--keep", action="store_true", help="keep the store afterwards")
    ap.add_argument("--out", default="bench/results/bench_memory.json")
    args = ap.parse_args()
    sizes = sorted(int(s.replace("_", "")) for s in args.sizes.split(","))

    if args.dir:
        root = Path(args.dir)
        if root.exists() and any(root.iterdir()):
            sys.exit(f"--dir {root} is not empty; give a new or empty directory (it is deleted afterwards)")
    else:
        root = Path(tempfile.mkdtemp(prefix="bench-memory-")) / "memory"
    gen = Generator(args.seed)
    rows = []
    try:
        t = time.perf_counter()
        mem = SkillMemory(root)
        print(f"store {root} (embedder {mem.embedder.id}, {mem.embedder.backend}; "
              f"opened in {time.perf_counter() - t:.1f} s)", flush=True)
        for n in sizes:
            print(f"size {n:,}:", flush=True)
            build = fill(mem, gen, n)
            q = bench_queries(mem, gen, args.queries)
            print(f"  retrieve p50 {q['p50_ms']:.1f} ms, p99 {q['p99_ms']:.1f} ms; raw chroma p50 "
                  f"{q['raw_p50_ms']:.1f} ms", flush=True)
            ins = bench_inserts(mem, gen, args.inserts)
            print(f"  inserts {ins['inserts_per_s']:.0f}/s, curation {ins['curation_ms_per_insert']:.2f} ms/insert",
                  flush=True)
            ok = {"p50": q["p50_ms"] <= TARGETS["p50_ms"], "p99": q["p99_ms"] <= TARGETS["p99_ms"],
                  "inserts": ins["inserts_per_s"] >= TARGETS["inserts_per_s"]}
            rows.append({"size": n, "build": build, "retrieve": q, "insert": ins,
                         "targets_met": ok, "all_targets_met": all(ok.values())})
        stats = mem.stats()
        mem.close()
    finally:
        if not args.keep:
            shutil.rmtree(root if args.dir else root.parent, ignore_errors=True)
        else:
            print(f"kept the store at {root}")

    print_table(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"args": vars(args), "targets": TARGETS, "rows": rows,
              "final_store": {k: stats[k] for k in ("entries", "by_kind", "by_env", "guardrails_by_failure_type")},
              "meta": {**machine(), "embedder": mem.embedder.id, "embedding_backend": mem.embedder.backend}}
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


def print_table(rows: list[dict]) -> None:
    t = Table(title="SkillMemory bench (retrieve k=5 with env filter; query embedding included)")
    for col in ("size", "p50 ms", "p99 ms", "raw chroma p50 ms", "overhead", "inserts/s", "curation ms/insert",
                "targets met"):
        t.add_column(col, justify="right" if col != "targets met" else "left")
    for r in rows:
        q, i, ok = r["retrieve"], r["insert"], r["targets_met"]
        missed = [k for k, v in ok.items() if not v]
        t.add_row(f"{r['size']:,}", f"{q['p50_ms']:.1f}", f"{q['p99_ms']:.1f}", f"{q['raw_p50_ms']:.1f}",
                  f"{q['overhead_p50']:.2f}x", f"{i['inserts_per_s']:.0f}", f"{i['curation_ms_per_insert']:.2f}",
                  "PASS" if not missed else "FAIL: " + ", ".join(missed))
    Console(width=140).print(t)
    print(f"targets: p50 <= {TARGETS['p50_ms']:.0f} ms, p99 <= {TARGETS['p99_ms']:.0f} ms, "
          f">= {TARGETS['inserts_per_s']:.0f} inserts/s")


if __name__ == "__main__":
    main()

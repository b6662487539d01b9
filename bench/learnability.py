"""The learnability meter across Sokoban observation formats: what a model reads off each, per context.

    python bench/learnability.py [--model DIR] [--states 48] [--out bench/results/learnability.json]

For each observation format (the compact grid, one token per cell, cells plus position lines) the same
held-out oracle states (test tasks, easy levels, brief rules) are scored under the plain student prompt,
the state's guardrail verdicts (from the env's own risk predicates) and the oracle's reference answer; see
``agentsd.learnability``. It prints one table per format and writes all of them to ``--out``. The format
the warm-start and the teacher should use is the one where the trained model's top-1 and the teacher's
gap are largest; a base model that answers one move everywhere shows top share 100% in all of them.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FORMATS = {
    "compact": {},
    "cells": {"grid_format": "cells"},
    "cells+positions": {"grid_format": "cells", "positions": True},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--states", type=int, default=48)
    ap.add_argument("--difficulty", default="easy")
    ap.add_argument("--contexts", default="guardrails,reference")
    ap.add_argument("--out", default="bench/results/learnability.json")
    args = ap.parse_args()

    import torch

    from agentsd.hardware import bf16_is_fast
    from agentsd.learnability import format_report, measure, oracle_states
    from agentsd.policy import load_policy, resolve_model
    from agentsd.rollout import EnvFactory

    policy = load_policy(resolve_model(args.model), dtype="float32", autocast=False)
    results = {}
    for name, kw in FORMATS.items():
        t0 = time.perf_counter()
        env_kw = {"difficulty": args.difficulty, "brief": True, **kw}
        report = measure(policy, oracle_states(EnvFactory("sokoban", env_kw), args.states),
                         args.contexts.split(","))
        report.update(env_kwargs=env_kw, seconds=round(time.perf_counter() - t0, 1))
        results[name] = report
        print(f"\n== {name} ({report['seconds']} s)\n{format_report(report)}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"model": args.model, "states": args.states, "torch_threads": torch.get_num_threads(),
            "native_bf16": bf16_is_fast("cpu"), "dtype": "float32"}
    out.write_text(json.dumps({"meta": meta, "formats": results}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

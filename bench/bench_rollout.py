"""Rollout engine throughput vs a raw batched ``model.generate`` loop and vs one episode at a time.

    python bench/bench_rollout.py [--episodes 32] [--turns 4] [--tokens 16] [--seq-episodes 8]

All three rows run in this process on the embedded model (fp32, or bf16 where native), on the same Sokoban
prompts, with the same number of new tokens per turn:
- ``raw``: the initial prompts of the episodes, left-padded, through ``model.generate`` at batch B,
  once per turn, with no environment, prompt building or log-prob bookkeeping;
- ``engine``: ``agentsd.rollout.rollout`` with batch B (env steps, prompt building, log-probs, records);
- ``engine, batch 1``: the same engine running episodes one at a time.
Throughput is generated tokens per second of wall time. Targets (issue 2): engine >= 0.85x raw, and
engine >= 4x batch 1. Writes bench/results/rollout.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from agentsd.policy import load_policy  # noqa: E402
from agentsd.policy.base import Sampling  # noqa: E402
from agentsd.policy.chat import encode_chat  # noqa: E402
from agentsd.prompts import build_messages  # noqa: E402
from agentsd.rollout import EnvFactory, PolicyActor, make_tasks, rollout  # noqa: E402


def raw_generate(policy, prompts_ids: list[list[int]], turns: int, max_new: int, seed: int) -> tuple[int, float]:
    """Tokens generated and seconds for a plain batched model.generate loop."""
    tok, model = policy.tokenizer, policy.model
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    width = max(len(p) for p in prompts_ids)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts_ids])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts_ids])
    torch.manual_seed(seed)  # model.generate samples from the global RNG; a bench script may seed it
    total, t0 = 0, time.perf_counter()
    for _ in range(turns):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=policy.autocast):
            out = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=max_new, do_sample=True,
                temperature=1.0, top_p=1.0, top_k=0, pad_token_id=pad,
            )
        new = out[:, width:]
        # count tokens up to and including the first EOS, like the engine does
        for row in new.tolist():
            n = len(row)
            if tok.eos_token_id in row:
                n = row.index(tok.eos_token_id) + 1
            total += n
    return total, time.perf_counter() - t0


def engine(policy, envs, episodes: int, turns: int, max_new: int, batch: int) -> tuple[int, float]:
    tasks = make_tasks(envs.cls, "test", episodes)
    sampling = Sampling(max_new_tokens=max_new, temperature=1.0, seed=0)
    t0 = time.perf_counter()
    _, stats = rollout(envs, PolicyActor(policy, sampling), tasks, batch=batch, max_turns=turns)
    return stats.tokens, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=32)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--seq-episodes", type=int, default=8, help="episodes for the batch-1 row")
    ap.add_argument("--out", default="bench/results/rollout.json")
    args = ap.parse_args()

    torch.set_num_threads(os.cpu_count() or 1)
    policy = load_policy("smollm2-135m")  # dtype/autocast auto: fp32 where bf16 is emulated
    # max_steps beyond --turns so every episode runs exactly --turns turns (the base model's answers are
    # mostly invalid, which is fine here: we measure generation throughput, not skill).
    envs = EnvFactory("sokoban", {"difficulty": "easy", "brief": True, "max_steps": 1000})
    tasks = make_tasks(envs.cls, "test", args.episodes)
    prompts = []
    for t in tasks:
        env = envs()
        obs, _ = env.reset(seed=t.seed)
        prompts.append(encode_chat(policy.tokenizer, build_messages(env.instructions(), env.task_description(), obs, [], 0)))

    engine(policy, envs, 4, 1, 4, 4)  # warm-up (first-call allocations)
    rows = []
    n, s = raw_generate(policy, prompts, args.turns, args.tokens, seed=0)
    rows.append(("raw model.generate", args.episodes, n, s))
    n, s = engine(policy, envs, args.episodes, args.turns, args.tokens, batch=args.episodes)
    rows.append((f"engine, batch {args.episodes}", args.episodes, n, s))
    n, s = engine(policy, envs, args.seq_episodes, args.turns, args.tokens, batch=1)
    rows.append(("engine, batch 1", 1, n, s))

    tps = {name: tokens / secs for name, _, tokens, secs in rows}
    raw_tps, eng_tps, seq_tps = tps[rows[0][0]], tps[rows[1][0]], tps[rows[2][0]]
    print(f"{'row':<22}{'batch':>6}{'tokens':>8}{'seconds':>9}{'tok/s':>8}")
    for name, b, tokens, secs in rows:
        print(f"{name:<22}{b:>6}{tokens:>8}{secs:>9.2f}{tokens / secs:>8.1f}")
    ratio_raw, ratio_seq = eng_tps / raw_tps, eng_tps / seq_tps
    print(f"engine / raw     = {ratio_raw:.2f}x  (target >= 0.85x) {'PASS' if ratio_raw >= 0.85 else 'FAIL'}")
    print(f"engine / batch 1 = {ratio_seq:.2f}x  (target >= 4x)    {'PASS' if ratio_seq >= 4 else 'FAIL'}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "args": vars(args),
        "rows": [{"row": r[0], "batch": r[1], "tokens": r[2], "seconds": r[3], "tok_per_s": r[2] / r[3]} for r in rows],
        "engine_over_raw": ratio_raw,
        "engine_over_batch1": ratio_seq,
    }, indent=1))


if __name__ == "__main__":
    main()

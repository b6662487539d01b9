"""What a guardrail mask adds to a weak policy that picks among the env's action candidates (Sokoban).

    python bench/candidate_mask_sokoban.py --model runs/<run>/checkpoints/warmstart --episodes 32 --turns 30 \
        --arms greedy,greedy_mask,sample,sample_mask --out bench/results/candidate_mask_sokoban.jsonl

Each turn the model scores the four moves (``env.action_candidates()``: exact token ids + EOS, summed
log-probs, one shared-prefix forward for every live episode) and takes the best one (``greedy``) or
samples from their softmax (``sample``, temperature 1). ``*_mask`` arms first drop every candidate that
one of the env's "before" risk predicates flags (wall bump, blocked push, dead square, freeze, loop —
the five guardrails the diagnostic summarizer writes from train episodes in ``make run``); when all
are flagged nothing is dropped. Same test levels (easy, brief rules) in every arm. One JSON line per
arm: solved within 20 and within ``--turns`` moves, the move histogram, seconds.

This is an upper bound for what executable guardrails can add without changing the weights: a memory
holds only the guardrails its train episodes revealed, the env predicates are all of them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def play(net, tok, arm: str, n: int, turns: int) -> dict:
    import torch

    from agentsd.envs import make
    from agentsd.learnability import _risk_names
    from agentsd.policy.chat import encode_chat
    from agentsd.policy.hf import sequence_logprobs
    from agentsd.prompts import build_messages

    temp = 0.0 if arm.startswith("greedy") else 1.0
    masked = arm.endswith("mask")
    rng = random.Random(0)
    envs = [make("sokoban", difficulty="easy", brief=True) for _ in range(n)]
    seeds = type(envs[0]).seeds("test")[:n]
    obs = [e.reset(seed=int(s))[0] for e, s in zip(envs, seeds, strict=True)]
    live, solved_at, moves = list(range(n)), [None] * n, {}
    t0 = time.time()
    for t in range(turns):
        if not live:
            break
        rows_p, rows_c, meta = [], [], []
        for i in live:
            e = envs[i]
            cands = e.action_candidates()
            if masked:
                risks = _risk_names(e)
                cands = [c for c in cands if not any(e.check(r, c) for r in risks)] or cands
            ids = encode_chat(tok, build_messages(e.instructions(), e.task_description(), obs[i], [], 0))
            for c in cands:
                rows_p.append(ids)
                rows_c.append(list(tok(c, add_special_tokens=False).input_ids) + [tok.eos_token_id])
            meta.append((i, cands))
        with torch.no_grad():
            lp, mask = sequence_logprobs(net, rows_p, rows_c, pad_id=tok.eos_token_id, share_prefix=True)
        scores = (lp.float() * mask).sum(-1).tolist()
        k, nxt = 0, []
        for i, cands in meta:
            sc = scores[k:k + len(cands)]
            k += len(cands)
            if temp == 0:
                j = max(range(len(cands)), key=sc.__getitem__)
            else:
                j = rng.choices(range(len(cands)), torch.softmax(torch.tensor(sc), -1).tolist())[0]
            moves[cands[j]] = moves.get(cands[j], 0) + 1
            obs[i], _r, term, trunc, info = envs[i].step(cands[j])
            if term and info.get("success"):
                solved_at[i] = t + 1
            if not (term or trunc):
                nxt.append(i)
        live = nxt
    return {"arm": arm, "n": n, "turns": turns, "solved_20": sum(1 for x in solved_at if x and x <= 20),
            "solved_all": sum(1 for x in solved_at if x), "moves": moves, "s": round(time.time() - t0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--episodes", type=int, default=32)
    ap.add_argument("--turns", type=int, default=30)
    ap.add_argument("--arms", default="greedy,greedy_mask,sample,sample_mask")
    ap.add_argument("--out", default="bench/results/candidate_mask_sokoban.jsonl")
    args = ap.parse_args()

    from agentsd.policy import load_policy, resolve_model

    model = args.model if os.path.isdir(args.model) else resolve_model(args.model)
    pol = load_policy(model, dtype="float32", autocast=False)
    pol.model.eval()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"{'arm':<12} {'solved <=20':>11} {'solved <=' + str(args.turns):>11} {'s':>5}")
    with out.open("w") as f:
        for arm in args.arms.split(","):
            row = {"model": args.model, **play(pol.model, pol.tokenizer, arm, args.episodes, args.turns)}
            f.write(json.dumps(row) + "\n")
            print(f"{arm:<12} {row['solved_20']:>6}/{row['n']:<4} {row['solved_all']:>6}/{row['n']:<4} {row['s']:>5}",
                  flush=True)


if __name__ == "__main__":
    main()

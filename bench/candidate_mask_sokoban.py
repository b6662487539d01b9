"""What a guardrail mask adds to a weak policy that picks among the env's action candidates (Sokoban).

    python bench/candidate_mask_sokoban.py --model runs/<run>/checkpoints/warmstart --episodes 32 --turns 30 \
        --arms greedy,greedy_mask,sample,sample_mask --out bench/results/candidate_mask_sokoban.jsonl

Each turn the model scores the four moves (:class:`agentsd.rollout.CandidateActor`: exact token ids +
EOS, summed log-probs, one shared-prefix forward for every live episode) and takes the best one
(``greedy``) or samples from their softmax (``sample``, temperature 1). ``*_mask`` arms first drop every candidate that
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
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def play(policy, arm: str, n: int, turns: int) -> dict:
    from agentsd.learnability import _risk_names
    from agentsd.policy.base import Sampling
    from agentsd.rollout import CandidateActor, EnvFactory, make_tasks, rollout

    def guard(env, cands):
        risks = _risk_names(env)
        return [c for c in cands if not any(env.check(r, c) for r in risks)]

    envs = EnvFactory("sokoban", {"difficulty": "easy", "brief": True})
    actor = CandidateActor(policy, Sampling(temperature=0.0 if arm.startswith("greedy") else 1.0),
                           guard=guard if arm.endswith("mask") else None, seed=0)
    t0 = time.time()
    trajs, _ = rollout(envs, actor, make_tasks(envs.cls, "test", n), batch=n, max_turns=turns)
    solved_at = [len(t.turns) if t.success else None for t in trajs]
    moves: dict[str, int] = {}
    for t in trajs:
        for turn in t.turns:
            moves[turn.response] = moves.get(turn.response, 0) + 1
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
            row = {"model": args.model, **play(pol, arm, args.episodes, args.turns)}
            f.write(json.dumps(row) + "\n")
            print(f"{arm:<12} {row['solved_20']:>6}/{row['n']:<4} {row['solved_all']:>6}/{row['n']:<4} {row['s']:>5}",
                  flush=True)


if __name__ == "__main__":
    main()

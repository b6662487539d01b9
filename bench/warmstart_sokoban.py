"""How much oracle SFT teaches the embedded model to play Sokoban: the learnability meter per epoch and
greedy success on test levels, before and after.

    python bench/warmstart_sokoban.py [--turns 1024] [--epochs 3] [--lr 3e-4] [--lora] \
        [--grid-format cells] [--positions] [--states 64] [--episodes 32] [--save DIR]

Demonstrations: every turn of the oracle's episodes on train seeds (easy levels, brief rules), up to
``--turns``. Held-out: ``--states`` oracle states of test tasks for the meter (top-1 agreement with the
oracle, P(oracle move), top share: 100% = one move everywhere), measured before training and after each
epoch; then greedy success on ``--episodes`` test levels against the untrained model's, measured the
same way in the same run. The learner is :func:`agentsd.learn.sft.sft` (logits at answer positions,
the shared prompt prefix once per micro-batch), fp32 unless the CPU has native bf16. ``--save`` keeps
the trained weights (with the command, seeds and data in ``warmstart.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--turns", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--lora", action="store_true")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--micro", type=int, default=8)
    ap.add_argument("--grid-format", default="cells")
    ap.add_argument("--positions", action="store_true")
    ap.add_argument("--states", type=int, default=64)
    ap.add_argument("--episodes", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", default=None)
    ap.add_argument("--out", default="bench/results/warmstart_sokoban.json")
    args = ap.parse_args()

    import torch

    from agentsd.hardware import bf16_is_fast
    from agentsd.learn.sft import SFTConfig, sft
    from agentsd.learnability import measure, oracle_states
    from agentsd.metrics import summarize
    from agentsd.policy import load_policy, resolve_model
    from agentsd.policy.base import Sampling
    from agentsd.rollout import EnvFactory, PolicyActor, make_tasks, rollout

    env_kw = {"difficulty": "easy", "brief": True, "grid_format": args.grid_format, "positions": args.positions}
    envs = EnvFactory("sokoban", env_kw)
    t0 = time.perf_counter()
    demo = oracle_states(envs, args.turns, split="train", per_episode=10_000)
    examples = [(s.messages, s.candidates[s.oracle]) for s in demo]
    held = oracle_states(envs, args.states, split="test")
    print(f"{len(examples)} demo turns from {len({s.seed for s in demo})} train levels, {len(held)} held-out "
          f"states from {len({s.seed for s in held})} test levels ({time.perf_counter() - t0:.0f} s)", flush=True)

    policy = load_policy(resolve_model(args.model), dtype="float32", autocast=False)
    greedy = Sampling(temperature=0.0, max_new_tokens=12)
    tasks = make_tasks(envs.cls, "test", args.episodes)

    def meter(tag: str) -> dict:
        r = measure(policy, held, ("student",))["summary"]["student"]
        print(f"{tag}: top-1 {r['top1']:.1%}  P(oracle) {r['p_oracle']:.3f}  top share {r['top_share']:.0%}",
              flush=True)
        return {k: r[k] for k in ("top1", "p_oracle", "top_share", "top_counts")}

    def play(tag: str) -> dict:
        trajs, stats = rollout(envs, PolicyActor(policy, greedy), tasks, batch=8, max_turns=envs.cls.MAX_STEPS["easy"])
        m = summarize(trajs)
        print(f"{tag}: greedy success {m['success']:.1%} [{m['success_ci'][0]:.1%}, {m['success_ci'][1]:.1%}] "
              f"on {len(trajs)} test levels, invalid {m['invalid_rate']:.1%}", flush=True)
        return {"success": m["success"], "success_ci": m["success_ci"], "return": m["return"],
                "invalid_rate": m["invalid_rate"], "per_task": [t.success for t in trajs]}

    curve = [{"epoch": 0, **meter("before")}]
    before = play("before")
    cfg = SFTConfig(lora=args.lora, lr=args.lr, epochs=args.epochs, batch_size=args.micro,
                    grad_accum=max(1, args.batch // args.micro), seed=args.seed)
    marks = [time.perf_counter()]

    def epoch_end(ep: int) -> None:
        sec = time.perf_counter() - marks[-1]
        print(f"epoch {ep}: {sec:.0f} s, {len(examples) / sec:.1f} examples/s", flush=True)
        curve.append({"epoch": ep, "seconds": sec, **meter(f"epoch {ep}")})
        marks.append(time.perf_counter())

    res = sft(policy.model, policy.tokenizer, examples, cfg, on_epoch=epoch_end)
    policy.model = res.model
    train_seconds = sum(c.get("seconds", 0.0) for c in curve)  # training only, without the meter
    print(f"{res.steps} steps, loss {res.losses[0]:.3f} -> {res.final_loss:.3f}, {res.seconds:.0f} s in all", flush=True)
    after = play("after")
    paired = [a - b for a, b in zip(after["per_task"], before["per_task"], strict=True)]
    result = {"command": " ".join(["python", *sys.argv]), "env": env_kw, "args": vars(args),
              "demo_train_seeds": sorted({s.seed for s in demo}), "held_out_test_seeds": sorted({s.seed for s in held}),
              "curve": curve, "before": before, "after": after, "paired_gain": sum(paired) / len(paired),
              "train_seconds": train_seconds, "native_bf16": bf16_is_fast("cpu"), "torch_threads": torch.get_num_threads()}
    if args.save:
        policy.model.save_pretrained(args.save)
        policy.tokenizer.save_pretrained(args.save)
        Path(args.save, "warmstart.json").write_text(json.dumps({k: v for k, v in result.items() if k != "curve"}, indent=1))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

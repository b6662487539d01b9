"""Warm-start (SFT) learner throughput on oracle demonstrations: the naive loop beside ours, one process.

    python bench/sft_throughput.py [--model smollm2-135m] [--examples 32] [--micro 4,8,16] [--steps 3]

Same examples (Sokoban easy oracle turns, brief rules, one token per cell), same model, fp32, one
optimizer step per micro-batch, after one untimed warm-up step per arm. Arms:

- ``naive``: each row's whole sequence through the model and the LM head at every position (what a
  plain ``model(input_ids, labels=...)`` loop does);
- ``answer_logits``: logits only from the first target position on (``logits_to_keep``: the learner's
  loss needs no prompt logits);
- ``shared_prefix``: also the prompt prefix the micro-batch shares (system message, rules, task line)
  run once with gradient, only the per-row suffixes per row (``SFTConfig.share_prefix``, the default).

Reported per arm and micro-batch: examples/s, target tokens/s, sequence tokens/s (prompt + target tokens
the step trained on), and the speed-up over ``naive``. ``--lora`` trains LoRA adapters instead of
all weights. Timings are wall-clock on this machine: run nothing else beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--examples", type=int, default=32)
    ap.add_argument("--micro", default="4,8,16")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--lora", action="store_true")
    ap.add_argument("--grid-format", default="cells")
    ap.add_argument("--out", default="bench/results/sft_throughput.json")
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agentsd.hardware import bf16_is_fast
    from agentsd.learn.sft import (
        IGNORE,
        SFTConfig,
        _optimizer,
        _wrap_lora,
        accumulate_grads,
        collate,
        tokenize_example,
    )
    from agentsd.learnability import oracle_states
    from agentsd.policy import resolve_model
    from agentsd.rollout import EnvFactory

    path = resolve_model(args.model)
    tok = AutoTokenizer.from_pretrained(path)
    env = EnvFactory("sokoban", {"difficulty": "easy", "brief": True, "grid_format": args.grid_format})
    states = oracle_states(env, args.examples, split="train", per_episode=4)
    rows = [tokenize_example(tok, s.messages, s.candidates[s.oracle]) for s in states]
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def naive_step(model, batch):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
        logits = out.logits[:, :-1].float()
        labels = batch["labels"][:, 1:]
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE, reduction="sum")
        n = int((labels != IGNORE).sum())
        (loss / n).backward()

    arms = {
        "naive": naive_step,
        "answer_logits": lambda m, b: accumulate_grads(m, [b], bf16=False, share_prefix=False),
        "shared_prefix": lambda m, b: accumulate_grads(m, [b], bf16=False, share_prefix=True),
    }
    results = []
    for micro in [int(x) for x in args.micro.split(",")]:
        batches = [collate(rows[j:j + micro], pad) for j in range(0, len(rows) - micro + 1, micro)]
        need = args.steps + 1
        batches = (batches * need)[:need]
        for name, step in arms.items():
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
            net = _wrap_lora(model, SFTConfig()) if args.lora else model
            opt = _optimizer(net, SFTConfig(lr=1e-5))
            net.train()
            times = []
            for k, b in enumerate(batches):
                t0 = time.perf_counter()
                step(net, b)
                opt.step()
                opt.zero_grad(set_to_none=True)
                if k:  # the first step warms up allocators and kernels
                    times.append(time.perf_counter() - t0)
            timed = batches[1:]
            sec = sum(times)
            targets = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in timed)
            seq = sum(int(b["attention_mask"].sum()) for b in timed)
            results.append({"arm": name, "micro_batch": micro, "steps": len(timed), "seconds": round(sec, 2),
                            "examples_per_s": len(timed) * micro / sec, "target_tok_per_s": targets / sec,
                            "seq_tok_per_s": seq / sec})
            del net, model, opt
    for r in results:
        base = next(x for x in results if x["arm"] == "naive" and x["micro_batch"] == r["micro_batch"])
        r["speedup"] = r["examples_per_s"] / base["examples_per_s"]
    lens = [len(ids) for ids, _ in rows]
    print(f"{len(rows)} oracle turns, {min(lens)}-{max(lens)} tokens each; {'LoRA' if args.lora else 'full'} "
          f"fine-tuning, fp32, torch threads {torch.get_num_threads()}")
    print(f"{'arm':<14} {'micro':>5} {'ex/s':>6} {'target tok/s':>12} {'seq tok/s':>9} {'speed-up':>8}")
    for r in results:
        print(f"{r['arm']:<14} {r['micro_batch']:>5} {r['examples_per_s']:>6.2f} {r['target_tok_per_s']:>12.1f} "
              f"{r['seq_tok_per_s']:>9.0f} {r['speedup']:>7.2f}x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": {"model": args.model, "lora": args.lora, "grid_format": args.grid_format,
                                        "torch_threads": torch.get_num_threads(),
                                        "native_bf16": bf16_is_fast("cpu"), "dtype": "float32"},
                               "results": results}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

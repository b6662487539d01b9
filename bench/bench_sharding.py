"""Memory per process of a data-parallel learner: plain (DDP semantics) vs ZeRO-1 vs ZeRO-3, side by side.

    python bench/bench_sharding.py [--procs 2] [--samples 4] [--tokens 24] [--steps 1] [--algo skill_sd] [--heap default compact]

Full fine-tuning (``lora=false``, AdamW) of the embedded SmolLM2-135M, launched as ``--procs`` gloo
processes under torchrun, once per mode:

- ``replicated``: every process holds the whole weights, gradients and AdamW moments;
- ``shard_optimizer``: ZeRO stage 1 (the AdamW moments split across the processes);
- ``shard_params``: ZeRO stage 3 with FSDP2 on the decoder layers (their weights, gradients and moments
  split; embeddings, final norm and LM head replicated).

Every mode takes the same ``--steps`` learner steps (``--algo``, skill_sd by default: the teacher is a
synced copy of the trainable weights, so it is sharded with them) on the same batch of Sokoban samples as
bench/bench_learning.py (its :func:`build_batch`; the teacher's prompt carries a skills block). Per
process it reports:

- ``state_mib``: bytes of the tensors the learner keeps between steps — weights, gradients (zero after
  the step: counted at their peak, just before ``optimizer.step``), AdamW moments and the teacher's copy —
  counted from the tensors themselves (each process's local shard), the quantity ZeRO shards;
- ``peak_mib`` / ``step_mib``: the process's peak resident set during the steps and its increase over the
  resident set before them (``/proc/self/clear_refs``), which also holds activations and the allocator's
  slack; noisy on a shared machine;
- ``sec_per_step``: median wall seconds (each sharded layer's forward and backward are collectives).

Each mode runs twice, with glibc's default heap and with ``compact_cpu_heap`` (freed blocks go back to
the OS; see bench/bench_learning.py): FSDP allocates and frees each layer's gathered weights and
gradients in every pass, which the default heap keeps as slack. The loss of each step is printed too:
the modes compute the same step, so they must agree (to float rounding). Writes
bench/results/bench_sharding.json. ~25 minutes on 2 cores (6 launches of ~4 minutes, most of it
one full fine-tuning step of the 135M model per process on one thread).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

from bench_learning import _hwm_kib, _reset_peak, _rss_kib, build_batch  # noqa: E402

MODES = ("replicated", "shard_optimizer", "shard_params")
RESULTS = Path(__file__).parent / "results" / "bench_sharding.json"


def _local_bytes(tensors) -> int:
    from agentsd.learn.parallel import is_sharded

    total = 0
    for t in tensors:
        if t is None:
            continue
        t = t.to_local() if is_sharded(t) else t
        total += t.numel() * t.element_size()
    return total


def worker(batch_file: str, mode: str, algo: str, steps: int, out_dir: str, heap: str) -> None:
    import torch

    if heap == "compact":
        from agentsd.hardware import compact_cpu_heap

        compact_cpu_heap()

    from agentsd.learn.onpolicy import (
        OnPolicyConfig,
        Sample,
        learner_step,
        make_optimizer,
        make_teacher,
        shard_model,
    )
    from agentsd.learn.parallel import DataParallel
    from agentsd.policy import load_policy

    dp = DataParallel.from_launch()
    assert dp is not None, "run under torchrun"
    job = json.loads(Path(batch_file).read_text())
    policy = load_policy("smollm2-135m", dtype="float32")
    model, tok = policy.model, policy.tokenizer
    cfg = OnPolicyConfig(algo=algo, lora=False, micro_batch=2, bf16_autocast=True, teacher_mode="synced",
                         shard_optimizer=mode == "shard_optimizer", shard_params=mode == "shard_params")
    shard_model(model, cfg, dp)
    opt = make_optimizer(model, cfg, dp)
    teacher = make_teacher(model, cfg, skills_for=lambda *_: "skills") if algo in ("skill_sd", "opd") else None
    samples = [Sample(p, c, lp, advantage=a, teacher_prompt_ids=tp if teacher is not None else None)
               for p, tp, c, lp, a in zip(job["prompts"], job["teacher_prompts"], job["completions"],
                                          job["logprobs"], job["advantages"], strict=True)]
    grads_peak = 0

    def count_grads(*_a, **_k):
        nonlocal grads_peak
        grads_peak = max(grads_peak, _local_bytes(p.grad for p in model.parameters()))

    opt.register_step_pre_hook(count_grads)
    gc_base = _rss_kib()
    reset = _reset_peak()
    losses, secs = [], []
    for _ in range(steps):
        dp.barrier()
        t0 = time.perf_counter()
        stats = learner_step(model, tok, samples, cfg, teacher, opt, dp=dp)
        secs.append(time.perf_counter() - t0)
        losses.append(stats["loss"])
    peak = _hwm_kib()
    inner = opt.optim if hasattr(opt, "optim") else opt  # ZeroRedundancyOptimizer wraps the local AdamW
    moments = _local_bytes(v for s in inner.state.values() for v in s.values() if torch.is_tensor(v) and v.dim() > 0)
    teacher_bytes = _local_bytes(teacher.state.values()) if teacher is not None and teacher.state else 0
    weights = _local_bytes(model.parameters())
    row = {
        "mode": mode, "rank": dp.rank, "weights_mib": weights / 2**20, "grads_mib": grads_peak / 2**20,
        "moments_mib": moments / 2**20, "teacher_mib": teacher_bytes / 2**20,
        "state_mib": (weights + grads_peak + moments + teacher_bytes) / 2**20,
        "base_mib": gc_base / 1024, "peak_mib": peak / 1024, "step_mib": (peak - gc_base) / 1024 if reset else None,
        "sec_per_step": statistics.median(secs), "losses": losses,
    }
    Path(out_dir, f"{mode}-{heap}-{dp.rank}.json").write_text(json.dumps(row))
    dp.barrier()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=24)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--algo", default="skill_sd", choices=("grpo", "skill_sd"))
    ap.add_argument("--only", nargs="*", choices=MODES)
    ap.add_argument("--heap", nargs="+", default=["default", "compact"], choices=("default", "compact"),
                    help="glibc heap settings to run each mode under (compact: agentsd.hardware.compact_cpu_heap)")
    ap.add_argument("--worker", nargs=5, metavar=("BATCH", "MODE", "ALGO", "OUT", "HEAP"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        batch_file, mode, algo, out, heap = args.worker
        worker(batch_file, mode, algo, args.steps, out, heap)
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-sharding-"))
    batch_file = tmp / "batch.json"
    batch_file.write_text(json.dumps(build_batch(args.samples, 1, args.tokens, seed=1000)))
    rows = []
    runs = [(mode, heap) for heap in args.heap for mode in (args.only or MODES)]
    for i, (mode, heap) in enumerate(runs):
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
            env.pop(k, None)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(args.procs),
               "--master_port", str(29700 + (os.getpid() + i) % 200), __file__, "--steps", str(args.steps),
               "--worker", str(batch_file), mode, args.algo, str(tmp), heap]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{mode} ({heap} heap) failed:\n{proc.stderr[-4000:]}")
        ranks = [json.loads((tmp / f"{mode}-{heap}-{r}.json").read_text()) for r in range(args.procs)]
        row = {"mode": mode, "heap": heap, "wall_seconds": time.perf_counter() - t0, "ranks": ranks}
        for k in ("weights_mib", "grads_mib", "moments_mib", "teacher_mib", "state_mib", "peak_mib", "step_mib",
                  "sec_per_step"):
            vals = [r[k] for r in ranks if r[k] is not None]
            row[k] = max(vals) if vals else None  # the heaviest process is what must fit
        row["losses"] = ranks[0]["losses"]
        rows.append(row)
        print(f"{mode} ({heap} heap): done in {row['wall_seconds']:.0f} s", flush=True)

    from rich.console import Console
    from rich.table import Table

    base = rows[0]["state_mib"]
    table = Table(title=f"learner state per process: {args.procs} processes, full fine-tuning, {args.algo}, "
                        f"{args.samples} samples (max over processes)")
    for col in ("mode", "heap", "weights", "grads", "AdamW", "teacher", "state MiB", "vs first", "peak RSS MiB",
                "step MiB", "s/step", "losses"):
        table.add_column(col, justify="left" if col in ("mode", "heap", "losses") else "right")
    for r in rows:
        table.add_row(r["mode"], r["heap"], f"{r['weights_mib']:.0f}", f"{r['grads_mib']:.0f}", f"{r['moments_mib']:.0f}",
                      f"{r['teacher_mib']:.0f}", f"{r['state_mib']:.0f}", f"{r['state_mib'] / base:.2f}x",
                      f"{r['peak_mib']:.0f}", "-" if r["step_mib"] is None else f"{r['step_mib']:.0f}",
                      f"{r['sec_per_step']:.1f}", " ".join(f"{x:.5f}" for x in r["losses"]))
    Console(width=200).print(table)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"procs": args.procs, "samples": args.samples, "tokens": args.tokens,
                                   "steps": args.steps, "algo": args.algo, "rows": rows}, indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

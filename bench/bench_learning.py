"""Cost of one learner step: GRPO vs OPD vs Skill-SD, chunked vs unchunked log-probs, on the embedded model.

    python bench/bench_learning.py [--samples 4] [--history 1] [--tokens 24] [--steps 2] [--only NAME ...]

One batch of realistic Sokoban samples, built once: prompts are the embedded SmolLM2-135M's chat prompts
for medium Sokoban boards (instructions, one earlier exchange, the board; ~450 tokens), completions are
``--tokens`` tokens of a typical answer (a short reasoning line and ``<answer>Move</answer>``, EOS-ended;
the content does not change the cost, and sampling them with the model costs more CPU than the steps),
on-policy (no behaviour log-probs: ratios 1), advantages alternate ±1 so the GRPO term has a gradient,
and the Skill-SD teacher's prompt is the student's plus a ~200-token skills block (:data:`SKILLS`) in
its system message. Every configuration then
runs in a fresh subprocess on that same batch (LoRA, the default OnPolicyConfig otherwise, micro_batch 4):
one warm-up step on one sample, then ``--steps`` timed steps; the row reports the median seconds per
step, the CPU seconds per step (``time.process_time``: what the step costs, independent of other jobs on a shared
machine; run with ``--threads 1`` there, as OpenMP threads spin while descheduled), the teacher's share
(its no-grad forward, wall), and memory:

- ``peak_mib``: the process's peak resident set (VmHWM) during the timed steps, after resetting the peak
  through ``/proc/self/clear_refs`` once the model, batch, optimizer and teacher exist (ru_maxrss where
  that is not possible). torch's CPU tensors are plain heap memory, so this sees all of them; the model's
  weights and the Python/torch runtime are in it too (``base_mib``: the resident set before the steps).
- ``step_mib`` = peak − base: what a step adds on top of the loaded model.

The resident set is what glibc malloc keeps, not only live tensors: with its default dynamic mmap
threshold, freed activation blocks stay in the heap (the teacher's no-grad pass raises the threshold,
and the student's pass then fragments the heap; ``malloc_trim`` between the passes did not help: 1.37x).
``OnPolicyConfig.compact_cpu_heap`` (off by default; :func:`agentsd.hardware.compact_cpu_heap`) sets
glibc's mmap and trim thresholds to 128 KiB so freed blocks go back to the OS; the two ``compact heap``
rows turn it on, for the comparison in one run (peak vs CPU time). ``MALLOC_*`` variables of the
calling environment are not passed to the workers.

Targets (issue 4): Skill-SD step <= 1.6x GRPO step (judged on CPU seconds), Skill-SD peak memory <= 1.15x
GRPO. Writes
bench/results/bench_learning.json. Each learner step on 4 x ~470 tokens is tens of seconds on 2 CPU
cores, so the defaults are small (4 samples: one micro-batch, 2 timed steps); the whole run takes
~5 minutes on an idle 2-core CPU, several times that on a shared one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

#: A skills block of the kind the memory retrieves for Sokoban (~200 tokens), put in the teacher's prompt.
SKILLS = """\
1. Before pushing a box, check the cell behind it: a box pushed into a corner that is not a target can
   never be moved again, and the episode is lost.
2. Never push a box against a wall unless a target lies along that wall; boxes on a wall can only slide
   along it.
3. Solve the box that is farthest from the exit of the room first, so later pushes do not block it.
4. To push a box Left you must stand directly to its Right; walk around the box over floor cells first.
5. When two boxes are side by side against a wall, neither can be pushed along the wall's normal: move
   one of them away before it gets stuck.
6. Count the moves: if the player has to cross a target to reach a box, plan the path so the target
   stays free for the box that belongs there.
7. Reply with exactly one move inside <answer></answer> tags and nothing else."""

#: (name, algo, logprob_chunk, teacher_share_prefix); the first three are the defaults, the last is the
#: learner as it was before issue 4 (one (B, T, V) logits tensor, the teacher's whole prompt per row)
#: (name, algo, logprob_chunk, teacher_share_prefix, compact_cpu_heap)
CONFIGS = [
    ("grpo", "grpo", 128, True, False),
    ("opd", "opd", 128, True, False),
    ("skill_sd", "skill_sd", 128, True, False),
    ("skill_sd, no prefix share", "skill_sd", 128, False, False),
    ("skill_sd, unchunked+unshared", "skill_sd", None, False, False),
    ("grpo, compact heap", "grpo", 128, True, True),
    ("skill_sd, compact heap", "skill_sd", 128, True, True),
]


def _hwm_kib() -> int:
    """Peak resident set of this process in KiB (VmHWM, or ru_maxrss without /proc)."""
    try:
        return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))  # type: ignore[union-attr]
    except (OSError, AttributeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _rss_kib() -> int:
    try:
        return int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))  # type: ignore[union-attr]
    except (OSError, AttributeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def build_batch(n: int, history: int, tokens: int, seed: int) -> dict:
    """The shared batch: prompt ids, teacher prompt ids, completion ids, behaviour log-probs, advantages."""
    from transformers import AutoTokenizer

    from agentsd.policy.chat import encode_chat
    from agentsd.policy.embedded import resolve_model
    from agentsd.prompts import Step, build_messages, with_skills
    from agentsd.rollout import EnvFactory

    tok = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m"))
    envs = EnvFactory("sokoban", {"difficulty": "medium", "max_steps": 1000})
    convs = []
    for i in range(n):
        env = envs()
        obs, _ = env.reset(seed=seed + i)
        past = []
        for move in ("Up", "Left")[:history]:
            nxt, _, _, _, _ = env.step(f"<answer>{move}</answer>")
            past.append(Step(observation=obs, response=f"<answer>{move}</answer>"))
            obs = nxt
        convs.append(build_messages(env.instructions(), env.task_description(), obs, past, history))
    moves = ("Up", "Down", "Left", "Right")
    filler = tok.encode(" The box is next to the wall, so I move around it first and then push it toward the"
                        " target on the left side of the room.", add_special_tokens=False)
    completions = []
    for i in range(n):
        answer = tok.encode(f" <answer>{moves[i % 4]}</answer>", add_special_tokens=False) + [tok.eos_token_id]
        completions.append(filler[: max(tokens - len(answer), 0)] + answer)
    return {
        "prompts": [encode_chat(tok, m) for m in convs],
        "teacher_prompts": [encode_chat(tok, with_skills(m, SKILLS)) for m in convs],
        "completions": completions,
        "logprobs": [None] * n,
        "advantages": [1.0 if i % 2 == 0 else -1.0 for i in range(n)],
    }


def worker(batch_file: str, algo: str, chunk: int | None, share: bool, steps: int, micro_batch: int,
           threads: int | None = None, heap: bool = True) -> dict:
    """One configuration in this (fresh) process: load, warm up, time ``steps`` learner steps."""
    import torch

    from agentsd.learn.onpolicy import (
        OnPolicyConfig,
        Sample,
        learner_step,
        make_optimizer,
        make_teacher,
        prepare_model,
    )
    from agentsd.policy import load_policy

    torch.set_num_threads(threads or os.cpu_count() or 1)
    data = json.loads(Path(batch_file).read_text())
    policy = load_policy("smollm2-135m")
    cfg = OnPolicyConfig(algo=algo, logprob_chunk=chunk, teacher_share_prefix=share, micro_batch=micro_batch,
                         compact_cpu_heap=heap)
    net = prepare_model(policy.model, cfg)
    teacher = make_teacher(net, cfg, skills_for=(lambda turn, traj: SKILLS) if algo == "skill_sd" else None)
    opt = make_optimizer(net, cfg)
    samples = [
        Sample(p, c, lp, advantage=a, group=0, teacher_prompt_ids=tp if algo == "skill_sd" else None)
        for p, tp, c, lp, a in zip(data["prompts"], data["teacher_prompts"], data["completions"],
                                   data["logprobs"], data["advantages"], strict=True)
    ]
    learner_step(net, policy.tokenizer, samples[:1], cfg, teacher, opt)  # warm-up: lazy init, optimizer state
    base = _rss_kib()
    reset = _reset_peak()
    secs, cpu_secs, teacher_secs = [], [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        stats = learner_step(net, policy.tokenizer, samples, cfg, teacher, opt)
        secs.append(time.perf_counter() - t0)
        cpu_secs.append(time.process_time() - c0)
        teacher_secs.append(stats.get("teacher_seconds", 0.0))
    peak = _hwm_kib()
    return {
        "seconds": statistics.median(secs), "all_seconds": secs, "cpu_seconds": statistics.median(cpu_secs),
        "teacher_seconds": statistics.median(teacher_secs),
        "base_mib": base / 1024, "peak_mib": peak / 1024, "step_mib": (peak - base) / 1024,
        "peak_reset": reset, "loss": stats["loss"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--history", type=int, default=1, help="earlier exchanges in each prompt (0-2)")
    ap.add_argument("--tokens", type=int, default=24, help="max completion tokens")
    ap.add_argument("--steps", type=int, default=2, help="timed steps per configuration (after a 1-sample warm-up)")
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads per worker (default: all cores)")
    ap.add_argument("--only", nargs="*", help="configuration names to run (default: all)")
    ap.add_argument("--out", default="bench/results/bench_learning.json")
    ap.add_argument("--worker", nargs=5, metavar=("BATCH", "ALGO", "CHUNK", "SHARE", "HEAP"), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        batch_file, algo, chunk, share, heap = args.worker
        res = worker(batch_file, algo, None if chunk == "none" else int(chunk), share == "1", args.steps,
                     args.micro_batch, args.threads, heap == "1")
        print("RESULT " + json.dumps(res))
        return

    t_start = time.perf_counter()
    data = build_batch(args.samples, args.history, args.tokens, args.seed)
    lens = {k: [len(x) for x in data[k]] for k in ("prompts", "teacher_prompts", "completions")}
    mean = {k: sum(v) / len(v) for k, v in lens.items()}
    print(f"batch: {args.samples} samples, prompt {mean['prompts']:.0f} tokens, teacher prompt "
          f"{mean['teacher_prompts']:.0f}, completion {mean['completions']:.1f} (mean)")
    configs = [c for c in CONFIGS if not args.only or c[0] in args.only]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        batch_file = str(Path(tmp) / "batch.json")
        Path(batch_file).write_text(json.dumps(data))
        env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}  # the rows choose the heap
        for name, algo, chunk, share, heap in configs:
            cmd = [sys.executable, __file__, "--steps", str(args.steps), "--micro-batch", str(args.micro_batch),
                   *(["--threads", str(args.threads)] if args.threads else []),
                   "--worker", batch_file, algo, "none" if chunk is None else str(chunk), str(int(share)),
                   str(int(heap))]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                raise RuntimeError(f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
            res = json.loads(line[len("RESULT "):])
            rows.append({"config": name, "algo": algo, "logprob_chunk": chunk, "teacher_share_prefix": share,
                         "compact_cpu_heap": heap, "load_avg": os.getloadavg()[0], **res})
            print(f"  {name}: {res['seconds']:.2f} s/step ({res['cpu_seconds']:.1f} CPU s), "
                  f"peak {res['peak_mib']:.0f} MiB", flush=True)

    by = {r["config"]: r for r in rows}
    grpo = by.get("grpo")
    print()
    print(f"{'config':<30}{'s/step':>8}{'x grpo':>8}{'CPU s':>8}{'x grpo':>8}{'teacher s':>10}{'peak MiB':>10}{'x grpo':>8}"
          f"{'step MiB':>10}{'x grpo':>8}")
    for r in rows:
        rel_t = r["seconds"] / grpo["seconds"] if grpo else float("nan")
        rel_m = r["peak_mib"] / grpo["peak_mib"] if grpo else float("nan")
        rel_s = r["step_mib"] / grpo["step_mib"] if grpo and grpo["step_mib"] > 0 else float("nan")
        rel_c = r["cpu_seconds"] / grpo["cpu_seconds"] if grpo else float("nan")
        r.update(time_vs_grpo=rel_t, cpu_vs_grpo=rel_c, peak_vs_grpo=rel_m, step_mem_vs_grpo=rel_s)
        print(f"{r['config']:<30}{r['seconds']:>8.2f}{rel_t:>7.2f}x{r['cpu_seconds']:>8.1f}{rel_c:>7.2f}x"
              f"{r['teacher_seconds']:>10.2f}"
              f"{r['peak_mib']:>10.0f}{rel_m:>7.2f}x{r['step_mib']:>10.0f}{rel_s:>7.2f}x")
    targets = {}
    if grpo and "skill_sd" in by:
        sd = by["skill_sd"]
        # Judged on CPU seconds: on a shared machine a process's wall time mostly measures the other jobs.
        targets = {"cpu_ratio": sd["cpu_vs_grpo"], "time_ratio": sd["time_vs_grpo"], "time_target": 1.6,
                   "time_pass": sd["cpu_vs_grpo"] <= 1.6,
                   "peak_ratio": sd["peak_vs_grpo"], "peak_target": 1.15, "peak_pass": sd["peak_vs_grpo"] <= 1.15}
        if "grpo, compact heap" in by and "skill_sd, compact heap" in by:
            g, c = by["grpo, compact heap"], by["skill_sd, compact heap"]
            targets.update(peak_ratio_compact=c["peak_mib"] / g["peak_mib"],
                           peak_pass_compact=c["peak_mib"] / g["peak_mib"] <= 1.15,
                           compact_cpu_cost=g["cpu_seconds"] / grpo["cpu_seconds"])
        print(f"skill_sd / grpo step time = {targets['cpu_ratio']:.2f}x CPU (target <= 1.6x) "
              f"{'PASS' if targets['time_pass'] else 'FAIL'}; wall {targets['time_ratio']:.2f}x")
        print(f"skill_sd / grpo peak mem  = {targets['peak_ratio']:.2f}x (target <= 1.15x) "
              f"{'PASS' if targets['peak_pass'] else 'FAIL'}")
        if "peak_ratio_compact" in targets:
            print(f"with compact_cpu_heap: skill_sd / grpo peak mem = {targets['peak_ratio_compact']:.2f}x "
                  f"{'PASS' if targets['peak_pass_compact'] else 'FAIL'}; its CPU cost on grpo "
                  f"{targets['compact_cpu_cost']:.2f}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "args": vars(args), "batch_tokens": lens, "rows": rows, "targets": targets,
        "cpu_threads": os.cpu_count(), "wall_seconds": time.perf_counter() - t_start,
        "note": "2 CPU cores shared with other jobs: absolute seconds are noisy, see load_avg per row",
    }, indent=1))


if __name__ == "__main__":
    main()

"""What a teacher's privileged context tells the model on Sokoban: the probability of the oracle's move.

    python bench/teacher_signal.py --run RUN [RUN ...] [--model DIR] [--states 32]

Distillation (skill_sd's SDL term, opd) can only move the student toward something the teacher knows
better. This measures it directly on test states, for one model:

- ``student``: the plain rollout prompt (what the student acts under);
- ``skills``: the same prompt with the skills retrieved from the run's memory (skill_sd's teacher: task +
  observation as the query, ``learning.skills`` k / budget);
- ``reference``: the same prompt with the env oracle's answer for the state (opd's teacher,
  ``opd_context=reference``).

For each prompt the four answers ``<answer>Up|Down|Left|Right</answer>`` + EOS are scored (exact token
ids, summed log-probs) and renormalized over the four. Reported per context: mean probability of the
oracle's move, how often it is the most likely of the four, and the mean reverse KL (student || context)
over the four-way distribution. Test states: the initial states of the first ``--states`` test seeds
with the run's env settings (``config.yaml``), the model of its last checkpoint unless ``--model``, the
skills from its ``memory/``. Several runs (e.g. a warm-start and the arms trained from it) go into one
JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MOVES = ("Up", "Down", "Left", "Right")


def measure(run: Path, model_path: str | None, n_states: int) -> dict:
    """One run's table: every test state's four-way distributions under the three contexts, and means."""
    import torch
    import yaml

    from agentsd.config import build_config
    from agentsd.learn.onpolicy import REFERENCE_HEADER
    from agentsd.memory import SkillMemory
    from agentsd.policy import load_policy
    from agentsd.policy.chat import encode_chat
    from agentsd.policy.hf import sequence_logprobs
    from agentsd.prompts import build_messages, with_skills
    from agentsd.rollout import EnvFactory, make_tasks

    cfg = build_config(yaml.safe_load((run / "config.yaml").read_text()))
    model_path = model_path or json.loads((run / "state.json").read_text())["checkpoint"]
    if not model_path:
        raise SystemExit(f"{run} has no checkpoint yet; pass --model")
    policy = load_policy(model_path, dtype="float32", autocast=False)
    tok, net = policy.tokenizer, policy.model
    mc = cfg.memory
    mem = SkillMemory(run / "memory", namespace=mc.namespace, embedder=mc.embedding_model,
                      embedding_backend=mc.embedding_backend)
    envs = EnvFactory(cfg.env.name, cfg.env.kwargs)
    sk = cfg.learning.skills
    answers = [tok(f"<answer>{m}</answer>", add_special_tokens=False).input_ids + [tok.eos_token_id] for m in MOVES]

    def four_way(messages) -> list[float]:
        ids = encode_chat(tok, messages)
        with torch.no_grad():
            lp, mask = sequence_logprobs(net, [ids] * 4, answers, pad_id=tok.eos_token_id, share_prefix=True)
        return torch.softmax((lp * mask).sum(-1), -1).tolist()

    t0 = time.perf_counter()
    rows = []
    for task in make_tasks(envs.cls, "test", n_states):
        env = envs()
        obs, _ = env.reset(seed=task.seed)
        oracle = env.oracle_action()
        if oracle is None:
            continue
        move = next(m for m in MOVES if m.lower() in oracle.lower())
        goal = env.task_description()
        plain = build_messages(env.instructions(), goal, obs, [], cfg.rollout.history)
        skills = mem.render(mem.retrieve(f"{goal}\n{obs}".strip(), k=sk.k, env=envs.name,
                                         budget_tokens=sk.budget_tokens)) or None
        ctx = {"student": plain, "skills": with_skills(plain, skills),
               "reference": with_skills(plain, oracle, REFERENCE_HEADER)}
        rows.append({"seed": task.seed, "oracle": move, "p": {k: four_way(v) for k, v in ctx.items()}})
    mem.close()

    def kl(p: list[float], q: list[float]) -> float:
        return sum(a * (math.log(a) - math.log(b)) for a, b in zip(p, q, strict=True) if a > 0)

    def argmax(p: list[float]) -> int:
        return max(range(4), key=lambda i: p[i])

    summary = {}
    for k in ("student", "skills", "reference"):
        summary[k] = {
            "p_oracle_move": sum(r["p"][k][MOVES.index(r["oracle"])] for r in rows) / len(rows),
            "top1": sum(argmax(r["p"][k]) == MOVES.index(r["oracle"]) for r in rows) / len(rows),
            "kl_student_to_this": sum(kl(r["p"]["student"], r["p"][k]) for r in rows) / len(rows),
            "argmax_counts": {m: sum(argmax(r["p"][k]) == j for r in rows) for j, m in enumerate(MOVES)},
        }
    return {"run": str(run), "model": str(model_path), "states": len(rows), "env": cfg.env.model_dump(mode="json"),
            "oracle_moves": {m: sum(r["oracle"] == m for r in rows) for m in MOVES}, "summary": summary,
            "rows": rows, "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, nargs="+", help="run directories with memory/ (e.g. a warm-start run)")
    ap.add_argument("--model", default=None, help="model to score with (default: each run's last checkpoint)")
    ap.add_argument("--states", type=int, default=32)
    ap.add_argument("--out", default="bench/results/teacher_signal.json")
    args = ap.parse_args()
    results = []
    for run in args.run:
        res = measure(Path(run), args.model, args.states)
        results.append(res)
        print(f"{res['states']} test states of {run} scored with {res['model']}; oracle moves {res['oracle_moves']}")
        print(f"{'context':<10} {'P(oracle move)':>15} {'top-1':>7} {'KL(student||ctx)':>17}  argmax counts")
        for k, s in res["summary"].items():
            print(f"{k:<10} {s['p_oracle_move']:>15.3f} {s['top1']:>7.1%} {s['kl_student_to_this']:>17.4f}  "
                  f"{s['argmax_counts']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": results}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

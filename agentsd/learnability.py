"""The learnability meter: how well a model picks the oracle's action on held-out states, under each
prompt context a learner could use.

    states = oracle_states(EnvFactory("sokoban", {"difficulty": "easy"}), n=64)
    report = measure(policy, states, contexts=("student", "guardrails", "reference"))
    print(format_report(report))

No rollouts: the states come from the env's oracle walking test tasks (so they are the states a good
player meets, and their labels are exact), and each state's finite candidate actions
(``env.action_candidates()``) are scored as exact token ids + EOS and renormalized over the candidates.
Per context it reports the mean probability of the oracle's action, how often it is the model's top
candidate (top-1 agreement), the mean gap to the plain student prompt with a paired 95% interval over
states, and the distribution of the top candidates (a collapsed policy answers one action everywhere).

Contexts (all are the student's prompt plus one block in the system message, the way a Skill-SD / OPD
teacher sees it, see :func:`agentsd.prompts.with_skills`):

- ``student``: the plain rollout prompt;
- ``skills``: the skills a memory retrieves for the task and observation (skill_sd's teacher);
- ``guardrails``: the state's guardrail verdicts: for each candidate, the guardrails it would break now
  (the memory's executable guardrails, or without a memory the env's own "before" predicates);
- ``reference``: the oracle's answer (opd's ``reference`` teacher): an upper bound on what a context
  can carry.

It is cheap (a forward per state and context), so every choice of observation, warm-start or teacher
is checked against it before rollouts are spent.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentsd.prompts import REFERENCE_HEADER, Step, build_messages, with_skills

VERDICTS_HEADER = "Guardrail check of each action in this position:"
CONTEXTS = ("student", "skills", "guardrails", "reference")


@dataclass
class OracleState:
    """One held-out state: the student's prompt, the candidates, the oracle's pick and the privileged
    texts a teacher context may add."""

    seed: int
    turn: int
    messages: list[dict[str, str]]
    candidates: list[str]
    oracle: int  # index into candidates
    query: str  # what a skill memory is queried with (task + observation), as the learner does
    verdicts: str  # the guardrail verdicts block
    extra: dict[str, Any] = field(default_factory=dict)


def _risk_names(env: Any) -> dict[str, str]:
    """The env's "before" predicates that name a failure (failure_predicates' values), by name, in order,
    without the format check (every candidate is well formed)."""
    preds = env.predicates()
    names = [n for n in dict.fromkeys(getattr(env, "failure_predicates", {}).values()) if n in preds]
    return {n: n.replace("_", " ") for n in names if preds[n].when == "before" and n != "invalid_format"}


def verdicts(env: Any, candidates: Sequence[str], guardrails: Sequence[Any] | None = None) -> str:
    """The candidates that break nothing in ``env``'s current state, in the answer format: the
    executable ``guardrails`` they pass, or without guardrails the env's own risk predicates.

    Only the allowed moves are listed, answer-shaped: a small model copies answer-shaped text far more
    readily than it reads prose, and it copies a listed forbidden move too (measured with the meter on
    the embedded model: allowed-only +0.034 in P(oracle), allowed plus "avoid: <answer>..." +0.010)."""
    safe = []
    for c in candidates:
        if guardrails is not None:
            bad = any(g.check(env, c) for g in guardrails)
        else:
            bad = any(env.check(name, c) for name in _risk_names(env))
        if not bad:
            safe.append(c)
    return "Moves that break no guardrail here: " + (", ".join(safe) or "none")


def oracle_states(
    envs: Callable[[], Any],
    n: int,
    *,
    split: str = "test",
    history: int = 0,
    per_episode: int = 4,
    start: int = 0,
    guardrails: Sequence[Any] | None = None,
    max_turns: int = 200,
) -> list[OracleState]:
    """``n`` states met by the oracle playing ``split`` tasks (seeds from ``start`` on), at most
    ``per_episode`` per task, evenly spaced along its episode, so the states spread over many tasks.

    The prompt of each is built as rollouts build it, with the last ``history`` oracle turns shown. Raises
    when the env lists no finite candidates or has no oracle."""
    env = envs()
    if not env.action_candidates():
        raise ValueError(f"{type(env).__name__} lists no action candidates; the meter needs a finite set")
    seeds = type(env).seeds(split)
    out: list[OracleState] = []
    k = start
    while len(out) < n:
        if k >= len(seeds):
            raise ValueError(f"the {split} range ran out after {k} tasks with {len(out)} of {n} states")
        seed = seeds[k]
        k += 1
        obs, _ = env.reset(seed=seed)
        goal, rules = env.task_description(), env.instructions()
        past: list[Step] = []
        walk: list[OracleState] = []
        for turn in range(max_turns):
            action = env.oracle_action()
            if action is None:
                break
            cands = list(env.action_candidates())
            if action not in cands:
                raise ValueError(f"the oracle's {action!r} is not among the candidates {cands}")
            msgs = build_messages(rules, goal, obs, past, history)
            walk.append(OracleState(seed, turn, msgs, cands, cands.index(action), f"{goal}\n{obs}".strip(),
                                    verdicts(env, cands, guardrails)))
            past.append(Step(obs, action))
            obs, _, term, trunc, _ = env.step(action)
            if term or trunc:
                break
        if walk:
            stride = max(1, math.ceil(len(walk) / per_episode))
            out.extend(walk[::stride][:per_episode])
    env.close()
    return out[:n]


def context_messages(state: OracleState, name: str, skills: Callable[[str], str | None] | None = None
                     ) -> list[dict[str, str]]:
    """The prompt of context ``name`` for ``state`` (``skills``: query -> rendered skills block)."""
    if name == "student":
        return state.messages
    if name == "skills":
        if skills is None:
            raise ValueError("the skills context needs a memory")
        return with_skills(state.messages, skills(state.query))
    if name == "guardrails":
        return with_skills(state.messages, state.verdicts, VERDICTS_HEADER)
    if name == "reference":
        return with_skills(state.messages, state.candidates[state.oracle], REFERENCE_HEADER)
    raise ValueError(f"unknown context {name!r}; known: {', '.join(CONTEXTS)}")


def candidate_probs(policy: Any, messages: list[dict[str, str]], candidates: Sequence[str]) -> list[float]:
    """The model's distribution over ``candidates`` (exact ids + EOS, summed log-probs, renormalized)."""
    return candidate_dists(policy, [messages], [candidates])[0]


def candidate_dists(policy: Any, prompts: Sequence[list[dict[str, str]]], candidates: Sequence[Sequence[str]],
                    batch: int = 16) -> list[list[float]]:
    """:func:`candidate_probs` for many prompts, ``batch`` prompts per tree-scored forward
    (:func:`agentsd.policy.hf.candidate_logprobs`)."""
    import torch

    from agentsd.policy.chat import encode_chat
    from agentsd.policy.hf import candidate_logprobs

    tok, net = policy.tokenizer, policy.model
    out: list[list[float]] = []
    for i in range(0, len(prompts), batch):
        ids = [encode_chat(tok, m) for m in prompts[i:i + batch]]
        rows = [[list(tok(c, add_special_tokens=False).input_ids) + [tok.eos_token_id] for c in cs]
                for cs in candidates[i:i + batch]]
        for per in candidate_logprobs(net, ids, rows, pad_id=tok.eos_token_id):
            out.append(torch.softmax(torch.tensor([sum(x) for x in per], dtype=torch.float64), -1).tolist())
    return out


def _paired(xs: Sequence[float]) -> tuple[float, float, float]:
    """Mean and a normal 95% interval of paired differences."""
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, m, m
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
    h = 1.96 * sd / math.sqrt(len(xs))
    return m, m - h, m + h


def measure(policy: Any, states: Sequence[OracleState], contexts: Sequence[str] = ("student", "reference"),
            skills: Callable[[str], str | None] | None = None) -> dict[str, Any]:
    """Score every state under every context; per-context summary and the per-state rows."""
    if not states:
        raise ValueError("no states to measure")
    contexts = list(dict.fromkeys(["student", *contexts]))
    cands = [s.candidates for s in states]
    dists = {c: candidate_dists(policy, [context_messages(s, c, skills) for s in states], cands) for c in contexts}
    rows = [{"seed": s.seed, "turn": s.turn, "oracle": s.oracle, "p": {c: dists[c][i] for c in contexts}}
            for i, s in enumerate(states)]
    summary = {}
    base = [r["p"]["student"][r["oracle"]] for r in rows]
    for c in contexts:
        po = [r["p"][c][r["oracle"]] for r in rows]
        top = [max(range(len(r["p"][c])), key=r["p"][c].__getitem__) for r in rows]
        gap, lo, hi = _paired([a - b for a, b in zip(po, base, strict=True)])
        labels = Counter(states[i].candidates[t] for i, t in enumerate(top))
        summary[c] = {"p_oracle": sum(po) / len(po),
                      "top1": sum(t == r["oracle"] for t, r in zip(top, rows, strict=True)) / len(rows),
                      "gap": gap, "gap_ci": [lo, hi],
                      "top_share": max(labels.values()) / len(rows),  # 1.0: one answer everywhere
                      "top_counts": dict(labels)}
    oracle_counts = Counter(s.candidates[s.oracle] for s in states)
    return {"states": len(states), "tasks": len({s.seed for s in states}), "contexts": contexts,
            "oracle_counts": dict(oracle_counts), "chance_top1": max(oracle_counts.values()) / len(states),
            "summary": summary, "rows": rows}


def format_report(report: dict[str, Any]) -> str:
    """The summary as a text table."""
    lines = [f"{report['states']} oracle states from {report['tasks']} test tasks; "
             f"most common oracle action covers {report['chance_top1']:.0%}",
             f"{'context':<11} {'P(oracle)':>9} {'top-1':>6} {'gap vs student [95% CI]':>26} {'top share':>9}"]
    for c, s in report["summary"].items():
        ci = "" if c == "student" else f"{s['gap']:+.3f} [{s['gap_ci'][0]:+.3f}, {s['gap_ci'][1]:+.3f}]"
        lines.append(f"{c:<11} {s['p_oracle']:>9.3f} {s['top1']:>6.1%} {ci:>26} {s['top_share']:>9.0%}")
    return "\n".join(lines)

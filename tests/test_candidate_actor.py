"""CandidateActor: picks among the env's action candidates by their scores, keeps to a guard, records
the picked candidate's tokens and log-probs, and falls back to generation where an env lists none."""

import math

import pytest

from agentsd.learnability import candidate_probs
from agentsd.policy.base import Sampling
from agentsd.prompts import build_messages
from agentsd.rollout import CandidateActor, EnvFactory, make_tasks, rollout

EASY = EnvFactory("sokoban", {"difficulty": "easy", "brief": True})


def _turn(n=3):
    envs = [EASY() for _ in range(n)]
    obs = [e.reset(seed=1_000_000 + k)[0] for k, e in enumerate(envs)]
    prompts = [build_messages(e.instructions(), e.task_description(), o, [], 0) for e, o in zip(envs, obs, strict=True)]
    return envs, prompts


def test_greedy_pick_is_the_meters_top_candidate_with_its_own_logprobs(tiny_policy):
    envs, prompts = _turn()
    gens = CandidateActor(tiny_policy, Sampling(temperature=0.0)).act(prompts, envs)
    tok = tiny_policy.tokenizer
    for env, msgs, gen in zip(envs, prompts, gens, strict=True):
        cands = env.action_candidates()
        probs = candidate_probs(tiny_policy, msgs, cands)
        assert gen.text == cands[max(range(len(cands)), key=probs.__getitem__)]
        assert gen.token_ids == list(tok(gen.text, add_special_tokens=False).input_ids) + [tok.eos_token_id]
        assert len(gen.logprobs) == len(gen.token_ids) and all(lp <= 0 for lp in gen.logprobs)
        # the summed log-probs are the candidate's score: renormalized over candidates, the meter's prob
        full = tiny_policy.score([msgs], [gen.token_ids])[0]
        assert sum(gen.logprobs) == pytest.approx(sum(full), abs=1e-4)
        assert math.exp(sum(gen.logprobs)) <= 1.0


def test_guard_restricts_the_pick_and_an_empty_guard_keeps_every_candidate(tiny_policy):
    envs, prompts = _turn()
    only = CandidateActor(tiny_policy, Sampling(temperature=1.0), guard=lambda env, c: [c[2]], seed=3)
    for _ in range(3):
        assert {g.text for g in only.act(prompts, envs)} == {envs[0].action_candidates()[2]}
    none = CandidateActor(tiny_policy, Sampling(temperature=0.0), guard=lambda env, c: [])
    plain = CandidateActor(tiny_policy, Sampling(temperature=0.0))
    assert [g.text for g in none.act(prompts, envs)] == [g.text for g in plain.act(prompts, envs)]


def test_sampling_spreads_over_candidates_and_is_seeded(tiny_policy):
    envs, prompts = _turn(1)
    picks = [CandidateActor(tiny_policy, Sampling(temperature=5.0), seed=s).act(prompts, envs)[0].text
             for s in range(12)]
    again = [CandidateActor(tiny_policy, Sampling(temperature=5.0), seed=s).act(prompts, envs)[0].text
             for s in range(12)]
    assert picks == again and len(set(picks)) >= 2
    assert set(picks) <= set(envs[0].action_candidates())


def test_in_a_rollout_every_action_is_valid_and_envs_without_candidates_generate(tiny_policy):
    tasks = make_tasks(EASY.cls, "test", 2)
    trajs, _ = rollout(EASY, CandidateActor(tiny_policy, Sampling(temperature=1.0)), tasks, batch=2, max_turns=4)
    assert all(t.info["action_is_valid"] for tr in trajs for t in tr.turns)
    craft = EnvFactory("craft", {"tier": "wood"})  # open-ended commands: no candidates
    trajs, _ = rollout(craft, CandidateActor(tiny_policy, Sampling(temperature=0.0, max_new_tokens=4)),
                       make_tasks(craft.cls, "test", 1), batch=1, max_turns=2)
    assert len(trajs[0].turns) == 2 and trajs[0].turns[0].token_ids


def test_a_policy_without_a_local_model_is_refused():
    class Remote:
        name = "remote"

    with pytest.raises(ValueError, match="no local model"):
        CandidateActor(Remote(), Sampling())


@pytest.mark.parametrize("shared", [True, False])
def test_candidate_logprobs_tree_equals_one_row_per_candidate(tiny_policy, shared):
    """The tree scoring (shared prefix once, each prompt once, candidates on the prompt's cache) gives
    sequence_logprobs' values on every (prompt, candidate) row: candidates of different lengths and
    counts per prompt, prompts of different lengths, with and without a long common prefix (fp32)."""
    import torch

    from agentsd.policy.hf import candidate_logprobs, sequence_logprobs

    tok, net = tiny_policy.tokenizer, tiny_policy.model
    assert next(net.parameters()).dtype == torch.float32
    head = tok("Sokoban rules: push every box onto a target; walls block; reply with one move.").input_ids
    prompts = [(head if shared else []) + tok(f"row {i} " * (i + 1)).input_ids for i in range(4)]
    words = ["<answer>Up</answer>", "<answer>Down</answer>", "x", "<answer>Left</answer> please"]
    cands = [[tok(w, add_special_tokens=False).input_ids + [tok.eos_token_id] for w in words[: 1 + i]]
             for i in range(4)]
    got = candidate_logprobs(net, prompts, cands, pad_id=tok.eos_token_id)
    rows_p = [p for p, cs in zip(prompts, cands, strict=True) for _ in cs]
    rows_c = [c for cs in cands for c in cs]
    with torch.no_grad():
        want, _ = sequence_logprobs(net, rows_p, rows_c, pad_id=tok.eos_token_id)
    flat = [x for per in got for x in per]
    assert [len(x) for x in flat] == [len(c) for c in rows_c]
    for x, w in zip(flat, want.tolist(), strict=True):
        assert x == pytest.approx(w[: len(x)], abs=1e-5)
    with pytest.raises(ValueError, match="candidate"):
        candidate_logprobs(net, prompts[:1], [[]], pad_id=tok.eos_token_id)

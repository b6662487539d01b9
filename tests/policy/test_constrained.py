"""Grammar-constrained decoding: samples match the grammar; log-probs are the constrained ones."""

from __future__ import annotations

import json
import re
import sys

import pytest
import torch

from agentsd.policy import Sampling
from agentsd.policy.constrained import build_constraint
from agentsd.policy.hf import HFPolicy

ANSWER = r"<answer>(Up|Down|Left|Right)</answer>"
CHATS = [[{"role": "user", "content": "Which way?"}], [{"role": "user", "content": "Move the box. " * 5}]]


def test_every_sample_matches_the_regex(tiny_policy: HFPolicy) -> None:
    gens = tiny_policy.generate(CHATS * 4, Sampling(max_new_tokens=32, regex=ANSWER, seed=0))
    for g in gens:
        assert re.fullmatch(ANSWER, g.text), g.text
        assert g.finish_reason == "stop" and g.token_ids[-1] in tiny_policy.eos_ids
    assert len({g.text for g in gens}) > 1  # sampled, not forced to one string


def test_behaviour_logprobs_are_the_constrained_ones(tiny_policy: HFPolicy) -> None:
    gens = tiny_policy.generate(CHATS, Sampling(max_new_tokens=32, regex=ANSWER, seed=1))
    free = tiny_policy.score(CHATS, [g.token_ids for g in gens])
    for g, f in zip(gens, free, strict=True):
        # Renormalising over the allowed tokens can only raise a token's probability ...
        assert all(c >= u - 1e-5 for c, u in zip(g.logprobs, f, strict=True))
        # ... and where the grammar forces a single token, the constrained log-prob is 0.
        assert max(g.logprobs) == pytest.approx(0.0, abs=1e-5)
        assert sum(g.logprobs) > sum(f) + 1.0


def test_greedy_constrained_is_deterministic(tiny_policy: HFPolicy) -> None:
    sampling = Sampling(max_new_tokens=32, regex=ANSWER, temperature=0.0)
    a, b = tiny_policy.generate(CHATS[:1], sampling), tiny_policy.generate(CHATS[:1], sampling)
    assert a[0].token_ids == b[0].token_ids and re.fullmatch(ANSWER, a[0].text)


def test_json_schema(tiny_policy: HFPolicy) -> None:
    schema = {
        "type": "object",
        "properties": {"move": {"type": "string", "enum": ["up", "down"]}, "steps": {"type": "integer"}},
        "required": ["move", "steps"],
    }
    gens = tiny_policy.generate(CHATS, Sampling(max_new_tokens=64, json_schema=schema, seed=0))
    finished = [g for g in gens if g.finish_reason == "stop"]
    assert finished  # a random model may ramble in whitespace, but not every time
    for g in finished:
        data = json.loads(g.text)
        assert data["move"] in ("up", "down") and isinstance(data["steps"], int)


def test_works_as_transformers_logits_processor(tiny_policy: HFPolicy) -> None:
    constraint = build_constraint(
        tiny_policy.tokenizer, Sampling(regex=ANSWER), tiny_policy.eos_ids, tiny_policy._vocab_size()
    )
    prompt = torch.tensor([tiny_policy.encode(CHATS[0])])  # (1, L)
    out = tiny_policy.model.generate(
        prompt, attention_mask=torch.ones_like(prompt), logits_processor=[constraint], max_new_tokens=32,
        do_sample=False, pad_token_id=tiny_policy.pad_id,
    )
    text = tiny_policy.tokenizer.decode(out[0, prompt.shape[1] :], skip_special_tokens=True)
    assert re.fullmatch(ANSWER, text)


def test_no_constraint_when_unset(tiny_policy: HFPolicy) -> None:
    assert build_constraint(tiny_policy.tokenizer, Sampling(), tiny_policy.eos_ids, 10) is None
    with pytest.raises(ValueError, match="not both"):
        build_constraint(tiny_policy.tokenizer, Sampling(regex="a", json_schema={}), tiny_policy.eos_ids, 10)


def test_missing_library_names_the_package(tiny_policy: HFPolicy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lmformatenforcer", None)  # makes the import fail
    with pytest.raises(ImportError, match="pip install 'lm-format-enforcer"):
        tiny_policy.generate(CHATS[:1], Sampling(max_new_tokens=4, regex=ANSWER))

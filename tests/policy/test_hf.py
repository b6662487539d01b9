"""HFPolicy: generation bookkeeping, stop handling, padding, seeding, scoring, and load_policy."""

from __future__ import annotations

import math
import subprocess
import sys
import types

import pytest
import torch

from agentsd.policy import Generation, Sampling, load_policy
from agentsd.policy.hf import HFPolicy, finish, process_logits, sample_categorical, sequence_logprobs

CHATS = [
    [{"role": "user", "content": "hi"}],
    [{"role": "system", "content": "You move boxes."}, {"role": "user", "content": "The box is left of you. " * 6}],
    [{"role": "user", "content": "Which way?"}],
]


def greedy(n: int = 16, **kw) -> Sampling:
    return Sampling(max_new_tokens=n, temperature=0.0, **kw)


def test_generate_bookkeeping(tiny_policy: HFPolicy) -> None:
    gens = tiny_policy.generate(CHATS, Sampling(max_new_tokens=12, seed=0))
    assert len(gens) == len(CHATS)
    for chat, g in zip(CHATS, gens, strict=True):
        assert isinstance(g, Generation)
        assert 1 <= len(g.token_ids) == len(g.logprobs) <= 12
        assert all(math.isfinite(lp) and lp <= 0.0 for lp in g.logprobs)
        assert g.prompt_tokens == len(tiny_policy.encode(chat))
        assert g.text == tiny_policy.tokenizer.decode(g.token_ids, skip_special_tokens=True)
        assert g.finish_reason == ("length" if len(g.token_ids) == 12 else "stop")


def test_length_finish_reason(tiny_policy: HFPolicy) -> None:
    [g] = tiny_policy.generate(CHATS[:1], greedy(5))
    assert g.finish_reason == "length" and len(g.token_ids) == 5


def test_stop_string_cuts_text_and_tokens(tiny_policy: HFPolicy) -> None:
    [full] = tiny_policy.generate(CHATS[:1], greedy(24))
    words = full.text.split()
    stop = words[len(words) // 2][:3]  # a string that first completes mid-generation
    [cut] = tiny_policy.generate(CHATS[:1], greedy(24, stop=[stop, "never-appears"]))
    end = full.text.index(stop) + len(stop)
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[:end]
    n = len(cut.token_ids)
    assert cut.token_ids == full.token_ids[:n] and cut.logprobs == full.logprobs[:n]
    decode = tiny_policy.tokenizer.decode
    assert decode(cut.token_ids).startswith(cut.text)  # the completing token is kept ...
    assert stop not in decode(cut.token_ids[:-1])  # ... and nothing after it


def test_finish_keeps_eos_token_but_not_its_text(tiny_policy: HFPolicy) -> None:
    tok = tiny_policy.tokenizer
    ids = tok.encode("Up", add_special_tokens=False)
    eos = tok.eos_token_id
    raw = [*ids, eos, *ids]
    g = finish(tok, raw, [-0.5] * len(raw), {eos}, [], prompt_tokens=7)
    assert g.token_ids == [*ids, eos] and len(g.logprobs) == len(ids) + 1
    assert g.text == "Up" and g.finish_reason == "stop" and g.prompt_tokens == 7


def test_finish_earliest_of_several_stops(tiny_policy: HFPolicy) -> None:
    tok = tiny_policy.tokenizer
    ids = tok.encode("go left then right", add_special_tokens=False)
    g = finish(tok, ids, [-1.0] * len(ids), set(), ["right", "left"], prompt_tokens=0)
    assert g.text == "go left" and g.finish_reason == "stop"
    assert tok.decode(g.token_ids) == "go left"


def test_batch_and_single_agree_under_greedy(tiny_policy: HFPolicy) -> None:
    # The short prompt is left-padded in the batch; padding must not change what it generates.
    batch = tiny_policy.generate(CHATS, greedy(16))
    for chat, b in zip(CHATS, batch, strict=True):
        [alone] = tiny_policy.generate([chat], greedy(16))
        assert alone.token_ids == b.token_ids
        assert alone.logprobs == pytest.approx(b.logprobs, abs=1e-4)


def test_chunking_preserves_order(tiny_model_dir: str, tiny_policy: HFPolicy) -> None:
    small = HFPolicy(tiny_model_dir, dtype="float32", autocast=False, max_batch=2)
    chats = CHATS + CHATS[::-1]
    assert [g.token_ids for g in small.generate(chats, greedy(8))] == [
        g.token_ids for g in tiny_policy.generate(chats, greedy(8))
    ]


def test_seeded_sampling_is_reproducible(tiny_policy: HFPolicy) -> None:
    state = torch.get_rng_state()
    a = tiny_policy.generate(CHATS, Sampling(max_new_tokens=16, seed=123))
    b = tiny_policy.generate(CHATS, Sampling(max_new_tokens=16, seed=123))
    c = tiny_policy.generate(CHATS, Sampling(max_new_tokens=16, seed=124))
    assert [g.token_ids for g in a] == [g.token_ids for g in b]
    assert [g.token_ids for g in a] != [g.token_ids for g in c]
    assert torch.equal(torch.get_rng_state(), state)  # a local generator: the global RNG is untouched


def test_top_k_one_and_tiny_top_p_are_greedy(tiny_policy: HFPolicy) -> None:
    ref = [g.token_ids for g in tiny_policy.generate(CHATS, greedy(10))]
    for sampling in (Sampling(max_new_tokens=10, top_k=1, seed=0), Sampling(max_new_tokens=10, top_p=1e-6, seed=0)):
        gens = tiny_policy.generate(CHATS, sampling)
        assert [g.token_ids for g in gens] == ref
        assert all(lp == pytest.approx(0.0, abs=1e-6) for g in gens for lp in g.logprobs)  # a point mass


def test_process_logits_filters() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))  # (1, V)
    top_k = process_logits(logits, Sampling(top_k=2))
    assert torch.isinf(top_k[0, 2:]).all() and torch.isfinite(top_k[0, :2]).all()
    top_p = process_logits(logits, Sampling(top_p=0.7))  # 0.5 < 0.7 <= 0.8: keep two
    assert torch.isfinite(top_p[0, :2]).all() and torch.isinf(top_p[0, 2:]).all()
    hot = process_logits(logits, Sampling(temperature=2.0))
    assert torch.allclose(hot, logits / 2)
    allowed = torch.tensor([[False, True, True, False]])
    masked = process_logits(logits, Sampling(temperature=0.0), allowed)
    assert masked.argmax().item() == 1 and torch.isinf(masked[0, 0])


def test_sample_categorical_matches_the_distribution() -> None:
    probs = torch.tensor([0.5, 0.0, 0.3, 0.15, 0.05, 0.0])
    logp = probs.log().expand(20000, -1)  # (N, V): 20k independent draws
    draws = sample_categorical(logp, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=6).float() / len(draws)
    assert freq[1] == 0 and freq[5] == 0  # zero-probability tokens never come up
    assert torch.allclose(freq, probs, atol=0.015)
    again = sample_categorical(logp, torch.Generator().manual_seed(0))
    assert torch.equal(draws, again)


@pytest.mark.parametrize("sampling", [greedy(16), Sampling(max_new_tokens=16, seed=7)], ids=["greedy", "t=1"])
def test_score_equals_generation_logprobs(tiny_policy: HFPolicy, sampling: Sampling) -> None:
    gens = tiny_policy.generate(CHATS, sampling)
    scores = tiny_policy.score(CHATS, [g.token_ids for g in gens])
    for g, s in zip(gens, scores, strict=True):
        assert s == pytest.approx(g.logprobs, abs=1e-4)


def test_sequence_logprobs_padding_side_and_grad(tiny_policy: HFPolicy) -> None:
    prompts = [tiny_policy.encode(c) for c in CHATS]
    completions = [[11, 12, 13, 14], [], [21, 22]]
    model = tiny_policy.model
    left, mask = sequence_logprobs(model, prompts, completions, pad_id=tiny_policy.pad_id, padding_side="left")
    right, mask_r = sequence_logprobs(model, prompts, completions, pad_id=tiny_policy.pad_id, padding_side="right")
    assert left.shape == mask.shape == (3, 4)
    assert mask.sum(-1).tolist() == [4, 0, 2] and torch.equal(mask, mask_r)
    assert torch.allclose(left, right, atol=1e-5)
    assert (left[~mask] == 0).all() and (left[mask] < 0).all()
    # Each row alone (no padding at all) gives the same numbers.
    for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        alone, _ = sequence_logprobs(model, [p], [c])
        assert torch.allclose(alone[0], left[i, : len(c)], atol=1e-5)
    # Learners backpropagate through it.
    (left * mask).sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    model.zero_grad(set_to_none=True)


def test_sequence_logprobs_empty_completions(tiny_policy: HFPolicy) -> None:
    lps, mask = sequence_logprobs(tiny_policy.model, [[1, 2]], [[]])
    assert lps.shape == mask.shape == (1, 0)
    assert tiny_policy.score(CHATS[:1], [[]]) == [[]]


def test_from_model_and_counters(tiny_policy: HFPolicy) -> None:
    wrapped = HFPolicy.from_model(tiny_policy.model, tiny_policy.tokenizer, autocast=False)
    assert wrapped.model is tiny_policy.model
    gens = wrapped.generate(CHATS[:2], greedy(6))
    assert wrapped.tokens_generated == sum(len(g.token_ids) for g in gens) == 12
    assert wrapped.generate_seconds > 0 and wrapped.throughput() > 0
    assert [g.token_ids for g in gens] == [g.token_ids for g in tiny_policy.generate(CHATS[:2], greedy(6))]


def test_peft_model_in_train_mode(tiny_model_dir: str) -> None:
    # Learners hand their (LoRA-wrapped, training) model to HFPolicy.from_model.
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.5, init_lora_weights=False)
    model = get_peft_model(base, lora).train()
    policy = HFPolicy.from_model(model, AutoTokenizer.from_pretrained(tiny_model_dir), autocast=False)
    gens = policy.generate(CHATS, greedy(8))
    # LoRA dropout is off while generating (else greedy would vary) and train mode is restored after.
    assert [g.token_ids for g in policy.generate(CHATS, greedy(8))] == [g.token_ids for g in gens]
    assert model.training
    scores = policy.score(CHATS, [g.token_ids for g in gens])
    for g, s in zip(gens, scores, strict=True):
        assert s == pytest.approx(g.logprobs, abs=1e-4)
    model.eval()
    prompts = [policy.encode(c) for c in CHATS]
    lps, mask = sequence_logprobs(model, prompts, [g.token_ids for g in gens], pad_id=policy.pad_id)
    (lps * mask).sum().backward()
    lora_grads = [p.grad for n, p in model.named_parameters() if "lora_" in n]
    assert lora_grads and all(g is not None and g.abs().sum() > 0 for g in lora_grads)


def test_load_policy_routes_hf(tiny_model_dir: str) -> None:
    policy = load_policy(tiny_model_dir, autocast=False)
    assert isinstance(policy, HFPolicy) and policy.name == tiny_model_dir
    assert isinstance(load_policy(f"hf:{tiny_model_dir}", autocast=False), HFPolicy)


def test_load_policy_routes_openai(monkeypatch: pytest.MonkeyPatch) -> None:
    # The real backend lives in agentsd.policy.openai_backend; a stand-in checks the routing only.
    fake = types.ModuleType("agentsd.policy.openai_backend")
    fake.OpenAIPolicy = lambda **kw: kw  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "agentsd.policy.openai_backend", fake)
    assert load_policy("openai:http://host:8000/v1") == {"base_url": "http://host:8000/v1"}
    assert load_policy("openai:http://host/v1#qwen", timeout=3) == {
        "base_url": "http://host/v1", "model": "qwen", "timeout": 3,
    }


def test_load_policy_vllm_missing_is_one_line() -> None:
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed")
    with pytest.raises(ImportError, match=r"^vllm is GPU-only: pip install agentsd\[vllm\]$"):
        load_policy("vllm:some/model")


def test_import_policy_package_does_not_import_torch() -> None:
    code = "import sys, agentsd.policy; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.integration
def test_real_model_chats_coherently(embedded_model_dir: str) -> None:
    policy = HFPolicy(embedded_model_dir, dtype="float32", autocast=True)
    chats = [[{"role": "user", "content": "What is the capital of France?"}], [{"role": "user", "content": "What is 2+2?"}]]
    gens = policy.generate(chats, greedy(24))
    assert "Paris" in gens[0].text and "4" in gens[1].text
    for g in gens:
        assert g.text.strip() and g.finish_reason == "stop"
        assert g.token_ids[-1] in policy.eos_ids
    # Under bf16 autocast, scoring (one full forward) and decoding (KV cache) round differently.
    scores = policy.score(chats, [g.token_ids for g in gens])
    for g, s in zip(gens, scores, strict=True):
        diffs = [abs(a - b) for a, b in zip(g.logprobs, s, strict=True)]
        assert max(diffs) < 0.3 and sum(diffs) / len(diffs) < 0.05
    print(f"\nSmolLM2 greedy: {policy.throughput():.1f} tok/s; {gens[0].text!r}")


def test_shared_prompt_prefix_matches_plain_prefill(tiny_policy, monkeypatch) -> None:
    import agentsd.policy.hf as hf

    system = {"role": "system", "content": "You play a grid game. Answer with one move in tags. " * 3}
    chats = [[system, {"role": "user", "content": u}] for u in ("Grid A", "A longer grid B here", "C")]
    prompts = [tiny_policy.encode(c) for c in chats]
    assert hf.shared_prefix_len(prompts) >= hf.MIN_SHARED_PREFIX
    s = Sampling(max_new_tokens=6, temperature=0)
    shared = tiny_policy.generate(chats, s)
    monkeypatch.setattr(hf, "MIN_SHARED_PREFIX", 10**9)
    plain = tiny_policy.generate(chats, s)
    for a, b in zip(shared, plain, strict=True):
        assert a.token_ids == b.token_ids
        assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)) < 1e-4


def test_shared_prefix_len() -> None:
    from agentsd.policy.hf import shared_prefix_len

    assert shared_prefix_len([[1, 2, 3, 4], [1, 2, 3, 5]]) == 3
    assert shared_prefix_len([[1, 2, 3], [1, 2, 3, 4]]) == 2  # a suffix token is always left
    assert shared_prefix_len([[7], [7]]) == 0
    assert shared_prefix_len([]) == 0

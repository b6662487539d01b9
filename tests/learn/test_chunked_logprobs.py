"""Chunked LM head (``sequence_logprobs(..., chunk=C)``): same log-probs and gradients as projecting every
completion position at once, on the tiny random model, plain and LoRA-wrapped; and the chunked
full-vocabulary reverse KL equals the unchunked one."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from agentsd.learn.onpolicy import OnPolicyConfig, Sample, Teacher, prepare_model, reverse_kl
from agentsd.policy.hf import completion_hidden, head_logprobs, sequence_logprobs, split_lm_head

PAD0 = SimpleNamespace(pad_token_id=0, eos_token_id=0)  # what reverse_kl reads of a tokenizer


@pytest.fixture
def model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


def _batch(seed: int = 0):
    """Rows of different prompt and completion lengths (left padding, masked tail entries)."""
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(3, 5000, (n,), generator=g).tolist() for n in (9, 4, 13)]
    comps = [torch.randint(3, 5000, (n,), generator=g).tolist() for n in (11, 3, 7)]
    return prompts, comps


def _lp_and_grads(model, chunk, prompts, comps, side="left"):
    model.zero_grad(set_to_none=True)
    lp, mask = sequence_logprobs(model, prompts, comps, pad_id=0, chunk=chunk, padding_side=side)
    # A loss with different weights per position, so every position's gradient matters.
    w = torch.linspace(0.5, 1.5, lp.shape[1])[None, :]
    (lp * w * mask).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    return lp.detach(), mask, grads


def _assert_same(a, b):
    lp_a, mask_a, g_a = a
    lp_b, mask_b, g_b = b
    assert torch.equal(mask_a, mask_b)
    torch.testing.assert_close(lp_a, lp_b, rtol=0, atol=1e-5)
    assert set(g_a) == set(g_b) and g_a
    for n in g_a:  # float rounding of different summation orders, relative to the gradient's scale
        scale = max(float(g_a[n].abs().max()), 1e-3)
        torch.testing.assert_close(g_a[n], g_b[n], rtol=1e-4, atol=5e-5 * scale, msg=n)


@pytest.mark.parametrize("chunk", [1, 4, 128])
@pytest.mark.parametrize("side", ["left", "right"])
def test_chunked_logprobs_and_grads_equal_unchunked(model, chunk, side):
    prompts, comps = _batch()
    full = _lp_and_grads(model, None, prompts, comps, side)
    chunked = _lp_and_grads(model, chunk, prompts, comps, side)
    _assert_same(full, chunked)
    assert (chunked[0][~chunked[1]] == 0).all()


@pytest.mark.parametrize("chunk", [2, 5])
def test_chunked_logprobs_and_grads_equal_unchunked_with_lora(model, chunk):
    net = prepare_model(model, OnPolicyConfig(lora=True, seed=1))
    assert hasattr(net, "peft_config")
    # Zero-initialized LoRA B would give the A matrices no gradient: perturb B so every adapter weight
    # carries a gradient through the chunked path.
    with torch.no_grad():
        for n, p in net.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(hash(n) % 2**31))
    prompts, comps = _batch(1)
    full = _lp_and_grads(net, None, prompts, comps)
    chunked = _lp_and_grads(net, chunk, prompts, comps)
    _assert_same(full, chunked)
    assert any("lora_A" in n for n in chunked[2]) and all(("lora" in n) for n in chunked[2])
    assert all(g.abs().sum() > 0 for g in chunked[2].values())


def test_chunked_logprobs_under_no_grad_and_temperature(model):
    prompts, comps = _batch(2)
    with torch.no_grad():
        a, _ = sequence_logprobs(model, prompts, comps, pad_id=0, temperature=0.7)
        b, _ = sequence_logprobs(model, prompts, comps, pad_id=0, temperature=0.7, chunk=3)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert not b.requires_grad


def test_checkpointed_backward_does_not_keep_all_chunk_logits(model):
    """The autograd graph of the chunked path saves no (B, T, V) tensor: only chunk inputs (B, C, H)."""
    prompts, comps = _batch()
    parts = split_lm_head(model)
    assert parts is not None
    body, head = parts
    vocab = head.weight.shape[0]
    hidden, targets, mask, head2 = completion_hidden(model, prompts, comps, pad_id=0)
    assert head2 is head and hidden.shape[:2] == targets.shape == mask.shape
    saved: list[torch.Size] = []

    def pack(t):
        saved.append(t.shape)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        lp = head_logprobs(head, hidden, targets, chunk=4)
    assert lp.shape == targets.shape and lp.requires_grad
    assert not any(len(s) == 3 and s[-1] == vocab for s in saved), saved
    # Unchunked, the logits (and their float copy) are saved for backward.
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = head(hidden).float()
        (logits.gather(-1, targets[..., None]).squeeze(-1) - logits.logsumexp(-1)).sum()
    assert any(len(s) == 3 and s[-1] == vocab for s in saved)


def test_bad_chunk_and_models_without_a_plain_head(model):
    prompts, comps = _batch()
    with pytest.raises(ValueError, match="chunk"):
        sequence_logprobs(model, prompts, comps, chunk=0)
    assert split_lm_head(model.get_decoder()) is None  # a bare decoder has no head
    model.config.final_logit_softcapping = 30.0  # soft-capped logits: the model's own forward is used
    assert split_lm_head(model) is None
    with pytest.raises(ValueError, match="LM head"):
        completion_hidden(model, prompts, comps)
    with torch.no_grad():  # still scores, through the unchunked path
        lp, _ = sequence_logprobs(model, prompts, comps, chunk=4)
    assert torch.isfinite(lp).all()


@pytest.mark.parametrize("lora", [False, True])
def test_chunked_reverse_kl_equals_unchunked(model, tokenizer_ids_teacher_prompts, lora):
    net = prepare_model(model, OnPolicyConfig(lora=lora))
    teacher = Teacher(net, "frozen")
    with torch.no_grad():  # move the student away from the teacher's weights
        for _, p in net.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.02)
    samples = tokenizer_ids_teacher_prompts
    full = reverse_kl(net, PAD0, samples, teacher, micro_batch=2, chunk=None)
    chunked = reverse_kl(net, PAD0, samples, teacher, micro_batch=2, chunk=3)
    assert full["kl_full"] > 1e-4
    for k in ("kl_full", "sdl", "k3", "tokens"):
        assert chunked[k] == pytest.approx(full[k], rel=1e-5, abs=1e-7), k


@pytest.fixture
def tokenizer_ids_teacher_prompts():
    prompts, comps = _batch(3)
    g = torch.Generator().manual_seed(4)
    return [Sample(p, c, None, teacher_prompt_ids=torch.randint(3, 5000, (5,), generator=g).tolist() + p)
            for p, c in zip(prompts, comps, strict=True)]


@pytest.mark.parametrize("chunk", [None, 4])
def test_shared_prefix_scoring_equals_plain_scoring(model, chunk, monkeypatch):
    from agentsd.policy import hf

    calls = []
    real = hf._prefix_shared_logprobs
    monkeypatch.setattr(hf, "_prefix_shared_logprobs", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    prompts, comps = _batch(5)
    prefix = torch.randint(3, 5000, (20,), generator=torch.Generator().manual_seed(6)).tolist()
    prompts = [prefix + p for p in prompts]
    with torch.no_grad():
        plain, mask = sequence_logprobs(model, prompts, comps, pad_id=0, chunk=chunk)
        shared, mask2 = sequence_logprobs(model, prompts, comps, pad_id=0, chunk=chunk, share_prefix=True)
    assert torch.equal(mask, mask2)
    torch.testing.assert_close(shared, plain, rtol=0, atol=1e-5)
    assert calls == [20]  # the shared-prefix path ran, with the whole common prefix
    with torch.enable_grad():  # with grad too (a learner's pass): same values, the prefix in the graph
        g_shared, _ = sequence_logprobs(model, prompts, comps, pad_id=0, chunk=chunk, share_prefix=True)
        g_plain, _ = sequence_logprobs(model, prompts, comps, pad_id=0, chunk=chunk)
    assert calls == [20, 20] and g_shared.requires_grad
    torch.testing.assert_close(g_shared, g_plain, rtol=0, atol=1e-5)
    assert (shared[~mask] == 0).all()

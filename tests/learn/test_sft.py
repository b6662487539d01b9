"""Supervised warm-start on the tiny random model: masks, loss, memorization, LoRA merge, accumulation."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from agentsd.learn.sft import (
    IGNORE,
    SFTConfig,
    accumulate_grads,
    collate,
    examples_from_trajectories,
    sft,
    tokenize_example,
)
from agentsd.policy.base import Sampling
from agentsd.policy.chat import encode_chat
from agentsd.trajectory import Trajectory, Turn

PROMPT = [{"role": "user", "content": "Push the box onto the goal. Which way?"}]
ANSWER = "<answer>Up</answer>"


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture
def model(tiny_model_dir):
    """A fresh fp32 copy per test: training mutates it in place."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


def greedy(model, tokenizer, messages, n=12):
    from agentsd.policy.hf import HFPolicy

    policy = HFPolicy.from_model(model, tokenizer, autocast=False)
    return policy.generate([messages], Sampling(temperature=0.0, max_new_tokens=n))[0]


def test_labels_cover_exactly_response_and_eos(tokenizer):
    eos = tokenizer.eos_token_id
    assert tokenizer.pad_token_id == eos  # SmolLM2: the case where masking by pad id would drop EOS
    examples = [(PROMPT, ANSWER), ([{"role": "user", "content": "x"}], "<answer>Left Left</answer>")]
    rows = [tokenize_example(tokenizer, m, r) for m, r in examples]
    batch = collate(rows, pad_id=tokenizer.pad_token_id)
    assert batch["input_ids"].shape == (2, max(len(ids) for ids, _ in rows))
    for i, ((msgs, resp), (ids, n_prompt)) in enumerate(zip(examples, rows, strict=True)):
        prompt = encode_chat(tokenizer, msgs)
        completion = tokenizer(resp, add_special_tokens=False)["input_ids"] + [eos]
        assert ids == prompt + completion and n_prompt == len(prompt)
        labels = batch["labels"][i]
        target = (labels != IGNORE).nonzero().flatten().tolist()
        assert target == list(range(len(prompt), len(ids)))  # prompt and padding excluded
        assert labels[target].tolist() == completion  # ends with EOS, a real target
        assert batch["attention_mask"][i].sum() == len(ids)
    short = min(range(2), key=lambda i: len(rows[i][0]))
    n = len(rows[short][0])
    assert (batch["input_ids"][short, n:] == eos).all()  # padding is EOS ids...
    assert (batch["labels"][short, n:] == IGNORE).all()  # ...and yet never a target


def test_examples_from_trajectories():
    turns = [
        Turn(messages=PROMPT, response=ANSWER),
        Turn(messages=PROMPT[:1], response="<answer>Down</answer>"),
    ]
    trajs = [Trajectory(env="sokoban", seed=0, turns=turns), Trajectory(env="sokoban", seed=1)]
    assert examples_from_trajectories(trajs) == [(PROMPT, ANSWER), (PROMPT[:1], "<answer>Down</answer>")]


def test_config_is_strict_and_needs_examples_that_fit(model, tokenizer):
    with pytest.raises(ValidationError):
        SFTConfig(learning_rate=1e-3)
    with pytest.raises(ValueError, match="max_len"):
        sft(model, tokenizer, [(PROMPT, ANSWER)], SFTConfig(max_len=8))


def test_loss_decreases_and_repeated_lora_runs_stack(model, tokenizer):
    examples = [(PROMPT, ANSWER), ([{"role": "user", "content": "Which way now?"}], "<answer>Left</answer>")]
    long = ([{"role": "user", "content": "word " * 200}], ANSWER)  # longer than max_len: skipped
    cfg = SFTConfig(lr=2e-2, epochs=6, batch_size=2, warmup_ratio=0.0, max_len=128)
    seen = []
    res = sft(model, tokenizer, examples + [long], cfg, progress=lambda s, t, loss: seen.append((s, t)))
    assert res.skipped == 1 and res.steps == 6 and seen == [(s, 6) for s in range(1, 7)]
    assert res.final_loss < 0.5 * res.losses[0]
    n_targets = sum(len(ids) - n for ids, n in (tokenize_example(tokenizer, m, r) for m, r in examples))
    assert res.tokens == 6 * n_targets
    assert res.model is model and not model.training
    again = sft(model, tokenizer, examples, cfg.model_copy(update={"epochs": 2}))  # e.g. the next RFT round
    assert again.losses[0] < res.losses[0]


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_memorizes_the_action_format(model, tokenizer, lora):
    from peft.tuners.tuners_utils import BaseTunerLayer

    before = greedy(model, tokenizer, PROMPT)
    assert before.text != ANSWER
    cfg = SFTConfig(
        lora=lora, lr=2e-2 if lora else 1e-2, epochs=20 if lora else 8, batch_size=1, warmup_ratio=0.0
    )
    res = sft(model, tokenizer, [(PROMPT, ANSWER)], cfg)
    # Merged in place: the caller's object, plain modules, trainable again, in eval mode.
    assert res.model is model and not model.training
    assert not any(isinstance(m, BaseTunerLayer) for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())
    out = greedy(model, tokenizer, PROMPT)
    assert out.text == ANSWER and out.finish_reason == "stop"
    assert out.token_ids[-1] == tokenizer.eos_token_id  # it learned to stop


def test_lora_merge_keeps_outputs(model, tokenizer):
    from peft.tuners.tuners_utils import BaseTunerLayer

    ids = torch.tensor([encode_chat(tokenizer, PROMPT)])
    with torch.no_grad():
        base = model(input_ids=ids).logits
    res = sft(model, tokenizer, [(PROMPT, ANSWER)], SFTConfig(lr=2e-2, epochs=3, batch_size=1, merge=False))
    peft_model = res.model
    assert any(isinstance(m, BaseTunerLayer) for m in peft_model.modules())
    with torch.no_grad():
        unmerged = peft_model(input_ids=ids).logits
    merged = peft_model.merge_and_unload()
    assert not any(isinstance(m, BaseTunerLayer) for m in merged.modules())
    with torch.no_grad():
        after = merged.eval()(input_ids=ids).logits
    assert not torch.allclose(base, unmerged, atol=1e-3)  # training changed something...
    torch.testing.assert_close(after, unmerged, atol=1e-4, rtol=1e-4)  # ...and merging kept it


def test_grad_accumulation_matches_one_big_batch(model, tokenizer):
    # Responses of different lengths, so the two micro-batches hold different numbers of targets:
    # averaging per micro-batch would weight their tokens differently.
    responses = [
        "<answer>Up</answer>",
        "<answer>Left Left Down</answer>",
        "ok",
        "<answer>Right</answer> I think",
    ]
    rows = [
        tokenize_example(tokenizer, [{"role": "user", "content": f"task {i}"}], r)
        for i, r in enumerate(responses)
    ]
    pad = tokenizer.pad_token_id
    model.train()

    def grads(batches):
        model.zero_grad(set_to_none=True)
        loss, n = accumulate_grads(model, batches, bf16=False)
        return loss, n, {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    loss1, n1, g1 = grads([collate(rows, pad)])
    loss2, n2, g2 = grads([collate(rows[:2], pad), collate(rows[2:], pad)])
    assert n1 == n2 == sum(len(ids) - n for ids, n in rows)
    assert loss1 == pytest.approx(loss2, rel=1e-5)
    assert g1.keys() == g2.keys() and len(g1) == len(list(model.parameters()))
    for k in g1:
        torch.testing.assert_close(g1[k], g2[k], atol=1e-6, rtol=1e-4, msg=k)


def _oracle_rows(tokenizer, n=6):
    from agentsd.learnability import oracle_states
    from agentsd.rollout import EnvFactory

    states = oracle_states(EnvFactory("sokoban", {"difficulty": "easy", "brief": True}), n, per_episode=2)
    return [tokenize_example(tokenizer, s.messages, s.candidates[s.oracle]) for s in states]


@pytest.mark.parametrize("lora", [False, True])
def test_shared_prefix_gives_the_naive_loss_and_gradient(model, tokenizer, lora, monkeypatch):
    """fp32: running the rows' common prompt prefix once (with grad) = each row's full forward. The
    oracle prompts of different states share the rules and task line (~120 tokens), and differ in the
    grid and in length (the compact grid), so the suffixes are left-padded."""
    import agentsd.policy.hf as hf
    from agentsd.learn.sft import _wrap_lora
    from agentsd.policy.hf import shared_prefix_len

    calls = []
    real = hf._prefix_shared_logprobs
    monkeypatch.setattr(hf, "_prefix_shared_logprobs", lambda *a, **k: calls.append(a[2]) or real(*a, **k))

    rows = _oracle_rows(tokenizer)
    assert shared_prefix_len([ids[:n] for ids, n in rows]) >= 100
    assert len({len(ids) for ids, _ in rows}) > 1
    net = _wrap_lora(model, SFTConfig()) if lora else model
    net.train()
    pad = tokenizer.pad_token_id
    batches = [collate(rows[:4], pad), collate(rows[4:], pad)]

    def grads(share):
        net.zero_grad(set_to_none=True)
        loss, n = accumulate_grads(net, batches, bf16=False, share_prefix=share)
        return loss, n, {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}

    loss0, n0, g0 = grads(False)
    assert calls == []
    loss1, n1, g1 = grads(True)
    assert len(calls) == 2 and min(calls) >= 100  # both micro-batches took the shared path
    assert n0 == n1 and loss1 == pytest.approx(loss0, rel=1e-5)
    assert g0.keys() == g1.keys() and len(g0) == sum(p.requires_grad for p in net.parameters())
    for k in g0:
        torch.testing.assert_close(g1[k], g0[k], atol=1e-6, rtol=1e-4, msg=k)


def test_sft_with_and_without_prefix_sharing_trains_the_same(tiny_model_dir, tokenizer):
    from transformers import AutoModelForCausalLM

    from agentsd.learnability import oracle_states
    from agentsd.rollout import EnvFactory

    states = oracle_states(EnvFactory("sokoban", {"difficulty": "easy", "brief": True}), 4, per_episode=2)
    examples = [(s.messages, s.candidates[s.oracle]) for s in states]
    out = []
    for share in (False, True):
        m = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        res = sft(m, tokenizer, examples, SFTConfig(lora=False, lr=1e-3, batch_size=4, max_steps=2,
                                                    share_prefix=share, bf16_autocast=False))
        out.append((res.losses, {k: v.clone() for k, v in res.model.state_dict().items()}))
    assert out[0][0] == pytest.approx(out[1][0], rel=1e-4)
    for k in out[0][1]:
        torch.testing.assert_close(out[1][1][k], out[0][1][k], atol=1e-5, rtol=1e-4, msg=k)


def test_on_epoch_runs_after_each_pass_in_eval_mode(model, tokenizer):
    seen = []
    examples = [([{"role": "user", "content": f"task {i}"}], "<answer>Up</answer>") for i in range(3)]
    sft(model, tokenizer, examples, SFTConfig(epochs=3, batch_size=2, lr=1e-3),
        on_epoch=lambda k: seen.append((k, model.training)))
    assert seen == [(1, False), (2, False), (3, False)]

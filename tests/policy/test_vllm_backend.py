"""The vllm backend without vllm: the lazy import error, the sampling/output mapping, merged LoRA
weights under Hugging Face names, and the weight-reload plumbing against a stand-in engine."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import pytest
import torch

from agentsd.policy import load_policy
from agentsd.policy.base import Sampling
from agentsd.policy.vllm_backend import (
    INSTALL_HINT,
    VLLMPolicy,
    generation_from_output,
    merged_hf_weights,
    sampling_kwargs,
)

no_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")


@no_vllm
def test_without_vllm_the_error_says_what_to_do():
    with pytest.raises(ImportError, match="needs a GPU and `pip install agentsd\\[vllm\\]`"):
        VLLMPolicy("smollm2-135m")
    with pytest.raises(ImportError, match="agentsd\\[vllm\\]"):
        load_policy("vllm:smollm2-135m")
    assert "GPU" in INSTALL_HINT


def test_sampling_kwargs():
    kw = sampling_kwargs(Sampling(max_new_tokens=7, temperature=0.7, top_p=0.9, stop=["</answer>"], seed=3))
    assert kw == {"n": 1, "max_tokens": 7, "temperature": 0.7, "top_p": 0.9, "top_k": -1, "logprobs": 0,
                  "skip_special_tokens": True, "stop": ["</answer>"], "include_stop_str_in_output": True, "seed": 3}
    assert sampling_kwargs(Sampling(top_k=5))["top_k"] == 5 and "seed" not in sampling_kwargs(Sampling())
    with pytest.raises(NotImplementedError, match="constrained"):
        sampling_kwargs(Sampling(regex="a+"))


def test_generation_from_output():
    lp = lambda v: SimpleNamespace(logprob=v)  # noqa: E731 - vLLM's Logprob
    out = SimpleNamespace(token_ids=[5, 9, 2], text="ab", finish_reason="stop",
                          logprobs=[{5: lp(-0.5), 7: lp(-1.0)}, {9: lp(-0.25)}, {2: lp(-0.125)}])
    g = generation_from_output(out, prompt_tokens=11)
    assert (g.token_ids, g.logprobs, g.text, g.prompt_tokens, g.finish_reason) == (
        [5, 9, 2], [-0.5, -0.25, -0.125], "ab", 11, "stop")
    out.finish_reason = "length"
    assert generation_from_output(out, 0).finish_reason == "length"
    out.logprobs = None  # an engine asked for no log-probs
    assert generation_from_output(out, 0).logprobs == []
    out.logprobs = [{5: lp(-0.5)}, {8: lp(-1.0)}, {2: lp(-0.1)}]
    with pytest.raises(ValueError, match="sampled token 9"):
        generation_from_output(out, 0)


@pytest.fixture
def lora_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from agentsd.learn.onpolicy import OnPolicyConfig, prepare_model

    net = prepare_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval(),
                        OnPolicyConfig(lora=True))
    with torch.no_grad():  # a trained adapter (B starts at zero)
        for n, p in net.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    return net


def test_merged_weights_have_hf_names_and_reproduce_the_lora_model(lora_model, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    ids = torch.tensor([[1, 5, 9, 42, 7]])
    with torch.no_grad():
        want = lora_model(input_ids=ids).logits
        base_before = {n: p.clone() for n, p in lora_model.named_parameters() if "lora_" not in n}
    weights = dict(merged_hf_weights(lora_model))
    assert set(weights) == set(plain.state_dict())
    plain.load_state_dict(weights)
    with torch.no_grad():
        torch.testing.assert_close(plain(input_ids=ids).logits, want, rtol=1e-4, atol=1e-4)
        # the learner's model is unmerged again: same outputs, same base weights
        torch.testing.assert_close(lora_model(input_ids=ids).logits, want, rtol=0, atol=1e-5)
        for n, p in lora_model.named_parameters():
            if "lora_" not in n:
                torch.testing.assert_close(p, base_before[n], rtol=0, atol=1e-6)


def test_merged_weights_of_a_plain_model_are_its_state_dict(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    weights = dict(merged_hf_weights(plain))
    sd = plain.state_dict()
    assert set(weights) == set(sd) and all(torch.equal(weights[n], sd[n]) for n in sd)
    assert all(weights[n].data_ptr() != sd[n].data_ptr() for n in sd)  # copies


class _FakeEngineModel:
    def __init__(self):
        self.loaded: list[tuple[str, torch.Tensor]] = []

    def load_weights(self, weights):
        self.loaded.extend(weights)


class _FakeLLM:
    """The two LLM methods load_weights uses, acting on one in-process model."""

    def __init__(self):
        self.model = _FakeEngineModel()
        self.resets = 0

    def apply_model(self, fn):
        return [fn(self.model)]

    def reset_prefix_cache(self):
        self.resets += 1


def test_sync_from_pushes_merged_weights_and_resets_the_prefix_cache(lora_model):
    policy = VLLMPolicy.__new__(VLLMPolicy)  # the engine itself needs a GPU: a stand-in
    policy.llm, policy.weight_version = _FakeLLM(), 0
    policy.sync_from(lora_model)
    loaded = dict(policy.llm.model.loaded)
    assert policy.weight_version == 1 and policy.llm.resets == 1
    assert "model.layers.0.self_attn.q_proj.weight" in loaded and not any("lora" in n for n in loaded)
    policy.load_weights({"lm_head.weight": torch.zeros(3)})
    assert policy.weight_version == 2 and policy.llm.model.loaded[-1][0] == "lm_head.weight"

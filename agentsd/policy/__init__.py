"""Model backends behind one :class:`Policy` interface, chosen by a spec string.

    load_policy("smollm2-135m")                        # embedded model, transformers (HFPolicy)
    load_policy("/path/to/hf_model_dir")               # any local transformers model dir
    load_policy("HuggingFaceTB/SmolLM2-360M-Instruct")  # hub id (needs network or the local HF cache)
    load_policy("openai:http://localhost:8000/v1#my-model")  # any OpenAI-compatible server
    load_policy("vllm:/path/or/hub-id")                # in-process vLLM (GPU only, optional extra)

Importing this package does not import torch; backends load on first use.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from agentsd.policy.base import Conversation, Generation, Message, Policy, Sampling
from agentsd.policy.embedded import EMBEDDED_MODELS, ModelUnavailableError, resolve_model

__all__ = [
    "EMBEDDED_MODELS",
    "Conversation",
    "Generation",
    "Message",
    "ModelUnavailableError",
    "Policy",
    "Sampling",
    "load_policy",
    "resolve_model",
]


def load_policy(spec: str, **kw: Any) -> Policy:
    """Build a policy from ``spec``; ``kw`` go to the backend's constructor."""
    backend, sep, rest = spec.partition(":")
    if sep and backend == "openai":
        base_url, _, model = rest.partition("#")
        module = importlib.import_module("agentsd.policy.openai_backend")
        if model:
            kw.setdefault("model", model)
        # Run configs carry local-model settings; a server has its own. max_batch bounds concurrency.
        for key in ("dtype", "device", "cache_dir", "autocast"):
            kw.pop(key, None)
        if "max_batch" in kw:
            kw["max_concurrency"] = kw.pop("max_batch")
        return module.OpenAIPolicy(base_url=base_url, **kw)
    if sep and backend == "vllm":
        if importlib.util.find_spec("vllm") is None:
            raise ImportError("vllm is GPU-only: pip install agentsd[vllm]")
        module = importlib.import_module("agentsd.policy.vllm_backend")
        return module.VLLMPolicy(rest, **kw)
    if sep and backend == "hf":
        spec = rest
    from agentsd.policy.hf import HFPolicy

    return HFPolicy(spec, **kw)

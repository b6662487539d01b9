"""A tiny random Llama with the real SmolLM2 tokenizer, for fast unit tests.

The weights are noise, but the tokenizer, chat template and special tokens are the embedded model's,
so prompts, stop handling and token bookkeeping are exercised exactly as with the real model while a
forward pass costs microseconds and loading takes well under a second.

    from agentsd.policy.tiny import build_tiny_model
    path = build_tiny_model("/tmp/tiny")           # then HFPolicy(path)
"""

from __future__ import annotations

import os
from pathlib import Path


def build_tiny_model(
    out_dir: str | os.PathLike[str],
    vocab_source: str | os.PathLike[str] | None = None,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int = 128,
    init_std: float = 0.3,
    seed: int = 0,
) -> str:
    """Save a randomly initialised Llama causal LM and a tokenizer to ``out_dir``; return it.

    ``vocab_source`` is a model dir whose tokenizer is copied (default: the embedded SmolLM2 cache).
    ``init_std`` is large on purpose: near-uniform logits would make greedy argmax ties depend on
    float rounding, while peaked logits keep greedy decoding stable across batch layouts. The output
    head is untied: with tied random weights every token's best continuation is itself.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from agentsd.policy.embedded import resolve_model

    source = str(vocab_source) if vocab_source is not None else resolve_model("smollm2-135m")
    tokenizer = AutoTokenizer.from_pretrained(source)
    eos = tokenizer.eos_token_id
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=max(1, num_heads // 2),  # grouped-query attention, like SmolLM2
        max_position_embeddings=2048,
        tie_word_embeddings=False,  # tied random weights make every token predict itself
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
    )
    model = LlamaForCausalLM(config)
    # Re-initialise from a local generator (never the global RNG) so the same seed gives the same model.
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                param.fill_(1.0)
            else:
                std = init_std if "embed_tokens" in name or "lm_head" in name else init_std / hidden_size**0.5
                param.copy_(torch.randn(param.shape, generator=gen) * std)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return str(out)

"""One way to turn chat messages into prompt token ids, shared by generation, scoring and training.

Generation, teacher re-scoring and supervised fine-tuning must all see the same prompt tokens, or the
behaviour log-probs and the training targets drift apart. They all call :func:`encode_chat`.
"""

from __future__ import annotations

from typing import Any


def encode_chat(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> list[int]:
    """Prompt token ids for ``messages`` with the tokenizer's chat template (plus the assistant header)."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):  # some versions return a BatchEncoding
            ids = ids["input_ids"]
        return list(ids)
    # A tokenizer without a template: a plain, explicit transcript.
    text = "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages)
    if add_generation_prompt:
        text += "<|assistant|>\n"
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])

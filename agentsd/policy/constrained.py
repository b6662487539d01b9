"""Grammar-constrained decoding (``Sampling.regex`` / ``Sampling.json_schema``) via lm-format-enforcer.

lm-format-enforcer walks a character-level parser (regex or JSON schema) over a prefix tree of the
vocabulary and returns the token ids allowed next. We use its core (``TokenEnforcer``) directly: its
transformers integration module fails to import under transformers 5 (it imports
``PreTrainedTokenizerBase`` from a moved module), and our decoding loop needs a mask, not a
``prefix_allowed_tokens_fn``. :class:`TokenConstraint` is also a transformers ``LogitsProcessor``
(``constraint(input_ids, scores)``), so it works with ``model.generate(logits_processor=[...])`` too.

The mask is applied before temperature / top-k / top-p, so the behaviour log-probs the policy records
are those of the constrained distribution actually sampled.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from typing import Any

import torch

from agentsd.policy.base import Sampling

_INSTALL_HINT = "grammar-constrained decoding needs lm-format-enforcer: pip install 'lm-format-enforcer>=0.10'"

# Building the vocabulary prefix tree decodes every token twice (seconds for a 49k vocab): once per
# tokenizer per process. Keyed by id() and holding the tokenizer, so an id is never reused while cached.
_TOKENIZER_DATA: dict[tuple[int, tuple[int, ...], int], tuple[Any, Any]] = {}
_LOCK = threading.Lock()


def _lmfe() -> Any:
    try:
        import lmformatenforcer
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err
    return lmformatenforcer


def _decode(tokenizer: Any, tokens: list[int]) -> str:
    # A trailing replacement char is half a multi-byte character; the next token completes it.
    return tokenizer.decode(tokens).rstrip("\ufffd")


def tokenizer_data(tokenizer: Any, eos_ids: Sequence[int], vocab_size: int) -> Any:
    """lm-format-enforcer's per-tokenizer data (vocabulary strings, word-start flags), built once."""
    key = (id(tokenizer), tuple(sorted(eos_ids)), vocab_size)
    with _LOCK:
        if key in _TOKENIZER_DATA:
            return _TOKENIZER_DATA[key][1]
    lmfe = _lmfe()
    special = set(tokenizer.all_special_ids)
    regular = [i for i in range(min(vocab_size, len(tokenizer))) if i not in special]
    # Decoding after a fixed token ("0") reveals a leading space that decoding alone would strip:
    # that is how word-start tokens are told apart. Batched decode keeps this to ~1 s.
    zero = tokenizer.encode("0", add_special_tokens=False)[-1]
    alone = tokenizer.batch_decode([[i] for i in regular])
    after_zero = [s[1:] for s in tokenizer.batch_decode([[zero, i] for i in regular])]
    tokens = [(i, a, len(a) > len(s)) for i, a, s in zip(regular, after_zero, alone, strict=True)]
    eos: int | list[int] = sorted(eos_ids) if len(eos_ids) > 1 else next(iter(eos_ids))
    data = lmfe.TokenEnforcerTokenizerData(tokens, functools.partial(_decode, tokenizer), eos, False, vocab_size)
    with _LOCK:
        _TOKENIZER_DATA[key] = (tokenizer, data)
    return data


class TokenConstraint:
    """Allowed-next-token masks for one generate call (one parser, state shared across rows)."""

    def __init__(self, enforcer: Any, vocab_size: int) -> None:
        self.enforcer = enforcer
        self.vocab_size = vocab_size
        # The enforcer returns the same list object for the same parser state; cache its mask.
        self._masks: dict[int, tuple[Any, torch.Tensor]] = {}

    def allowed(self, sequences: Sequence[Sequence[int]], device: torch.device | str = "cpu") -> torch.Tensor:
        """``(B, V)`` bool: tokens allowed after each full sequence (prompt + generated so far).

        The enforcer treats the first sequence it has not seen extend as a prompt, so each row must pass
        its prompt followed by exactly the tokens generated so far.
        """
        rows = []
        for seq in sequences:
            tokens = self.enforcer.get_allowed_tokens(list(seq)).allowed_tokens
            hit = self._masks.get(id(tokens))
            if hit is None or hit[0] is not tokens:
                mask = torch.zeros(self.vocab_size, dtype=torch.bool)
                mask[torch.as_tensor(tokens, dtype=torch.long)] = True
                hit = (tokens, mask)
                self._masks[id(tokens)] = hit
            rows.append(hit[1])
        return torch.stack(rows).to(device)  # (B, V)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """transformers ``LogitsProcessor`` interface: ``input_ids (B, L)``, ``scores (B, V)``."""
        allowed = self.allowed(input_ids.tolist(), scores.device)  # (B, V)
        return scores.masked_fill(~allowed[:, : scores.shape[-1]], float("-inf"))


def build_constraint(
    tokenizer: Any, sampling: Sampling, eos_ids: Sequence[int], vocab_size: int
) -> TokenConstraint | None:
    """A constraint for ``sampling.regex`` or ``sampling.json_schema``; None when neither is set."""
    if sampling.regex is None and sampling.json_schema is None:
        return None
    if sampling.regex is not None and sampling.json_schema is not None:
        raise ValueError("set Sampling.regex or Sampling.json_schema, not both")
    lmfe = _lmfe()
    parser = (lmfe.RegexParser(sampling.regex) if sampling.regex is not None
              else lmfe.JsonSchemaParser(sampling.json_schema))
    data = tokenizer_data(tokenizer, eos_ids, vocab_size)
    return TokenConstraint(lmfe.TokenEnforcer(data, parser), vocab_size)

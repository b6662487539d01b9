"""HFPolicy: a transformers causal LM as a :class:`Policy` (CPU or GPU, batched, with log-probs).

Generation is a small custom decoding loop rather than ``model.generate``: it records each sampled
token's behaviour log-prob straight from the distribution it was drawn from (after temperature, top-k,
top-p and grammar constraints) without keeping per-step score tensors, drops finished rows from the KV
cache, and checks stop strings as it goes. Scoring and learners share :func:`sequence_logprobs`.

    from agentsd.policy import Sampling, load_policy
    policy = load_policy("smollm2-135m")
    [gen] = policy.generate([[{"role": "user", "content": "Hi"}]], Sampling(max_new_tokens=32))
    policy.score([[{"role": "user", "content": "Hi"}]], [gen.token_ids])   # == gen.logprobs at T=1
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from agentsd.policy.base import Conversation, Generation, Policy, Sampling
from agentsd.policy.chat import encode_chat

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pad_sequences(
    seqs: Sequence[Sequence[int]], pad_id: int, side: str = "left", device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token id lists into ``(input_ids (B, L), attention_mask (B, L))``.

    The attention mask, not the pad id, marks real tokens: SmolLM2's pad token *is* its EOS token.
    """
    if side not in ("left", "right"):
        raise ValueError(f"padding side must be 'left' or 'right', not {side!r}")
    length = max((len(s) for s in seqs), default=0)
    ids = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), length), dtype=torch.long)
    for i, s in enumerate(seqs):
        if not s:
            continue
        cols = slice(length - len(s), length) if side == "left" else slice(0, len(s))
        ids[i, cols] = torch.as_tensor(list(s), dtype=torch.long)
        mask[i, cols] = 1
    return ids.to(device), mask.to(device)


#: Shared prompt prefixes shorter than this are not worth a separate forward pass.
MIN_SHARED_PREFIX = 16


def shared_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest common prefix of ``seqs``, kept at least one token short of the shortest
    sequence (every row needs a suffix token to produce its first logits)."""
    if not seqs:
        return 0
    limit = min(len(s) for s in seqs) - 1
    first = seqs[0]
    n = 0
    while n < limit and all(s[n] == first[n] for s in seqs):
        n += 1
    return max(n, 0)


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count only real tokens, so a left-padded row sees the same positions (B, L)."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def sequence_logprobs(
    model: Any,
    prompt_ids: Sequence[Sequence[int]],
    completion_ids: Sequence[Sequence[int]],
    *,
    pad_id: int = 0,
    padding_side: str = "left",
    temperature: float = 1.0,
    chunk: int | None = None,
    share_prefix: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs of each completion's exact token ids given its prompt, differentiable.

    Returns ``(logprobs (B, T), mask (B, T))`` with ``T`` the longest completion; completion token ``j``
    of row ``i`` is at ``[i, j]`` and ``mask`` is True where ``j < len(completion_ids[i])``. Masked
    entries are 0. Call under ``torch.no_grad()`` to score, or with grad to train (learners
    apply their own autocast). Only the completion positions are projected onto the vocabulary
    (``logits_to_keep``), so memory is ``B * T * V``, not ``B * L * V``.

    ``chunk``: project at most ``chunk`` completion positions at a time (see :func:`completion_hidden`
    and :func:`head_logprobs`): the model body runs once, then the LM head, log-softmax and gather run
    per chunk of positions, so at most ``B * chunk * V`` logits exist at once. With grad each chunk is
    checkpointed (its logits are recomputed in backward rather than kept), so the backward pass holds
    one chunk's logits and their gradient at a time too. Same values and gradients as ``chunk=None``
    up to float rounding; models whose logits are not just ``lm_head(hidden)`` (soft-capping, logit
    scaling) take the unchunked path.

    ``share_prefix``: rows whose prompts share a prefix of at least :data:`MIN_SHARED_PREFIX` tokens (the
    system message, instructions and skills) run it once at batch 1 and reuse its KV cache for every row,
    as generation does; only the differing suffixes are processed per row. Same values up to float
    rounding (~1e-6 in fp32). With grad the cache stays in the graph, so the prefix's gradient is the sum
    of every row's, as in the unshared pass (tested to float rounding in fp32): a learner whose rows share
    a 126-token prompt prefix and differ in ~40 tokens pays for the prefix once per micro-batch. Ignored
    under autocast (see ``HFPolicy._generate_chunk``) and with right padding.
    """
    if len(prompt_ids) != len(completion_ids):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(completion_ids)} completions")
    device = next(model.parameters()).device
    batch = len(prompt_ids)
    comp_len = torch.tensor([len(c) for c in completion_ids], dtype=torch.long, device=device)  # (B,)
    width = int(comp_len.max()) if batch else 0
    if width == 0:
        return torch.zeros(batch, 0, device=device), torch.zeros(batch, 0, dtype=torch.bool, device=device)
    if any(len(p) == 0 for p in prompt_ids):
        raise ValueError("every prompt needs at least one token (the first completion token is predicted from it)")

    seqs = [list(p) + list(c) for p, c in zip(prompt_ids, completion_ids, strict=True)]
    input_ids, attention_mask = pad_sequences(seqs, pad_id, padding_side, device)  # (B, L)
    length = input_ids.shape[1]
    j = torch.arange(width, device=device)[None, :]  # (1, T)
    mask = j < comp_len[:, None]  # (B, T)
    # Column of completion token j in the padded row; the logit that predicts it sits one column left.
    if padding_side == "left":
        start = length - comp_len[:, None]  # (B, 1)
    else:
        start = torch.tensor([len(p) for p in prompt_ids], device=device)[:, None]  # (B, 1)
    cols = (start + j).clamp(max=length - 1)  # (B, T)
    targets = input_ids.gather(1, cols)  # (B, T)
    if share_prefix and batch > 1 and padding_side == "left" and not torch.is_autocast_enabled(device.type):
        n_pre = shared_prefix_len(prompt_ids)
        if n_pre >= MIN_SHARED_PREFIX:
            logprobs = _prefix_shared_logprobs(model, seqs, n_pre, targets, cols, pad_id, temperature, chunk)
            return logprobs.masked_fill(~mask, 0.0), mask
    if chunk is not None and (parts := split_lm_head(model)) is not None:
        body, head = parts
        hidden = _body_hidden(body, input_ids, attention_mask, cols - 1)  # (B, T, H)
        logprobs = head_logprobs(head, hidden, targets, chunk, temperature)  # (B, T)
        return logprobs.masked_fill(~mask, 0.0), mask
    # A 2-D integer logits_to_keep selects per-row positions (transformers >= 5).
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=positions_from_mask(attention_mask),
        logits_to_keep=cols - 1,
        use_cache=False,
    )
    logits = out.logits.float()  # (B, T, V)
    if temperature != 1.0:
        logits = logits / temperature
    # gather - logsumexp instead of log_softmax: avoids a second (B, T, V) tensor.
    logprobs = logits.gather(-1, targets[..., None]).squeeze(-1) - logits.logsumexp(-1)  # (B, T)
    return logprobs.masked_fill(~mask, 0.0), mask


def candidate_logprobs(
    model: Any,
    prompt_ids: Sequence[Sequence[int]],
    candidates: Sequence[Sequence[Sequence[int]]],
    *,
    pad_id: int = 0,
) -> list[list[list[float]]]:
    """Per-token log-probs of every candidate completion of every prompt, scored as a tree: the
    prompts' common prefix runs once at batch 1, each prompt's own suffix (with its candidates' common
    prefix) once, and only the candidates' remaining tokens run per candidate, on the prompt's KV cache.
    ``candidates[i]`` are the token-id lists of prompt ``i``'s candidates (at least one each); the
    answer ``[i][k]`` holds one log-prob per token of candidate ``k``. Same values as :func:`sequence_logprobs` on every
    (prompt, candidate) row, up to float rounding, at a fraction of its cost when the candidates are
    short next to their prompt (a turn of a finite-action env: the board once, four 6-token moves).
    Inference only (no grad). Float rounding means fp32 (2e-5 on the embedded model); with bf16
    weights the two paths round differently (up to 0.3 nats on one token of the embedded model)."""
    from transformers import DynamicCache

    n = len(prompt_ids)
    if n != len(candidates):
        raise ValueError(f"{n} prompts but {len(candidates)} candidate lists")
    if not n:
        return []
    if any(len(p) == 0 for p in prompt_ids) or any(not cs or any(not c for c in cs) for cs in candidates):
        raise ValueError("every prompt needs a token and at least one non-empty candidate")
    device = next(model.parameters()).device
    cache_kw = _cache_kwarg(model)
    cache = DynamicCache(config=model.config)
    # The candidates' own common prefix (``<answer>`` of ``<answer>Up</answer>``) joins its prompt: run
    # once per prompt, not once per candidate; every candidate keeps at least its last token.
    hoist = [min(shared_prefix_len(cs) if len(cs) > 1 else len(cs[0]) - 1, min(len(c) for c in cs) - 1)
             for cs in candidates]
    ext = [list(p) + list(cs[0][:h]) for p, cs, h in zip(prompt_ids, candidates, hoist, strict=True)]
    # the shared run stops before each prompt's last token: those and the hoisted tokens need logits
    n_pre = min(shared_prefix_len(ext) if n > 1 else len(ext[0]), min(len(p) for p in prompt_ids) - 1)
    if n_pre < MIN_SHARED_PREFIX:
        n_pre = 0
    top = max(hoist)
    with torch.no_grad():
        if n_pre:
            model(input_ids=torch.tensor([ext[0][:n_pre]], device=device), use_cache=True,
                  logits_to_keep=1, **{cache_kw: cache})
            cache.batch_repeat_interleave(n)
        suffix_ids, suffix_mask = pad_sequences([p[n_pre:] for p in ext], pad_id, "left", device)
        mask = torch.cat([suffix_mask.new_ones(n, n_pre), suffix_mask], 1)  # (n, P)
        out = model(input_ids=suffix_ids, attention_mask=mask, position_ids=positions_from_mask(mask)[:, n_pre:],
                    use_cache=True, logits_to_keep=top + 1, **{cache_kw: cache})
        # Left padding puts every row's last tokens in the last columns: column top - h + t predicts the
        # t-th hoisted token of a row that hoisted h, and the last column the rest's first token.
        head = out.logits.float().log_softmax(-1)  # (n, top + 1, V)
        hoisted = [[float(head[i, top - h + t, cs[0][t]]) for t in range(h)]
                   for i, (cs, h) in enumerate(zip(candidates, hoist, strict=True))]
        first = head[:, -1]  # (n, V)
        # The candidates' remaining tokens of one prompt go in one row, side by side, on the prompt's cache
        # (not copied per candidate): a 4-D mask lets each token see the prompt and the earlier tokens of
        # its own candidate only, and its position counts from the prompt's end as if it stood alone.
        rows = [[list(c[h:]) for c in cs] for cs, h in zip(candidates, hoist, strict=True)]
        lps = [[[float(first[i, r[0]])] for r in rs] for i, rs in enumerate(rows)]
        feeds = [[(j, t, tok) for j, r in enumerate(rs) for t, tok in enumerate(r[:-1])] for rs in rows]
        width = max(len(f) for f in feeds)
        if width:
            plen = mask.shape[1]
            ids = torch.full((n, width), pad_id, dtype=torch.long)
            pos = torch.zeros((n, width), dtype=torch.long)
            seg = torch.full((n, width), -1, dtype=torch.long)
            start = mask.sum(-1).tolist()  # real prompt tokens per row
            for i, f in enumerate(feeds):
                for q, (j, t, tok) in enumerate(f):
                    ids[i, q], pos[i, q], seg[i, q] = tok, start[i] + t, j
            same = (seg[:, :, None] == seg[:, None, :]) & (seg[:, :, None] >= 0)  # (n, W, W)
            allowed = torch.cat([mask.bool()[:, None, :].expand(n, width, plen).cpu(),
                                 same & torch.ones(width, width, dtype=torch.bool).tril()], -1)
            allowed[:, :, plen:] |= torch.eye(width, dtype=torch.bool)  # pads see themselves: no NaN rows
            dtype = next(model.parameters()).dtype
            mask4 = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
            logits = model(input_ids=ids.to(device), attention_mask=mask4[:, None].to(device),
                           position_ids=pos.to(device), use_cache=True, **{cache_kw: cache}).logits.float()
            logz = logits.logsumexp(-1)  # (n, W)
            for i, f in enumerate(feeds):
                for q, (j, t, _tok) in enumerate(f):
                    nxt = rows[i][j][t + 1]
                    lps[i][j].append(float(logits[i, q, nxt] - logz[i, q]))
    return [[hoisted[i] + lp for lp in per] for i, per in enumerate(lps)]


#: Config attributes that make a model's logits more than ``lm_head(hidden)``: such models are scored
#: through their own forward (unchunked).
_LOGIT_POSTPROCESSING = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


def split_lm_head(model: Any) -> tuple[Any, Any] | None:
    """``(body, head)`` of a causal LM: the decoder that returns hidden states and the output projection,
    or None when the model's logits are not plain ``head(body(...).last_hidden_state)``.

    A PEFT-wrapped model is unwrapped with ``get_base_model()``: LoRA layers are injected into the base
    model's modules in place, so its body and head (LoRA-wrapped or not) compute the adapted model.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    get_decoder = getattr(base, "get_decoder", None)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if get_decoder is None or head is None:
        return None
    body = get_decoder()
    if body is base:  # not a *ForCausalLM wrapper around a decoder
        return None
    config = getattr(base, "config", None)
    if any(getattr(config, name, None) not in (None, 0, 1, 1.0) for name in _LOGIT_POSTPROCESSING):
        return None
    return body, head


def _body_hidden(
    body: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor
) -> torch.Tensor:
    """The body's last hidden states at ``positions`` (B, T) of each row: (B, T, H)."""
    hidden = body(input_ids=input_ids, attention_mask=attention_mask,
                  position_ids=positions_from_mask(attention_mask), use_cache=False).last_hidden_state
    return torch.take_along_dim(hidden, positions[..., None], dim=1)  # backward keeps no (B, L, H) copy


def completion_hidden(
    model: Any,
    prompt_ids: Sequence[Sequence[int]],
    completion_ids: Sequence[Sequence[int]],
    *,
    pad_id: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]:
    """The inputs of the LM head at the completion positions, for chunked full-vocabulary work.

    Returns ``(hidden (B, T, H), targets (B, T), mask (B, T), head)`` in the layout of
    :func:`sequence_logprobs` (left padding): ``head(hidden[i, j])`` are the logits that predict
    completion token ``j`` of row ``i`` (``targets[i, j]``). Raises ValueError for a model without a
    plain LM head (see :func:`split_lm_head`).
    """
    parts = split_lm_head(model)
    if parts is None:
        raise ValueError(f"{type(model).__name__}: no separable LM head (or its logits are post-processed)")
    body, head = parts
    device = next(model.parameters()).device
    comp_len = torch.tensor([len(c) for c in completion_ids], dtype=torch.long, device=device)
    width = int(comp_len.max())
    seqs = [list(p) + list(c) for p, c in zip(prompt_ids, completion_ids, strict=True)]
    input_ids, attention_mask = pad_sequences(seqs, pad_id, "left", device)
    length = input_ids.shape[1]
    j = torch.arange(width, device=device)[None, :]
    cols = (length - comp_len[:, None] + j).clamp(max=length - 1)
    hidden = _body_hidden(body, input_ids, attention_mask, cols - 1)
    return hidden, input_ids.gather(1, cols), j < comp_len[:, None], head


def _prefix_shared_logprobs(
    model: Any,
    seqs: Sequence[Sequence[int]],
    n_pre: int,
    targets: torch.Tensor,
    cols: torch.Tensor,
    pad_id: int,
    temperature: float,
    chunk: int | None,
) -> torch.Tensor:
    """sequence_logprobs' values (B, T) for left-padded ``seqs`` sharing their first ``n_pre`` tokens,
    with the prefix run once (in the graph when grad is on). ``cols`` are the completion columns in the
    full padded layout."""
    from transformers import DynamicCache

    device = targets.device
    batch = len(seqs)
    cache_kw = _cache_kwarg(model)
    cache = DynamicCache(config=model.config)
    model(input_ids=torch.tensor([list(seqs[0][:n_pre])], device=device), use_cache=True, logits_to_keep=1,
          **{cache_kw: cache})
    cache.batch_repeat_interleave(batch)
    # Layout per row: [prefix][pads][suffix]; the mask hides the pads and positions count real tokens.
    suffix_ids, suffix_mask = pad_sequences([list(x[n_pre:]) for x in seqs], pad_id, "left", device)  # (B, S)
    attention_mask = torch.cat([suffix_mask.new_ones(batch, n_pre), suffix_mask], 1)  # (B, P + S)
    position_ids = positions_from_mask(attention_mask)[:, n_pre:]
    # Left padding: the full row's width minus the suffix's is n_pre + (the same pads), so a column of
    # the full layout maps to the suffix layout by subtracting the constant difference.
    keep = cols - 1 - (cols.new_tensor(max(len(x) for x in seqs)) - suffix_ids.shape[1])  # (B, T)
    kwargs = {"attention_mask": attention_mask, "position_ids": position_ids, "use_cache": True, cache_kw: cache}
    if chunk is not None and (parts := split_lm_head(model)) is not None:
        body, head = parts
        hidden = body(input_ids=suffix_ids, **kwargs).last_hidden_state
        return head_logprobs(head, torch.take_along_dim(hidden, keep[..., None], dim=1), targets, chunk, temperature)
    logits = model(input_ids=suffix_ids, logits_to_keep=keep, **kwargs).logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    return logits.gather(-1, targets[..., None]).squeeze(-1) - logits.logsumexp(-1)


def _chunk_logprobs(head: Any, hidden: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    logits = head(hidden).float()  # (B, C, V)
    if temperature != 1.0:
        logits = logits / temperature
    # gather - logsumexp instead of log_softmax: avoids a second (B, C, V) tensor.
    return logits.gather(-1, targets[..., None]).squeeze(-1) - logits.logsumexp(-1)


def head_logprobs(
    head: Any, hidden: torch.Tensor, targets: torch.Tensor, chunk: int, temperature: float = 1.0
) -> torch.Tensor:
    """Log-probs (B, T) of ``targets`` under ``head(hidden)`` (B, T, H), ``chunk`` positions at a time.

    With grad, each chunk's projection + log-softmax runs under ``torch.utils.checkpoint``: the forward
    keeps only the chunk's hidden states, and backward recomputes its logits, so neither pass holds more
    than one (B, chunk, V) logits tensor (plus its gradient). The autocast state is replayed on recompute.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    from torch.utils.checkpoint import checkpoint

    grad = torch.is_grad_enabled() and (hidden.requires_grad or any(p.requires_grad for p in head.parameters()))
    pieces = []
    for lo in range(0, hidden.shape[1], chunk):
        h, t = hidden[:, lo : lo + chunk], targets[:, lo : lo + chunk]
        if grad:
            pieces.append(checkpoint(_chunk_logprobs, head, h, t, temperature, use_reentrant=False,
                                     preserve_rng_state=False))
        else:
            pieces.append(_chunk_logprobs(head, h, t, temperature))
    return torch.cat(pieces, 1) if len(pieces) > 1 else pieces[0]


def process_logits(
    logits: torch.Tensor, sampling: Sampling, allowed: torch.Tensor | None = None
) -> torch.Tensor:
    """The scores actually sampled from: constraint mask, then temperature, top-k, top-p (B, V).

    Same order as transformers (processors before warpers). Greedy (temperature 0) skips the warpers,
    so its recorded log-probs are those of the temperature-1 (constrained) distribution.
    """
    scores = logits.float()  # (B, V)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    if sampling.temperature == 0:
        return scores
    if sampling.temperature != 1.0:
        scores = scores / sampling.temperature
    if 0 < sampling.top_k < scores.shape[-1]:
        kth = scores.topk(sampling.top_k, dim=-1).values[:, -1:]  # (B, 1)
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if sampling.top_p < 1.0:
        sorted_scores, order = scores.sort(dim=-1, descending=True)  # (B, V)
        probs = sorted_scores.softmax(-1)
        # Drop a token when the mass strictly before it already reaches top_p (the top token always stays).
        drop_sorted = (probs.cumsum(-1) - probs) >= sampling.top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        scores = scores.masked_fill(drop, float("-inf"))
    return scores


def sample_categorical(logprobs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row from ``softmax(logprobs)`` (B, V) -> (B,), by inverting the CDF.

    ``torch.multinomial`` costs ~12 ms per 49k-token row on this CPU, as much as a forward pass of the
    135M model at batch 1; one cumsum and a binary search cost well under 1 ms. The CDF is summed in
    float64 so rounding cannot shift visible mass between neighbouring tokens. A zero-probability token
    can never be drawn: its CDF step is exactly zero, and the search returns the first index whose CDF
    exceeds the uniform draw.
    """
    cdf = logprobs.exp().cumsum(-1, dtype=torch.float64)  # (B, V)
    u = torch.rand((cdf.shape[0], 1), generator=generator, dtype=torch.float64, device=cdf.device)
    idx = torch.searchsorted(cdf, u * cdf[:, -1:], right=True)  # (B, 1)
    return idx.squeeze(-1).clamp_(max=cdf.shape[-1] - 1)


def finish(
    tokenizer: Any,
    token_ids: list[int],
    logprobs: list[float],
    eos_ids: set[int],
    stop: Sequence[str],
    prompt_tokens: int,
) -> Generation:
    """Cut a raw completion at its first EOS (kept) or first stop string, whichever comes first.

    A stop string cuts the text right after its first occurrence and keeps the token that completed it
    (so ``text`` is a prefix of ``decode(token_ids)``); later tokens are dropped. The EOS token stays in
    ``token_ids`` (learners must see the model choose to stop) but not in ``text``.
    """
    reason = "length"
    for n, tok in enumerate(token_ids):
        if tok in eos_ids:
            token_ids, logprobs, reason = token_ids[: n + 1], logprobs[: n + 1], "stop"
            break
    text = tokenizer.decode(token_ids, skip_special_tokens=True)
    end = _first_stop_end(text, stop)
    if end is not None:
        # Smallest prefix of tokens whose text already contains a stop string: binary search, since a
        # prefix that contains one keeps containing it.
        lo, hi = 1, len(token_ids)
        while lo < hi:
            mid = (lo + hi) // 2
            if _first_stop_end(tokenizer.decode(token_ids[:mid], skip_special_tokens=True), stop) is None:
                lo = mid + 1
            else:
                hi = mid
        token_ids, logprobs, text, reason = token_ids[:lo], logprobs[:lo], text[:end], "stop"
    return Generation(text=text, token_ids=token_ids, logprobs=logprobs, prompt_tokens=prompt_tokens,
                      finish_reason=reason)


def _first_stop_end(text: str, stop: Sequence[str]) -> int | None:
    """End offset of the stop string occurrence that completes first in ``text``, or None."""
    ends = [i + len(s) for s in stop if s and (i := text.find(s)) >= 0]
    return min(ends) if ends else None


@contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """Eval mode for the duration, then each module's own previous mode back.

    A learner's model may be in train mode; LoRA dropout would then perturb sampling and scoring.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _cache_kwarg(model: Any) -> str:
    """The forward kwarg that takes the KV cache: ``cache`` from transformers 5.2x, ``past_key_values`` before."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # unwrap PEFT
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


class HFPolicy(Policy):
    """A transformers causal LM.

    ``dtype`` is the weight dtype ("auto": bf16 where bf16 is native, else fp32); ``autocast`` runs
    the forward passes under bf16 autocast on top of it (None: only where bf16 is native). ``max_batch`` bounds the rows decoded together. ``model`` and ``tokenizer`` are
    public: learners train ``model`` in place and the policy samples from the updated weights.
    Counters ``tokens_generated`` and ``generate_seconds`` accumulate for throughput reports.
    """

    def __init__(
        self,
        model_path_or_name: str,
        device: str = "cpu",
        dtype: str = "auto",
        autocast: bool | None = None,
        max_batch: int = 32,
        name: str | None = None,
        cache_dir: str | None = None,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from agentsd.hardware import bf16_is_fast
        from agentsd.policy.embedded import resolve_model

        if dtype == "auto":  # bf16 weights only where bf16 is native; fp32 where it would be emulated
            dtype = "bfloat16" if bf16_is_fast(device) else "float32"
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES) + ['auto']}, not {dtype!r}")
        path = resolve_model(model_path_or_name, cache_dir)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=_DTYPES[dtype])
        self._setup(model.to(device).eval(), tokenizer, autocast, max_batch, name or model_path_or_name)

    @classmethod
    def from_model(
        cls, model: Any, tokenizer: Any, autocast: bool | None = None, max_batch: int = 32, name: str = "hf"
    ) -> HFPolicy:
        """Wrap an already built model (e.g. a learner's, possibly PEFT-wrapped) without copying it."""
        self = cls.__new__(cls)
        self._setup(model, tokenizer, autocast, max_batch, name)
        return self

    def _setup(self, model: Any, tokenizer: Any, autocast: bool | None, max_batch: int, name: str) -> None:
        from agentsd.hardware import bf16_is_fast

        self.model = model
        self.tokenizer = tokenizer
        # None = auto: bf16 autocast only where bf16 is native; emulated bf16 is far slower than fp32.
        self.autocast = bf16_is_fast(next(model.parameters()).device) if autocast is None else autocast
        self.max_batch = max_batch
        self.name = name
        self.tokens_generated = 0
        self.generate_seconds = 0.0
        eos: set[int] = set()
        for source in (getattr(model, "generation_config", None), tokenizer):
            ids = getattr(source, "eos_token_id", None)
            eos.update([ids] if isinstance(ids, int) else ids or [])
        self.eos_ids = eos
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(eos, default=0)
        self._cache_kw = _cache_kwarg(model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _autocast(self) -> Any:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast)

    def encode(self, messages: Conversation) -> list[int]:
        """Prompt token ids (with the assistant header) -- the same ids generation and scoring use."""
        return encode_chat(self.tokenizer, messages)

    # ---------------------------------------------------------------- generation

    def generate(self, batch: list[Conversation], sampling: Sampling | None = None) -> list[Generation]:
        """One completion per conversation, in order; rows are decoded in length-sorted chunks."""
        sampling = sampling or Sampling()
        prompts = [self.encode(m) for m in batch]
        gen = torch.Generator(device=self.device).manual_seed(sampling.seed) if sampling.seed is not None else None
        constraint = None
        if sampling.regex is not None or sampling.json_schema is not None:
            from agentsd.policy.constrained import build_constraint

            constraint = build_constraint(self.tokenizer, sampling, self.eos_ids, self._vocab_size())
        # Sorting by prompt length keeps padding (wasted compute) small within each chunk.
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[Generation | None] = [None] * len(prompts)
        start = time.perf_counter()
        with eval_mode(self.model):
            for lo in range(0, len(order), self.max_batch):
                rows = order[lo : lo + self.max_batch]
                chunk = self._generate_chunk([prompts[i] for i in rows], sampling, gen, constraint)
                for i, g in zip(rows, chunk, strict=True):
                    results[i] = g
        self.generate_seconds += time.perf_counter() - start
        self.tokens_generated += sum(len(g.token_ids) for g in results if g is not None)
        return [g for g in results if g is not None]

    def _vocab_size(self) -> int:
        return int(self.model.get_output_embeddings().weight.shape[0])

    # no_grad, not inference_mode: autocast caches the bf16 copy of each fp32 weight for the whole
    # context only outside inference mode (pytorch#165068); under inference_mode it re-casts every
    # weight at every step, which halved decoding speed with fp32 weights here.
    @torch.no_grad()
    def _generate_chunk(
        self, prompts: list[list[int]], sampling: Sampling, gen: torch.Generator | None, constraint: Any
    ) -> list[Generation]:
        from transformers import DynamicCache

        device, steps = self.device, sampling.max_new_tokens
        cache = DynamicCache(config=self.model.config)
        # Rows usually share a long prefix (the system prompt): run it once at batch 1 and copy its KV
        # cache to every row, so only the differing suffixes are processed per row. Layout per row:
        # [prefix][pads][suffix]; the mask hides the pads and positions count real tokens only.
        # Only without autocast: there it matches the unshared pass to ~1e-5 in log-prob (tested). Under
        # bf16 autocast the batch-1 prefix pass rounds differently and flipped a greedy answer of the
        # real model in our tests; not investigated further, so that path keeps the plain prefill.
        n_pre = shared_prefix_len(prompts) if len(prompts) > 1 and not self.autocast else 0
        if n_pre < MIN_SHARED_PREFIX:
            n_pre = 0
        if n_pre:
            pre = torch.tensor([prompts[0][:n_pre]], device=device)  # (1, P)
            with self._autocast():
                self.model(input_ids=pre, use_cache=True, logits_to_keep=1, **{self._cache_kw: cache})
            cache.batch_repeat_interleave(len(prompts))
        input_ids, attention_mask = pad_sequences([p[n_pre:] for p in prompts], self.pad_id, "left", device)
        attention_mask = torch.cat([attention_mask.new_ones(len(prompts), n_pre), attention_mask], 1)  # (B, P+L)
        position_ids = positions_from_mask(attention_mask)[:, n_pre:]  # (B, L)
        eos = torch.tensor(sorted(self.eos_ids), dtype=torch.long, device=device)
        out_ids: list[list[int]] = [[] for _ in prompts]
        out_lps: list[list[float]] = [[] for _ in prompts]
        active = list(range(len(prompts)))  # original row of each row still in the batch
        stop_window = max((len(s) for s in sampling.stop), default=0) + 4  # tokens; >= 1 char each, mostly
        with self._autocast():
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                use_cache=True, logits_to_keep=1, **{self._cache_kw: cache}).logits[:, -1]  # (b, V)
            for step in range(steps):
                allowed = None
                if constraint is not None:
                    allowed = constraint.allowed([prompts[r] + out_ids[r] for r in active], device)  # (b, V)
                scores = process_logits(logits, sampling, allowed)  # (b, V)
                lse = scores.logsumexp(-1, keepdim=True)  # (b, 1)
                if sampling.temperature == 0:
                    nxt = scores.argmax(-1)  # (b,)
                else:
                    nxt = sample_categorical(scores - lse, gen)  # (b,)
                lp = (scores.gather(-1, nxt[:, None]) - lse).squeeze(-1)  # (b,) behaviour log-prob
                finished = torch.isin(nxt, eos).tolist()
                for k, (r, t, v) in enumerate(zip(active, nxt.tolist(), lp.tolist(), strict=True)):
                    out_ids[r].append(t)
                    out_lps[r].append(v)
                    if sampling.stop and not finished[k]:
                        # Only the tail can hold a stop string completed by this token; finish() makes the
                        # exact cut, so a miss here only costs extra decoding steps, never correctness.
                        tail = self.tokenizer.decode(out_ids[r][-stop_window:], skip_special_tokens=True)
                        finished[k] = _first_stop_end(tail, sampling.stop) is not None
                if step == steps - 1 or all(finished):
                    break
                if any(finished):  # drop finished rows so they cost nothing from here on
                    keep = torch.tensor([k for k, f in enumerate(finished) if not f], device=device)  # (b',)
                    cache.batch_select_indices(keep)
                    attention_mask, position_ids, nxt = attention_mask[keep], position_ids[keep], nxt[keep]
                    active = [active[k] for k in keep.tolist()]
                attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(active), 1)], dim=1)
                position_ids = position_ids[:, -1:] + 1  # (b, 1)
                logits = self.model(input_ids=nxt[:, None], attention_mask=attention_mask,
                                    position_ids=position_ids, use_cache=True, **{self._cache_kw: cache}).logits[:, -1]
        return [finish(self.tokenizer, ids, lps, self.eos_ids, sampling.stop, len(p))
                for ids, lps, p in zip(out_ids, out_lps, prompts, strict=True)]

    # ---------------------------------------------------------------- scoring

    def score(self, prompts: list[Conversation], completions: list[list[int]]) -> list[list[float]]:
        """Per-token log-probs (temperature 1) of each completion's ids given its prompt, batched."""
        encoded = [self.encode(m) for m in prompts]
        result: list[list[float]] = []
        with torch.no_grad(), self._autocast(), eval_mode(self.model):  # no_grad: see _generate_chunk
            for lo in range(0, len(encoded), self.max_batch):
                hi = lo + self.max_batch
                lps, mask = sequence_logprobs(self.model, encoded[lo:hi], completions[lo:hi], pad_id=self.pad_id)
                for row, n in zip(lps.tolist(), mask.sum(-1).tolist(), strict=True):
                    result.append(row[:n])
        return result

    def throughput(self) -> float:
        """Generated tokens per second over this policy's lifetime."""
        return self.tokens_generated / self.generate_seconds if self.generate_seconds else 0.0

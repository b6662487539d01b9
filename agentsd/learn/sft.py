"""Supervised warm-start: fine-tune a causal LM on (prompt messages, response) demonstrations.

    result = sft(policy.model, policy.tokenizer, examples_from_trajectories(oracle_trajs), SFTConfig())

Used to teach a small model the action format from oracle demonstrations before on-policy learning.
Prompts go through :func:`~agentsd.policy.chat.encode_chat`, the same function rollouts use, so the
model is trained on exactly the prompt tokens it will later act under. The loss covers only the
response tokens and a closing EOS (so the model learns to stop), and is normalized by the number of
target tokens across the whole accumulated batch, so gradient accumulation changes nothing but memory.

LoRA (default) trains adapters and, with ``merge=True``, folds them back into the base weights in
place: the caller's model object ends up a plain model again, as fast to generate with as before.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from agentsd.policy.chat import encode_chat
from agentsd.trajectory import Trajectory

if TYPE_CHECKING:
    import torch

Example = tuple[list[dict[str, str]], str]  # (prompt messages, response text)
IGNORE = -100  # label value cross-entropy skips

LLAMA_PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class SFTConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lora: bool = True
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: list(LLAMA_PROJ))
    lr: float = Field(2e-4, gt=0.0)
    epochs: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1)  # a cap on optimizer steps
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_len: int = Field(1024, ge=2)  # longer examples are skipped, never truncated (see `sft`)
    weight_decay: float = Field(0.0, ge=0.0)
    warmup_ratio: float = Field(0.05, ge=0.0, le=1.0)
    max_grad_norm: float | None = Field(1.0, gt=0.0)
    #: run the prompt prefix a micro-batch's rows share (system message, rules, task line) once, with
    #: gradient, instead of once per row (same loss and gradient up to float rounding; not under bf16
    #: autocast, where the batch-1 prefix pass rounds differently)
    share_prefix: bool = True
    #: bf16 autocast; None = where the hardware runs bf16 natively (CUDA, or a CPU with AVX512-BF16
    #: or AMX). Without it CPU bf16 is emulated and many times slower than fp32.
    bf16_autocast: bool | None = None
    seed: int = 0
    merge: bool = True


@dataclass
class SFTResult:
    model: Any  # the trained model: the caller's (merged or full) model, or a PeftModel if merge=False
    losses: list[float] = field(default_factory=list)  # mean target-token loss per optimizer step
    tokens: int = 0  # target tokens trained on (response + EOS), summed over steps
    seconds: float = 0.0
    steps: int = 0
    skipped: int = 0  # examples longer than max_len

    @property
    def final_loss(self) -> float:
        return self.losses[-1] if self.losses else float("nan")


def examples_from_trajectories(trajs: Sequence[Trajectory]) -> list[Example]:
    """One example per turn: the prompt messages the policy saw and the response it gave."""
    return [(list(t.messages), t.response) for tr in trajs for t in tr.turns]


def tokenize_example(tokenizer: Any, messages: list[dict[str, str]], response: str) -> tuple[list[int], int]:
    """(prompt + response + EOS ids, prompt length). The response is tokenized on its own, as the
    model generates it after the assistant header."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos_token_id; SFT needs one so the model learns to stop")
    prompt = encode_chat(tokenizer, messages)
    completion = list(tokenizer(response, add_special_tokens=False)["input_ids"]) + [eos]
    return prompt + completion, len(prompt)


def collate(rows: Sequence[tuple[list[int], int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch. Labels are set from each row's prompt length and length, never from the
    pad id: with SmolLM2 pad == EOS, and EOS is a real target."""
    import torch

    T = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), T), pad_id, dtype=torch.long)  # (B, T)
    attention = torch.zeros((len(rows), T), dtype=torch.long)  # (B, T)
    labels = torch.full((len(rows), T), IGNORE, dtype=torch.long)  # (B, T)
    for i, (ids, n_prompt) in enumerate(rows):
        n = len(ids)
        input_ids[i, :n] = torch.tensor(ids)
        attention[i, :n] = 1
        labels[i, n_prompt:n] = input_ids[i, n_prompt:n]
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def _token_loss_sum(model: Any, batch: dict[str, torch.Tensor], bf16: bool) -> tuple[torch.Tensor, int]:
    """Sum of target-token cross-entropies in ``batch`` and the number of target tokens."""
    import torch
    import torch.nn.functional as F

    device = next(model.parameters()).device
    ids = batch["input_ids"].to(device)
    labels = batch["labels"].to(device)
    T = ids.shape[1]
    # Logits only from the first position that predicts a target: prompts are long and the vocab is
    # big, so the (B, T, V) logits over whole prompts would dominate memory.
    first = int((labels != IGNORE).float().argmax(dim=1).min())
    start = max(first, 1)
    keep = T - start + 1
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
        out = model(
            input_ids=ids,
            attention_mask=batch["attention_mask"].to(device),
            use_cache=False,
            logits_to_keep=keep,
        )
    logits = out.logits[:, :-1].float()  # (B, keep-1, V): positions start-1 .. T-2
    targets = labels[:, start:]  # (B, keep-1): tokens start .. T-1
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE, reduction="sum")
    return loss, int((targets != IGNORE).sum())


def _shared_prefix_loss_sum(model: Any, batch: dict[str, torch.Tensor], bf16: bool) -> tuple[torch.Tensor, int]:
    """:func:`_token_loss_sum` through :func:`~agentsd.policy.hf.sequence_logprobs` with
    ``share_prefix``: the prompt prefix the rows share runs once, the rest per row."""
    from agentsd.policy.hf import sequence_logprobs

    prompts, completions = [], []
    for ids, att, lab in zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist(),
                             batch["labels"].tolist(), strict=True):
        n = sum(att)
        p = next((j for j in range(n) if lab[j] != IGNORE), n)
        prompts.append(ids[:max(p, 1)])
        completions.append(ids[max(p, 1):n])
    device = next(model.parameters()).device
    with _autocast(device, bf16):
        lp, mask = sequence_logprobs(model, prompts, completions, pad_id=0, share_prefix=True)
    return -(lp.float() * mask).sum(), int(mask.sum())


def _autocast(device: Any, enabled: bool) -> Any:
    import torch

    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def accumulate_grads(
    model: Any, batches: Sequence[dict[str, torch.Tensor]], bf16: bool = False, share_prefix: bool = False
) -> tuple[float, int]:
    """Backward over micro-batches, each token's loss weighted 1 / (target tokens in all of them),
    so the summed gradient equals that of one big batch. Returns (mean token loss, target tokens).
    ``share_prefix``: each micro-batch's common prompt prefix runs once (see :class:`SFTConfig`)."""
    total = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in batches)
    if total == 0:
        return 0.0, 0
    loss_sum = 0.0
    shared = share_prefix and not bf16
    for b in batches:
        loss, _ = (_shared_prefix_loss_sum if shared else _token_loss_sum)(model, b, bf16)
        (loss / total).backward()
        loss_sum += float(loss.detach())
    return loss_sum / total, total


def _wrap_lora(model: Any, cfg: SFTConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    lcfg = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        # peft 0.21 reads transformers' deprecated `is_gradient_checkpointing`: noise for our users.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        return get_peft_model(model, lcfg)


def _param_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    """The trainable parameters in AdamW groups: no weight decay on norms and biases (1-D tensors),
    decaying them only hurts."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def _optimizer(model: Any, cfg: SFTConfig) -> torch.optim.Optimizer:
    import torch

    return torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr)


def _use_bf16(flag: bool | None, device: torch.device) -> bool:
    from agentsd.hardware import bf16_is_fast

    return bf16_is_fast(device) if flag is None else flag


def _schedule(step: int, total: int, warmup: int) -> float:
    """Linear warmup then linear decay; never zero on a step that is taken."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return max(0.0, (total - step) / max(1, total - warmup))


def sft(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    cfg: SFTConfig | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    on_epoch: Callable[[int], None] | None = None,
) -> SFTResult:
    """Fine-tune ``model`` on ``examples`` (full, or LoRA merged back in place); leaves it in eval mode.

    ``on_epoch(k)`` runs after each full pass over the examples (k = 1, 2, ...), with the model in eval
    mode and its adapters active (LoRA layers sit inside ``model``'s own modules), e.g. to measure it.

    Examples whose prompt + response exceed ``cfg.max_len`` are skipped (counted in the result):
    cutting the prompt would train on a prompt the policy never sees.
    """
    import torch

    cfg = cfg or SFTConfig()
    t0 = time.perf_counter()
    rows = [tokenize_example(tokenizer, m, r) for m, r in examples]
    kept = [r for r in rows if len(r[0]) <= cfg.max_len]
    if not kept:
        raise ValueError(
            f"no examples to train on ({len(rows)} given, all longer than max_len={cfg.max_len})"
        )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    n_batches = math.ceil(len(kept) / cfg.batch_size)
    per_epoch = math.ceil(n_batches / cfg.grad_accum)
    total = per_epoch * cfg.epochs if cfg.max_steps is None else min(per_epoch * cfg.epochs, cfg.max_steps)
    result = SFTResult(model=model, skipped=len(rows) - len(kept))

    device = next(model.parameters()).device
    bf16 = _use_bf16(cfg.bf16_autocast, device)
    grad_state = {n: p.requires_grad for n, p in model.named_parameters()}
    # Seeded locally: LoRA init and dropout draw from torch's global RNG, restored on exit.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        net = _wrap_lora(model, cfg) if cfg.lora else model
        opt = _optimizer(net, cfg)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: _schedule(s, total, int(cfg.warmup_ratio * total))
        )
        net.train()
        step = epoch = 0
        while step < total:
            order = torch.randperm(len(kept), generator=gen).tolist()
            batches = [
                collate([kept[i] for i in order[j : j + cfg.batch_size]], pad_id)
                for j in range(0, len(order), cfg.batch_size)
            ]
            for k in range(0, len(batches), cfg.grad_accum):
                if step >= total:
                    break
                loss, n_tok = accumulate_grads(net, batches[k : k + cfg.grad_accum], bf16, cfg.share_prefix)
                if cfg.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(
                        [p for p in net.parameters() if p.requires_grad], cfg.max_grad_norm
                    )
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                result.losses.append(loss)
                result.tokens += n_tok
                if progress is not None:
                    progress(step, total, loss)
            epoch += 1
            if on_epoch is not None:
                net.eval()
                on_epoch(epoch)
                net.train()
        net.eval()

    if cfg.lora and cfg.merge:
        net = net.merge_and_unload()  # the caller's model, its Linear layers restored with merged weights
        for n, p in net.named_parameters():  # peft froze the base weights; give them back as they were
            p.requires_grad_(grad_state.get(n, p.requires_grad))
    net.eval()
    result.model = net
    result.steps = step
    result.seconds = time.perf_counter() - t0
    return result

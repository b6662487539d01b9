"""Losses for on-policy learning: pure torch functions over per-token tensors (no models, no I/O).

    sdl, sd_stats = skill_sd_loss(student_logp, teacher_logp, old_logp, mask, normalizer=n_tokens)
    pg, pg_stats = grpo_loss(logp, old_logp, grpo_advantages(rewards, group_ids), mask, normalizer=n_tokens)
    loss = combined_loss(pg, sdl, lam=0.001)

Shapes: per-token tensors are (B, T) (the log-prob of each sampled response token), full-vocabulary
ones (B, T, V) log-probs (``log_softmax`` of the logits). ``mask`` (B, T) marks the real (response)
tokens: any nonzero value counts as real, the values are not weights. Values at masked positions are
never read (they may hold padding garbage, even inf or nan); fully masked rows and all-masked batches
give a finite loss (0 for an all-masked batch) with a gradient path and zero gradients.

Losses
------
Every loss is a token mean: the sum of a per-token term x over real tokens divided by the number of
real tokens, or by ``normalizer`` when given. Pass the number of real tokens in *all* micro-batches of
an accumulated batch as ``normalizer`` and the summed micro-batch gradients equal those of one big
batch (the convention of :func:`agentsd.learn.sft.accumulate_grads`). ``sg`` is stop-gradient.

- Skill-SD (:func:`skill_sd_loss`), per sampled token y ~ π_old:
  ℓ = log π_θ(y) − sg(log π_teacher(y)),  k3 = e^{−ℓ} − 1 + ℓ,  ρ = π_θ(y) / sg(π_old(y)),  x = ρ · k3.
  E_{y~π_old}[ρ · k3] = KL(π_θ ‖ π_teacher) *as a function of θ*, so the gradient of the sampled loss
  is an unbiased estimate of the reverse-KL gradient, on-policy (ρ = 1 in value, but its gradient
  ∇log π_θ carries the score-function term) and on stale rollouts alike. Without the gradient
  through ρ the estimator would follow the *forward* KL instead.
- Full vocabulary (:func:`reverse_kl_full`): x = Σ_v π_θ(v) (log π_θ(v) − log π_t(v)).
- Top-k (:func:`reverse_kl_topk`): the same sum over the student's k most likely tokens plus one tail
  bucket holding the rest of each distribution's mass, log(1 − Σ_topk π), computed as a logsumexp over
  the other V − k tokens (no cancellation when the top k hold nearly all the mass). k ≥ V is exact.
- Generalized JSD (:func:`generalized_jsd`), m = β π_t + (1 − β) π_θ:
  x = β KL(π_t ‖ m) + (1 − β) KL(π_θ ‖ m). At the ends it vanishes, so β = 0 and β = 1 return its
  limits JSD_β / β → KL(π_t ‖ π_θ) (forward KL) and JSD_β / (1 − β) → KL(π_θ ‖ π_t) (reverse KL).
- GRPO (:func:`grpo_loss`), r = π_θ / sg(π_old), per-sequence advantage A (:func:`grpo_advantages`):
  x = −min(r A, clip(r, 1 − ε_low, 1 + ε_high) A) + c_KL · (e^{log π_ref − log π_θ} − 1 − (log π_ref − log π_θ)).
- Total (:func:`combined_loss`): GRPO + λ · SDL, λ = 0.001 by default (0.01 was unstable in Skill-SD).
- PACED (:func:`paced_weights`): w(p) = p^α (1 − p)^β / max_p, peaking at 1 for p = α / (α + β).

The teacher is always a target: its log-probs are detached in every loss.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import torch

Normalizer = float | int | torch.Tensor | None  # see the module docstring
Stats = dict[str, float]

#: Floor for full-vocabulary log-probs: -inf (a masked-out vocabulary entry) would turn 0 · (−inf) into
#: nan; e^{-1e4} is 0 in every float type, so the floor changes no value and no gradient.
LOGP_FLOOR = -1e4


def _work(x: torch.Tensor) -> torch.Tensor:
    """Half-precision inputs are computed in float32 (exp and sums in bf16 lose too much)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _real(mask: torch.Tensor, shape: torch.Size, what: str) -> torch.Tensor:
    if mask.shape != shape:
        raise ValueError(f"mask has shape {tuple(mask.shape)}, {what} needs {tuple(shape)}")
    return mask != 0


def _check(name: str, x: torch.Tensor, shape: torch.Size) -> None:
    if x.shape != shape:
        raise ValueError(f"{name} has shape {tuple(x.shape)}, expected {tuple(shape)}")


def _clean(x: torch.Tensor, real: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """``x`` at real tokens, ``fill`` elsewhere; masked inputs get no gradient and can't leak nan/inf."""
    while real.dim() < x.dim():
        real = real.unsqueeze(-1)
    return torch.where(real, _work(x), torch.full((), fill, dtype=_work(x).dtype, device=x.device))


def _token_mean(x: torch.Tensor, real: torch.Tensor, normalizer: Normalizer) -> torch.Tensor:
    """Σ_real x / (real tokens here, or ``normalizer``); 0 with a gradient path when nothing is real."""
    total = torch.where(real, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum()
    if normalizer is None:
        denom = real.sum().clamp(min=1).to(x.dtype)
    else:
        denom = torch.as_tensor(normalizer, dtype=x.dtype, device=x.device).detach()
        if denom.numel() != 1 or bool(denom < 0):
            raise ValueError(f"normalizer must be a non-negative scalar, got {normalizer!r}")
        denom = denom.reshape(())
        if bool(denom == 0):  # no real tokens anywhere: the sum is 0 too
            denom = torch.ones_like(denom)
    return total / denom


def _token_weights(w: torch.Tensor | None, real: torch.Tensor, shape: torch.Size) -> torch.Tensor | float:
    """Per-token weights at real tokens (detached; 0 elsewhere), or the scalar 1 without them."""
    if w is None:
        return 1.0
    _check("token_weights", w, shape)
    return _clean(w, real).detach()


def _mean(x: torch.Tensor, real: torch.Tensor) -> float:
    n = int(real.sum())
    return float(x.detach()[real].sum() / n) if n else 0.0


def _max(x: torch.Tensor, real: torch.Tensor) -> float:
    return float(x.detach()[real].max()) if bool(real.any()) else 0.0


def skill_sd_loss(
    student_logp: torch.Tensor,
    teacher_logp: torch.Tensor,
    old_logp: torch.Tensor,
    mask: torch.Tensor,
    *,
    rho_clip: float | None = None,
    normalizer: Normalizer = None,
    token_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Stats]:
    """Importance-weighted k3 reverse-KL estimator on sampled tokens: token mean of ρ · (e^{−ℓ} − 1 + ℓ).

    All inputs (B, T): the log-prob of each sampled token under the student being trained (with grad),
    the teacher (detached here), and the policy that sampled it (detached here; pass the student's own
    detached log-probs for on-policy data).

    ``rho_clip``: truncate ρ at this value (truncated importance sampling). A clipped token keeps the
    *value* c and the gradient c · ∇log π_θ through ρ, via ρ · sg(min(ρ, c) / ρ): its gradient is the
    on-policy per-token gradient c · (k3 ∇log π_θ + ∇k3), scaled by c instead of ρ. A hard clamp would
    instead zero the ∇ρ term and leave c · ∇k3, whose expectation points along the forward KL, not
    the reverse KL. Truncation trades a bias on very stale tokens for bounded variance.

    ``token_weights`` (B, T), detached here: a per-token factor on the term (the learner's truncated
    importance weights for the rollout/learner mismatch); None = 1.

    Stats: mean ℓ (``logratio``), mean k3 (``k3``, the reverse-KL estimate without ρ), ``rho_mean``,
    ``rho_max`` (before clipping), ``rho_clip_frac``, ``tokens`` — over this call's real tokens.
    """
    if rho_clip is not None and not rho_clip > 0:
        raise ValueError(f"rho_clip must be positive, got {rho_clip}")
    shape = student_logp.shape
    _check("teacher_logp", teacher_logp, shape)
    _check("old_logp", old_logp, shape)
    real = _real(mask, shape, "skill_sd_loss")
    w = _token_weights(token_weights, real, shape)
    s = _clean(student_logp, real)
    t = _clean(teacher_logp, real).detach()
    old = _clean(old_logp, real).detach()

    ell = s - t
    k3 = torch.exp(-ell) - 1 + ell
    rho = torch.exp(s - old)
    weight = rho
    if rho_clip is not None:
        weight = rho * (rho.clamp(max=rho_clip) / rho).detach()
    loss = _token_mean(weight * k3 * w, real, normalizer)

    stats = {
        "logratio": _mean(ell, real),
        "k3": _mean(k3, real),
        "rho_mean": _mean(rho, real),
        "rho_max": _max(rho, real),
        "rho_clip_frac": _mean((rho > rho_clip).to(rho.dtype), real) if rho_clip is not None else 0.0,
        "tokens": float(real.sum()),
    }
    return loss, stats


def _vocab_inputs(
    student_logp_v: torch.Tensor, teacher_logp_v: torch.Tensor, mask: torch.Tensor, what: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(student, detached teacher, real): masked positions become uniform in both (divergence 0)."""
    if student_logp_v.dim() != 3:
        raise ValueError(f"{what} needs (B, T, V) log-probs, got shape {tuple(student_logp_v.shape)}")
    _check("teacher_logp_v", teacher_logp_v, student_logp_v.shape)
    real = _real(mask, student_logp_v.shape[:2], what)
    uniform = -math.log(student_logp_v.shape[-1])
    s = _clean(student_logp_v, real, uniform).clamp(min=LOGP_FLOOR)
    t = _clean(teacher_logp_v, real, uniform).clamp(min=LOGP_FLOOR).detach()
    return s, t, real


def _kl_terms(p_logp: torch.Tensor, q_logp: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) over the last axis, from log-probs."""
    return (p_logp.exp() * (p_logp - q_logp)).sum(-1)


def reverse_kl_full(
    student_logp_v: torch.Tensor,
    teacher_logp_v: torch.Tensor,
    mask: torch.Tensor,
    *,
    normalizer: Normalizer = None,
) -> tuple[torch.Tensor, Stats]:
    """Token mean of the exact KL(π_student ‖ π_teacher) over the whole vocabulary ((B, T, V) log-probs)."""
    s, t, real = _vocab_inputs(student_logp_v, teacher_logp_v, mask, "reverse_kl_full")
    kl = _kl_terms(s, t)
    return _token_mean(kl, real, normalizer), {"kl": _mean(kl, real), "tokens": float(real.sum())}


def reverse_kl_topk(
    student_logp_v: torch.Tensor,
    teacher_logp_v: torch.Tensor,
    mask: torch.Tensor,
    k: int,
    *,
    normalizer: Normalizer = None,
) -> tuple[torch.Tensor, Stats]:
    """Reverse KL over the student's top-k tokens plus one tail bucket with the rest of each
    distribution's mass: a (k+1)-way KL that is ≤ the full KL and equals it for k ≥ V.

    The tail log-mass log(1 − Σ_topk π) is the logsumexp over the V − k other tokens: exact, with no
    cancellation when the top k hold nearly all the mass. The top-k selection carries no gradient.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    s, t, real = _vocab_inputs(student_logp_v, teacher_logp_v, mask, "reverse_kl_topk")
    V = s.shape[-1]
    if k >= V:
        kl = _kl_terms(s, t)
    else:
        idx = s.detach().topk(k, dim=-1).indices  # (B, T, k)
        s_top, t_top = s.gather(-1, idx), t.gather(-1, idx)
        top = torch.zeros_like(s, dtype=torch.bool).scatter_(-1, idx, True)
        neg_inf = torch.full((), -math.inf, dtype=s.dtype, device=s.device)
        # At least one other token exists (k < V) and the floor keeps every entry finite, so the
        # logsumexp and its gradient are finite.
        s_tail = torch.where(top, neg_inf, s).logsumexp(-1, keepdim=True)
        t_tail = torch.where(top, neg_inf, t).logsumexp(-1, keepdim=True)
        kl = _kl_terms(torch.cat([s_top, s_tail], -1), torch.cat([t_top, t_tail], -1))
    return _token_mean(kl, real, normalizer), {"kl": _mean(kl, real), "tokens": float(real.sum())}


def generalized_jsd(
    student_logp_v: torch.Tensor,
    teacher_logp_v: torch.Tensor,
    mask: torch.Tensor,
    beta: float = 0.5,
    *,
    normalizer: Normalizer = None,
) -> tuple[torch.Tensor, Stats]:
    """Token mean of JSD_β = β KL(π_t ‖ m) + (1 − β) KL(π_s ‖ m), m = β π_t + (1 − β) π_s (as in GKD).

    JSD_β → 0 at both ends, so the ends return its normalized limits instead: β = 0 gives the forward
    KL(π_t ‖ π_s) (= lim JSD_β / β), β = 1 the reverse KL(π_s ‖ π_t) (= lim JSD_β / (1 − β)). β = 0.5
    is the usual (symmetric) Jensen–Shannon divergence, bounded by log 2.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    s, t, real = _vocab_inputs(student_logp_v, teacher_logp_v, mask, "generalized_jsd")
    if beta == 0.0:
        div = _kl_terms(t, s)
    elif beta == 1.0:
        div = _kl_terms(s, t)
    else:
        log_m = torch.logaddexp(t + math.log(beta), s + math.log1p(-beta))
        div = beta * _kl_terms(t, log_m) + (1 - beta) * _kl_terms(s, log_m)
    return _token_mean(div, real, normalizer), {"jsd": _mean(div, real), "tokens": float(real.sum())}


def grpo_advantages(
    rewards: torch.Tensor | Sequence[float],
    group_ids: torch.Tensor | Sequence[Hashable],
    *,
    scale: bool = True,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Group-relative advantages (N,): reward minus its group's mean, divided by the group's
    (unbiased) standard deviation + ``eps`` when ``scale``. Groups of one, and groups whose rewards are
    all equal, get 0. ``group_ids`` can be any hashables (task ids, seeds) or an integer tensor."""
    r = torch.as_tensor(rewards)
    r = _work(r) if r.is_floating_point() else r.double()
    if r.dim() != 1:
        raise ValueError(f"rewards must be 1-D, got shape {tuple(r.shape)}")
    if isinstance(group_ids, torch.Tensor):
        if group_ids.shape != r.shape:
            raise ValueError(f"group_ids has shape {tuple(group_ids.shape)}, rewards {tuple(r.shape)}")
        inverse = torch.unique(group_ids, return_inverse=True)[1].to(r.device)
    else:
        ids = list(group_ids)
        if len(ids) != len(r):
            raise ValueError(f"{len(ids)} group ids for {len(r)} rewards")
        index: dict[Hashable, int] = {}
        inverse = torch.tensor(
            [index.setdefault(g, len(index)) for g in ids], dtype=torch.long, device=r.device
        )
    G = int(inverse.max()) + 1 if len(r) else 0
    count = torch.zeros(G, dtype=r.dtype, device=r.device).index_add_(0, inverse, torch.ones_like(r))
    mean = torch.zeros(G, dtype=r.dtype, device=r.device).index_add_(0, inverse, r) / count
    centered = r - mean[inverse]
    n = count[inverse]
    if scale:
        sq = torch.zeros(G, dtype=r.dtype, device=r.device).index_add_(0, inverse, centered**2)
        std = (sq / (count - 1).clamp(min=1)).sqrt()
        centered = centered / (std[inverse] + eps)
    return torch.where(n > 1, centered, torch.zeros_like(centered))


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    ref_logp: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    normalizer: Normalizer = None,
    token_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Stats]:
    """PPO-clipped policy gradient with clip-higher (ε_low ≠ ε_high), token-mean normalized.

    ``logp``/``old_logp`` (B, T): sampled tokens under the policy being trained and the one that
    sampled them (detached here). ``advantages``: (B,) per sequence, broadcast over its tokens, or
    (B, T). With ``ref_logp`` and ``kl_coef`` > 0 adds c · k3(π_θ ‖ π_ref) per token, the DeepSeekMath
    GRPO form (no importance weight on the KL term). ``token_weights`` (B, T), detached here: a
    per-token factor on the policy-gradient term only (truncated importance sampling of the
    rollout/learner mismatch; the KL term is no estimate over the rollout's samples); None = 1.

    Stats: ``clip_frac`` (tokens whose clipped branch is active, i.e. with zero policy gradient),
    split into ``clip_high_frac`` (r > 1 + ε_high, A > 0) and ``clip_low_frac`` (r < 1 − ε_low, A < 0);
    ``ratio_mean``, ``ratio_max``, ``kl`` (mean k3 to the reference; 0 without one), ``tokens``.
    """
    if not (0 <= eps_low < 1 and eps_high >= 0):
        raise ValueError(f"need 0 <= eps_low < 1 and eps_high >= 0, got {eps_low}, {eps_high}")
    if kl_coef and ref_logp is None:
        raise ValueError("kl_coef > 0 needs ref_logp")
    shape = logp.shape
    _check("old_logp", old_logp, shape)
    real = _real(mask, shape, "grpo_loss")
    if advantages.dim() == 1:
        if advantages.shape[0] != shape[0]:
            raise ValueError(f"{advantages.shape[0]} advantages for {shape[0]} sequences")
        advantages = advantages.unsqueeze(-1).expand(shape)
    _check("advantages", advantages, shape)
    lp = _clean(logp, real)
    old = _clean(old_logp, real).detach()
    adv = _clean(advantages, real).detach()
    w = _token_weights(token_weights, real, shape)

    ratio = torch.exp(lp - old)
    clipped = ratio.clamp(1 - eps_low, 1 + eps_high)
    per_token = -torch.minimum(ratio * adv, clipped * adv) * w
    kl = torch.zeros_like(per_token)
    if ref_logp is not None:
        _check("ref_logp", ref_logp, shape)
        d = _clean(ref_logp, real).detach() - lp
        kl = torch.exp(d) - 1 - d
        if kl_coef:
            per_token = per_token + kl_coef * kl
    loss = _token_mean(per_token, real, normalizer)

    with torch.no_grad():
        high = (ratio > 1 + eps_high) & (adv > 0)
        low = (ratio < 1 - eps_low) & (adv < 0)
    stats = {
        "clip_frac": _mean((high | low).to(ratio.dtype), real),
        "clip_high_frac": _mean(high.to(ratio.dtype), real),
        "clip_low_frac": _mean(low.to(ratio.dtype), real),
        "ratio_mean": _mean(ratio, real),
        "ratio_max": _max(ratio, real),
        "kl": _mean(kl, real),
        "tokens": float(real.sum()),
    }
    return loss, stats


def combined_loss(grpo: torch.Tensor, sdl: torch.Tensor, lam: float = 0.001) -> torch.Tensor:
    """GRPO + λ · SDL. λ = 0.001 is the value Skill-SD found best; 0.01 was unstable."""
    return grpo + lam * sdl


def paced_weights(pass_rate: torch.Tensor | float, alpha: float = 1.0, beta: float = 1.0) -> torch.Tensor:
    """PACED weights w(p) = p^α (1 − p)^β for groups with pass rate p ∈ [0, 1], divided by the maximum
    over p (reached at p* = α / (α + β)) so the largest possible weight is 1: groups the policy always
    or never solves get 0 (for α, β > 0), the ones it solves a fraction p* of the time get 1. Computed
    in log space with 0 · log 0 = 0, so α = 0 or β = 0 give (1 − p)^β or p^α; α = β = 0 gives all ones.
    """
    if alpha < 0 or beta < 0:
        raise ValueError(f"alpha and beta must be >= 0, got {alpha}, {beta}")
    p = torch.as_tensor(pass_rate)
    p = _work(p) if p.is_floating_point() else p.double()
    if bool(((p < 0) | (p > 1) | p.isnan()).any()):
        raise ValueError("pass rates must lie in [0, 1]")
    if alpha + beta == 0:
        return torch.ones_like(p)
    a, b, star = (
        torch.tensor(v, dtype=p.dtype, device=p.device) for v in (alpha, beta, alpha / (alpha + beta))
    )
    log_peak = torch.xlogy(a, star) + torch.xlogy(b, 1 - star)
    return torch.exp(torch.xlogy(a, p) + torch.xlogy(b, 1 - p) - log_peak)

"""Losses as pure functions: zero at identity, the sampled Skill-SD gradient is the reverse-KL gradient
(on-policy and on stale samples), masking, gradient accumulation, GRPO clipping, vocab variants, PACED."""

from __future__ import annotations

import math

import pytest
import torch

from agentsd.learn.losses import (
    combined_loss,
    generalized_jsd,
    grpo_advantages,
    grpo_loss,
    paced_weights,
    reverse_kl_full,
    reverse_kl_topk,
    skill_sd_loss,
)

D = torch.float64
B, T, V = 4, 6, 7


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _tok_logp(g: torch.Generator) -> torch.Tensor:
    """Plausible sampled-token log-probs (B, T) in (-3, -0.05)."""
    return -(0.05 + 2.95 * torch.rand(B, T, generator=g, dtype=D))


def _vocab_logp(g: torch.Generator, scale: float = 1.5) -> torch.Tensor:
    return torch.log_softmax(scale * torch.randn(B, T, V, generator=g, dtype=D), -1)


def _mask(g: torch.Generator) -> torch.Tensor:
    m = (torch.rand(B, T, generator=g) < 0.7).to(D)
    m[:, 0] = 1.0  # every row has a real token unless a test masks it out
    return m


# Each case: (inputs from a generator, loss from inputs + mask + normalizer). ``s`` is the tensor the
# loss is differentiated with respect to; every input has the batch on dim 0 (for micro-batch splits).
def _tok_inputs(g: torch.Generator) -> dict[str, torch.Tensor]:
    s = _tok_logp(g)
    return {
        "s": s,
        "t": _tok_logp(g),
        "o": s + 0.3 * torch.randn(B, T, generator=g, dtype=D),
        "a": torch.randn(B, generator=g, dtype=D),
    }


def _vocab_inputs(g: torch.Generator) -> dict[str, torch.Tensor]:
    return {"s": _vocab_logp(g), "t": _vocab_logp(g)}


CASES = {
    "sdl": (_tok_inputs, lambda x, m, n: skill_sd_loss(x["s"], x["t"], x["o"], m, normalizer=n)),
    "sdl_clip": (
        _tok_inputs,
        lambda x, m, n: skill_sd_loss(x["s"], x["t"], x["o"], m, rho_clip=1.1, normalizer=n),
    ),
    "grpo": (
        _tok_inputs,
        lambda x, m, n: grpo_loss(x["s"], x["o"], x["a"], m, ref_logp=x["t"], kl_coef=0.1, normalizer=n),
    ),
    "full": (_vocab_inputs, lambda x, m, n: reverse_kl_full(x["s"], x["t"], m, normalizer=n)),
    "topk": (_vocab_inputs, lambda x, m, n: reverse_kl_topk(x["s"], x["t"], m, 3, normalizer=n)),
    "jsd": (_vocab_inputs, lambda x, m, n: generalized_jsd(x["s"], x["t"], m, 0.3, normalizer=n)),
}


def _loss_and_grad(case: str, x: dict[str, torch.Tensor], mask: torch.Tensor, normalizer=None):
    x = {k: v.clone() for k, v in x.items()}
    x["s"].requires_grad_(True)
    loss, stats = CASES[case][1](x, mask, normalizer)
    (grad,) = torch.autograd.grad(loss, x["s"])
    return loss.detach(), grad, stats


# --- identity -------------------------------------------------------------------------------------


@pytest.mark.parametrize("rho_clip", [None, 1.05])
def test_sdl_identical_student_teacher_is_zero_with_zero_grad(rho_clip):
    g = _gen(1)
    s = _tok_logp(g).requires_grad_(True)
    stale = s.detach() + 0.2 * torch.randn(B, T, generator=g, dtype=D)  # ρ ≠ 1: still 0
    for old in (s.detach(), stale):
        loss, stats = skill_sd_loss(s, s.detach().clone(), old, torch.ones(B, T), rho_clip=rho_clip)
        (grad,) = torch.autograd.grad(loss, s)
        assert float(loss.detach()) == 0.0
        assert torch.count_nonzero(grad) == 0
        assert stats["k3"] == 0.0 and stats["logratio"] == 0.0 and stats["tokens"] == B * T


@pytest.mark.parametrize(
    "fn",
    [
        lambda s, t, m: reverse_kl_full(s, t, m),
        lambda s, t, m: reverse_kl_topk(s, t, m, 1),
        lambda s, t, m: reverse_kl_topk(s, t, m, 3),
        lambda s, t, m: reverse_kl_topk(s, t, m, V),
        lambda s, t, m: generalized_jsd(s, t, m, 0.0),
        lambda s, t, m: generalized_jsd(s, t, m, 0.3),
        lambda s, t, m: generalized_jsd(s, t, m, 0.5),
        lambda s, t, m: generalized_jsd(s, t, m, 1.0),
    ],
    ids=["full", "top1", "top3", "topV", "jsd0", "jsd.3", "jsd.5", "jsd1"],
)
def test_vocab_variants_identical_is_zero_with_zero_grad(fn):
    theta = (1.5 * torch.randn(B, T, V, generator=_gen(2), dtype=D)).requires_grad_(True)
    s = torch.log_softmax(theta, -1)
    loss, _ = fn(s, s.detach().clone(), torch.ones(B, T))
    (grad,) = torch.autograd.grad(loss, theta)
    assert abs(float(loss.detach())) < 1e-14
    assert float(grad.abs().max()) < 1e-14


# --- the sampled estimator is the reverse-KL gradient ---------------------------------------------

VC = 5  # categories in the toy student
THETA = torch.tensor([0.9, -0.4, 0.3, -1.2, 0.5], dtype=D)
TEACHER = torch.log_softmax(torch.tensor([-0.2, 0.8, 0.1, -0.9, 1.1], dtype=D), -1)
STALE = THETA + torch.tensor([0.35, 0.2, -0.3, 0.4, -0.25], dtype=D)  # θ_old, a few updates back


def _exact_kl_grad(theta: torch.Tensor) -> torch.Tensor:
    theta = theta.clone().requires_grad_(True)
    logp = torch.log_softmax(theta, -1)
    kl = (logp.exp() * (logp - TEACHER)).sum()
    return torch.autograd.grad(kl, theta)[0]


def _sdl_grad(samples: torch.Tensor, old_theta: torch.Tensor, **kw) -> torch.Tensor:
    """Gradient at THETA of the Skill-SD loss over ``samples`` (drawn from softmax(old_theta))."""
    theta = THETA.clone().requires_grad_(True)
    logp = torch.log_softmax(theta, -1)
    old = torch.log_softmax(old_theta, -1)
    s, t, o = logp[samples][None], TEACHER[samples][None], old[samples][None]
    loss, _ = skill_sd_loss(s, t, o, torch.ones_like(s), **kw)
    return torch.autograd.grad(loss, theta)[0]


def _per_category(old_theta: torch.Tensor) -> torch.Tensor:
    """(VC, VC): row y is the gradient contributed by one sampled token y."""
    return torch.stack([_sdl_grad(torch.tensor([y]), old_theta) for y in range(VC)])


@pytest.mark.parametrize("old_theta", [THETA, STALE], ids=["on_policy", "stale"])
def test_sdl_gradient_expectation_is_exact_reverse_kl_gradient(old_theta):
    """E_{y~π_old}[∇(ρ k3)] = ∇KL(π_θ ‖ π_t), exactly (summing over the 5 outcomes)."""
    G = _per_category(old_theta)
    p_old = torch.softmax(old_theta, -1)
    expected = p_old @ G
    truth = _exact_kl_grad(THETA)
    torch.testing.assert_close(expected, truth, atol=1e-12, rtol=0)
    assert float(truth.abs().max()) > 0.05  # a real gradient, not a trivially zero one


@pytest.mark.parametrize("old_theta", [THETA, STALE], ids=["on_policy", "stale"])
def test_sdl_sampled_gradient_matches_reverse_kl_gradient(old_theta):
    """200k tokens sampled from π_old: the mean gradient is within 5 standard errors of ∇KL at θ, while
    the estimators that drop ρ's gradient (on-policy) or ρ itself (stale) are many errors away."""
    N = 200_000
    p_old = torch.softmax(old_theta, -1)
    samples = torch.multinomial(p_old, N, replacement=True, generator=_gen(3))
    estimate = _sdl_grad(samples, old_theta)
    truth = _exact_kl_grad(THETA)
    G = _per_category(old_theta)
    se = ((p_old @ G**2 - (p_old @ G) ** 2).clamp(min=0) / N).sqrt()
    assert torch.all((estimate - truth).abs() <= 5 * se + 1e-12), (estimate, truth, se)

    # The test has power: two plausible mistakes land far outside the tolerance.
    theta = THETA.clone().requires_grad_(True)
    ell = torch.log_softmax(theta, -1)[samples] - TEACHER[samples]
    k3_only = torch.autograd.grad((torch.exp(-ell) - 1 + ell).mean(), theta)[0]  # ρ without gradient
    assert float(((k3_only - truth).abs() / se).max()) > 50
    if old_theta is STALE:
        ignore_staleness = _sdl_grad(samples, THETA)  # ρ computed against θ instead of θ_old
        assert float(((ignore_staleness - truth).abs() / se).max()) > 10


def test_rho_clip_truncates_value_and_keeps_the_on_policy_gradient_direction():
    s = torch.tensor([[-1.0, -0.5, -2.0]], dtype=D, requires_grad=True)
    t = torch.tensor([[-1.4, -0.2, -1.0]], dtype=D)
    old = torch.tensor([[-2.0, -0.6, -2.1]], dtype=D)  # ρ = e^1, e^0.1, e^0.1
    mask = torch.ones(1, 3)
    c = 1.5
    loss, stats = skill_sd_loss(s, t, old, mask, rho_clip=c)
    (grad,) = torch.autograd.grad(loss, s)

    ell = (s - t).detach()
    k3 = torch.exp(-ell) - 1 + ell
    rho = torch.exp(s.detach() - old)
    w = rho.clamp(max=c)
    torch.testing.assert_close(loss.detach(), (w * k3).mean())
    # Per token: min(ρ, c) · (k3 ∇log π + ∇k3) = min(ρ, c) · (k3 + 1 − e^{−ℓ}) along ∂/∂ log π.
    torch.testing.assert_close(grad, w * (k3 + 1 - torch.exp(-ell)) / 3)
    assert stats["rho_clip_frac"] == pytest.approx(1 / 3)
    assert stats["rho_max"] == pytest.approx(math.e)
    unclipped, _ = skill_sd_loss(s, t, old, mask)
    assert float(unclipped.detach()) > float(loss.detach())


@pytest.mark.parametrize("case", list(CASES))
def test_only_the_trained_policy_gets_gradients(case):
    """Teacher, sampling policy, reference and advantages are targets: detached inside the loss."""
    g = _gen(12)
    x = {k: v.clone().requires_grad_(True) for k, v in CASES[case][0](g).items()}
    loss, _ = CASES[case][1](x, _mask(g), None)
    others = [k for k in x if k != "s"]
    grads = torch.autograd.grad(loss, [x[k] for k in others], allow_unused=True)
    for k, grad in zip(others, grads, strict=True):
        assert grad is None or torch.count_nonzero(grad) == 0, k


# --- masking ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_masked_tokens_contribute_nothing(case):
    g = _gen(4)
    x, mask = CASES[case][0](g), _mask(g)
    loss, grad, _ = _loss_and_grad(case, x, mask)
    junk = {}
    for k, v in x.items():
        if v.dim() == 1:  # per-sequence advantages: not per token
            junk[k] = v
            continue
        hidden = (mask == 0).reshape(mask.shape + (1,) * (v.dim() - 2)).expand_as(v)
        noise = torch.randn(v.shape, generator=g, dtype=D) * 50  # padding garbage: huge, nan, ±inf
        noise.view(-1)[0::4], noise.view(-1)[1::4], noise.view(-1)[2::4] = math.nan, -math.inf, math.inf
        assert noise[hidden].isnan().any()
        junk[k] = torch.where(hidden, noise, v)
    loss2, grad2, _ = _loss_and_grad(case, junk, mask)
    assert torch.equal(loss, loss2)
    assert torch.equal(grad, grad2)
    hidden = (mask == 0).reshape(mask.shape + (1,) * (grad.dim() - 2)).expand_as(grad)
    assert torch.count_nonzero(grad[hidden]) == 0
    assert torch.count_nonzero(grad[~hidden]) > 0


@pytest.mark.parametrize("case", list(CASES))
def test_fully_masked_rows_and_all_masked_batch_are_finite(case):
    g = _gen(5)
    x, mask = CASES[case][0](g), _mask(g)
    mask[1] = 0
    loss, grad, stats = _loss_and_grad(case, x, mask)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    assert torch.count_nonzero(grad[1]) == 0
    assert stats["tokens"] == float(mask.sum())

    for normalizer in (None, 0):
        none = torch.zeros(B, T)
        xs = {k: v.clone() for k, v in x.items()}
        xs["s"].requires_grad_(True)
        loss, stats = CASES[case][1](xs, none, normalizer)
        assert float(loss.detach()) == 0.0 and loss.requires_grad
        loss.backward()
        assert torch.count_nonzero(xs["s"].grad) == 0
        assert all(math.isfinite(v) for v in stats.values()) and stats["tokens"] == 0.0


# --- gradient accumulation -------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_gradient_accumulation_with_normalizer_equals_one_big_batch(case):
    g = _gen(6)
    x, mask = CASES[case][0](g), _mask(g)
    mask[2] = 0  # one micro-batch holds an empty row
    full_loss, full_grad, _ = _loss_and_grad(case, x, mask)

    total = int(mask.sum())
    acc_loss, parts = torch.zeros((), dtype=D), []
    for rows in (slice(0, 1), slice(1, 3), slice(3, 4)):
        loss, grad, _ = _loss_and_grad(case, {k: v[rows] for k, v in x.items()}, mask[rows], total)
        acc_loss, parts = acc_loss + loss, [*parts, grad]
    torch.testing.assert_close(acc_loss, full_loss, atol=1e-13, rtol=1e-12)
    torch.testing.assert_close(torch.cat(parts), full_grad, atol=1e-13, rtol=1e-12)

    # The micro-batches' own token means would weight their tokens differently: not the same gradient.
    own = torch.cat(
        [_loss_and_grad(case, {k: v[r : r + 1] for k, v in x.items()}, mask[r : r + 1])[1] for r in range(B)]
    )
    assert not torch.allclose(own, full_grad)


# --- GRPO -------------------------------------------------------------------------------------------


def test_grpo_advantages_are_group_relative():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 2.0, -1.0, 3.0, 0.7, 0.7, 0.2, 0.9], dtype=D)
    ids = ["a", "a", "a", "a", "b", "b", "b", "solo", "same", "same", "c", "c"]
    adv = grpo_advantages(rewards, ids)
    groups = {g: [i for i, x in enumerate(ids) if x == g] for g in dict.fromkeys(ids)}
    for g, idx in groups.items():
        a = adv[idx]
        assert abs(float(a.mean())) < 1e-12
        if g in ("solo", "same"):
            assert torch.count_nonzero(a) == 0
        else:  # unit (unbiased) std
            assert float(a.std()) == pytest.approx(1.0, abs=1e-5)
    # ±0.5 from the mean, unbiased std sqrt(1/3); eps = 1e-6 in the denominator
    expected = torch.tensor([0.5, -0.5, -0.5, 0.5], dtype=D) / ((1 / 3) ** 0.5 + 1e-6)
    torch.testing.assert_close(adv[:4], expected, atol=1e-12, rtol=0)

    unscaled = grpo_advantages(rewards, ids, scale=False)
    torch.testing.assert_close(unscaled[4:7], rewards[4:7] - rewards[4:7].mean())
    assert float(unscaled[7]) == 0.0
    as_tensor = grpo_advantages(rewards, torch.tensor([0, 0, 0, 0, 5, 5, 5, 9, 2, 2, 7, 7]))
    torch.testing.assert_close(as_tensor, adv)
    assert grpo_advantages(torch.tensor([2.0]), [0]).tolist() == [0.0]


def test_grpo_clip_higher_is_per_sign_of_the_advantage():
    # One token per sequence: (ratio, advantage) → clipped (zero gradient)?
    rows = [
        (1.30, +1.0, True),  # above 1 + ε_high, positive A: clipped
        (1.30, -1.0, False),  # above, negative A: the min keeps the unclipped (worse) branch
        (1.25, +1.0, False),  # between 1 + ε_low and 1 + ε_high: the higher ε lets it through
        (0.70, -1.0, True),  # below 1 − ε_low, negative A: clipped
        (0.70, +1.0, False),
        (0.85, -1.0, False),  # inside
    ]
    ratio = torch.tensor([[r] for r, _, _ in rows], dtype=D)
    adv = torch.tensor([a for _, a, _ in rows], dtype=D)
    old = torch.full((len(rows), 1), -1.0, dtype=D)
    logp = (old + ratio.log()).requires_grad_(True)
    loss, stats = grpo_loss(logp, old, adv, torch.ones(len(rows), 1), eps_low=0.2, eps_high=0.28)
    (grad,) = torch.autograd.grad(loss, logp)
    clipped = torch.tensor([[c] for _, _, c in rows])
    # Unclipped: ∂(−r A / N)/∂ log π = −r A / N.
    expected = torch.where(clipped, torch.zeros((), dtype=D), -ratio * adv[:, None] / len(rows))
    torch.testing.assert_close(grad, expected, atol=1e-15, rtol=1e-12)
    assert stats["clip_frac"] == pytest.approx(2 / 6)
    assert stats["clip_high_frac"] == pytest.approx(1 / 6) and stats["clip_low_frac"] == pytest.approx(1 / 6)
    assert stats["ratio_max"] == pytest.approx(1.3)


def test_grpo_on_policy_gradient_is_the_policy_gradient():
    g = _gen(7)
    logp = _tok_logp(g).requires_grad_(True)
    adv, mask = torch.randn(B, generator=g, dtype=D), _mask(g)
    loss, stats = grpo_loss(logp, logp.detach(), adv, mask)
    (grad,) = torch.autograd.grad(loss, logp)
    torch.testing.assert_close(grad, -adv[:, None] * mask / mask.sum())
    assert stats["ratio_mean"] == 1.0 and stats["clip_frac"] == 0.0 and stats["kl"] == 0.0


def test_grpo_kl_term_vanishes_at_the_reference_and_penalizes_drift():
    g = _gen(8)
    logp = _tok_logp(g).requires_grad_(True)
    old = logp.detach() + 0.1 * torch.randn(B, T, generator=g, dtype=D)
    adv, mask = torch.randn(B, generator=g, dtype=D), _mask(g)
    base, _ = grpo_loss(logp, old, adv, mask)
    with_kl, stats = grpo_loss(logp, old, adv, mask, ref_logp=logp.detach().clone(), kl_coef=0.5)
    assert stats["kl"] == 0.0
    g0, g1 = (torch.autograd.grad(v, logp)[0] for v in (base, with_kl))
    torch.testing.assert_close(with_kl, base)
    torch.testing.assert_close(g1, g0)

    drifted, stats = grpo_loss(logp, old, adv, mask, ref_logp=logp.detach() - 0.3, kl_coef=0.5)
    assert stats["kl"] > 0 and float(drifted.detach()) > float(base.detach())
    with pytest.raises(ValueError, match="ref_logp"):
        grpo_loss(logp, old, adv, mask, kl_coef=0.1)


# --- full-vocabulary variants ----------------------------------------------------------------------


def test_topk_with_whole_vocab_or_a_one_token_tail_equals_the_full_kl():
    g = _gen(9)
    theta = (1.5 * torch.randn(B, T, V, generator=g, dtype=D)).requires_grad_(True)
    s, t, mask = torch.log_softmax(theta, -1), _vocab_logp(g), _mask(g)
    full, stats = reverse_kl_full(s, t, mask)
    g_full = torch.autograd.grad(full, theta, retain_graph=True)[0]
    for k in (V, V + 3, V - 1):  # V − 1: the tail bucket is a single token, so the partition is exact
        top, _ = reverse_kl_topk(s, t, mask, k)
        torch.testing.assert_close(top, full, atol=1e-13, rtol=1e-12)
        torch.testing.assert_close(torch.autograd.grad(top, theta, retain_graph=True)[0], g_full)
    # Coarser buckets lose information: the bucketed KL is smaller (data processing), and positive.
    top2, _ = reverse_kl_topk(s, t, mask, 2)
    assert 0 < float(top2.detach()) < float(full.detach())
    assert stats["kl"] == pytest.approx(float(full.detach()))


def test_topk_tail_bucket_by_hand():
    ps = torch.tensor([0.5, 0.3, 0.1, 0.06, 0.04], dtype=D)
    pt = torch.tensor([0.2, 0.2, 0.3, 0.1, 0.2], dtype=D)
    s, t = ps.log().view(1, 1, 5), pt.log().view(1, 1, 5)
    loss, _ = reverse_kl_topk(s, t, torch.ones(1, 1), 2)
    qs, qt = torch.tensor([0.5, 0.3, 0.2], dtype=D), torch.tensor([0.2, 0.2, 0.6], dtype=D)
    assert float(loss) == pytest.approx(float((qs * (qs / qt).log()).sum()), rel=1e-12)
    # A tail of nearly zero mass, and −inf entries (a masked-out vocabulary), stay finite.
    s2 = torch.tensor([0.0, -40.0, -math.inf, -math.inf, -45.0], dtype=D).view(1, 1, 5)
    s2 = torch.log_softmax(s2, -1).requires_grad_(True)
    loss2, _ = reverse_kl_topk(s2, t, torch.ones(1, 1), 1)
    loss2.backward()
    assert torch.isfinite(loss2) and torch.isfinite(s2.grad).all()


def test_generalized_jsd_symmetry_bounds_and_limits():
    g = _gen(10)
    s, t, mask = _vocab_logp(g), _vocab_logp(g), _mask(g)
    half_st, _ = generalized_jsd(s, t, mask, 0.5)
    half_ts, _ = generalized_jsd(t, s, mask, 0.5)
    torch.testing.assert_close(half_st, half_ts, atol=1e-14, rtol=1e-12)
    assert 0 < float(half_st) < math.log(2)
    forward, _ = reverse_kl_full(t, s, mask)  # KL(π_t ‖ π_s)
    reverse, _ = reverse_kl_full(s, t, mask)
    torch.testing.assert_close(generalized_jsd(s, t, mask, 0.0)[0], forward)
    torch.testing.assert_close(generalized_jsd(s, t, mask, 1.0)[0], reverse)
    eps = 1e-5  # the endpoints are the limits of the normalized divergence
    assert float(generalized_jsd(s, t, mask, eps)[0]) / eps == pytest.approx(float(forward), rel=1e-3)
    assert float(generalized_jsd(s, t, mask, 1 - eps)[0]) / eps == pytest.approx(float(reverse), rel=1e-3)
    assert float(generalized_jsd(s, t, mask, 0.3)[0]) != pytest.approx(
        float(generalized_jsd(t, s, mask, 0.3)[0])
    )


# --- combination and PACED --------------------------------------------------------------------------


def test_combined_loss():
    assert float(combined_loss(torch.tensor(2.0), torch.tensor(3.0))) == pytest.approx(2.003)
    assert float(combined_loss(torch.tensor(2.0), torch.tensor(3.0), lam=0.5)) == pytest.approx(3.5)


@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (2.0, 1.0), (0.5, 3.0)])
def test_paced_weights_peak_at_one_and_vanish_at_the_ends(alpha, beta):
    p = torch.linspace(0, 1, 10_001, dtype=D)
    w = paced_weights(p, alpha, beta)
    star = alpha / (alpha + beta)
    assert float(paced_weights(star, alpha, beta)) == pytest.approx(1.0, abs=1e-12)
    assert float(w.max()) == pytest.approx(1.0, abs=1e-6) and float(w.max()) <= 1 + 1e-12
    assert float(p[w.argmax()]) == pytest.approx(star, abs=1e-4)
    assert float(w[0]) == 0.0 and float(w[-1]) == 0.0
    torch.testing.assert_close(w, p**alpha * (1 - p) ** beta / (star**alpha * (1 - star) ** beta))


def test_paced_weights_edge_exponents_and_validation():
    p = torch.tensor([0.0, 0.25, 1.0], dtype=D)
    torch.testing.assert_close(paced_weights(p, 0.0, 2.0), (1 - p) ** 2)
    torch.testing.assert_close(paced_weights(p, 0.0, 0.0), torch.ones(3, dtype=D))
    with pytest.raises(ValueError):
        paced_weights(torch.tensor([1.2]))
    with pytest.raises(ValueError):
        paced_weights(0.5, alpha=-1.0)


# --- dtypes and shapes -------------------------------------------------------------------------------


def test_half_precision_inputs_are_computed_in_float32_and_shapes_are_checked():
    g = _gen(11)
    s = _tok_logp(g).bfloat16().requires_grad_(True)
    loss, _ = skill_sd_loss(s, _tok_logp(g).bfloat16(), s.detach(), torch.ones(B, T, dtype=torch.bool))
    assert loss.dtype == torch.float32
    loss.backward()
    assert s.grad is not None and s.grad.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="mask"):
        skill_sd_loss(s, s, s, torch.ones(B, T + 1))
    with pytest.raises(ValueError, match="teacher"):
        reverse_kl_full(torch.zeros(B, T, V), torch.zeros(B, T, V + 1), torch.ones(B, T))

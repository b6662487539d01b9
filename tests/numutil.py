"""Tolerances for comparing two computations of the same update under bf16 autocast.

Why bf16 results differ at all: under autocast every matmul rounds its inputs and its output to bf16,
whose unit roundoff is u = 2^-8 ≈ 3.9e-3 (8 significant bits). Two paths that compute the same
mathematical update (micro-batch 1 vs 16, two processes vs one, sharded vs whole) round the same
fp32 weights to the same bf16 values, but run their matmuls on other batch shapes, so the kernels'
fp32 accumulation order differs and an intermediate value sometimes lands on the other side of a bf16
rounding boundary: that element then differs by one bf16 ulp, at most 2u relative. In fp32 the same
reordering moves results by ~1e-7 relative, which is why the fp32 tests can demand 1e-6.

How far that can move an update: each such flip perturbs one activation by <= 2u relative; the
perturbation passes through the remaining bf16-rounded matmuls of the forward and backward pass, each
adding at most u relative again. For the tiny test model (2 decoder layers, 7 projections each, plus
the LM head) a gradient passes through ~2 × (2 × 7 + 1) ≈ 30 rounded stages, so the norm-wise worst
case is ~30u ≈ 0.12 of the update. Flips are rare and of random sign, so the measured error is far
smaller: 0.17-0.21% of the update's norm (about u/2) for micro-batch 1 vs 16 and for two processes vs
one, plain and ZeRO-3 (measured on an AVX2 CPU, emulated bf16, 2026-12-07). We allow the norm-wise
relative error BF16_RTOL = 8u ≈ 3%: a quarter of the worst case, ~15x the measurement. That still
catches every bug these
identities exist for: a wrong normaliser, a dropped or doubled micro-batch or process, a missing
all-reduce changes the update by a factor (>= 50% relative, or a wrong direction).

Per-coordinate comparisons are not meaningful under bf16: a coordinate whose gradient is itself near
the rounding noise can change sign. So updates are compared as whole tensors: norm-wise relative
error, and the cosine between them (>= 1 − BF16_RTOL²/2 follows from the norm bound when the norms
agree; we require it separately because it reads directly as 'the same direction').
"""

from __future__ import annotations

import torch

#: bf16's unit roundoff
BF16_U = 2.0**-8
#: norm-wise relative tolerance of a whole update (see the module docstring)
BF16_RTOL = 8 * BF16_U
#: relative tolerance of a scalar statistic (a loss, a KL estimate): a mean over many tokens of values
#: each within a few u of the other path's
BF16_STAT_RTOL = 4 * BF16_U


def rel_error(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """‖a − b‖ / ‖b‖ over all tensors of two updates (flattened together)."""
    num = sum(float((a[n].double() - b[n].double()).pow(2).sum()) for n in b)
    den = sum(float(b[n].double().pow(2).sum()) for n in b)
    return (num / den) ** 0.5 if den else num**0.5


def cosine(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    dot = sum(float((a[n].double() * b[n].double()).sum()) for n in b)
    na = sum(float(a[n].double().pow(2).sum()) for n in b) ** 0.5
    nb = sum(float(b[n].double().pow(2).sum()) for n in b) ** 0.5
    return dot / (na * nb) if na and nb else float(na == nb)


def assert_bf16_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], rtol: float = BF16_RTOL) -> None:
    """Two updates (name -> tensor) agree to bf16 rounding: norm-wise relative error <= ``rtol`` over
    the whole update and over each tensor that carries a visible share of it, and the same direction."""
    assert set(a) == set(b)
    total = rel_error(a, b)
    assert total <= rtol, f"bf16 update differs by {total:.4f} of its norm (allowed {rtol:.4f})"
    assert cosine(a, b) >= 1 - rtol**2, f"cosine {cosine(a, b):.6f}"
    scale = max(float(t.norm()) for t in b.values())
    for n, t in b.items():
        if float(t.norm()) > 0.1 * scale:  # tensors near zero are dominated by rounding noise
            err = rel_error({n: a[n]}, {n: t})
            assert err <= rtol, f"{n}: bf16 update differs by {err:.4f} of its norm (allowed {rtol:.4f})"

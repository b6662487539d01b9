"""Facts about the machine that change how we run models."""

from __future__ import annotations

import os
from typing import Any

#: Environment override of :func:`bf16_is_fast`: ``1`` takes the bf16 path everywhere ``auto`` decides
#: (what a CPU with AVX512-BF16 or a GPU picks), ``0`` the fp32 path, ``auto`` (or unset) asks the
#: hardware. It exists so one machine can run the test suite on the other machines' numerics:
#: emulated bf16 is slower but rounds the same way.
BF16_ENV = "AGENTSD_BF16"
_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def bf16_forced() -> bool | None:
    """What :data:`BF16_ENV` says: True (forced on), False (forced off) or None (ask the hardware).
    Any other value is an error naming the variable."""
    value = os.environ.get(BF16_ENV, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    if value in ("", "auto"):
        return None
    raise ValueError(f"{BF16_ENV}={os.environ[BF16_ENV]!r}: use 1 (bf16), 0 (fp32) or auto")


def bf16_is_fast(device: Any) -> bool:
    """Whether bf16 compute is native (and so faster than fp32) on ``device``: the choice every
    ``auto``/``None`` dtype and autocast setting makes. :data:`BF16_ENV` overrides it.

    CUDA: when the GPU supports bf16. CPU: only with AVX512-BF16 or AMX; elsewhere torch emulates bf16
    and it is several times slower than fp32 (measured on this project's 2-core AMD EPYC machines:
    generation ~6x, a training step ~35x slower under bf16 autocast).
    """
    import torch

    forced = bf16_forced()
    if forced is not None:
        return forced
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        native = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private; absent -> False
        return any(getattr(torch.cpu, f, lambda: False)() for f in native)
    return False


#: glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_heap_compacted = False


def compact_cpu_heap(threshold: int = 128 * 1024) -> bool:
    """Make glibc malloc give freed memory back to the OS: blocks of ``threshold`` bytes or more are
    mmap'ed (and unmapped on free), and the heap top is trimmed past ``threshold``.

    By default glibc raises its mmap threshold after large blocks are freed, so freed activations (the
    Skill-SD teacher's no-grad pass, then the student's) stay in the heap and the resident set grows
    well past the live tensors: measured 1.39x GRPO's peak for a Skill-SD step by default vs 1.00x
    with this (bench/bench_learning.py). The price is CPU time: every large block is fresh pages
    (measured 1.4-1.8x CPU seconds per learner step), so it is opt-in
    (``learning.onpolicy.compact_cpu_heap``). The same as ``MALLOC_MMAP_THRESHOLD_`` and
    ``MALLOC_TRIM_THRESHOLD_`` in the environment, which win when set. Process-wide, idempotent; a
    no-op (returns False) off glibc.
    """
    global _heap_compacted
    import os

    if _heap_compacted:
        return True
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False  # the user chose
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, threshold) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, threshold) == 1
    except (OSError, AttributeError):
        return False
    _heap_compacted = ok
    return ok

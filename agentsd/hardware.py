"""Facts about the machine that change how we run models."""

from __future__ import annotations

from typing import Any


def bf16_is_fast(device: Any) -> bool:
    """Whether bf16 compute is native (and so faster than fp32) on ``device``.

    CUDA: when the GPU supports bf16. CPU: only with AVX512-BF16 or AMX; elsewhere torch emulates bf16
    and it is several times slower than fp32 (measured on this project's 2-core AMD EPYC machines:
    generation ~6x, a training step ~35x slower under bf16 autocast).
    """
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        native = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private; absent -> False
        return any(getattr(torch.cpu, f, lambda: False)() for f in native)
    return False

"""Numeric precision and device sync in one place: autocast, TF32 flags, and what this CPU runs in bf16.

`precision=bf16` trains under autocast to bfloat16. On CPUs without AVX-512 (e.g. AVX2-only
AMD EPYC) oneDNN has no bfloat16 kernel for the fused LSTM and fails with "could not create a
primitive descriptor for the LSTM forward propagation primitive". Rather than refuse bf16
there, such a fused CPU kernel runs in float32 with autocast off around it (`needs_fp32`, asked by
benchmark/models/layer.py), and everything else stays under bf16 autocast. Which kernels fall back is probed
once per process per module class (`native_bf16_ok`), never read from the CPU's name, and
recorded in metrics.json as `env.cpu_bf16_fp32_fallback`.
"""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager, nullcontext
from typing import Optional

import torch
from torch import Tensor, nn

from benchmark.core.config import Precision

NATIVE_RNNS: tuple[type[nn.Module], ...] = (nn.RNN, nn.LSTM, nn.GRU)


def autocast_dtype(precision: Precision) -> Optional[torch.dtype]:
    """The autocast dtype of a precision setting (None = plain fp32/tf32)."""
    return torch.bfloat16 if precision is Precision.bf16 else None


def autocast(device_type: str, dtype: Optional[torch.dtype], cache_enabled: bool = True) -> AbstractContextManager:
    """torch.autocast when `dtype` is set, else a no-op context.

    `cache_enabled=False` where a CUDA graph is captured: autocast's weight-cast cache must not
    outlive the capture.
    """
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type, dtype=dtype, cache_enabled=cache_enabled)


def set_tf32(precision: Precision) -> None:
    """TF32 matmuls and cuDNN convolutions/RNNs on for `tf32` only (cuDNN's own default is on)."""
    on = precision is Precision.tf32
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def sync(device: torch.device) -> None:
    """Wait for queued kernels (CUDA runs asynchronously; the CPU needs nothing)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@functools.lru_cache(maxsize=None)
def native_bf16_ok(module_cls: type[nn.Module]) -> bool:
    """Can this CPU run `module_cls` (nn.LSTM, ...) forward and backward under bf16 autocast?"""
    m = module_cls(2, 4)
    x = torch.randn(3, 2, 2)
    try:
        with torch.enable_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            out = m(x)[0]
        out.float().sum().backward()
    except RuntimeError:  # oneDNN: no bf16 primitive for this kernel on this CPU (the fallback reason)
        return False
    return True


def needs_fp32(module_cls: type[nn.Module], x: Tensor) -> bool:
    """Whether torch's fused kernel of `module_cls` (nn.LSTM, ...) must run on x in float32, autocast off: bf16
    autocast on a CPU that has no bf16 kernel for it."""
    return (
        x.device.type == "cpu"
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
        and not native_bf16_ok(module_cls)
    )


def cpu_bf16_fallbacks() -> list[str]:
    """Names of the fused CPU kernels that run in float32 under bf16 autocast on this machine."""
    return [cls.__name__ for cls in NATIVE_RNNS if not native_bf16_ok(cls)]

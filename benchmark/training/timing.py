"""A dedicated timing of forward and forward+backward, apart from the training loop.

Training throughput mixes in the optimiser, logging and evaluation; this isolates the
model. Protocol: `warmup` untimed iterations (oneDNN / cuDNN pick kernels on first use),
then `repeats` timed ones; report the median and the interquartile range. On CUDA each
repeat is bracketed by CUDA events and the device is synchronised before reading them;
on CPU `time.perf_counter` brackets each repeat. Timing runs on a deep copy in train mode
(the same work as a training step, without changing the trained model or its BN stats).

Peak memory (see `MemoryMeter`): on CUDA `torch.cuda.max_memory_allocated` since the
job's reset (tensors only, not the caching allocator's reserve); on Linux CPUs the
process's peak resident set since a reset via /proc/self/clear_refs (VmHWM), minus the
resident set at the reset; elsewhere `ru_maxrss` minus the resident set at the start
(an under-estimate when an earlier job in the same process already peaked higher).
"""

from __future__ import annotations

import copy
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from benchmark.training.precision import autocast, sync
from benchmark.training.step import penalty_of


@dataclass
class Timing:
    fwd_ms: float
    fwd_ms_iqr: float
    fwd_bwd_ms: float
    fwd_bwd_ms_iqr: float
    fwd_tokens_per_s: float
    fwd_bwd_tokens_per_s: float
    timing_method: str  # "cuda_events" | "perf_counter"
    timing_batch_size: int


def quartiles(xs: Sequence[float]) -> tuple[float, float, float]:
    """(q1, median, q3); 'inclusive' quantiles so a single sample gives (x, x, x)."""
    if len(xs) == 0:
        raise ValueError("no samples")
    if len(xs) == 1:
        return xs[0], xs[0], xs[0]
    q1, q2, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return q1, q2, q3


def median_iqr(xs: list[float]) -> tuple[float, float]:
    """Median and interquartile range (inclusive quartiles; 0 for a single sample)."""
    q1, med, q3 = quartiles(xs)
    return med, q3 - q1


def _time(fn: Callable[[], None], warmup: int, repeats: int, device: torch.device) -> list[float]:
    """Milliseconds per call of fn, one per repeat, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    out: list[float] = []
    if device.type == "cuda":
        sync(device)
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
        for start, end in events:
            start.record()
            fn()
            end.record()
        sync(device)
        return [s.elapsed_time(e) for s, e in events]
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


time_calls = _time  # the public name (benchmark.perf.gpu_bench interleaves variants with it)
StepFns = tuple[Callable[[], None], Callable[[], None]]


def step_fns(
    m: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    autocast_dtype: Optional[torch.dtype] = None,
) -> StepFns:
    """The eager (forward, forward+loss+backward) closures of a stack of one on (x, y) (B, T, I) that `time_model`
    times; the loss includes the arm's loss term, as in training."""
    device = x.device
    params = list(m.parameters())

    def ctx():
        return autocast(device.type, autocast_dtype)

    xs = x.unsqueeze(0)

    def fwd() -> None:
        with ctx():
            m(xs)

    def fwd_bwd() -> None:
        for p in params:
            p.grad = None
        with ctx():
            loss = loss_fn(m(xs)[0], y)
        (loss + penalty_of(m, loss)).backward()

    return fwd, fwd_bwd


def time_model(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    warmup: int,
    repeats: int,
    autocast_dtype: Optional[torch.dtype] = None,
    make_fns: Optional[Callable[[nn.Module], StepFns]] = None,
) -> Timing:
    """Time forward (with autograd on, as in training) and forward+loss+backward on (x, y).

    x: (B, T, I) already on the model's device. `make_fns(copy) -> (fwd, fwd_bwd)` replaces
    the eager closures of `step_fns` (e.g. CUDA-graph replays, benchmark.training.accel).
    """
    device = x.device
    m = copy.deepcopy(model).train()
    with torch.enable_grad():
        fwd, fwd_bwd = make_fns(m) if make_fns is not None else step_fns(m, loss_fn, x, y, autocast_dtype)
        f = _time(fwd, warmup, repeats, device)
        fb = _time(fwd_bwd, warmup, repeats, device)
    f_med, f_iqr = median_iqr(f)
    fb_med, fb_iqr = median_iqr(fb)
    tokens = x.shape[0] * x.shape[1]
    return Timing(
        fwd_ms=f_med,
        fwd_ms_iqr=f_iqr,
        fwd_bwd_ms=fb_med,
        fwd_bwd_ms_iqr=fb_iqr,
        fwd_tokens_per_s=tokens / f_med * 1e3,
        fwd_bwd_tokens_per_s=tokens / fb_med * 1e3,
        timing_method="cuda_events" if device.type == "cuda" else "perf_counter",
        timing_batch_size=x.shape[0],
    )


def _status_kb(field: str) -> Optional[int]:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class MemoryMeter:
    """Peak memory of one job: reset at construction, read with `peak_mb()`."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            self.kind = "cuda_max_allocated"
            return
        self.kind = "ru_maxrss_delta"
        if sys.platform.startswith("linux"):
            try:
                Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
                self.kind = "rss_hwm_delta"
            except OSError:
                pass
        self.rss0_kb = _status_kb("VmRSS") or 0

    def peak_mb(self) -> Optional[float]:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        if self.kind == "rss_hwm_delta":
            hwm = _status_kb("VmHWM")
            return None if hwm is None else max(0, hwm - self.rss0_kb) / 1024
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
        if sys.platform == "darwin":
            peak_kb //= 1024  # bytes on macOS
        return max(0, peak_kb - self.rss0_kb) / 1024

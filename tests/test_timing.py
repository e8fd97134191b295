"""The dedicated timer: statistics, the protocol's side effects, and the memory meter."""

from __future__ import annotations

import mmap

import pytest
import torch
from arm_configs import arm

import benchmark as bm  # noqa: F401
from benchmark.models import ModelSpec, build_model, get_cell
from benchmark.training.timing import MemoryMeter, median_iqr, time_model


def test_median_iqr():
    assert median_iqr([3.0]) == (3.0, 0.0)
    med, iqr = median_iqr([1.0, 2.0, 3.0, 4.0, 100.0])
    assert med == 3.0 and iqr == pytest.approx(2.0)  # quartiles 2 and 4: robust to the outlier


def test_time_model_reports_positive_times_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = build_model(
        ModelSpec(cell=get_cell("lstm"), input_size=2, hidden_size=16, num_layers=1, output_size=1, reg=arm("bn"))
    ).eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(8, 12, 2), torch.randn(8)
    t = time_model(model, lambda a, b: (a.squeeze(-1) - b).pow(2).mean(), x, y, warmup=1, repeats=5)
    assert t.timing_method == "perf_counter" and t.timing_batch_size == 8
    assert 0 < t.fwd_ms < t.fwd_bwd_ms and t.fwd_ms_iqr >= 0 and t.fwd_bwd_ms_iqr >= 0
    assert t.fwd_bwd_tokens_per_s == pytest.approx(8 * 12 / t.fwd_bwd_ms * 1e3)
    assert not model.training and all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k  # BN population statistics untouched


def test_memory_meter_sees_a_large_allocation():
    """160 MiB of fresh resident pages raise the peak. Mapped directly rather than through malloc:
    the process keeps freed heap memory (benchmark/training/allocator.py), which earlier tests may have left behind
    for a malloc'd tensor to reuse without growing the resident set."""
    meter = MemoryMeter(torch.device("cpu"))
    assert meter.kind in ("rss_hwm_delta", "ru_maxrss_delta")
    size = 160 * 2**20
    with mmap.mmap(-1, size) as big:
        big.write(b"\1" * size)  # every page written, so resident
        peak = meter.peak_mb()
    assert peak is not None and peak >= 120

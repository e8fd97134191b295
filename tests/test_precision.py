"""bf16 on any CPU: fused kernels this CPU cannot run in bf16 fall back to fp32, probed, never by CPU name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from benchmark.core.config import Impl
from benchmark.models import LSTMCell, ModelSpec, build_model
from benchmark.training import precision

ROOT = Path(__file__).resolve().parents[1]


def _lstm_and_input():
    """A native layer (a stack of one), torch's nn.LSTM with its weights, and an input (T, B, I)."""
    torch.manual_seed(0)
    model = build_model(ModelSpec(LSTMCell, 3, 5, 1, 1, impl=Impl.native))
    layer, ref = model.layers[0], nn.LSTM(3, 5)
    with torch.no_grad():
        for name, p in layer.rnn.named_parameters():
            getattr(ref, name).copy_(p[0])
    return (lambda x: layer(x.unsqueeze(1))[:, 0]), (lambda x: ref(x)[0]), torch.randn(7, 4, 3)


def test_fallback_runs_the_fused_kernel_in_fp32(monkeypatch):
    """Where the probe finds no bf16 kernel, the layer runs in fp32 and equals the plain fp32 forward."""
    monkeypatch.setattr(precision, "native_bf16_ok", lambda cls: False)
    m, ref, x = _lstm_and_input()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref(x), rtol=0, atol=0)
    assert precision.cpu_bf16_fallbacks() == ["RNN", "LSTM", "GRU"]


def test_kernel_with_bf16_support_stays_in_bf16():
    if not precision.native_bf16_ok(nn.LSTM):
        pytest.skip("this CPU has no bf16 LSTM kernel (oneDNN needs AVX-512); the fallback test covers it")
    m, ref, x = _lstm_and_input()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref(x), rtol=0.05, atol=0.02)


def test_no_autocast_means_no_fallback(monkeypatch):
    monkeypatch.setattr(precision, "native_bf16_ok", lambda cls: False)
    m, ref, x = _lstm_and_input()
    torch.testing.assert_close(m(x), ref(x), rtol=0, atol=0)


def test_bf16_run_succeeds_on_an_avx2_only_cpu(tmp_path):
    """oneDNN capped at AVX2 (as on an AMD EPYC without AVX-512): the fused LSTM has no bf16 kernel,
    and a bf16 run on the fused kernel still finishes ok, recording the fallback."""
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    cmd = [
        sys.executable,
        "-m",
        "benchmark.run",
        "cell=lstm",
        "impl=native",
        "precision=bf16",
        "device=cpu",
        "task.seq_len=6",
        "task.n_train=64",
        "task.n_val=16",
        "task.n_test=16",
        "hidden_size=8",
        "train.steps=3",
        "train.batch_size=8",
        "train.eval_interval=3",
        "train.progress=false",
        "timing.warmup=1",
        "timing.repeats=1",
        f"results_dir={tmp_path}",
        "threads=1",
    ]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    (metrics,) = (tmp_path / "single" / "runs").glob("*/metrics.json")
    m = json.loads(metrics.read_text())
    assert m["status"] == "ok" and m["impl_used"] == "native", m.get("error")
    assert "LSTM" in m["env"]["cpu_bf16_fp32_fallback"]

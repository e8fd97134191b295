"""Step time of every cell × reg × impl on CPU, for `make bench` / `make bench-check`.

One training step = zero_grad + forward + MSE loss + backward; the optimizer step is left
out (it is the same few fused adds for every variant and would only add noise).
Sizes: batch 64, input 32, hidden 128, one layer, output 10, T from --bench-seq-lens.

Each timed round of a variant is preceded by one step of the reference — `native`/`none`
of the same cell and T — inside pedantic's untimed `setup`, timed here with
perf_counter. The per-round ratios variant/reference land in
`extra_info["ratio_samples"]`; `benchmark.perf.bench_check` compares their median with the
committed baseline, so load that slows a whole round cancels out.
"""

from __future__ import annotations

import time
from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from interleave import interleaved_rounds

import benchmark as bm  # noqa: F401  (pytest-benchmark owns the name `benchmark`)
from benchmark.arms import variants as registry
from benchmark.arms.variants import BenchPoint
from benchmark.core.config import Impl
from benchmark.models import ModelSpec, build_model, get_cell

BATCH, INPUT, HIDDEN, OUTPUT = 64, 32, 128, 10
CELLS = ("rnn", "lstm", "gru")
# What is timed — each registered variant on each of its impls — comes from benchmark/arms/variants.py.


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "variant" in metafunc.fixturenames:
        raw = metafunc.config.getoption("bench_seq_lens")
        try:
            seq_lens = [int(s) for s in raw.split(",") if s.strip()]
        except ValueError:
            raise pytest.UsageError(f"--bench-seq-lens: expected comma-separated integers, got {raw!r}") from None
        vs = registry.bench_plan(CELLS, seq_lens)
        metafunc.parametrize("variant", vs, ids=[v.id for v in vs])


def make_step(v: BenchPoint) -> Callable[[], None]:
    """A closure running one training step (zero_grad, forward, loss, backward) of variant v."""
    torch.manual_seed(0)
    impl = Impl(v.impl)
    model = build_model(ModelSpec(get_cell(v.cell), INPUT, HIDDEN, 1, OUTPUT, reg=registry.arm(v.variant), impl=impl))
    assert model.impl_used is impl
    model.train()
    g = torch.Generator().manual_seed(v.seq_len)
    x = torch.randn(1, BATCH, v.seq_len, INPUT, generator=g)  # (1, B, T, I): a run alone is a stack of one
    y = torch.randn(1, BATCH, OUTPUT, generator=g)  # (1, B, O)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss = F.mse_loss(model(x), y)
        loss.backward()

    step()  # correctness before timing: the step runs and produces finite gradients
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None), v.id
    return step


@pytest.fixture(scope="session")
def reference_steps() -> Callable[[BenchPoint], Callable[[], None]]:
    """One warm reference model per (cell, T), shared by all variants of that group."""
    cache: dict[str, Callable[[], None]] = {}

    def get(v: BenchPoint) -> Callable[[], None]:
        ref = v.reference
        if ref.id not in cache:
            cache[ref.id] = make_step(ref)
        return cache[ref.id]

    return get


def slowed(step: Callable[[], None], factor: float) -> Callable[[], None]:
    """The step followed by a busy wait of (factor-1)× its own duration: a real, proportional slowdown."""
    if factor == 1.0:
        return step

    def slow_step() -> None:
        t0 = time.perf_counter()
        step()
        until = t0 + factor * (time.perf_counter() - t0)
        while time.perf_counter() < until:
            pass

    return slow_step


def test_train_step(
    benchmark, variant: BenchPoint, reference_steps, bench_threads: int, bench_slowdown: dict[str, float], request
) -> None:
    cfg = request.config
    rounds, warmup = cfg.getoption("bench_rounds"), cfg.getoption("bench_warmup")
    factor = bench_slowdown.get(variant.id, bench_slowdown.get(variant.base_id, 1.0))
    step = slowed(make_step(variant), factor)
    ref_step = reference_steps(variant)
    benchmark.group = f"{variant.cell} T={variant.seq_len}"
    ref_s, var_s = interleaved_rounds(benchmark, step, ref_step, rounds, warmup)
    assert len(ref_s) == len(var_s) == rounds
    arm = registry.arm(variant.variant)
    ident = arm.identity(variant.seq_len)
    benchmark.extra_info.update(
        variant=variant.id,
        reference=variant.reference.id,
        variant_name=variant.variant.name,
        cell=variant.cell,
        reg=arm.name,
        impl=variant.impl,
        seq_len=variant.seq_len,
        bn_placement=ident.get("bn_placement"),
        dropout_placement=ident.get("dropout_placement"),
        dropout_p=ident.get("dropout_p"),
        target=variant.variant.target(variant.impl, "cpu"),
        threads=bench_threads,
        batch_size=BATCH,
        input_size=INPUT,
        hidden_size=HIDDEN,
        optimizer_step=False,
        slowdown=factor,
        ratio_samples=[round(v / r, 5) for v, r in zip(var_s, ref_s)],
        ref_ms=[round(r * 1e3, 4) for r in ref_s],
    )

"""Per-member training-step time of a cohort (benchmark/models/cohort.py) against its solo model, `make bench-cohort`.

One step = zero_grad + forward + MSE loss + backward (no optimiser step), LSTM, T=100, B=32, H=32,
one layer, a last-step head, float32, on the thread count of --bench-threads (the Makefile: 1).
For each arm (none, bn) and cohort size E, every timed round of the E-member cohort is preceded by
one step of the solo model a run trains today (impl auto: torch's fused LSTM for `none`, the
custom loop with the fused BN-LSTM for `bn`), timed in pedantic's untimed setup, so the two are
measured side by side and load that slows a round hits both. extra_info["ratio_samples"] holds
(cohort step / E) / solo step per round; the table printed at the end shows their medians against
the targets: a 10-member BN-LSTM cohort at most 1/2.5 of the solo BN-LSTM per member, a plain LSTM
cohort per member no more than the solo fused LSTM.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import pytest
import torch
import torch.nn.functional as F

import benchmark as bm  # noqa: F401  (pytest-benchmark owns the name `benchmark`)
from benchmark.arms import load_arm
from benchmark.models import ModelSpec, build_model, get_cell
from benchmark.models.cohort import CohortModel

T, BATCH, INPUT, HIDDEN, OUTPUT = 100, 32, 2, 32, 1
SIZES = (1, 5, 10)
TARGETS = {("none", 10): 1.0, ("bn", 10): 1 / 2.5}  # max per-member ratio, (arm, E) -> ratio
ROWS: list[tuple[str, int, float, float, float]] = []


def _spec(arm: str) -> ModelSpec:
    return ModelSpec(get_cell("lstm"), INPUT, HIDDEN, 1, OUTPUT, reg=load_arm(arm), total_len=T)


def _step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        F.mse_loss(model(x), y).backward()

    step()  # correctness before timing: the step runs and produces finite gradients
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    return step


def cohort_step(arm: str, members: int) -> Callable[[], None]:
    solos = []
    for seed in range(members):
        torch.manual_seed(seed)
        solos.append(build_model(_spec(arm)))
    g = torch.Generator().manual_seed(members)
    x, y = torch.randn(members, BATCH, T, INPUT, generator=g), torch.randn(members, BATCH, OUTPUT, generator=g)
    return _step(CohortModel(solos).train(), x, y)


def solo_step(arm: str) -> Callable[[], None]:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(BATCH, T, INPUT, generator=g), torch.randn(BATCH, OUTPUT, generator=g)
    return _step(build_model(_spec(arm)).train(), x, y)


@pytest.fixture(scope="module", autouse=True)
def ratio_table(request: pytest.FixtureRequest):
    """Print the medians of the per-member ratios when the module is done (also with -q)."""
    yield
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    if tr is None or not ROWS:
        return
    with request.config.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
        tr.write_line("")
        tr.write_line(f"cohort vs solo, LSTM T={T} B={BATCH} H={HIDDEN}, per-member fwd+bwd (medians of the rounds):")
        tr.write_line(f"{'arm':<6}{'E':>4}{'solo ms':>10}{'cohort ms/member':>18}{'ratio':>8}  target")
        for arm, members, solo_ms, per_member_ms, ratio in ROWS:
            target = TARGETS.get((arm, members))
            verdict = "" if target is None else f"<= {target:.2f}: {'met' if ratio <= target else 'MISSED'}"
            tr.write_line(f"{arm:<6}{members:>4}{solo_ms:>10.2f}{per_member_ms:>18.2f}{ratio:>8.2f}  {verdict}")


@pytest.mark.parametrize("members", SIZES, ids=lambda e: f"E{e}")
@pytest.mark.parametrize("arm", ["none", "bn"])
def test_cohort_step_per_member(benchmark, arm: str, members: int, bench_threads: int, request) -> None:
    cfg = request.config
    rounds, warmup = cfg.getoption("bench_rounds"), cfg.getoption("bench_warmup")
    step, ref_step = cohort_step(arm, members), solo_step(arm)
    ref_s: list[float] = []
    var_s: list[float] = []

    def setup() -> None:  # untimed by pytest-benchmark: one solo step, interleaved
        t0 = time.perf_counter()
        ref_step()
        ref_s.append(time.perf_counter() - t0)

    def target() -> None:
        t0 = time.perf_counter()
        step()
        var_s.append(time.perf_counter() - t0)

    benchmark.group = f"lstm-{arm} T={T}"
    benchmark.pedantic(target, setup=setup, rounds=rounds, warmup_rounds=warmup, iterations=1)
    ref_s, var_s = ref_s[warmup:], var_s[warmup:]
    ratios = [v / members / r for v, r in zip(var_s, ref_s)]
    benchmark.extra_info.update(
        cell="lstm",
        reg=arm,
        members=members,
        seq_len=T,
        batch_size=BATCH,
        hidden_size=HIDDEN,
        threads=bench_threads,
        solo_impl=build_model(_spec(arm)).impl_used.value,
        target=TARGETS.get((arm, members)),
        ratio_samples=[round(r, 5) for r in ratios],
    )
    ROWS.append(
        (
            arm,
            members,
            1e3 * statistics.median(ref_s),
            1e3 * statistics.median(var_s) / members,
            statistics.median(ratios),
        )
    )

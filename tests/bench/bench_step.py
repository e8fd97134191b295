"""Step time of every cell × reg × impl on CPU, for `make bench` / `make bench-check`.

One training step = zero_grad + forward + MSE loss + backward; the optimizer step is left
out (it is the same few fused adds for every variant and would only add noise).
Sizes: batch 64, input 32, hidden 128, one layer, output 10, T from --bench-seq-lens.

Each timed round of a variant is preceded by one step of the reference — `native`/`none`
of the same cell and T — inside pedantic's untimed `setup`, timed here with
perf_counter. The per-round ratios variant/reference land in
`extra_info["ratio_samples"]`; `benchmark.bench_check` compares their median with the
committed baseline, so load that slows a whole round cancels out.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

import pytest
import torch
import torch.nn.functional as F

import benchmark as bm  # noqa: F401  (pytest-benchmark owns the name `benchmark`)
from benchmark.config import BNConfig, BNPlacement, DropoutConfig, DropoutPlacement, Impl, RegConfig, RegName
from benchmark.models import ModelSpec, build_model, get_cell

BATCH, INPUT, HIDDEN, OUTPUT = 64, 32, 128, 10
CELLS = ("rnn", "lstm", "gru")
# (impl, reg, bn placement, dropout placement) per cell; `both` = the default placements.
FAMILIES: tuple[tuple[Impl, RegName, Optional[BNPlacement], Optional[DropoutPlacement]], ...] = (
    (Impl.native, RegName.none, None, None),  # the reference: always first in its group
    (Impl.native, RegName.bn, BNPlacement.output, None),
    (Impl.native, RegName.dropout, None, DropoutPlacement.output),
    (Impl.custom, RegName.none, None, None),
    (Impl.custom, RegName.bn, BNPlacement.recurrent, None),
    (Impl.custom, RegName.bn, BNPlacement.input, None),
    (Impl.custom, RegName.dropout, None, DropoutPlacement.output),
    (Impl.custom, RegName.dropout, None, DropoutPlacement.variational),
    (Impl.custom, RegName.dropout, None, DropoutPlacement.recurrent),
    (Impl.custom, RegName.both, BNPlacement.recurrent, DropoutPlacement.output),
    (Impl.custom, RegName.ln, None, None),  # Ba et al. 2016, defaults of conf/reg/ln.yaml
    (Impl.custom, RegName.zoneout, None, None),  # Krueger et al. 2017, defaults of conf/reg/zoneout.yaml
)


@dataclass(frozen=True)
class Variant:
    cell: str
    impl: Impl
    reg: RegName
    bn: Optional[BNPlacement]
    dropout: Optional[DropoutPlacement]
    seq_len: int

    @property
    def base_id(self) -> str:
        """e.g. lstm-custom-bn.recurrent, gru-native-dropout.output, rnn-custom-both."""
        tag = self.reg.value
        if self.reg is RegName.bn:
            tag += f".{self.bn.value}"
        elif self.reg is RegName.dropout:
            tag += f".{self.dropout.value}"
        return f"{self.cell}-{self.impl.value}-{tag}"

    @property
    def id(self) -> str:
        return f"{self.base_id}-T{self.seq_len}"

    @property
    def reference(self) -> "Variant":
        return Variant(self.cell, Impl.native, RegName.none, None, None, self.seq_len)

    def reg_config(self) -> RegConfig:
        return RegConfig(name=self.reg, bn=BNConfig(placement=self.bn or BNPlacement.recurrent),
                         dropout=DropoutConfig(placement=self.dropout or DropoutPlacement.output))


def variants(seq_lens: list[int]) -> list[Variant]:
    """Grouped by cell and T, reference first (so a group's timings are close in time)."""
    return [Variant(c, *fam, seq_len=t) for c in CELLS for t in seq_lens for fam in FAMILIES]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "variant" in metafunc.fixturenames:
        raw = metafunc.config.getoption("bench_seq_lens")
        try:
            seq_lens = [int(s) for s in raw.split(",") if s.strip()]
        except ValueError:
            raise pytest.UsageError(f"--bench-seq-lens: expected comma-separated integers, got {raw!r}") from None
        vs = variants(seq_lens)
        metafunc.parametrize("variant", vs, ids=[v.id for v in vs])


def make_step(v: Variant) -> Callable[[], None]:
    """A closure running one training step (zero_grad, forward, loss, backward) of variant v."""
    torch.manual_seed(0)
    model = build_model(ModelSpec(get_cell(v.cell), INPUT, HIDDEN, 1, OUTPUT, reg=v.reg_config(), impl=v.impl))
    assert model.impl_used is v.impl
    model.train()
    g = torch.Generator().manual_seed(v.seq_len)
    x = torch.randn(BATCH, v.seq_len, INPUT, generator=g)  # (B, T, I)
    y = torch.randn(BATCH, OUTPUT, generator=g)  # (B, O)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss = F.mse_loss(model(x), y)
        loss.backward()

    step()  # correctness before timing: the step runs and produces finite gradients
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None), v.id
    return step


@pytest.fixture(scope="session")
def reference_steps() -> Callable[[Variant], Callable[[], None]]:
    """One warm reference model per (cell, T), shared by all variants of that group."""
    cache: dict[str, Callable[[], None]] = {}

    def get(v: Variant) -> Callable[[], None]:
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


def test_train_step(benchmark, variant: Variant, reference_steps, bench_threads: int,
                    bench_slowdown: dict[str, float], request) -> None:
    cfg = request.config
    rounds, warmup = cfg.getoption("bench_rounds"), cfg.getoption("bench_warmup")
    factor = bench_slowdown.get(variant.id, bench_slowdown.get(variant.base_id, 1.0))
    step = slowed(make_step(variant), factor)
    ref_step = reference_steps(variant)
    ref_s: list[float] = []
    var_s: list[float] = []

    def setup() -> None:  # untimed by pytest-benchmark: one reference step, interleaved
        t0 = time.perf_counter()
        ref_step()
        ref_s.append(time.perf_counter() - t0)

    def target() -> None:
        t0 = time.perf_counter()
        step()
        var_s.append(time.perf_counter() - t0)

    benchmark.group = f"{variant.cell} T={variant.seq_len}"
    benchmark.pedantic(target, setup=setup, rounds=rounds, warmup_rounds=warmup, iterations=1)
    ref_s, var_s = ref_s[warmup:], var_s[warmup:]
    assert len(ref_s) == len(var_s) == rounds
    benchmark.extra_info.update(
        variant=variant.id, reference=variant.reference.id,
        cell=variant.cell, reg=variant.reg.value, impl=variant.impl.value, seq_len=variant.seq_len,
        bn_placement=variant.bn.value if variant.bn else None,
        dropout_placement=variant.dropout.value if variant.dropout else None,
        dropout_p=variant.reg_config().dropout.p if variant.dropout else None,
        threads=bench_threads, batch_size=BATCH, input_size=INPUT, hidden_size=HIDDEN,
        optimizer_step=False, slowdown=factor,
        ratio_samples=[round(v / r, 5) for v, r in zip(var_s, ref_s)],
        ref_ms=[round(r * 1e3, 4) for r in ref_s],
    )

"""Per-member training-step time of a stack of E members (benchmark/models/stack.py) against a stack of one,
`make bench-cohort`.

One step = zero_grad + forward + MSE loss + backward (no optimiser step), T=100, B=32, one layer, a
last-step head, float32, on the thread count of --bench-threads (the Makefile: 1). The grid: every
cell (rnn, lstm, gru) × arm (none, bn, dropout, both, ln, zoneout) × H ∈ {32, 128} × cohort size
E ∈ {1, 5, 10, 20}, on CPU and on CUDA where present (skipped with the reason otherwise).

Every timed round of the E-member cohort is preceded by one step of the solo model a run trains
today (impl auto: torch's fused kernel where the variant allows it, the custom loop otherwise),
timed in pedantic's untimed setup, so the two are measured side by side and load that slows a
round hits both. extra_info["ratio_samples"] holds (cohort step / E) / solo step per round. Training
E members one after another through the solo path costs E solo steps, so a median ratio below 1
at E=10 says "stacked is faster", above 1 "sequential is faster". The table printed at the end
shows the medians per cell × arm (columns H × E), which mode wins at E=10, whether that agrees with
the rule the runs use (benchmark/job/cohort_run.py `stack_loses`: on the CPU one after another only where
torch's fused LSTM runs the variant, unless H <= 32 with E >= 10; on CUDA without graph replay where E
cuDNN steps cost less than the eager stack's one, from measured costs; stacked everywhere else; a ratio
within 0.85-1.18 is a tie and agrees either way), and
the two targets: a 10-member BN-LSTM cohort at H=32 at most 1/2.5 of the solo BN-LSTM per member, a
plain LSTM cohort (E=10, H=32) per member no more than the solo fused LSTM.

Rounds shrink with the work of a point so the grid fits in about six minutes on one thread:
H=32: 11 timed rounds (7 at E=20) after 1 warm-up round; H=128: 6 (5 at E=10, 4 at E=20), no warm-up round.
Before timing, every model runs one checked step (finite gradients), which also warms it.
--bench-rounds / --bench-warmup cap these. A quick subset, e.g. the two targets' LSTM points:

    .venv/bin/python -m pytest tests/bench/bench_cohort.py -q --bench-threads=1 -k "cpu-lstm and H32 and E10"
"""

from __future__ import annotations

import statistics
from typing import Callable, NamedTuple

import pytest
import torch
import torch.nn.functional as F
from interleave import interleaved_rounds

import benchmark as bm  # noqa: F401  (pytest-benchmark owns the name `benchmark`)
from benchmark.arms import load_arm
from benchmark.job.cohort_run import stack_loses
from benchmark.models import ModelSpec, build_model, get_cell
from benchmark.models.stack import stack

T, BATCH, INPUT, OUTPUT = 100, 32, 2, 1
CELLS = ("rnn", "lstm", "gru")
ARMS = ("none", "bn", "dropout", "both", "ln", "zoneout")
HIDDENS = (32, 128)
SIZES = (1, 5, 10, 20)
DEVICES = ("cpu", "cuda")
RULE_E = 10  # the cohort size at which "stacked or sequential?" is read off
TIE = (0.85, 1 / 0.85)  # a ratio this close to 1 is a tie: either choice agrees with the rule
# (cell, arm, H, E) -> max per-member ratio
TARGETS = {("lstm", "none", 32, 10): 1.0, ("lstm", "bn", 32, 10): 1 / 2.5}


class Row(NamedTuple):
    solo_impl: str
    solo_ms: float
    per_member_ms: float
    ratio: float


ROWS: dict[tuple[str, str, str, int, int], Row] = {}  # (device, cell, arm, H, E) -> medians


def schedule(hidden: int, members: int) -> tuple[int, int]:
    """(timed rounds, warm-up rounds) of a point: fewer for the big ones, to keep the grid at ~6 min."""
    if hidden <= 32:
        return (7 if members >= 20 else 11), 1
    return {1: 6, 5: 6, 10: 5}.get(members, 4), 0


def _spec(cell: str, arm: str, hidden: int) -> ModelSpec:
    return ModelSpec(get_cell(cell), INPUT, hidden, 1, OUTPUT, reg=load_arm(arm), total_len=T)


def _step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        F.mse_loss(model(x), y).backward()
        sync()

    step()  # correctness before timing: the step runs and produces finite gradients
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    return step


def cohort_step(cell: str, arm: str, hidden: int, members: int, device: str) -> Callable[[], None]:
    solos = []
    for seed in range(members):
        torch.manual_seed(seed)
        solos.append(build_model(_spec(cell, arm, hidden)))
    g = torch.Generator().manual_seed(members)
    x, y = torch.randn(members, BATCH, T, INPUT, generator=g), torch.randn(members, BATCH, OUTPUT, generator=g)
    return _step(stack(solos).to(device).train(), x.to(device), y.to(device))


def solo_step(cell: str, arm: str, hidden: int, device: str) -> tuple[Callable[[], None], str]:
    """The solo model's step and the impl it resolved to (native or custom)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(1, BATCH, T, INPUT, generator=g), torch.randn(1, BATCH, OUTPUT, generator=g)
    model = build_model(_spec(cell, arm, hidden))
    return _step(model.to(device).train(), x.to(device), y.to(device)), model.impl_used.value


def _winner(ratio: float) -> str:
    return "stacked" if ratio < 1 else "sequential"


def _matrix_line(device: str, cell: str, arm: str) -> str:
    """One row: ratios per H × E (target points marked `!` when missed, `*` when met), E=10 winners, rule check."""
    cells, winners, agree = [], [], True
    impl = ROWS.get((device, cell, arm, HIDDENS[0], SIZES[0]), Row("?", 0, 0, 0)).solo_impl
    for h in HIDDENS:
        for e in SIZES:
            row = ROWS.get((device, cell, arm, h, e))
            target = TARGETS.get((cell, arm, h, e))
            mark = " " if target is None or row is None else ("*" if row.ratio <= target else "!")
            cells.append(f"{'-':>7} " if row is None else f"{row.ratio:7.2f}{mark}")
        rule_row = ROWS.get((device, cell, arm, h, RULE_E))
        if rule_row is None:
            winners.append("-")
            continue
        winners.append(_winner(rule_row.ratio)[:3])
        alone = stack_loses(cell, rule_row.solo_impl, device, h, RULE_E, reg=arm, T=T)
        agree &= (rule_row.ratio < 1) == (not alone) or TIE[0] <= rule_row.ratio <= TIE[1]
    rule = "agrees" if "-" not in winners and agree else ("?" if "-" in winners else "DISAGREES")
    return f"{cell:<5}{arm:<8}{impl:<7}" + "".join(cells) + f"  {'/'.join(winners):<8} {rule}"


def _report(write: Callable[[str], None]) -> None:
    for device in DEVICES:
        if not any(k[0] == device for k in ROWS):
            continue
        write("")
        write(f"cohort vs solo on {device}, T={T} B={BATCH}: per-member fwd+bwd ratio (cohort step / E) / solo step")
        write(f"(medians of the rounds; * target met, ! target missed; E={RULE_E} faster: stacked or sequential)")
        head = "".join(f"{f'H{h}E{e}':>7} " for h in HIDDENS for e in SIZES)
        write(f"{'cell':<5}{'arm':<8}{'solo':<7}{head}  E{RULE_E} H{HIDDENS[0]}/H{HIDDENS[1]} rule")
        for cell in CELLS:
            for arm in ARMS:
                if any(k[:3] == (device, cell, arm) for k in ROWS):
                    write(_matrix_line(device, cell, arm))
        for (cell, arm, h, e), limit in TARGETS.items():
            row = ROWS.get((device, cell, arm, h, e))
            if row is not None:
                verdict = "met" if row.ratio <= limit else "MISSED"
                write(
                    f"target {cell}-{arm} H={h} E={e}: solo {row.solo_ms:.1f} ms, cohort {row.per_member_ms:.1f} ms"
                    f"/member, ratio {row.ratio:.2f} <= {limit:.2f}: {verdict}"
                )


@pytest.fixture(scope="module", autouse=True)
def ratio_table(request: pytest.FixtureRequest):
    """Print the matrix of median per-member ratios when the module is done (also with -q)."""
    yield
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    if tr is None or not ROWS:
        return
    with request.config.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
        _report(tr.write_line)


@pytest.mark.parametrize("members", SIZES, ids=lambda e: f"E{e}")
@pytest.mark.parametrize("hidden", HIDDENS, ids=lambda h: f"H{h}")
@pytest.mark.parametrize("arm", ARMS)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("device", DEVICES)
def test_cohort_step_per_member(
    benchmark, device: str, cell: str, arm: str, hidden: int, members: int, bench_threads: int, request
) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip(f"no CUDA device (torch {torch.__version__}, cuda {torch.version.cuda})")
    cfg = request.config
    rounds, warmup = schedule(hidden, members)
    rounds, warmup = min(rounds, cfg.getoption("bench_rounds")), min(warmup, cfg.getoption("bench_warmup"))
    step = cohort_step(cell, arm, hidden, members, device)
    ref_step, solo_impl = solo_step(cell, arm, hidden, device)
    benchmark.group = f"{device} {cell}-{arm} H={hidden} T={T}"
    ref_s, var_s = interleaved_rounds(benchmark, step, ref_step, rounds, warmup)
    ratios = [v / members / r for v, r in zip(var_s, ref_s)]
    benchmark.extra_info.update(
        device=device,
        cell=cell,
        reg=arm,
        members=members,
        seq_len=T,
        batch_size=BATCH,
        hidden_size=hidden,
        threads=bench_threads,
        solo_impl=solo_impl,
        target=TARGETS.get((cell, arm, hidden, members)),
        ratio_samples=[round(r, 5) for r in ratios],
    )
    ROWS[(device, cell, arm, hidden, members)] = Row(
        solo_impl, 1e3 * statistics.median(ref_s), 1e3 * statistics.median(var_s) / members, statistics.median(ratios)
    )

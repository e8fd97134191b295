"""The fused plain cohort kernels compute what the cohort's autograd loop computes: the LSTM
(benchmark/models/cohort_fused.py), the GRU and the tanh RNN (benchmark/models/cohort_fused_gru.py).

A plain cohort in training with gradients takes the fused path; these tests run the same cohort through
both paths (the autograd one forced by switching `CohortLayer._can_fuse` off, the random stream reseeded
in between so both see the same dropout masks) and against the solo models, in float64, to 1e-10
relative: outputs, input gradients and every parameter gradient. A spy on the kernels shows which path
ran, and that every regulariser inside the recurrence, evaluation, `torch.no_grad` and autocast keep the
autograd loop (recurrent BN has fused paths of its own: tests/test_cohort_fused_bn.py).
"""

from __future__ import annotations

import pytest
import test_cohort
import torch
from cohort_kernels import forward_backward, solo_models, spy_kernels

import benchmark as bm  # noqa: F401  (pytest-benchmark owns the name `benchmark`)
from benchmark.arms import load_arm
from benchmark.models import ModelSpec, cohort_fused_gru
from benchmark.models.cells import GRUCell, LSTMCell, RNNCell
from benchmark.models.cohort import CohortLayer, CohortModel

CELLS = [LSTMCell, GRUCell, RNNCell]
KERNELS = {"lstm": "cohort_lstm", "gru": "cohort_gru", "rnn": "cohort_rnn"}
B, I, H, L, O, T = 5, 3, 4, 2, 2, 6
TOL = dict(rtol=1e-10, atol=1e-12)
recorder = test_cohort.recorder  # the fixture that records every mask the solos draw
cells = pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)


@pytest.fixture
def fused_calls(monkeypatch) -> list:
    """Names of the fused plain kernels the layers ran, in order (any cell's: only its own may run)."""
    return spy_kernels(monkeypatch, KERNELS.values())


def make_cohort(cell, members: int, arm: str, per_step: bool, *overrides: str) -> tuple[list, CohortModel]:
    spec = ModelSpec(cell, I, H, L, O, per_step=per_step, reg=load_arm(arm, *overrides), total_len=T)
    solos = solo_models(spec, members)
    return solos, CohortModel(solos).train()


def inputs(members: int) -> torch.Tensor:
    return torch.randn(members, B, T, I, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


@cells
@pytest.mark.parametrize("arm", ["none", "dropout"])
@pytest.mark.parametrize("per_step", [True, False], ids=["per_step_head", "last_step_head"])
@pytest.mark.parametrize("members", [1, 3])
def test_the_fused_path_equals_the_autograd_cohort_loop(members, per_step, arm, cell, fused_calls, monkeypatch):
    solos, cohort = make_cohort(cell, members, arm, per_step)
    x = inputs(members)
    torch.manual_seed(5)  # the solos have no mask generator of their own: masks come from the global stream
    y, dx, grads = forward_backward(cohort, x)
    assert fused_calls == [KERNELS[cell.name]] * L  # every layer took the cell's fused path
    torch.manual_seed(5)  # the same dropout masks again
    monkeypatch.setattr(CohortLayer, "_can_fuse", lambda self, x: False)
    y_ref, dx_ref, grads_ref = forward_backward(cohort, x)
    assert len(fused_calls) == L
    torch.testing.assert_close(y, y_ref, **TOL)
    torch.testing.assert_close(dx, dx_ref, **TOL)
    assert grads.keys() == grads_ref.keys()
    for name, g in grads.items():
        torch.testing.assert_close(g, grads_ref[name], **TOL, msg=name)


@cells
@pytest.mark.parametrize("per_step", [True, False], ids=["per_step_head", "last_step_head"])
@pytest.mark.parametrize("members", [1, 3])
def test_the_fused_path_equals_the_solo_models(members, per_step, cell, fused_calls):
    solos, cohort = make_cohort(cell, members, "none", per_step)
    x = inputs(members)
    w = torch.randn(cohort(x).shape, dtype=x.dtype)
    fused_calls.clear()
    y, dx, grads = forward_backward(cohort, x, w)
    assert fused_calls == [KERNELS[cell.name]] * L
    for e, solo in enumerate(solos):
        ye, dxe, ge = forward_backward(solo, x[e], w[e])
        torch.testing.assert_close(y[e], ye, **TOL, msg=f"member {e} output")
        torch.testing.assert_close(dx[e], dxe, **TOL, msg=f"member {e} input gradient")
        for name, g in grads.items():
            torch.testing.assert_close(g[e], ge[name], **TOL, msg=f"member {e} {name}")


@cells
@pytest.mark.parametrize("per_step", [True, False], ids=["per_step_head", "last_step_head"])
def test_with_output_dropout_each_member_still_equals_its_solo_model(
    per_step, cell, recorder, monkeypatch, fused_calls
):
    """Replays the solos' own dropout masks (tests/test_cohort.py), through the fused path."""
    solos, cohort, y, ys, xc, xs = test_cohort.run_both(
        cell, load_arm("dropout"), "train", recorder, monkeypatch, per_step
    )
    assert fused_calls == [KERNELS[cell.name]] * test_cohort.L
    for e, solo in enumerate(solos):
        torch.testing.assert_close(y[e], ys[e], **TOL)
        torch.testing.assert_close(xc.grad[e], xs[e].grad, **TOL)
        for name, p in cohort.named_parameters():
            torch.testing.assert_close(p.grad[e], solo.get_parameter(name).grad, **TOL, msg=name)


@cells
@pytest.mark.parametrize(
    "arm, overrides",
    [
        ("ln", ()),
        ("zoneout", ()),
        ("weightdrop", ()),
        ("dropout", ("dropout.placement=variational",)),
        ("dropout", ("dropout.placement=recurrent",)),
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(v),
)
def test_a_regulariser_inside_the_recurrence_keeps_the_autograd_loop(arm, overrides, cell, fused_calls):
    _, cohort = make_cohort(cell, 2, arm, True, *overrides)
    forward_backward(cohort, inputs(2))
    assert fused_calls == []


@cells
def test_evaluation_no_grad_and_autocast_keep_the_autograd_loop(cell, fused_calls):
    _, cohort = make_cohort(cell, 2, "none", True)
    x = inputs(2)
    cohort.eval()
    forward_backward(cohort, x)
    cohort.train()
    with torch.no_grad():
        cohort(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cohort(x)
    assert fused_calls == []
    forward_backward(cohort, x)  # and the same cohort in training does take it
    assert fused_calls == [KERNELS[cell.name]] * L


@pytest.mark.parametrize("cell", [GRUCell, RNNCell], ids=lambda c: c.name)
def test_the_plain_tanh_branch_off_the_cpu_equals_the_autograd_loop_too(cell, fused_calls, monkeypatch):
    """Off the CPU the kernels take torch.tanh, not 2σ(2x) − 1: the same comparison with that branch forced."""
    monkeypatch.setattr(cohort_fused_gru, "_tanh_scale", lambda like: 1)
    _, cohort = make_cohort(cell, 3, "none", True)
    y, dx, grads = forward_backward(cohort, inputs(3))
    assert fused_calls == [KERNELS[cell.name]] * L
    monkeypatch.setattr(CohortLayer, "_can_fuse", lambda self, x: False)
    y_ref, dx_ref, grads_ref = forward_backward(cohort, inputs(3))
    torch.testing.assert_close(y, y_ref, **TOL)
    torch.testing.assert_close(dx, dx_ref, **TOL)
    for name, g in grads.items():
        torch.testing.assert_close(g, grads_ref[name], **TOL, msg=name)

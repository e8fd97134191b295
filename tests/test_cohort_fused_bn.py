"""The fused recurrent-BN cohort (benchmark/models/cohort_fused_bn.py) computes what the autograd loop computes.

Per-step BN (Cooijmans et al. 2016) of every built-in cell, in training with gradients, takes the
fused path; these tests run the same cohort through it and through the cohort's autograd loop (forced
by switching `CohortLayer._can_fuse_bn` off, the random stream and the BN running statistics reset in
between) and against the solo models, in float64, to 1e-10 relative (`close`): outputs, input gradients, every
parameter gradient (W_ih, W_hh, biases, BN gains and the cell norm's bias) and the running statistics
the step leaves. Sequences run within and beyond the BN's `max_steps`, and every input feature is the
same for the whole batch at step 0 (as the digits task's first pixel), so BN sees zero batch variance.
A spy on the kernels shows which path ran.
"""

from __future__ import annotations

import pytest
import torch
from cohort_kernels import solo_models, spy_kernels

import benchmark as bm  # noqa: F401  (pytest-benchmark owns the name `benchmark`)
from benchmark.arms import load_arm
from benchmark.models import ModelSpec
from benchmark.models.cells import GRUCell, LSTMCell, RNNCell
from benchmark.models.cohort import CohortLayer, CohortModel
from benchmark.models.cohort_norm import CohortStepBatchNorm, projected_bn
from benchmark.models.norm import StepBatchNorm

CELLS = [LSTMCell, GRUCell, RNNCell]
B, I, H, L, O, T = 5, 3, 4, 2, 2, 7
RTOL = 1e-10
KERNELS = ("cohort_bn_lstm", "cohort_bn_gru", "cohort_bn_rnn")


@pytest.fixture
def bn_calls(monkeypatch) -> list:
    """Names of the fused recurrent-BN kernels the layers ran, in order."""
    return spy_kernels(monkeypatch, KERNELS)


def _move_statistics(model) -> None:
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith(("running_mean", "running_var")):
                buf.uniform_(0.5, 1.5)


def make_cohort(cell, members: int, arm: str, total_len: int, *overrides: str) -> tuple[list, CohortModel]:
    """Solo models (seeds 0..members-1, BN statistics moved off their initial values) and their cohort."""
    spec = ModelSpec(cell, I, H, L, O, per_step=True, reg=load_arm(arm, *overrides), total_len=total_len)
    solos = solo_models(spec, members, _move_statistics)
    return solos, CohortModel(solos).train()


def inputs(members: int) -> torch.Tensor:
    """(E, B, T, I), 0 at step 0 as the digits task's first pixel: zero batch variance in the BNs there."""
    x = torch.randn(members, B, T, I, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x[:, :, 0] = 0.0
    return x


def run(model, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict, dict]:
    """Output, input gradient, parameter gradients of the readout (y·w).sum(), and the running statistics after."""
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    y = model(x)
    (y * w).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    stats = {n: b.clone() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var"))}
    return y.detach(), x.grad, grads, stats


def close(got: torch.Tensor, want: torch.Tensor, msg: str) -> None:
    """Equal to 1e-10 of each entry or of the tensor's largest entry.

    At step 0 every BN sees zero batch variance and scales its gradient by γ/√eps (~32), and the summed
    gradients cancel back to O(1): float rounding, where the two paths order their sums differently,
    grows to ~1e-11 of the largest entry there, more than 1e-12 absolute for the entries near 0.
    """
    torch.testing.assert_close(got, want, rtol=RTOL, atol=RTOL * float(want.abs().max()), msg=msg)


def assert_all_close(got: tuple, want: tuple, what: str) -> None:
    y, dx, grads, stats = got
    close(y, want[0], f"{what}: output")
    close(dx, want[1], f"{what}: input gradient")
    assert grads.keys() == want[2].keys() and stats.keys() == want[3].keys()
    for name in grads:
        close(grads[name], want[2][name], f"{what}: gradient of {name}")
    for name in stats:
        close(stats[name], want[3][name], f"{what}: {name}")


@pytest.mark.parametrize("total_len", [T + 2, T - 3], ids=["within_max_steps", "beyond_max_steps"])
@pytest.mark.parametrize("arm", ["bn", "both"])
@pytest.mark.parametrize("members", [1, 3])
@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
def test_the_fused_path_equals_the_autograd_cohort_loop(cell, members, arm, total_len, bn_calls, monkeypatch):
    solos, cohort = make_cohort(cell, members, arm, total_len)
    x = inputs(members)
    w = torch.randn(members, B, T, O, dtype=x.dtype, generator=torch.Generator().manual_seed(7))
    start = {k: v.clone() for k, v in cohort.state_dict().items()}
    torch.manual_seed(5)  # reg=both: the output dropout masks come from the global stream
    fused = run(cohort, x, w)
    assert bn_calls == [f"cohort_bn_{cell.name}"] * L
    assert any(not torch.equal(fused[3][k], start[k]) for k in fused[3])  # the running statistics moved
    cohort.load_state_dict(start)
    torch.manual_seed(5)
    monkeypatch.setattr(CohortLayer, "_can_fuse_bn", lambda self, x: False)
    assert_all_close(fused, run(cohort, x, w), "fused vs autograd loop")
    assert len(bn_calls) == L


@pytest.mark.parametrize("total_len", [T + 2, T - 3], ids=["within_max_steps", "beyond_max_steps"])
@pytest.mark.parametrize("members", [1, 3])
@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
def test_the_fused_path_equals_the_solo_models(cell, members, total_len, bn_calls):
    solos, cohort = make_cohort(cell, members, "bn", total_len)
    x = inputs(members)
    w = torch.randn(members, B, T, O, dtype=x.dtype, generator=torch.Generator().manual_seed(7))
    y, dx, grads, stats = run(cohort, x, w)
    assert bn_calls == [f"cohort_bn_{cell.name}"] * L
    for e, solo in enumerate(solos):
        member = (y[e], dx[e], {n: g[e] for n, g in grads.items()})
        member += ({n: s.select(cohort.member_dim(n), e) for n, s in stats.items()},)
        assert_all_close(member, run(solo, x[e], w[e]), f"member {e} vs its solo model")


@pytest.mark.parametrize(
    "arm, overrides",
    [
        ("ln", ()),
        ("zoneout", ()),
        ("both", ("dropout.placement=variational",)),
        ("both", ("dropout.placement=recurrent",)),
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(v),
)
@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
def test_anything_else_inside_the_recurrence_keeps_the_autograd_loop(cell, arm, overrides, bn_calls):
    _, cohort = make_cohort(cell, 2, arm, T, *overrides)
    x = inputs(2)
    run(cohort, x, torch.ones(2, B, T, O, dtype=x.dtype))
    assert bn_calls == []


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
def test_evaluation_no_grad_and_autocast_keep_the_autograd_loop(cell, bn_calls):
    _, cohort = make_cohort(cell, 2, "bn", T)
    x = inputs(2)
    cohort.eval()
    run(cohort, x, torch.ones(2, B, T, O, dtype=x.dtype))
    cohort.train()
    with torch.no_grad():
        cohort(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cohort(x)
    assert bn_calls == []
    cohort(x)  # and the same cohort in training with gradients does take it
    assert len(bn_calls) == L


def two_cohort_norms(E: int, features: int, steps: int, bias: bool) -> tuple[CohortStepBatchNorm, CohortStepBatchNorm]:
    """Two identical per-step cohort BNs of E members (gains off 1, seeded), in training, float64: one for
    the fast path, one for the reference; after torch.manual_seed(0), so the test's draws follow."""
    torch.manual_seed(0)
    solos = [StepBatchNorm(features, steps, 0.1, 0.1, 1e-5, bias=bias).double() for _ in range(E)]
    with torch.no_grad():
        for m in solos:
            m.weight.uniform_(0.5, 1.5)
    return CohortStepBatchNorm(solos).double().train(), CohortStepBatchNorm(solos).double().train()


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("T", [3, 7])  # within and beyond max_steps = 5
def test_sequence_bn_equals_torch_batch_norm(bias: bool, T: int) -> None:
    """norm_x over a whole (T, E, B, F) sequence in training (`_SequenceBN`) equals torch's batch_norm per step and
    member: output, input and gain/bias gradients, running statistics (rows below max_steps only), float64."""
    E, B, Fd, steps = 3, 6, 4, 5
    fast, ref = two_cohort_norms(E, Fd, steps, bias)
    x = torch.randn(T, E, B, Fd, dtype=torch.float64)
    x[0, :, :, 1] = 3.0  # a batch-constant feature: zero variance
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    n = min(T, steps)
    y1 = fast(x1)
    y2 = ref._bn(x2[:n], ref.running_mean[:n], ref.running_var[:n])
    if T > n:
        y2 = torch.cat([y2, ref._bn(x2[n:], None, None)])
    g = torch.randn_like(y1)
    y1.backward(g)
    y2.backward(g)
    pairs = [(y1, y2), (x1.grad, x2.grad), (fast.weight.grad, ref.weight.grad)]
    pairs += [(fast.bias.grad, ref.bias.grad)] if bias else []
    pairs += [(fast.running_mean, ref.running_mean), (fast.running_var, ref.running_var)]
    for a, b in pairs:
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10 * float(b.abs().max()))
    assert not torch.equal(fast.running_var, torch.ones_like(fast.running_var))  # the rows did move


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("T", [3, 7])  # within and beyond max_steps = 5
@pytest.mark.parametrize("I", [1, 2, 5])
def test_bn_of_the_input_projection_from_the_input_moments_equals_bn_of_the_projection(I: int, T: int, bias: bool):
    """`projected_bn(x, W, norm)` (BN of W·x from x's batch mean and covariance) equals `norm(x @ Wᵀ)`: output,
    gradients of x, W, γ (and β), running statistics (rows below max_steps only), float64; an input that is the
    same across the batch at a step (digits' blank first pixel) included."""
    E, B, G, steps = 3, 6, 8, 5
    fast, ref = two_cohort_norms(E, G, steps, bias)
    x = torch.randn(T, E, B, I, dtype=torch.float64)
    x[0] = 0.0  # the same (blank) input for every sequence at the first step
    w = torch.randn(E, G, I, dtype=torch.float64)
    x1, x2, w1, w2 = (t.clone().requires_grad_() for t in (x, x, w, w))
    y1 = projected_bn(x1, w1, fast)
    y2 = ref(torch.matmul(x2, w2.transpose(1, 2)))
    g = torch.randn_like(y1)
    y1.backward(g)
    y2.backward(g)
    pairs = [(y1, y2), (x1.grad, x2.grad), (w1.grad, w2.grad), (fast.weight.grad, ref.weight.grad)]
    pairs += [(fast.bias.grad, ref.bias.grad)] if bias else []
    pairs += [(fast.running_mean, ref.running_mean), (fast.running_var, ref.running_var)]
    for a, b in pairs:
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9 * float(b.abs().max()))
    assert not torch.equal(fast.running_var, torch.ones_like(fast.running_var))  # the rows did move

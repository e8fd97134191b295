"""The hand-written kernels (benchmark/models/fused_*.py) compute what the layer's autograd loop computes: float64,
every cell x arm, stacks of one and of three, the path each variant takes named.

The reference is the same model under `reference_loop()` (every layer takes the autograd loop) with the same
random streams: outputs, input and parameter gradients and BN population statistics equal to 1e-10. The
kernels run only in training with gradients on; evaluation, `no_grad`, autocast and hidden-state probes
take the loop.
"""

from __future__ import annotations

import pytest
import torch
from arm_configs import arm

import benchmark as bm  # noqa: F401  (pytest-benchmark owns the name `benchmark`)
from benchmark.arms import load_arm
from benchmark.core.config import Impl
from benchmark.models import GRUCell, LSTMCell, ModelSpec, RNNCell, build_model, fused_gru, masks
from benchmark.models.cells import Kernels
from benchmark.models.layer import reference_loop
from benchmark.models.norm import StepBatchNorm, projected_bn
from benchmark.models.stack import stack

CELLS = [RNNCell, LSTMCell, GRUCell]
B, I, H, L, O, T = 5, 3, 4, 2, 2, 6
TOL = dict(rtol=1e-10, atol=1e-12)
VARIANTS = {
    "none": lambda: load_arm("none"),
    "bn": lambda: load_arm("bn"),
    "bn.input": lambda: arm("bn", bn="input"),
    "both": lambda: load_arm("both"),
    "ln": lambda: load_arm("ln"),
    "zoneout": lambda: load_arm("zoneout"),
    "weightdrop": lambda: load_arm("weightdrop"),
    "dropout.variational": lambda: arm("dropout", drop="variational", p=0.3),
    "dropout.recurrent": lambda: arm("dropout", drop="recurrent", p=0.3),
}
# the kernel each (cell, variant) takes in training, by Kernels' field (None: the autograd loop)
PATHS = {
    **{(c, v): "plain" for c in ("rnn", "lstm", "gru") for v in ("none", "weightdrop")},
    **{(c, v): "norm" for c in ("rnn", "lstm", "gru") for v in ("bn", "both", "ln")},
    **{("lstm", v): "masked" for v in ("bn.input", "zoneout", "dropout.variational", "dropout.recurrent")},
}


def spy(monkeypatch) -> list[str]:
    """The kernels the layers call, by their `Kernels` field, in order."""
    calls: list[str] = []
    for cell in CELLS:
        k = cell.fused

        def wrap(fn, name):
            return None if fn is None else (lambda *a, **kw: calls.append(name) or fn(*a, **kw))

        monkeypatch.setattr(cell, "fused", Kernels(*(wrap(getattr(k, n), n) for n in ("plain", "norm", "masked"))))
    return calls


def make(cell, variant: str, members: int, impl: Impl = Impl.custom, total_len: int = T + 2):
    """A float64 stack of `members` members (seeds 0..), in training, with their random streams."""
    spec = ModelSpec(cell, I, H, L, O, reg=VARIANTS[variant](), impl=impl, total_len=total_len)
    models = []
    for seed in range(members):
        torch.manual_seed(seed)
        models.append(build_model(spec).double().train())
    m = stack(models)
    return m, [masks.generator(seed, torch.device("cpu")) for seed in range(members)]


def run(model, gens, x: torch.Tensor) -> tuple:
    """Output, input and parameter gradients and buffers of one forward + backward with fresh copies of `gens`."""
    model.zero_grad(set_to_none=True)
    model.mask_gens = [torch.Generator().set_state(g.get_state()) for g in gens]
    x = x.clone().requires_grad_()
    y = model(x)
    (y * torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(7))).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    return y.detach(), x.grad, grads, {n: b.clone() for n, b in model.named_buffers()}


def check_same(a: tuple, b: tuple) -> None:
    for x, y in zip(a[:2], b[:2]):
        torch.testing.assert_close(x, y, **TOL)
    for d1, d2 in zip(a[2:], b[2:]):
        assert d1.keys() == d2.keys()
        for name in d1:
            torch.testing.assert_close(d1[name], d2[name], **TOL, msg=name)


CASES = [(v, T + 2) for v in VARIANTS] + [(v, T - 3) for v in ("bn", "both")]  # per-step BN beyond its rows too


@pytest.mark.parametrize("members", [1, 3])
@pytest.mark.parametrize("variant,total_len", CASES, ids=[f"{v}-T{t}" for v, t in CASES])
@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
def test_the_fused_path_equals_the_autograd_loop(cell, variant, total_len, members, monkeypatch):
    model, gens = make(cell, variant, members, total_len=total_len)
    x = torch.randn(members, B, T, I, dtype=torch.float64)
    calls = spy(monkeypatch)
    fast = run(model, gens, x)
    path = PATHS.get((cell.name, variant))
    assert calls == ([path] * L if path else [])
    with reference_loop():
        ref = run(make(cell, variant, members, total_len=total_len)[0], gens, x)
    assert len(calls) == (L if path else 0)
    check_same(fast, ref)


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
def test_evaluation_no_grad_autocast_and_hidden_probes_keep_the_autograd_loop(cell, monkeypatch):
    model, _ = make(cell, "bn", 2)
    x = torch.randn(2, B, T, I, dtype=torch.float64)
    calls = spy(monkeypatch)
    model.eval()(x).sum().backward()
    model.train()
    with torch.no_grad():
        model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        make(cell, "bn", 2)[0].float()(x.float())
    model(x, return_hidden=True)  # the top layer's loop; the lower one may fuse
    assert calls == ["norm"] * (L - 1)
    model(x)
    assert calls == ["norm"] * (L - 1 + L)  # and the same model in training takes it


def test_a_native_stack_of_one_calls_torchs_kernel_and_equals_the_loop(monkeypatch):
    """A plain LSTM alone (impl native) runs torch.lstm on member 0's weights: the loop's function."""
    model, gens = make(LSTMCell, "none", 1, Impl.native)
    assert all(layer.native for layer in model.layers)
    x = torch.randn(1, B, T, I, dtype=torch.float64)
    calls = spy(monkeypatch)
    fast = run(model, gens, x)
    assert calls == []
    with reference_loop():
        check_same(fast, run(model, gens, x))


@pytest.mark.parametrize("cell", [GRUCell, RNNCell], ids=lambda c: c.name)
def test_the_plain_tanh_branch_off_the_cpu_equals_the_autograd_loop_too(cell, monkeypatch):
    """Off the CPU the GRU/RNN kernels take torch.tanh, not 2σ(2x) − 1: the same comparison with that branch forced."""
    monkeypatch.setattr(fused_gru, "_tanh_scale", lambda like: 1)
    model, gens = make(cell, "none", 3)
    x = torch.randn(3, B, T, I, dtype=torch.float64)
    fast = run(model, gens, x)
    with reference_loop():
        check_same(fast, run(model, gens, x))


def test_fused_masks_are_the_loops_masks():
    """Candidate dropout: the same streams drop the same units on both paths (not just the same rate)."""
    model, gens = make(LSTMCell, "dropout.recurrent", 2)
    x = torch.randn(2, B, T, I, dtype=torch.float64)
    y, *_ = run(model, gens, x)
    other, *_ = run(model, [masks.generator(s + 5, torch.device("cpu")) for s in range(2)], x)
    assert not torch.allclose(y, other)


def _two_norms(E: int, features: int, steps: int, bias: bool) -> tuple[StepBatchNorm, StepBatchNorm]:
    norm = StepBatchNorm(features, steps, 0.1, 0.1, 1e-5, bias=bias, members=E).double().train()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    ref = StepBatchNorm(features, steps, 0.1, 0.1, 1e-5, bias=bias, members=E).double().train()
    ref.load_state_dict(norm.state_dict())
    return norm, ref


def _ref_sequence_bn(ref: StepBatchNorm, x: torch.Tensor) -> torch.Tensor:
    """torch's batch_norm, one step at a time (`step`)."""
    return torch.stack([ref.step(x_t, t) for t, x_t in enumerate(x.unbind(0))])


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("T_", [3, 7])  # within and beyond max_steps = 5
def test_sequence_bn_equals_torch_batch_norm_step_by_step(bias: bool, T_: int) -> None:
    """Per-step BN over a whole (T, E, B, F) sequence in training (`_SequenceBN`) equals torch's batch_norm per step
    and member: output, input and gain/bias gradients, running statistics (rows below max_steps only)."""
    E, Bn, Fd, steps = 3, 6, 4, 5
    fast, ref = _two_norms(E, Fd, steps, bias)
    x = torch.randn(T_, E, Bn, Fd, dtype=torch.float64)
    x[0, :, :, 1] = 3.0  # a batch-constant feature: zero variance
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = fast(x1), _ref_sequence_bn(ref, x2)
    g = torch.randn_like(y1)
    y1.backward(g)
    y2.backward(g)
    pairs = [(y1, y2), (x1.grad, x2.grad), (fast.weight.grad, ref.weight.grad)]
    pairs += [(fast.bias.grad, ref.bias.grad)] if bias else []
    pairs += [(fast.running_mean, ref.running_mean), (fast.running_var, ref.running_var)]
    for a, b in pairs:
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10 * float(b.detach().abs().max()))
    assert not torch.equal(fast.running_var, torch.ones_like(fast.running_var))  # the rows did move


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("T_", [3, 7])  # within and beyond max_steps = 5
@pytest.mark.parametrize("I_", [1, 2, 5])
def test_bn_of_the_input_projection_from_the_input_moments_equals_bn_of_the_projection(I_: int, T_: int, bias: bool):
    """`projected_bn(x, W, norm)` (BN of W·x from x's batch mean and covariance) equals `norm(x @ Wᵀ)`: output,
    gradients of x, W, γ (and β), running statistics, float64; an input that is the same across the batch at a
    step (digits' blank first pixel) included."""
    E, Bn, G, steps = 3, 6, 8, 5
    fast, ref = _two_norms(E, G, steps, bias)
    x = torch.randn(T_, E, Bn, I_, dtype=torch.float64)
    x[0] = 0.0  # the same (blank) input for every sequence at the first step
    w = torch.randn(E, G, I_, dtype=torch.float64)
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
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9 * float(b.detach().abs().max()))


def test_fused_float32_model_matches_torch_lstm():
    """End to end in float32: a 2-layer custom model (fused in training) against torch's kernel on its weights."""
    torch.manual_seed(0)
    spec = dict(cell=LSTMCell, input_size=I, hidden_size=H, num_layers=2, output_size=2, per_step=True)
    custom, native = build_model(ModelSpec(**spec, impl=Impl.custom)), build_model(ModelSpec(**spec, impl=Impl.native))
    native.load_state_dict(custom.state_dict())
    x = torch.randn(1, B, 9, I)
    outs = []
    for m in (custom, native):
        y = m.train()(x)
        y.pow(2).sum().backward()
        outs.append((y.detach(), [p.grad for p in m.parameters()]))
    torch.testing.assert_close(outs[0][0], outs[1][0], atol=1e-5, rtol=0)
    for a, b in zip(outs[0][1], outs[1][1]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)

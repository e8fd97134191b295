"""The fused LSTM sequence (hand-written backward) computes what the autograd loop computes.

Both paths run on the same layer: `layer(x, True)` takes the fused path in training, and
`layer(x, True, hiddens=[])` forces the autograd loop (the hidden-gradient probe's path).
Masks are drawn before the dispatch, so equal seeds give equal masks. Float64, so any
difference in the math shows far above rounding.
"""

from __future__ import annotations

import copy

import pytest
import torch
from arm_configs import arm

from benchmark.arms import load_arm
from benchmark.core.config import Impl
from benchmark.models import ModelSpec, build_model
from benchmark.models.cells import GRUCell, LSTMCell, RNNCell
from benchmark.models.fused import FusedLSTM
from benchmark.models.layer import RecurrentLayer

B, I, H = 5, 3, 4

VARIANTS = {
    "none": arm("none"),
    "dropout.variational": arm("dropout", drop="variational", p=0.3),
    "dropout.recurrent": arm("dropout", drop="recurrent", p=0.3),
    "bn.recurrent": arm("bn", bn="recurrent", gain_init=0.7),
    "bn.recurrent.short_stats": arm("bn", bn="recurrent", max_stats_steps=3, momentum=0.3),
    "bn.input": arm("bn", bn="input"),
    "ln": load_arm("ln"),
    "ln.gain": load_arm("ln", "ln.gain_init=0.6", "ln.eps=1e-3"),
    "zoneout": load_arm("zoneout", "zoneout.p_h=0.3", "zoneout.p_c=0.5"),
    "zoneout.h_only": load_arm("zoneout", "zoneout.p_h=0.4", "zoneout.p_c=0.0"),
    "both": arm("both", bn="recurrent", drop="variational", p=0.3),
}


def run(layer: RecurrentLayer, x: torch.Tensor, fused: bool, seed: int = 3):
    """Forward + backward of a random linear readout of every step; returns outputs and grads."""
    x = x.clone().requires_grad_(True)
    torch.manual_seed(seed)
    y = layer(x, True) if fused else layer(x, True, hiddens=[])
    assert (type(y.grad_fn).__name__ == "FusedLSTMBackward") == fused  # the path under test really ran
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(9), dtype=y.dtype)
    (y * w).sum().backward()
    grads = {n: p.grad.clone() for n, p in layer.named_parameters()}
    grads["x"] = x.grad
    layer.zero_grad(set_to_none=True)
    return y.detach(), grads


@pytest.mark.parametrize("T", [1, 7])
@pytest.mark.parametrize("name", VARIANTS)
def test_fused_lstm_matches_the_autograd_loop(name, T):
    layer = RecurrentLayer(LSTMCell, I, H, VARIANTS[name]).double().train()
    with torch.no_grad():  # move BN gains off their constant init so their gradients mean something
        for n, p in layer.named_parameters():
            if "norm" in n:
                p.add_(torch.rand_like(p) * 0.5)
    loop = copy.deepcopy(layer)
    x = torch.randn(T, B, I, dtype=torch.float64)
    for _ in range(2):  # twice: the second pass starts from updated BN population statistics
        y_f, g_f = run(layer, x, fused=True)
        y_l, g_l = run(loop, x, fused=False)
        torch.testing.assert_close(y_f, y_l, atol=1e-12, rtol=1e-10)
        assert g_f.keys() == g_l.keys() and len(g_f) >= 5
        for k in g_l:
            torch.testing.assert_close(g_f[k], g_l[k], atol=1e-12, rtol=1e-10, msg=k)
        for (k, b_f), b_l in zip(layer.named_buffers(), loop.buffers()):
            torch.testing.assert_close(b_f, b_l, atol=1e-12, rtol=1e-10, msg=k)


def test_fused_masks_are_the_loops_masks():
    """Candidate dropout: the same seed drops the same units on both paths (not just the same rate)."""
    layer = RecurrentLayer(LSTMCell, I, H, VARIANTS["dropout.recurrent"]).double().train()
    x = torch.randn(6, B, I, dtype=torch.float64)
    y_f, _ = run(layer, x, fused=True, seed=1)
    y_l, _ = run(layer, x, fused=False, seed=1)
    y_other, _ = run(layer, x, fused=True, seed=2)
    torch.testing.assert_close(y_f, y_l, atol=1e-12, rtol=0)
    assert not torch.allclose(y_f, y_other)


def test_fused_float32_model_matches_torch_lstm():
    """End to end in float32: a 2-layer custom model (fused in training) against nn.LSTM's kernel."""
    torch.manual_seed(0)
    spec = dict(cell=LSTMCell, input_size=I, hidden_size=H, num_layers=2, output_size=2, per_step=True)
    custom, native = build_model(ModelSpec(**spec, impl=Impl.custom)), build_model(ModelSpec(**spec, impl=Impl.native))
    native.load_state_dict(custom.state_dict())
    x = torch.randn(B, 9, I)
    outs = []
    for m in (custom, native):
        y = m.train()(x)
        y.pow(2).sum().backward()
        outs.append((y.detach(), [p.grad for p in m.parameters()]))
    torch.testing.assert_close(outs[0][0], outs[1][0], atol=1e-5, rtol=0)
    for a, b in zip(outs[0][1], outs[1][1]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["eval", "no_grad", "hiddens"])
def test_fused_path_only_in_training_with_gradients(mode):
    layer = RecurrentLayer(LSTMCell, I, H, VARIANTS["bn.recurrent"])
    x = torch.randn(4, B, I)
    if mode == "eval":
        y = layer.eval()(x, True)
    elif mode == "no_grad":
        with torch.no_grad():
            y = layer.train()(x, True)
    else:
        y = layer.train()(x, True, hiddens=[])
    assert not isinstance(y.grad_fn, FusedLSTM._backward_cls)


@pytest.mark.parametrize("cell", [RNNCell, GRUCell], ids=lambda c: c.name)
def test_cells_without_a_fused_function_take_the_loop(cell):
    y = RecurrentLayer(cell, I, H, VARIANTS["none"]).train()(torch.randn(3, B, I), True)
    assert cell.fused is None and type(y.grad_fn).__name__ == "StackBackward0"


def test_fused_population_update_follows_each_calls_momentum():
    """Precise BN sets momentum 1/(k+1) before batch k (a cumulative average); the fused path reads
    the momentum at each call as the loop does, so both reach the average of the batch statistics."""
    layer = RecurrentLayer(LSTMCell, I, H, VARIANTS["bn.recurrent"], stats_steps=5).double().train()
    loop = copy.deepcopy(layer)
    xs = [torch.randn(5, B, I, dtype=torch.float64) * (k + 1) for k in range(3)]
    for k, x in enumerate(xs):
        for n in (layer.norm_x, layer.norm_h, layer.norm_c, loop.norm_x, loop.norm_h, loop.norm_c):
            n.momentum = 1.0 / (k + 1)
        run(layer, x, fused=True)
        run(loop, x, fused=False)
    for (k, b_f), b_l in zip(layer.named_buffers(), loop.buffers()):
        torch.testing.assert_close(b_f, b_l, atol=1e-12, rtol=1e-10, msg=k)
    with torch.no_grad():  # and that average is the direct one: the mean of the batch means of W_ih·x
        direct = torch.stack([x @ layer.rnn.weight_ih_l0.t() for x in xs]).mean(2).mean(0)
    torch.testing.assert_close(layer.norm_x.running_mean, direct, atol=1e-12, rtol=1e-10)

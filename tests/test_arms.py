"""Layer normalisation (Ba et al. 2016) and zoneout (Krueger et al. 2017) against plain references.

The reference below is written out step by step in float64 from the papers' equations,
with the layer's own parameters, so outputs and every gradient must agree to rounding.
Zoneout's masks are recorded from the layer (the loop draws them before it runs) and
replayed in the reference: parity given the same masks.
"""

from __future__ import annotations

import pytest
import torch

import benchmark as bm  # noqa: F401
from benchmark.arms.base import Arm, Site
from benchmark.arms.blocks import LNConfig, ZoneoutConfig
from benchmark.arms.ln import LayerNormArm
from benchmark.arms.none import NoArm
from benchmark.arms.zoneout import ZoneoutArm
from benchmark.core.config import ConfigError, Impl
from benchmark.models import ModelSpec, build_model
from benchmark.models import layer as layer_mod
from benchmark.models.cells import GRUCell, LSTMCell, RNNCell
from benchmark.models.layer import RecurrentLayer

B, I, H, T = 5, 3, 4, 7
EPS = 1e-5
CELLS = [RNNCell, LSTMCell, GRUCell]


def plain_ln(v: torch.Tensor, gain: torch.Tensor, bias=None) -> torch.Tensor:
    """Ba et al. eq. (3)-(4), over the last axis: (v - μ) / sqrt(σ² + ε) · g (+ b)."""
    mu = v.mean(-1, keepdim=True)
    var = ((v - mu) ** 2).mean(-1, keepdim=True)
    y = (v - mu) / torch.sqrt(var + EPS) * gain
    return y if bias is None else y + bias


def run(layer: RecurrentLayer, x: torch.Tensor) -> torch.Tensor:
    """A stack of one layer on x (T, B, I) -> (T, B, H)."""
    return layer(x.unsqueeze(1))[:, 0]


def reference(layer: RecurrentLayer, x: torch.Tensor, ln: bool, keeps=None, ln_input: bool = True) -> torch.Tensor:
    """h_1..h_T (T, B, H) from the equations, with member 0's parameters. keeps[t] = (keep_h, keep_c) masks or
    probabilities."""
    w_ih, w_hh, b_ih, b_hh = (w[0] for w in layer.weights())
    cell = type(layer.cell)
    h = x.new_zeros(x.shape[1], layer.hidden_size)
    c = torch.zeros_like(h)
    outs = []
    for t in range(x.shape[0]):
        ax, ah = x[t] @ w_ih.T, h @ w_hh.T
        if ln:
            ax = plain_ln(ax, layer.norm_x.weight[0]) if ln_input else ax
            ah = plain_ln(ah, layer.norm_h.weight[0])
        ax, ah = ax + b_ih, ah + b_hh
        c_new = c
        if cell is LSTMCell:
            i, f, g, o = (ax + ah).chunk(4, 1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            cn = plain_ln(c_new, layer.norm_c.weight[0], layer.norm_c.bias[0]) if ln else c_new
            h_new = torch.sigmoid(o) * torch.tanh(cn)  # from the unzoned new cell (Krueger, eq. 9)
        elif cell is GRUCell:
            (xr, xz, xn), (hr, hz, hn) = ax.chunk(3, 1), ah.chunk(3, 1)
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            n = torch.tanh(xn + r * hn)  # the reset gate multiplies LN(W_hn·h) + b_hn
            h_new = (1 - z) * n + z * h
        else:
            h_new = torch.tanh(ax + ah)
        if keeps is not None:
            kh = keeps[t][0]
            h_new = kh * h + (1 - kh) * h_new
            if cell is LSTMCell:
                kc = keeps[t][1]
                c_new = kc * c + (1 - kc) * c_new
        h, c = h_new, c_new
        outs.append(h)
    return torch.stack(outs)


def ln_reg(**kw) -> Arm:
    return LayerNormArm(ln=LNConfig(**kw))


def zo_reg(p_h: float = 0.3, p_c: float = 0.5) -> Arm:
    return ZoneoutArm(zoneout=ZoneoutConfig(p_h=p_h, p_c=p_c))


def one_layer(cell, input_size: int, reg: Arm) -> RecurrentLayer:
    """A stack of one layer of the custom loop."""
    return RecurrentLayer(cell, input_size, H, reg, Site((reg,)))


def make_layer(cell, reg: Arm) -> RecurrentLayer:
    torch.manual_seed(0)
    layer = one_layer(cell, I, reg).double()
    with torch.no_grad():  # gains and betas off their init, so their gradients are tested
        for n, p in layer.named_parameters():
            if "norm" in n:
                p.add_(torch.rand_like(p) - 0.3)
    return layer


def grads_of(layer: RecurrentLayer, y: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(9), dtype=y.dtype)
    (y * w).sum().backward()
    out = {n: p.grad.clone() for n, p in layer.named_parameters()}
    out["x"] = x.grad.clone()
    layer.zero_grad(set_to_none=True)
    x.grad = None
    return out


def assert_parity(layer, x, y, y_ref):
    torch.testing.assert_close(y, y_ref, atol=1e-12, rtol=1e-10)
    g, g_ref = grads_of(layer, y, x), grads_of(layer, y_ref, x)
    assert len(g) >= 5
    for k in g_ref:
        torch.testing.assert_close(g[k], g_ref[k], atol=1e-12, rtol=1e-10, msg=k)


# -- layer normalisation ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
def test_ln_matches_the_plain_reference(cell, mode):
    layer = make_layer(cell, ln_reg())
    layer.train(mode == "train")
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    y = run(layer, x)
    fused = mode == "train"  # the training path is the fused per-step-norm kernel (fused_norm.py)
    node = y.grad_fn
    while type(node).__name__ in ("SelectBackward0", "TransposeBackward0", "SliceBackward0"):  # views of the output
        node = node.next_functions[0][0]
    assert (type(node).__name__ == f"Norm{cell.name.upper()}Backward") == fused
    assert_parity(layer, x, y, reference(layer, x, ln=True))


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
def test_ln_slots_and_train_equals_eval(cell):
    layer = make_layer(cell, ln_reg(gain_init=0.5))
    assert layer.norm_x.features == layer.norm_h.features == cell.gates * H
    assert layer.norm_x.bias is None and layer.norm_h.bias is None  # the cell's bias is shared
    assert (layer.norm_c is not None) == cell.has_cell_state
    if cell.has_cell_state:
        assert layer.norm_c.features == H and layer.norm_c.bias is not None
    assert not any(b.numel() for b in layer.buffers())  # nothing kept between batches
    x = torch.randn(T, B, I, dtype=torch.float64)
    with torch.no_grad():
        y_train = run(layer.train(), x)
        y_eval = run(layer.eval(), x)
        y_one = run(layer, x[:, :1])  # per example: the batch does not matter
    torch.testing.assert_close(y_train, y_eval, atol=0, rtol=0)
    torch.testing.assert_close(y_one, y_eval[:, :1], atol=1e-12, rtol=0)


def test_ln_gain_init_reaches_every_gain():
    layer = one_layer(LSTMCell, I, ln_reg(gain_init=0.5))
    assert all(torch.all(n.weight == 0.5) for n in (layer.norm_x, layer.norm_h, layer.norm_c))


# -- zoneout ------------------------------------------------------------------------------------


@pytest.fixture
def recorded_masks(monkeypatch):
    """Every zoneout mask the layer draws, in order (per state tensor: (T, B, H), member 0's)."""
    seen: list = []
    original = layer_mod.keep_masks

    def record(T, like, p):
        m = original(T, like, p)
        seen.append(m[0])
        return m

    monkeypatch.setattr(layer_mod, "keep_masks", record)
    return seen


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
def test_zoneout_in_training_matches_the_reference_given_the_same_masks(cell, recorded_masks):
    layer = make_layer(cell, zo_reg()).train()
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    y = run(layer, x)
    n_states = 2 if cell.has_cell_state else 1
    assert len(recorded_masks) == n_states
    keeps = list(zip(*(m.unbind(0) for m in recorded_masks)))
    assert_parity(layer, x, y, reference(layer, x, ln=False, keeps=keeps))


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
def test_zoneout_at_eval_is_the_expectation(cell):
    layer = make_layer(cell, zo_reg(p_h=0.3, p_c=0.6)).eval()
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    y = run(layer, x)
    keeps = [(0.3, 0.6)] * T
    assert_parity(layer, x, y, reference(layer, x, ln=False, keeps=keeps))
    with torch.no_grad():
        torch.testing.assert_close(run(layer, x), y.detach(), atol=0, rtol=0)  # deterministic


def test_zoneout_keeps_exactly_the_masked_units_and_draws_fresh_masks_per_step(recorded_masks):
    layer = make_layer(LSTMCell, zo_reg(p_h=0.5, p_c=0.5)).train()
    x = torch.randn(50, 64, I, dtype=torch.float64)
    with torch.no_grad():
        y = run(layer, x)  # (T, B, H)
    keep_h = recorded_masks[0]
    assert keep_h.shape == (50, 64, H) and set(keep_h.unique().tolist()) == {0.0, 1.0}
    kept = keep_h[1:].bool()
    torch.testing.assert_close(y[1:][kept], y[:-1][kept], atol=0, rtol=0)  # h_t = h_{t-1} where kept
    assert not torch.equal(keep_h[1], keep_h[2])  # a fresh mask every step
    assert abs(keep_h.mean().item() - 0.5) < 0.03  # Bernoulli(p)
    assert not torch.equal(recorded_masks[0], recorded_masks[1])  # c has its own mask


def test_zoneout_zero_is_the_plain_cell_and_mask_rate_follows_p(recorded_masks):
    plain = make_layer(GRUCell, NoArm("none")).train()
    off = make_layer(GRUCell, zo_reg(p_h=0.0, p_c=0.0)).train()
    assert off.zone_p is None  # nothing to do: the plain loop
    x = torch.randn(T, B, I, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(run(off, x), run(plain, x), atol=0, rtol=0)
    layer = make_layer(GRUCell, zo_reg(p_h=0.1, p_c=0.9)).train()  # GRU: p_c has no state to act on
    with torch.no_grad():
        run(layer, torch.randn(40, 256, I, dtype=torch.float64))
    assert len(recorded_masks) == 1 and abs(recorded_masks[0].mean().item() - 0.1) < 0.01


# -- both arms in the model ---------------------------------------------------------------------


@pytest.mark.parametrize("reg", [ln_reg(), zo_reg()], ids=["ln", "zoneout"])
def test_new_arms_run_on_the_custom_loop_and_refuse_native(reg):
    spec = lambda impl: ModelSpec(LSTMCell, I, H, 2, 3, reg=reg, impl=impl)  # noqa: E731
    assert build_model(spec(Impl.auto)).impl_used is Impl.custom
    with pytest.raises(ConfigError, match=f"reg={reg.name}"):
        build_model(spec(Impl.native))


@pytest.mark.parametrize("name", ["ln", "zoneout"])
@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
def test_new_arms_train_a_two_layer_model(cell, name):
    reg = ln_reg() if name == "ln" else zo_reg()
    torch.manual_seed(0)
    m = build_model(ModelSpec(cell, I, 16, 2, 3, reg=reg))
    x, y = torch.randn(1, 16, 10, I), torch.randint(0, 3, (16,))
    opt = torch.optim.Adam(m.parameters(), lr=0.02)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(m(x)[0], y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    assert losses[-1] < 0.5 * losses[0]
    if name == "ln":
        assert len(m.param_groups()["norm"]) == (8 if cell is LSTMCell else 4)  # per layer: g_x, g_h (+ g_c, b_c)


def test_ln_of_a_single_input_feature_keeps_only_its_sign_unless_input_is_off():
    """Why `reg.ln.input` exists: LN(w·x) over the gates is invariant to the scale of a scalar x."""
    x = torch.rand(T, B, 1, dtype=torch.float64) + 0.5
    for use_input, same in ((True, True), (False, False)):
        torch.manual_seed(0)
        layer = one_layer(LSTMCell, 1, ln_reg(input=use_input)).double().eval()  # one input feature
        assert (layer.norm_x is not None) == use_input
        with torch.no_grad():
            diff = (run(layer, x) - run(layer, 3 * x)).abs().max().item()
        equal = diff < 1e-3  # up to eps in the variance
        assert equal == same


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
def test_ln_without_the_input_norm_matches_the_reference(cell):
    layer = make_layer(cell, ln_reg(input=False)).train()
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    y = run(layer, x)
    ref = reference(layer, x, ln=True, ln_input=False)
    assert_parity(layer, x, y, ref)

"""Correctness of every variant: parity with torch's fused cells, BN and dropout semantics (stacks of one,
input (1, B, T, I) member first; stacks of several: tests/test_stack.py)."""

from __future__ import annotations

import itertools

import pytest
import torch
from arm_configs import arm
from torch import nn

import benchmark as bm  # noqa: F401  (pytest-benchmark owns the name `benchmark`)
from benchmark.arms import Arm
from benchmark.arms.blocks import BNPlacement, DropoutPlacement
from benchmark.core.config import ConfigError, Impl
from benchmark.models import GRUCell, LSTMCell, ModelSpec, RNNCell, build_model
from benchmark.models.dropout import SequenceDropout
from benchmark.models.norm import StepBatchNorm

CELLS = [RNNCell, LSTMCell, GRUCell]
I, H, O, B, T = 5, 16, 3, 8, 12


def reg(name: str = "none", bn: str = "recurrent", drop: str = "output", p: float = 0.25, **bn_kw) -> Arm:
    return arm(name, bn=bn, drop=drop, p=p, **bn_kw)


def make(cell, r: Arm = None, impl: Impl = Impl.auto, layers: int = 1, per_step: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(ModelSpec(cell, I, H, layers, O, per_step=per_step, reg=r or reg(), impl=impl))


def xb(b: int = B, t: int = T, seed: int = 1) -> torch.Tensor:
    """(1, B, T, I): one member's batch."""
    return torch.randn(1, b, t, I, generator=torch.Generator().manual_seed(seed))


def run(model, x, seed: int = 123):
    """Forward + backward under a fixed RNG; returns the output and every parameter's gradient."""
    torch.manual_seed(seed)
    y = model(x)
    y.pow(2).sum().backward()
    return y.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


# --- parity -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
@pytest.mark.parametrize("layers", [1, 2])
def test_custom_matches_native_same_seed(cell, layers):
    y_n, g_n = run(make(cell, impl=Impl.native, layers=layers, per_step=True), xb())
    y_c, g_c = run(make(cell, impl=Impl.custom, layers=layers, per_step=True), xb())
    torch.testing.assert_close(y_c, y_n, atol=1e-5, rtol=0)
    assert g_c.keys() == g_n.keys()
    for k in g_n:
        torch.testing.assert_close(g_c[k], g_n[k], atol=1e-5, rtol=0, msg=k)


@pytest.mark.parametrize(
    "cell,torch_cls", [(RNNCell, nn.RNN), (LSTMCell, nn.LSTM), (GRUCell, nn.GRU)], ids=["rnn", "lstm", "gru"]
)
def test_custom_loop_matches_torch_multilayer_module(cell, torch_cls):
    """The custom loop against an independent nn.RNN/LSTM/GRU(num_layers=2) with copied weights."""
    model = make(cell, impl=Impl.custom, layers=2)
    ref = torch_cls(I, H, num_layers=2)
    with torch.no_grad():
        for k, layer in enumerate(model.layers):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(ref, f"{name}_l{k}").copy_(getattr(layer.rnn, f"{name}_l0")[0])
    x = xb()[0].transpose(0, 1).requires_grad_()  # (T, B, I)
    z = x.unsqueeze(1)  # (T, 1, B, I)
    for layer in model.layers:
        z = layer(z)
    ref_out = ref(x.detach().clone().requires_grad_())[0]
    torch.testing.assert_close(z[:, 0], ref_out, atol=1e-5, rtol=0)
    (gz,) = torch.autograd.grad(z.sum(), x)
    xr = x.detach().clone().requires_grad_()
    (gr,) = torch.autograd.grad(ref(xr)[0].sum(), xr)
    torch.testing.assert_close(gz, gr, atol=1e-5, rtol=0)


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
@pytest.mark.parametrize("name", ["bn", "dropout", "both"])
def test_native_variants_match_custom_loop(cell, name):
    """bn output / dropout output run natively; the custom loop computes the same function, masks included."""
    r = reg(name, bn="output", drop="output")
    y_n, g_n = run(make(cell, r, Impl.native, layers=2), xb())
    y_c, g_c = run(make(cell, r, Impl.custom, layers=2), xb())
    torch.testing.assert_close(y_c, y_n, atol=1e-5, rtol=0)
    for k in g_n:  # BN's batch statistics make some gradients large (~30): compare relatively too
        torch.testing.assert_close(g_c[k], g_n[k], atol=1e-5, rtol=1e-5, msg=k)


# --- impl resolution ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "r,expected",
    [
        (reg("none"), Impl.native),
        (reg("bn", bn="output"), Impl.native),
        (reg("dropout", drop="output"), Impl.native),
        (reg("bn", bn="recurrent"), Impl.custom),
        (reg("bn", bn="input"), Impl.custom),
        (reg("dropout", drop="variational"), Impl.custom),
        (reg("dropout", drop="recurrent"), Impl.custom),
        (reg("both"), Impl.custom),
    ],
)
def test_auto_picks_native_where_the_variant_allows(r, expected):
    assert make(LSTMCell, r).impl_used is expected


@pytest.mark.parametrize(
    "r,key",
    [
        (reg("bn"), "reg.bn.placement=recurrent"),
        (reg("dropout", drop="variational"), "reg.dropout.placement=variational"),
    ],
)
def test_native_with_a_loop_variant_is_a_config_error_naming_both_keys(r, key):
    with pytest.raises(ConfigError) as e:
        make(GRUCell, r, Impl.native)
    assert "impl" in str(e.value) and key in str(e.value)


# --- batch normalisation --------------------------------------------------------------------------


def test_recurrent_bn_is_cooijmans():
    m = make(LSTMCell, reg("bn"))
    layer = m.layers[0]
    assert layer.norm_x is not None and layer.norm_h is not None and layer.norm_c is not None
    for norm in (layer.norm_x, layer.norm_h, layer.norm_c):
        assert torch.all(norm.weight == 0.1)  # gains initialised to 0.1
        assert norm.running_mean.shape[:2] == (1000, 1)  # per-step population stats, (steps, members, F)
    assert layer.norm_x.bias is None and layer.norm_h.bias is None  # one shared bias (the cell's)
    assert layer.norm_c.bias is not None
    assert make(GRUCell, reg("bn")).layers[0].norm_c is None  # no cell state
    lau = make(LSTMCell, reg("bn", bn="input")).layers[0]
    assert lau.norm_x is not None and lau.norm_h is None and lau.norm_c is None
    assert torch.all(lau.norm_x.weight == 1.0)


def test_step_bn_uses_per_step_batch_stats_in_training():
    """Two members: each with its own statistics per step, never across members."""
    bn = StepBatchNorm(6, max_steps=4, gain_init=1.0, momentum=1.0, eps=1e-5, members=2)
    x = torch.randn(7, 2, 32, 6) * torch.arange(1, 8).view(7, 1, 1, 1) + torch.arange(7).view(7, 1, 1, 1)
    x[:, 1] = 3 * x[:, 1] + 5  # the second member's statistics are others
    y = bn(x)
    torch.testing.assert_close(y.mean(2), torch.zeros(7, 2, 6), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(2, unbiased=False), torch.ones(7, 2, 6), atol=1e-3, rtol=0)
    # momentum 1: rows 0..3 now hold steps 0..3's statistics; no row exists for steps 4..6
    torch.testing.assert_close(bn.running_mean, x[:4].mean(2))
    torch.testing.assert_close(bn.running_var, x[:4].var(2, unbiased=True))
    # the single-step path (used inside the loop) agrees with the sequence path
    bn2 = StepBatchNorm(6, max_steps=4, gain_init=1.0, momentum=1.0, eps=1e-5, members=2)
    steps = torch.stack([bn2.step(x_t, t) for t, x_t in enumerate(x.unbind(0))])
    torch.testing.assert_close(steps, y, atol=1e-5, rtol=0)
    torch.testing.assert_close(bn2.running_mean, bn.running_mean)
    torch.testing.assert_close(bn2.running_var, bn.running_var)


def test_step_bn_eval_uses_population_stats_per_step_and_reuses_the_last():
    bn = StepBatchNorm(3, max_steps=4, gain_init=2.0, momentum=0.1, eps=1e-5).eval()
    bn.running_mean.copy_(torch.arange(4.0).view(4, 1, 1).expand(4, 1, 3))
    bn.running_var.copy_(torch.tensor([1.0, 4.0, 9.0, 16.0]).view(4, 1, 1).expand(4, 1, 3))
    x = torch.randn(7, 1, 5, 3)
    rows = [0, 1, 2, 3, 3, 3, 3]  # steps beyond max_stats_steps reuse the last row
    expected = torch.stack(
        [(x[t] - rows[t]) / torch.sqrt(torch.tensor((rows[t] + 1.0) ** 2) + 1e-5) * 2.0 for t in range(7)]
    )
    torch.testing.assert_close(bn(x), expected)
    torch.testing.assert_close(torch.stack([bn.step(x[t], t) for t in range(7)]), expected)
    before = bn.running_mean.clone()
    bn(x)
    assert torch.equal(bn.running_mean, before)  # eval never updates statistics


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
@pytest.mark.parametrize("placement", ["recurrent", "input", "output"])
def test_bn_model_eval_is_per_example_and_train_is_per_batch(cell, placement):
    """Population statistics make an example's eval output independent of its batch mates."""
    m = make(cell, reg("bn", bn=placement, max_stats_steps=5), layers=2)
    x = xb(b=16, t=9)
    for _ in range(3):
        m(x)  # accumulate population statistics
    m.eval()
    with torch.no_grad():
        alone, batched = m(x[:, :1]), m(x)[:, :1]
    torch.testing.assert_close(alone, batched, atol=1e-5, rtol=0)
    m.train()
    with torch.no_grad():
        assert not torch.allclose(m(x[:, :4])[:, :1], m(x)[:, :1], atol=1e-4)  # batch statistics in training


# --- dropout --------------------------------------------------------------------------------------


def test_locked_dropout_mask_is_shared_over_time_and_differs_across_sequences():
    torch.manual_seed(0)
    y = SequenceDropout(0.5, locked=True)(torch.ones(20, 2, 32, 10))  # (T, E, B, F)
    mask = y[0]
    assert torch.equal(y, mask.expand_as(y))  # the same at every step
    assert set(y.unique().tolist()) == {0.0, 2.0}  # inverted scaling
    assert len({tuple(r.tolist()) for r in mask.flatten(0, 1)}) > 40  # different sequences, different masks


def _rnn_identity_layer(r: Arm, c: float = 0.3):
    """A 1-layer RNN whose state evolves as h_t = tanh(c + m ⊙ h_{t-1}): dropped units stay at tanh(c)."""
    m = make(RNNCell, r)
    layer = m.layers[0]
    with torch.no_grad():
        layer.rnn.weight_ih_l0.zero_()
        layer.rnn.bias_ih_l0.fill_(c)
        layer.rnn.bias_hh_l0.zero_()
        layer.rnn.weight_hh_l0.copy_(torch.eye(H))
    return layer


def test_variational_recurrent_mask_is_one_per_sequence():
    layer = _rnn_identity_layer(reg("dropout", drop="variational", p=0.5))
    torch.manual_seed(0)
    h = layer(torch.zeros(10, 1, 32, I))[:, 0]  # (T, B, H)
    dropped = torch.isclose(h, torch.tanh(torch.tensor(0.3)).expand_as(h))
    for t in range(2, 10):
        assert torch.equal(dropped[t], dropped[1])  # the same units dropped at every step
    assert dropped[1].any() and (~dropped[1]).any()
    assert len({tuple(r.tolist()) for r in dropped[1]}) > 16  # and a different mask per sequence
    layer.eval()
    h_eval = layer(torch.zeros(10, 1, 32, I))[:, 0]
    assert not torch.isclose(h_eval[2:], torch.tanh(torch.tensor(0.3))).any()  # off at eval


def test_output_dropout_draws_a_fresh_mask_each_step():
    torch.manual_seed(0)
    m = make(LSTMCell, reg("dropout", drop="output", p=0.5))
    x = torch.ones(T, 1, 32, H)
    masked = m.drops[-1](x) == 0  # the head's input
    assert not all(torch.equal(masked[t], masked[0]) for t in range(1, T))


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
@pytest.mark.parametrize("placement", ["output", "variational", "recurrent"])
def test_dropout_is_off_at_eval(cell, placement):
    r = reg("dropout", drop=placement, p=0.5)
    m = make(cell, r, layers=2).eval()
    plain = make(cell, reg("none"), Impl.custom, layers=2).eval()
    plain.load_state_dict(m.state_dict())
    x = xb()
    with torch.no_grad():
        torch.testing.assert_close(m(x), plain(x), atol=1e-6, rtol=0)
        m.train()
        assert not torch.allclose(m(x), plain(x), atol=1e-4)  # and on in training


def test_recurrent_dropout_keeps_lstm_memory_unscaled():
    """Semeniuta: only the candidate is dropped, with inverted scaling, so E[c_t] is unchanged."""
    r = reg("dropout", drop="recurrent", p=0.5)
    layer = make(LSTMCell, r).layers[0]
    x = xb(b=1, t=1)[0].expand(20000, 1, I).contiguous()  # (B, T=1, I)
    cs = {}
    for mode in (True, False):
        layer.train(mode)
        w_ih, w_hh, b_ih, b_hh = (w[0] for w in layer.weights())
        xw = x[:, 0] @ w_ih.t() + b_ih + b_hh  # (B, 4H)
        state = tuple(s.unsqueeze(0) for s in layer.cell.init_state(x.shape[0], H, xw))  # (1, B, H)
        _, c_masks, _ = layer._masks(1, state[0])  # (E=1, T=1, B, H) in training, None at eval
        assert (c_masks is None) == (not mode)
        _, (h, c) = layer._step(xw.unsqueeze(0), state, None, None if c_masks is None else c_masks[:, 0],
                                torch.zeros(1, H, 4 * H), b_hh.unsqueeze(0), 0)  # fmt: skip
        cs[mode] = c[0]
    torch.testing.assert_close(cs[True].mean(0), cs[False][0], atol=0.01, rtol=0)  # unscaled in expectation
    assert (cs[True] == 0).float().mean() > 0.3  # dropped in training
    assert torch.allclose(cs[False], cs[False][:1].expand_as(cs[False]))  # deterministic at eval


# --- every variant trains ------------------------------------------------------------------------

VARIANTS = [("none", "recurrent", "output")] + [
    (n, b, d)
    for n, b, d in itertools.product(
        ["bn", "dropout", "both"], [p.value for p in BNPlacement], [p.value for p in DropoutPlacement]
    )
    if not (n == "bn" and d != "output") and not (n == "dropout" and b != "recurrent")
]


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
@pytest.mark.parametrize("name,bn,drop", VARIANTS)
def test_gradient_reaches_every_parameter(cell, name, bn, drop):
    m = make(cell, reg(name, bn=bn, drop=drop, p=0.1), layers=2, per_step=True)
    y = m(xb())
    assert torch.isfinite(y).all()
    y.pow(2).mean().backward()
    for n, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, n
    groups = m.param_groups()
    assert sorted(id(p) for g in groups.values() for p in g) == sorted(id(p) for p in m.parameters())
    assert (len(groups["norm"]) > 0) == (name in ("bn", "both"))


def test_hidden_states_carry_the_total_gradient():
    """return_hidden gives dL/dh_t including the paths through later steps (not just the head's)."""
    m = make(LSTMCell, reg("none"), Impl.native)
    y, hs = m(xb(), return_hidden=True)
    y.sum().backward()
    assert len(hs) == T and all(h.grad is not None for h in hs)
    assert hs[0].grad.abs().sum() > 0  # per-sequence head: only a path through time reaches h_1
    h_last = hs[-1]
    torch.testing.assert_close(h_last.grad, m.head.weight.sum(1).expand_as(h_last.grad))


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
def test_two_layer_bn_dropout_model_overfits_a_tiny_batch(cell):
    torch.manual_seed(0)
    m = build_model(ModelSpec(cell, I, 32, 2, 4, reg=reg("both", p=0.1)))
    x, y = xb(b=16, t=10), torch.arange(16) % 4
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    loss_fn = nn.CrossEntropyLoss()
    m.eval()
    with torch.no_grad():
        start = loss_fn(m(x)[0], y).item()
    m.train()
    for _ in range(300):
        opt.zero_grad()
        loss_fn(m(x)[0], y).backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        end = loss_fn(m(x)[0], y).item()
    assert end < start / 10, (start, end)


# --- the raw task input is dropped only when asked --------------------------------------------------


def _first_layer_inputs(m, x) -> torch.Tensor:
    """What the first recurrent layer receives (T, 1, B, I) in one training forward."""
    seen = []
    handle = m.layers[0].register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
    m.train()(x)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
@pytest.mark.parametrize("name,drop", [("dropout", p.value) for p in DropoutPlacement] + [("both", "output")])
def test_dropout_never_masks_the_raw_input_unless_asked(cell, name, drop):
    x = xb(b=64)
    m = make(cell, reg(name, drop=drop, p=0.5), layers=2)
    for seed in range(3):
        torch.manual_seed(seed)
        assert torch.equal(_first_layer_inputs(m, x), x.permute(2, 0, 1, 3))  # never masked
    asked = arm(name, drop=drop, p=0.5, input_p=0.5)
    m = make(cell, asked, layers=2)
    torch.manual_seed(0)
    seen = _first_layer_inputs(m, x)
    kept = seen != 0
    assert 0.3 < kept.float().mean() < 0.7 and torch.allclose(seen[kept], 2 * x.permute(2, 0, 1, 3)[kept])  # inverted
    if drop == "variational":  # one mask per sequence, as the hidden connections have
        assert torch.equal(kept, kept[:1].expand_as(kept))


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
@pytest.mark.parametrize("placement", ["output", "variational"])
def test_hidden_connections_are_dropped(cell, placement):
    """Between layers and the head's input: drops[1:] act, each with the placement's mask."""
    m = make(cell, reg("dropout", drop=placement, p=0.5), layers=2)
    assert isinstance(m.drops[0], nn.Identity)
    locked = placement == "variational"
    assert all(isinstance(d, SequenceDropout) and d.locked == locked and d.p == 0.5 for d in m.drops[1:])


@pytest.mark.parametrize("cell", CELLS)
def test_uniform_init_covers_every_weight_and_bias_but_the_norms(cell):
    """init.scheme=uniform (Zaremba et al. 2014): the embedding, W_ih, W_hh, their biases and the head uniform in
    ±s; a BN gain keeps the arm's initial value (Cooijmans' 0.1), so the init never undoes a variant's definition."""
    torch.manual_seed(0)
    spec = ModelSpec(cell, I, H, 2, O, per_step=True, reg=reg("bn"), vocab_size=30, init_scale=0.05)
    model = build_model(spec)
    groups = model.param_groups()
    drawn = torch.cat([p.detach().flatten() for g in ("input", "recurrent", "head") for p in groups[g]])
    assert drawn.numel() == sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in groups["norm"])
    assert drawn.abs().max() <= 0.05 and drawn.std().item() == pytest.approx(0.05 / 3**0.5, rel=0.1)  # U(-s, s)
    assert any(p is model.embed.weight for p in groups["input"]) and model.embed.weight.abs().max() <= 0.05
    norm_ids = {id(p) for p in groups["norm"]}
    gains = [p for n, p in model.named_parameters() if n.endswith("weight") and id(p) in norm_ids]
    assert gains and all(torch.all(p == 0.1) for p in gains)
    with pytest.raises(ConfigError) as e:
        build_model(ModelSpec(cell, I, H, 1, O, init_scale=0.0))
    assert e.value.key == "init.scale"

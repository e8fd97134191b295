"""Weight drop (Merity et al. 2018): DropConnect on W_hh, one mask per forward, W_hh as it is at eval.

The reference is torch's own fused module (nn.RNN / nn.LSTM / nn.GRU) called with W_hh replaced by
W_hh ⊙ mask, the mask being the one the layer drew: what AWD-LSTM's `WeightDrop` does around
cuDNN. Outputs and every gradient (W_hh's through the mask) must agree in float64.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from torch.func import functional_call

import benchmark as bm  # noqa: F401  (pytest-benchmark owns the name `benchmark`)
from benchmark.arms import Site, load_arm
from benchmark.core.config import ConfigError, Impl, register_configs
from benchmark.models import ModelSpec, build_model
from benchmark.models import masks as masks_mod
from benchmark.models.cells import GRUCell, LSTMCell, RNNCell
from benchmark.models.layer import RecurrentLayer

ROOT = Path(__file__).resolve().parents[1]
CELLS = [RNNCell, LSTMCell, GRUCell]
B, I, H, T = 5, 3, 4, 7
register_configs()


@pytest.fixture
def drawn(monkeypatch):
    seen: list = []
    original = masks_mod.bernoulli

    def record(like, shape, keep, scale):
        seen.append(original(like, shape, keep, scale))
        return seen[-1]

    monkeypatch.setattr(masks_mod, "bernoulli", record)
    return seen


def one_layer(cell, hidden: int, reg) -> RecurrentLayer:
    """A stack of one layer."""
    return RecurrentLayer(cell, I, hidden, reg, Site((reg,)))


def layer64(cell, p: float = 0.5) -> RecurrentLayer:
    torch.manual_seed(0)
    return one_layer(cell, H, load_arm("weightdrop", f"weightdrop.p={p}")).double()


def run(layer: RecurrentLayer, x: torch.Tensor) -> torch.Tensor:
    return layer(x.unsqueeze(1))[:, 0]


def native_with(layer: RecurrentLayer, x: torch.Tensor, w_hh: torch.Tensor) -> torch.Tensor:
    """torch's fused module on the layer's (member 0's) parameters, with W_hh replaced."""
    ref = type(layer.cell).native(I, H).double()
    params = {n: p[0] for n, p in layer.rnn.named_parameters()}
    params["weight_hh_l0"] = w_hh
    return functional_call(ref, params, (x,))[0]


def grads(layer, x, y):
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(3), dtype=y.dtype)
    (y * w).sum().backward()
    out = {n: p.grad.clone() for n, p in layer.named_parameters()}
    out["x"] = x.grad.clone()
    layer.zero_grad(set_to_none=True)
    x.grad = None
    return out


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
def test_training_uses_one_dropped_w_hh_for_the_whole_forward(cell, drawn):
    layer = layer64(cell).train()
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    y = run(layer, x)
    (mask,) = drawn  # exactly one mask per forward: shared by every step and example
    w_hh = layer.rnn.weight_hh_l0
    assert mask.shape == w_hh.shape and set(mask.unique().tolist()) == {0.0, 2.0}  # inverted: 1/(1-p)
    node = y.grad_fn
    while type(node).__name__ in ("SelectBackward0", "TransposeBackward0", "SliceBackward0"):  # views of the output
        node = node.next_functions[0][0]
    assert type(node).__name__ == f"Stack{cell.name.upper()}Backward"  # the plain fused kernel runs it too
    y_ref = native_with(layer, x, (w_hh * mask)[0])
    torch.testing.assert_close(y, y_ref, atol=1e-12, rtol=1e-10)
    g, g_ref = grads(layer, x, y), grads(layer, x, y_ref)
    for k in g_ref:
        torch.testing.assert_close(g[k], g_ref[k], atol=1e-12, rtol=1e-10, msg=k)
    assert torch.all(g["rnn.weight_hh_l0"][mask == 0] == 0)  # a dropped weight gets no gradient


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
def test_eval_uses_w_hh_unscaled_and_draws_nothing(cell, drawn):
    layer = layer64(cell).eval()
    x = torch.randn(T, B, I, dtype=torch.float64)
    with torch.no_grad():
        y = run(layer, x)
        torch.testing.assert_close(y, native_with(layer, x, layer.rnn.weight_hh_l0[0]), atol=1e-12, rtol=1e-10)
    assert drawn == []


def test_a_fresh_mask_each_forward_at_rate_p(drawn):
    layer = one_layer(LSTMCell, 64, load_arm("weightdrop", "weightdrop.p=0.3")).train()
    x = torch.randn(T, B, I)
    with torch.no_grad():
        run(layer, x)
        run(layer, x)
    first, second = drawn
    assert not torch.equal(first, second)
    dropped = (first == 0).float().mean().item()
    assert abs(dropped - 0.3) < 0.03  # 4·64·64 = 16384 entries: the share dropped is p
    assert torch.allclose(first[first != 0], torch.full_like(first[first != 0], 1 / 0.7))


def test_p_zero_is_the_plain_layer_and_bad_p_is_a_config_error():
    assert one_layer(GRUCell, H, load_arm("weightdrop", "weightdrop.p=0.0")).weight_hh is None
    for bad in ("1.0", "-0.1"):
        with pytest.raises(ConfigError, match=rf"reg\.weightdrop\.p={bad}.*\[0, 1\)"):
            load_arm("weightdrop", f"weightdrop.p={bad}")


def test_runs_on_the_custom_loop_and_refuses_native():
    spec = lambda impl: ModelSpec(LSTMCell, I, H, 2, 3, reg=load_arm("weightdrop"), impl=impl)  # noqa: E731
    assert build_model(spec(Impl.auto)).impl_used is Impl.custom
    with pytest.raises(ConfigError, match="reg=weightdrop"):
        build_model(spec(Impl.native))


def test_a_run_records_the_arm_and_its_setting(tmp_path):
    from benchmark.job.execute import SOLO, execute
    from benchmark.job.prepare import prepare

    tiny = [
        "hidden_size=8",
        "train.steps=4",
        "train.batch_size=8",
        "train.eval_interval=2",
        "task.seq_len=8",
        "task.n_train=32",
        "task.n_val=16",
        "task.n_test=16",
        "timing.enabled=false",
        "threads=1",
        "device=cpu",
        "train.progress=false",
        f"results_dir={tmp_path}",
        "reg=weightdrop",
        "reg.weightdrop.p=0.4",
    ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        p = prepare(compose(config_name="config", overrides=tiny))
    assert execute([p], 1, False, 0, SOLO) == ["ok"]
    import json

    m = json.loads((p.out / "metrics.json").read_text())
    assert (m["reg"], m["reg_params"], m["impl_used"]) == ("weightdrop", "weightdrop.p=0.4", "custom")

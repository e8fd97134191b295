"""Every arm in conf/reg/, found by itself: it builds, trains finite, and its custom path equals a plain loop.

The plain reference below is one straightforward step loop in float64 with the cell equations
written out (torch's gate order) and the arm's pieces taken from the layer: its norms, the masks
it drew (recorded at `benchmark.models.masks.bernoulli`, the one place masks are drawn), its
state mixing and its transform of W_hh. The layer's custom path (GEMM folding, masks drawn
before the loop, the fused LSTM in training) must give the same outputs and gradients.
The pieces themselves are checked against the papers' formulas in test_models.py (BN, dropout)
and test_arms.py (LN, zoneout); weight drop in test_weightdrop.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

import benchmark as bm  # noqa: F401  (pytest-benchmark owns the name `benchmark`)
from benchmark.arms import Arm, load_arm, options
from benchmark.arms import variants as registry
from benchmark.arms.base import Site, package_arms
from benchmark.core.config import ConfigError, register_configs
from benchmark.models import masks as masks_mod
from benchmark.models.cells import GRUCell, LSTMCell, RNNCell
from benchmark.models.layer import RecurrentLayer

from helpers import PLUGIN, TINY

ROOT = Path(__file__).resolve().parents[1]
CELLS = [RNNCell, LSTMCell, GRUCell]
B, I, H, T = 5, 3, 4, 6
ARMS = options()  # every conf/reg/*.yaml
register_configs()


def arm_for_parity(option: str) -> Arm:
    """The arm as conf/reg/<option>.yaml configures it (its default placement and probabilities)."""
    return load_arm(option)


@pytest.fixture
def drawn(monkeypatch):
    """Every mask drawn, in order: (shape, keep, scale, mask)."""
    seen: list = []
    original = masks_mod.bernoulli

    def record(like, shape, keep, scale):
        m = original(like, shape, keep, scale)
        seen.append((tuple(shape), keep, scale, m))
        return m

    monkeypatch.setattr(masks_mod, "bernoulli", record)
    return seen


def _pick(drawn, shape, scale):
    """Member 0's masks of one shape and kind (inverted dropout: scaled; zoneout's keeps: not), in drawing order."""
    return [m[0] for s, _, sc, m in drawn if s == (1, *shape) and sc == scale]


def plain_loop(layer: RecurrentLayer, x: torch.Tensor, drawn) -> torch.Tensor:
    """h_1..h_T (T, B, H) from the equations, with a stack of one layer's pieces and the masks it drew."""
    w_ih, w_hh, b_ih, b_hh = (w[0] for w in layer.weights())
    norm_x = None if layer.norm_x is None else (lambda v: layer.norm_x(v.unsqueeze(1))[:, 0])
    norm_h = None if layer.norm_h is None else (lambda v, t: layer.norm_h.step(v.unsqueeze(0), t)[0])
    norm_c = None if layer.norm_c is None else (lambda v, t: layer.norm_c.step(v.unsqueeze(0), t)[0])
    cell, G = type(layer.cell), w_hh.shape[0]
    train = layer.training
    w_masks = _pick(drawn, tuple(w_hh.shape), True) if train else []
    w = w_hh * w_masks[0] if w_masks else w_hh  # e.g. weight drop: one W_hh for the whole forward
    state_masks = _pick(drawn, (x.shape[1], H), True) if train else []
    cand = _pick(drawn, (x.shape[0], x.shape[1], H), True) if train else []
    zones = _pick(drawn, (x.shape[0], x.shape[1], H), False) if train else []
    zone_p = layer.zone_p
    ax_all = x @ w_ih.T
    if norm_x is not None:
        ax_all = norm_x(ax_all)
    h = x.new_zeros(x.shape[1], H)
    c = torch.zeros_like(h)
    outs = []
    for t in range(x.shape[0]):
        h_in = h * state_masks[0] if state_masks else h
        ah = h_in @ w.T
        if norm_h is not None:
            ah = norm_h(ah, t)
        ax, ah = ax_all[t] + b_ih, ah + b_hh
        d = (lambda v: v * cand[0][t]) if cand else (lambda v: v)  # noqa: E731
        c_new = c
        if cell is LSTMCell:
            i, f, g, o = (ax + ah).chunk(4, 1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * d(torch.tanh(g))
            cn = norm_c(c_new, t) if norm_c is not None else c_new
            h_new = torch.sigmoid(o) * torch.tanh(cn)
        elif cell is GRUCell:
            (xr, xz, xn), (hr, hz, hn) = ax.chunk(3, 1), ah.chunk(3, 1)
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            h_new = (1 - z) * d(torch.tanh(xn + r * hn)) + z * h
        else:
            h_new = d(torch.tanh(ax + ah))
        if zone_p is not None:
            keeps = [zones[k][t] for k in range(len(zones))] if train else [p if p > 0 else 0.0 for p in zone_p]
            if train and len(keeps) < len(zone_p):  # a state with p = 0 draws no mask
                keeps = [keeps.pop(0) if p > 0 else 0.0 for p in zone_p]
            h_new = keeps[0] * h + (1 - keeps[0]) * h_new
            if cell is LSTMCell and len(keeps) > 1:
                c_new = keeps[1] * c + (1 - keeps[1]) * c_new
        h, c = h_new, c_new
        outs.append(h)
    assert G == cell.gates * H
    return torch.stack(outs)


def _grads(layer, x, y):
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(9), dtype=y.dtype)
    (y * w).sum().backward()
    out = {n: p.grad.clone() for n, p in layer.named_parameters()}
    out["x"] = x.grad.clone()
    layer.zero_grad(set_to_none=True)
    x.grad = None
    return out


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
@pytest.mark.parametrize("option", ARMS)
def test_every_arms_custom_path_matches_a_plain_loop_in_float64(option, cell, mode, drawn):
    torch.manual_seed(0)
    reg = arm_for_parity(option)
    layer = RecurrentLayer(cell, I, H, reg, Site((reg,), 0, T)).double().train(mode == "train")
    with torch.no_grad():  # norm gains and betas off their init, so their gradients are tested
        for n, p in layer.named_parameters():
            if "norm" in n:
                p.add_(torch.rand_like(p) - 0.3)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    y = layer(x.unsqueeze(1))[:, 0]
    y_ref = plain_loop(layer, x, drawn)
    torch.testing.assert_close(y, y_ref, atol=1e-12, rtol=1e-10)
    g, g_ref = _grads(layer, x, y), _grads(layer, x, y_ref)
    for k in g_ref:
        torch.testing.assert_close(g[k], g_ref[k], atol=1e-11, rtol=1e-9, msg=k)


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
@pytest.mark.parametrize("option", ARMS)
def test_every_arm_trains_a_two_layer_model_with_finite_gradients(option, cell):
    from benchmark.models import ModelSpec, build_model

    torch.manual_seed(0)
    m = build_model(ModelSpec(cell, I, 8, 2, 3, per_step=True, reg=load_arm(option), total_len=T), members=2)
    y = m.train()(torch.randn(2, B, T, I))
    y.pow(2).sum().backward()
    assert torch.isfinite(y).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    with torch.no_grad():
        assert torch.isfinite(m.eval()(torch.randn(2, B, T, I))).all()


@pytest.mark.parametrize("option", ARMS)
def test_every_arm_declares_its_variants_in_the_registry(option):
    cls = package_arms()[option]
    names = [v.name for v in registry.all_variants() if v.reg == option]
    assert len(names) == len(cls.variants(option)) >= 1
    for n in names:
        v = registry.get(n)
        assert v.description and registry.arm(v).name == option


def test_a_bad_setting_names_key_value_and_allowed():
    with pytest.raises(ConfigError, match=r"reg\.bn\.placement='sideways'.*recurrent \| input \| output") as e:
        load_arm("bn", "bn.placement=sideways")
    assert e.value.key == "reg.bn.placement"
    with pytest.raises(ConfigError, match=r"reg\.dropout\.pp.*the keys placement, p, input_p"):
        load_arm("dropout", "dropout.pp=0.5")
    with pytest.raises(ConfigError, match=r"reg\.zoneout\.p_h.*float"):
        load_arm("zoneout", "zoneout.p_h=abc")
    with pytest.raises(ConfigError, match=r"reg\.nosuchblock"):
        load_arm("none", "nosuchblock.x=1")
    with pytest.raises(ConfigError, match=r"reg\._target_.*subclass of benchmark.arms.Arm"):
        from benchmark.arms import build_arm

        build_arm({"_target_": "benchmark.models.cells.LSTMCell", "name": "x"})


# --- run ids stay what they were before arms became plugins -------------------------------------------
# Recorded on the code before the change (commit bba08a6) with `benchmark.run.prepare(compose(...)).run_id`.
# The built-in arms hash their old form (benchmark/arms/legacy.py); a change here orphans results on disk.
OLD_IDS = {
    "cell=lstm reg=none task.seq_len=20": "195525dadaf1",
    "cell=lstm reg=bn task.seq_len=20": "7a31dd4d4686",
    "cell=lstm reg=bn reg.bn.placement=input task.seq_len=20": "d68ff454d53a",
    "cell=lstm reg=dropout reg.dropout.placement=variational task.seq_len=20": "401e4a993dfe",
    "cell=lstm reg=both task.seq_len=20": "947d0a8e29d7",
    "cell=lstm reg=ln task.seq_len=20": "3cfc3a7f1b46",
    "cell=lstm reg=zoneout task.seq_len=20": "aadf80bd67c7",
    "cell=lstm reg=dropout reg.dropout.p=0.5 task.seq_len=20": "ccdc878a16a0",
    "cell=gru reg=bn reg.bn.gain_init=0.3 reg.bn.population=moving task.seq_len=20": "750c130047f2",
    "cell=gru reg=both task.seq_len=20": "41c81885ca53",
    "cell=gru reg=zoneout task.seq_len=20": "2d4d9681d851",
    # none with the sweep's bn block; the claims design itself was redrawn (adding T = 30 every 25 steps, chars):
    "+experiment=claims design=claims_adding_lstm_none": "fb673b034335",
    # chars' early stopping patience went from 6 to 4 evaluations (a computing setting: a new id, as it must)
    "+experiment=claims design=claims_chars_lstm_both": "8e2812fb6e6e",
}
# The `reg` node as the old schema resolved it (what the ids above hashed), independent of other config groups.
OLD_REG_NODES = {
    "reg=none": {"name": "none"},
    "reg=bn reg.bn.placement=input": {"name": "bn", "bn": {"placement": "input"}},
    "reg=dropout reg.dropout.p=0.5": {"name": "dropout", "dropout": {"p": 0.5}},
    "reg=both": {"name": "both"},
    "reg=zoneout": {"name": "zoneout"},
}
OLD_DEFAULTS = json.loads(
    '{"bn":{"eps":1e-05,"gain_init":null,"max_stats_steps":null,"momentum":0.1,'
    '"placement":"recurrent","population":"precise","precise_batches":20},"dropout":'
    '{"input_p":0.0,"p":0.25,"placement":"output"},"ln":{"eps":1e-05,"gain_init":1.0,'
    '"input":true},"zoneout":{"p_c":0.5,"p_h":0.05}}'
)


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.mark.parametrize("overrides", sorted(OLD_REG_NODES))
def test_the_built_in_arms_reg_node_enters_the_id_in_its_old_form(overrides):
    from omegaconf import OmegaConf

    from benchmark.arms import build_arm

    node = OmegaConf.to_container(_compose(overrides.split()).reg, resolve=True)
    want = {"name": OLD_REG_NODES[overrides]["name"]}
    for block, default in OLD_DEFAULTS.items():
        want[block] = {**default, **OLD_REG_NODES[overrides].get(block, {})}
    got = build_arm(node).id_node(node)
    assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)


@pytest.mark.parametrize("overrides", sorted(OLD_IDS))
def test_run_ids_of_existing_configs_are_unchanged(overrides):
    from benchmark.job.prepare import prepare

    assert prepare(_compose(overrides.split())).run_id == OLD_IDS[overrides]


# --- an arm from outside the package (tests/plugin_example, docs/extending.md) ----------------------------


def test_a_user_arm_trains_through_the_cli_and_is_its_own_variant_in_the_report(tmp_path):
    import os
    import subprocess
    import sys

    from benchmark.analysis import aggregate, report

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGIN), str(ROOT)])}
    args = [
        "--multirun",
        f"hydra.searchpath=[file://{PLUGIN / 'conf'}]",
        "task=sign",
        "cell=lstm",
        "reg=noise,none",
        "seed=0,1",
        *TINY,
        f"results_dir={tmp_path / 'results'}",
        "sweep=plug",
    ]
    r = subprocess.run(
        [sys.executable, "-m", "benchmark.run", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    sweep = tmp_path / "results" / "plug"
    metrics = [json.loads(p.read_text()) for p in sorted(sweep.glob("runs/*/metrics.json"))]
    noise = [m for m in metrics if m["reg"] == "noise"]
    assert len(metrics) == 4 and len(noise) == 2 and all(m["status"] == "ok" for m in metrics)
    assert all(m["reg_params"] == "noise.std=0.1" and m["impl_used"] == "native" for m in noise)
    agg = aggregate.aggregate(sweep)
    assert set(agg.summary["reg"]) == {"noise", "none"}
    html = report.build(sweep, tmp_path / "report").read_text()
    assert all(m["reg_about"] == "Gaussian noise on hidden non-recurrent connections" for m in noise)
    assert "user variant: reg=noise: Gaussian noise on hidden non-recurrent connections; noise.std=0.1" in html


def test_a_user_arm_with_a_bad_setting_is_a_config_error(tmp_path):
    import sys

    sys.path.insert(0, str(PLUGIN))
    try:
        from my_plugin import NoiseArm

        with pytest.raises(ConfigError, match=r"reg\.noise\.std=-1\.0.*>= 0"):
            NoiseArm(noise={"std": -1.0})
        with pytest.raises(ConfigError, match=r"reg\.noise\.sd.*the keys std"):
            NoiseArm(noise={"sd": 1.0})
    finally:
        sys.path.remove(str(PLUGIN))


def test_an_arm_whose_identity_names_a_key_the_record_lacks_is_refused_before_anything_runs():
    from benchmark.job.prepare import arm_identity

    class Chatty(Arm):
        def identity(self, total_len):
            return {"my_knob": 1}

    with pytest.raises(ValueError, match=r"reg=chatty: identity\(\) returns \['my_knob'\].*reg_params"):
        arm_identity(Chatty("chatty"), 10)
    assert arm_identity(load_arm("both"), 10)["bn_stats_steps"] == 10  # built-ins name record keys only

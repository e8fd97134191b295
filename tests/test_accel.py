"""The opt-in speed-ups (benchmark/training/accel.py): compile keeps the function; graph is refused off CUDA."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from arm_configs import arm

import benchmark as bm  # noqa: F401  (pytest-benchmark owns the name `benchmark`)
from benchmark.core.config import Accel, ConfigError, Device, Impl, RunConfig, validate
from benchmark.core.io import run_id
from benchmark.models import ModelSpec, build_model, get_cell
from benchmark.training import accel

ROOT = Path(__file__).resolve().parents[1]
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where CUDA is absent")
I, H, O, B, T = 4, 16, 3, 8, 12
# (reg, bn placement, dropout placement): the variants with GPU targets (benchmark/arms/variants.py), plus input BN
# and variational dropout inside `both`
REGS = [
    ("none", "recurrent", "output"),
    ("bn", "recurrent", "output"),
    ("bn", "input", "output"),
    ("dropout", "recurrent", "variational"),
    ("both", "recurrent", "variational"),
]


def make(cell: str, name: str, bn: str, drop: str, layers: int = 1) -> torch.nn.Module:
    torch.manual_seed(0)
    reg = arm(name, bn=bn, drop=drop, p=0.3)
    return build_model(ModelSpec(get_cell(cell), I, H, layers, O, reg=reg, impl=Impl.custom))


# --- graph: CUDA only, refused with a clear ConfigError --------------------------------------------


@no_cuda
@pytest.mark.parametrize("device", [Device.cpu, Device.auto, Device.cuda])
def test_graph_without_cuda_is_a_config_error_naming_key_value_allowed(device):
    with pytest.raises(ConfigError) as e:
        validate(RunConfig(accel=Accel.graph, device=device))
    msg = str(e.value)
    assert e.value.key == "accel" and "accel='graph'" in msg and "none or compile" in msg and "CUDA" in msg


def test_graph_with_device_cpu_is_refused_even_where_cuda_exists():
    with pytest.raises(ConfigError, match="device=cpu"):
        validate(RunConfig(accel=Accel.graph, device=Device.cpu))


def test_none_and_compile_validate_on_cpu():
    for a in (Accel.none, Accel.compile):
        assert validate(RunConfig(accel=a, device=Device.cpu)).accel is a


def test_graph_objects_refuse_a_cpu_model():
    m = make("lstm", "none", "recurrent", "output")
    for build in (
        lambda: accel.apply(m, Accel.graph),
        lambda: accel.GraphedForwardBackward(m, lambda a, b: a.sum()),
        lambda: accel.CudaGraphStep(m, lambda a, b: a.sum(), torch.zeros(B, T, I), torch.zeros(B, O)),
    ):
        with pytest.raises(ConfigError) as e:
            build()
        assert e.value.key == "accel" and "CUDA" in str(e.value)


def test_run_cli_refuses_graph_on_cpu_before_writing_anything(tmp_path):
    from helpers import python_m

    p = python_m("benchmark.run", "accel=graph", "device=cpu", f"results_dir={tmp_path / 'r'}", cwd=tmp_path)
    assert p.returncode == 2 and "accel='graph'" in p.stderr and "none or compile" in p.stderr
    assert not (tmp_path / "r" / "single" / "runs").exists()


# --- defaults leave everything as it was --------------------------------------------------------------


def test_default_is_off_and_leaves_run_ids_alone():
    assert RunConfig().accel is Accel.none
    m = make("gru", "bn", "recurrent", "output")
    assert all(layer.compiled_step is None for layer in m.layers)
    base = {"seed": 0, "cell": {"name": "gru"}}
    assert run_id({**base, "accel": "none"}) == run_id(base)  # ids of runs made before the knob stay valid
    assert run_id({**base, "accel": "compile"}) != run_id(base)


# --- compile: the same function, on CPU (slow: Inductor compiles a C++ kernel per graph) -------------


def fwd_bwd(model: torch.nn.Module, x: torch.Tensor, seed: int = 7):
    torch.manual_seed(seed)  # the variational masks are drawn outside the step: equal seeds, equal masks
    y = model(x)
    y.pow(2).sum().backward()
    return y.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("name,bn,drop", REGS, ids=["-".join(r) for r in REGS])
def test_compiled_step_matches_the_eager_loop(cell, name, bn, drop):
    eager = make(cell, name, bn, drop, layers=2)
    comp = accel.apply(copy.deepcopy(eager), Accel.compile)
    assert all(layer.compiled_step is not None for layer in comp.layers)
    x = torch.randn(1, B, T, I, generator=torch.Generator().manual_seed(1))
    for _ in range(2):  # the second pass runs the cached (symbolic-t) graphs
        for m in (eager, comp):
            m.zero_grad(set_to_none=True)
        y_e, g_e = fwd_bwd(eager, x)
        y_c, g_c = fwd_bwd(comp, x)
        torch.testing.assert_close(y_c, y_e, atol=1e-5, rtol=0)
        assert g_c.keys() == g_e.keys()
        for k in g_e:
            torch.testing.assert_close(g_c[k], g_e[k], atol=1e-5, rtol=1e-5, msg=k)
    for (k, b_e), b_c in zip(eager.named_buffers(), comp.buffers()):  # BN population statistics too
        torch.testing.assert_close(b_c, b_e, atol=1e-5, rtol=1e-5, msg=k)
    eager.eval()
    comp.eval()
    with torch.no_grad():
        torch.testing.assert_close(comp(x), eager(x), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_compiled_deep_copy_runs_on_its_own_parameters():
    """timing.time_model deep-copies the model: the copy must not drive the original's weights or BN stats."""
    m = accel.apply(make("lstm", "bn", "recurrent", "output"), Accel.compile)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    c = copy.deepcopy(m)
    with torch.no_grad():
        for p in c.parameters():
            p.add_(0.5)
    x = torch.randn(1, B, T, I)
    y = c(x)
    y.sum().backward()
    assert all(p.grad is None for p in m.parameters())
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k
    with torch.no_grad():
        assert not torch.allclose(m.eval()(x), c.eval()(x))


@pytest.mark.slow
def test_run_with_accel_compile_records_compile_time(tmp_path):
    from tests.test_run import run_inprocess

    status, m, _ = run_inprocess(tmp_path, ["cell=gru", "reg=bn", "accel=compile"])
    assert status == "ok", m["error"]
    assert m["accel"] == "compile" and m["compile_s"] > 0 and m["fwd_bwd_ms"] > 0


# --- graph on a real GPU (not run on the CPU machines) ---------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name,bn,drop", [REGS[0], REGS[1]], ids=["none", "bn"])
def test_graph_replay_matches_eager_and_leaves_buffers(name, bn, drop):  # pragma: no cover - GPU only
    dev = torch.device("cuda")
    eager = make("lstm", name, bn, drop).to(dev)
    graphed = copy.deepcopy(eager)
    loss_fn = lambda a, b: (a - b).pow(2).mean()  # noqa: E731
    step = accel.GraphedForwardBackward(graphed, loss_fn)
    for seed in (1, 2):  # a second batch through the same graph
        g = torch.Generator().manual_seed(seed)
        x, y = torch.randn(B, T, I, generator=g).to(dev), torch.randn(B, O, generator=g).to(dev)
        eager.zero_grad(set_to_none=True)
        loss_e = loss_fn(eager(x.unsqueeze(0))[0], y)
        loss_e.backward()
        loss_g, _ = step(x, y)
        torch.testing.assert_close(loss_g, loss_e, atol=1e-5, rtol=1e-5)
        for (n, p), q in zip(eager.named_parameters(), graphed.parameters()):
            torch.testing.assert_close(q.grad, p.grad, atol=1e-5, rtol=1e-5, msg=n)
    assert len(step.graphs) == 1 and step.capture_s > 0
    for (k, b_e), b_g in zip(eager.named_buffers(), graphed.buffers()):
        torch.testing.assert_close(b_g, b_e, msg=k)  # warm-up restored; replays update stats like eager steps

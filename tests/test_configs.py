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
    length = cls.allowed_seq_len(12)  # e.g. MNIST admits divisors of 784 only
    over = [f"task={task}", f"task.seq_len={length}", "task.n_train=16", "task.n_val=8", "task.n_test=8"]
    if "data_dir" in composed(f"task={task}").task:  # a task that reads files: the test fixture's folder
        over.append(f"task.data_dir={mnist_dir}")
    t = check_task(instantiate(composed(*over).task, _convert_="all"))
    assert t.seq_len == length
    x, y = t.splits()["train"]
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

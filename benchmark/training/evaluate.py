"""Evaluation of members: precise BN, validation and final metrics, the members of a job through one stacked model.

A member evaluates as its stack of one would: the same population statistics (precise BN's average over its
own fixed training batches, `benchmark.models.stack.estimate_population`) and the same eval-mode outputs on
its own splits, since member e of a stack computes what its own model computes on its inputs
(tests/test_stack.py). Stacked, an evaluation is one batched forward for every member instead of one loop
per member; a BN member's loop costs about three times the stack's share per member, and evaluating alone
was about a fifth of a BN job. Where members cannot share a forward (a stream task, inputs of other
shapes, or torch's fused kernel, which evaluates faster member by member) each evaluates on its own model.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional, Sequence, TypeVar

import torch
from torch import Tensor, nn

from benchmark.core.config import Impl, Precision
from benchmark.models.stack import estimate_population, stack, stackable
from benchmark.tasks.base import Task
from benchmark.training.precision import autocast, autocast_dtype

__all__ = [
    "EVAL_BATCH",
    "evaluate",
    "final_metrics",
    "outputs",
    "refresh_population",
    "refresh_members",
    "scores",
    "validate",
    "validate_members",
]

EVAL_BATCH = 512  # evaluation batch; BN uses population statistics in eval, so size does not matter
MAX_MODELS = 64  # models in one stacked forward
MAX_SEQUENCES = 2048  # sequences in one stacked forward (all models): bounds its (T, E, B, gates) activations

T_ = TypeVar("T_")


def chunks(items: Sequence[T_], n: int) -> Iterator[Sequence[T_]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def one_forward(models: Sequence[nn.Module], xs: Sequence[Tensor], tasks: Sequence[Task] = ()) -> bool:
    """Evaluations worth one stacked forward: several models of one stack, inputs of one shape, no state carried
    between windows (a stream task), and models whose own forward is not torch's fused kernel (`impl_used`
    native: a plain LSTM or GRU evaluates faster alone than the stacked loop does in eval mode, as measured)."""
    native = getattr(models[0], "impl_used", None) is Impl.native
    return (
        len(models) > 1
        and not native
        and not any(t.carries_state for t in tasks)
        and len({tuple(x.shape) for x in xs}) == 1
        and stackable(models)
    )


@torch.no_grad()
def outputs(
    models: Sequence[nn.Module], xs: Sequence[Tensor], device: torch.device, dtype: Optional[torch.dtype]
) -> list[Tensor]:
    """Eval-mode outputs of each model (a stack of one) on its own inputs xs[e] (N, T, I), as float tensors on the
    CPU; one stacked forward per chunk of models (`one_forward`), else model by model."""
    if not one_forward(models, xs):
        return [_alone(m, x, device, dtype) for m, x in zip(models, xs)]
    outs: list[list[Tensor]] = [[] for _ in models]
    for idx in chunks(range(len(models)), MAX_MODELS):
        stacked = stack([models[e] for e in idx]).eval()
        x = torch.stack([xs[e] for e in idx])
        batch = max(1, min(EVAL_BATCH, MAX_SEQUENCES // len(idx)))
        for i in range(0, x.shape[1], batch):
            with autocast(device.type, dtype):
                y = stacked(x[:, i : i + batch].to(device)).float().cpu()
            for k, e in enumerate(idx):
                outs[e].append(y[k])
    return [torch.cat(o) for o in outs]


def _alone(model: nn.Module, x: Tensor, device: torch.device, dtype: Optional[torch.dtype]) -> Tensor:
    """One model's eval-mode outputs on x (N, T, I), in batches of EVAL_BATCH; its mode is restored."""
    was_training = model.training
    model.eval()
    outs = []
    for i in range(0, len(x), EVAL_BATCH):
        with autocast(device.type, dtype):
            outs.append(model(x[i : i + EVAL_BATCH].unsqueeze(0).to(device))[0].float().cpu())
    model.train(was_training)
    return torch.cat(outs)


def scores(task: Task, y_hat: Tensor, y: Tensor) -> dict[str, float]:
    """{'loss', 'accuracy', 'metric'} of outputs y_hat (on the CPU, float) against targets y."""
    return {"loss": task.loss(y_hat, y).item(), **task.evaluate(y_hat, y)}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    task: Task,
    x: Tensor,
    y: Tensor,
    device: torch.device,
    dtype: Optional[torch.dtype] = None,
    max_batches: int = 0,
) -> dict[str, float]:
    """{'loss', 'accuracy', 'metric'} of a stack of one over (x, y) in eval mode (the first `max_batches` batches
    if > 0); a stream task reads its windows in order, the state carried from zeros (`Task.evaluate_stream`)."""
    if task.carries_state:
        return task.evaluate_stream(model, x, y, device, dtype, max_batches)
    n = len(x) if max_batches <= 0 else min(len(x), max_batches * EVAL_BATCH)
    return scores(task, _alone(model, x[:n], device, dtype), y[:n])


def val_row(task: Task, val: dict[str, float]) -> dict[str, Any]:
    """The val_* columns of a history row from the validation split's `scores`."""
    return {
        "val_loss": val["loss"],
        "val_accuracy": val["accuracy"],
        "val_metric": val["metric"],
        "val_score": task.score(val["metric"]),
    }


def validate(
    model: nn.Module, task: Task, device: torch.device, dtype: Optional[torch.dtype], max_batches: int
) -> dict[str, Any]:
    """The val_* columns of a history row: loss, accuracy, metric and score on the validation split."""
    return val_row(task, evaluate(model, task, *task.splits()["val"], device, dtype, max_batches))


def validate_members(trainees: Sequence[Any], step: int) -> None:
    """Validate every trainee (`benchmark.training.train.Trainee`) at `step` in one stacked forward where they can
    share one (`one_forward`); each one's evaluation then reads its row (`validated`). Others validate alone."""
    if len(trainees) < 2:
        return
    vals = [m.task.splits()["val"] for m in trainees]
    limit = trainees[0].cfg.eval_batches
    n = len(vals[0][0]) if limit <= 0 else min(len(vals[0][0]), limit * EVAL_BATCH)
    xs = [x[:n] for x, _ in vals]
    models = [m.model for m in trainees]
    if not one_forward(models, xs, [m.task for m in trainees]):
        return
    first = trainees[0]
    for m, out, (_, y) in zip(trainees, outputs(models, xs, first.device, first.dtype), vals):
        m.validated = (step, val_row(m.task, scores(m.task, out, y[:n])))


def refresh_population(
    models: Sequence[nn.Module], batches: Sequence[Sequence[Tensor]], device: torch.device, dtype: Any
) -> None:
    """Precise BN of each model over its training batches (B, T, I), all models at once, under the run's autocast."""
    with autocast(device.type, dtype):
        estimate_population(models, [[b.unsqueeze(0).to(device) for b in bs] for bs in batches])


def refresh_members(trainees: Sequence[Any], step: int) -> None:
    """Precise BN of every trainee with it (and not yet refreshed at `step`), stacked; marks them refreshed."""
    todo = [m for m in trainees if m.precise is not None and m.precise.refreshed_at != step]
    if not todo:
        return
    per_chunk = max(1, MAX_MODELS // len(todo[0].precise.batches))
    first = todo[0]
    for group in chunks(todo, per_chunk):
        refresh_population([m.model for m in group], [m.precise.batches for m in group], first.device, first.dtype)
    for m in todo:
        m.precise.refreshed_at = step


def final_splits(task: Task) -> dict[str, tuple[Tensor, Tensor]]:
    """What the final metrics evaluate: test, validation, and the first n_test training examples."""
    s = task.splits()
    n = len(s["test"][0])
    return {"test": s["test"], "val": s["val"], "train": (s["train"][0][:n], s["train"][1][:n])}


def final_record(task: Task, ev: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The final-metric columns of a run record from the `scores` of each of `final_splits`."""
    test, val, tr = ev["test"], ev["val"], ev["train"]
    return {
        "test_accuracy": test["accuracy"],
        "test_metric": test["metric"],
        "test_loss": test["loss"],
        "test_score": task.score(test["metric"]),
        "train_accuracy": tr["accuracy"],
        "train_loss": tr["loss"],
        "train_metric": tr["metric"],
        "train_score": task.score(tr["metric"]),
        "val_score": task.score(val["metric"]),
        "generalization_gap": tr["accuracy"] - test["accuracy"],
    }


def final_metrics(
    models: Sequence[nn.Module], tasks: Sequence[Task], device: torch.device, precision: Precision = Precision.fp32
) -> list[dict[str, Any]]:
    """Each model's test metrics, train metrics on the first n_test training examples (equal noise), and its final
    validation score (the learning-rate selection reads it; the test split selects nothing): stacked where the
    models can share a forward, else model by model."""
    dtype = autocast_dtype(precision)
    splits = [final_splits(t) for t in tasks]
    ev: list[dict[str, dict[str, float]]] = [{} for _ in models]
    for name in splits[0]:
        xs = [s[name][0] for s in splits]
        if one_forward(models, xs, tasks):
            for e, out in enumerate(outputs(models, xs, device, dtype)):
                ev[e][name] = scores(tasks[e], out, splits[e][name][1])
        else:
            for e, (m, t) in enumerate(zip(models, tasks)):
                ev[e][name] = evaluate(m, t, *splits[e][name], device, dtype)
    return [final_record(t, v) for t, v in zip(tasks, ev)]

"""Evaluating a cohort's members together: precise BN, validation and final metrics through one stacked model.

Each member evaluates exactly as its solo run does (`benchmark.training.train`): the same population statistics
(precise BN's average over its own fixed training batches) and the same eval-mode outputs on its own
splits, since member e of a `CohortModel` computes what solo model e computes on its inputs
(tests/test_cohort.py). Stacked, an evaluation is one batched forward for every member instead of one
loop per member; a BN member's solo loop costs about three times the stack's share per member, and
evaluating alone was about a fifth of a BN cohort's job.

Precise BN stacks K copies of each member and feeds copy k the member's k-th batch, with BN's momentum
at 1: each copy's statistics are then its batch's (mean, unbiased variance), and their mean over the
K copies is the solo's cumulative average (`benchmark.models.norm.estimate_population`).
"""

from __future__ import annotations

from typing import Any, Iterator, Optional, Sequence, TypeVar

import torch
from torch import Tensor, nn

from benchmark.core.config import Impl, Precision
from benchmark.models.cohort import CohortModel
from benchmark.models.cohort_norm import CohortStepBatchNorm
from benchmark.tasks.base import Task
from benchmark.training.precision import autocast, autocast_dtype
from benchmark.training.train import EVAL_BATCH, Trainee, final_record, final_splits, scores, val_row

__all__ = ["final_metrics_stacked", "refresh_stacked", "stacked_outputs", "validate_stacked"]

MAX_MODELS = 64  # models in one stacked forward
MAX_SEQUENCES = 2048  # sequences in one stacked forward (all models): bounds its (T, E, B, gates) activations

T_ = TypeVar("T_")


def chunks(items: Sequence[T_], n: int) -> Iterator[Sequence[T_]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def stackable(models: Sequence[nn.Module], tasks: Sequence[Task], xs: Sequence[Tensor]) -> bool:
    """Evaluations worth one stacked forward: inputs of one shape, no state carried between windows (a stream
    task), and models whose own forward is the custom loop. torch's fused kernel (`impl_used` native: a
    plain LSTM or GRU) evaluates faster alone than the stacked loop does in eval mode (measured in a sweep)."""
    native = getattr(models[0], "impl_used", None) is Impl.native
    return not native and not any(t.carries_state for t in tasks) and len({tuple(x.shape) for x in xs}) == 1


@torch.no_grad()
def stacked_outputs(
    models: Sequence[nn.Module], xs: Sequence[Tensor], device: torch.device, dtype: Optional[torch.dtype]
) -> list[Tensor]:
    """Eval-mode outputs of each model on its own inputs xs[e] (N, T, I), as float tensors on the CPU."""
    outs: list[list[Tensor]] = [[] for _ in models]
    for idx in chunks(range(len(models)), MAX_MODELS):
        cohort = CohortModel([models[e] for e in idx]).eval()
        x = torch.stack([xs[e] for e in idx])
        batch = max(1, min(EVAL_BATCH, MAX_SEQUENCES // len(idx)))
        for i in range(0, x.shape[1], batch):
            with autocast(device.type, dtype):
                y = cohort(x[:, i : i + batch].to(device)).float().cpu()
            for k, e in enumerate(idx):
                outs[e].append(y[k])
    return [torch.cat(o) for o in outs]


@torch.no_grad()
def refresh_stacked(trainees: Sequence[Trainee], step: int) -> None:
    """Precise BN of every trainee with it (and not yet refreshed at `step`), stacked; marks them refreshed."""
    todo = [m for m in trainees if m.precise is not None and m.precise.refreshed_at != step]
    if not todo:
        return
    per_chunk = max(1, MAX_MODELS // len(todo[0].precise.batches))
    for group in chunks(todo, per_chunk):
        _refresh_group(group)
    for m in todo:
        m.precise.refreshed_at = step


def _refresh_group(group: Sequence[Trainee]) -> None:
    """K copies of each member, copy k on the member's batch k, BN in batch-statistics mode with momentum 1;
    each member's population statistics become the mean of its copies' (rows its batches reach)."""
    first = group[0]
    k = len(first.precise.batches)
    cohort = CohortModel([m.model for m in group for _ in range(k)]).eval()
    norms = {name: bn for name, bn in cohort.named_modules() if isinstance(bn, CohortStepBatchNorm)}
    for bn in norms.values():
        bn.train()
        bn.momentum = 1.0
    x = torch.stack([b for m in group for b in m.precise.batches]).to(first.device)
    with autocast(first.device.type, first.dtype):
        cohort(x)
    for name, bn in norms.items():
        n = min(x.shape[2], bn.max_steps)  # rows of steps the batches reach; the others are kept
        for leaf in ("running_mean", "running_var"):
            mean = getattr(bn, leaf)[:n].unflatten(1, (len(group), k)).mean(2)  # (n, members, F)
            for e, m in enumerate(group):
                m.model.get_buffer(f"{name}.{leaf}")[:n].copy_(mean[:, e])


def validate_stacked(trainees: Sequence[Trainee], step: int) -> None:
    """Validate every trainee at `step` in one stacked forward; each one's evaluation then reads its row.

    Trainees whose splits cannot be stacked (`stackable`) are left to validate alone."""
    if not trainees:
        return
    vals = [m.task.splits()["val"] for m in trainees]
    limit = trainees[0].cfg.eval_batches
    n = len(vals[0][0]) if limit <= 0 else min(len(vals[0][0]), limit * EVAL_BATCH)
    xs = [x[:n] for x, _ in vals]
    if not stackable([m.model for m in trainees], [m.task for m in trainees], xs):
        return
    first = trainees[0]
    outs = stacked_outputs([m.model for m in trainees], xs, first.device, first.dtype)
    for m, out, (_, y) in zip(trainees, outs, vals):
        m.validated = (step, val_row(m.task, scores(m.task, out, y[:n])))


def final_metrics_stacked(
    models: Sequence[nn.Module], tasks: Sequence[Task], device: torch.device, precision: Precision
) -> Optional[list[dict[str, Any]]]:
    """Each model's `benchmark.training.train.final_metrics` on its own task, stacked; None where they cannot stack."""
    splits = [final_splits(t) for t in tasks]
    dtype = autocast_dtype(precision)
    ev: list[dict[str, dict[str, float]]] = [{} for _ in models]
    for name in splits[0]:
        xs = [s[name][0] for s in splits]
        if not stackable(models, tasks, xs):
            return None
        for e, out in enumerate(stacked_outputs(models, xs, device, dtype)):
            ev[e][name] = scores(tasks[e], out, splits[e][name][1])
    return [final_record(t, v) for t, v in zip(tasks, ev)]

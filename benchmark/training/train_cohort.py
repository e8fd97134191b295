"""Training a cohort: each member's own run, its gradients computed for all members at once.

A member is a solo run in every respect but the forward and backward: its own model (whose
parameters are the leaves its own optimiser steps), seed, batches (`Task.train_batches`),
mask stream (`benchmark.models.masks`), learning rate, clipping, precise-BN batches,
evaluations and stopping rules (`benchmark.training.train.Trainee`). Each step stacks the active
members' parameters along a leading member dimension and runs them through one
`CohortModel` (`torch.func.functional_call`): one batched GEMM per time step instead of one
per member. The summed loss's backward leaves in each member's parameters exactly the
gradient of its own loss, since members share no parameter.

A member that diverges or stops (at its target, early stopping) leaves the stack; the cohort
is rebuilt of the others, which go on; the last one left trains alone through its own model where
that runs torch's fused kernel (faster than a stack of one), else as a stack of one (`restack`).

BN's running statistics live in the cohort's buffers while it trains and are written to the
members' models before every evaluation and when the stack changes. At an evaluation, precise BN
and validation run for every member at once through a stacked model (`benchmark.training.cohort_eval`);
each member's stopping rules then read its own row. Each member's training time is its share of
the cohort's step time.

With `accel=graph` (CUDA) the forward and backward of each stack is captured once as a CUDA graph and
replayed every step (`GraphedCohortStep`; the members' mask streams are registered with the graph, so
a replay draws the eager step's masks); batches, step statistics and updates stay eager.
"""

from __future__ import annotations

import time
from typing import Optional, Sequence

import torch
from torch import Tensor
from torch.func import functional_call

from benchmark.core.config import Accel, Impl, Precision, TrainConfig
from benchmark.models.cohort import CohortModel
from benchmark.models.model import SequenceModel
from benchmark.tasks.base import Task
from benchmark.training import accel as accel_mod
from benchmark.training.cohort_eval import refresh_stacked, validate_stacked
from benchmark.training.precision import autocast, autocast_dtype
from benchmark.training.step import BatchSource
from benchmark.training.train import Trainee, TrainResult, cohort_step_stats, progress_bar

__all__ = ["Member", "train_cohort"]


class Member(Trainee):
    """A trainee with its batch source and a place in the stack."""

    def __init__(self, model: SequenceModel, batches: BatchSource, **kwargs) -> None:
        super().__init__(model, **kwargs)
        self.batches, self.active = batches, True
        self.forwards = self.synced = 0  # training forwards through the stack; how many its model's BN statistics saw


@torch.no_grad()
def sync_buffers(cohort: CohortModel, stacked: Sequence[Member]) -> None:
    """Write the cohort's buffers (BN's running statistics) to each member's model that trained since its last
    sync; a model whose statistics are newer (precise BN after an evaluation) keeps them."""
    stale = [(e, m) for e, m in enumerate(stacked) if m.forwards > m.synced]
    for name, t in cohort.named_buffers():
        dim = cohort.member_dim(name)
        for e, m in stale:
            m.model.get_buffer(name).copy_(t.select(dim, e))
    for _, m in stale:
        m.synced = m.forwards


def stacked_params(cohort: CohortModel, members: Sequence[Member]) -> dict[str, Tensor]:
    """The members' own parameters stacked along the member dimension (differentiable: gradients reach them)."""
    own = [dict(m.model.named_parameters()) for m in members]
    return {n: torch.stack([o[n] for o in own], cohort.member_dim(n)) for n, _ in cohort.named_parameters()}


def cohort_losses(cohort: CohortModel, members: Sequence[Member], dtype: Optional[torch.dtype]) -> tuple[Tensor, int]:
    """Forward and backward of every active member on its own next batch; the (E,) losses, tokens per member."""
    x, ys = next_batches(members)
    return forward_backward(cohort, members, x, ys, dtype), x.shape[1] * x.shape[2]


class EagerCohortStep:
    """`cohort_losses` of one stack, as a step object like `GraphedCohortStep` (nothing to capture)."""

    capture_s = 0.0

    def __init__(self, cohort: CohortModel, members: Sequence[Member], dtype: Optional[torch.dtype]) -> None:
        self.cohort, self.members, self.dtype = cohort, list(members), dtype

    def __call__(self) -> tuple[Tensor, int]:
        return cohort_losses(self.cohort, self.members, self.dtype)


def next_batches(members: Sequence[Member]) -> tuple[Tensor, list[Tensor]]:
    """Each member's next training batch: inputs stacked (E, B, T, I), targets one per member."""
    xs, ys = zip(*(m.batches.next() for m in members))
    return torch.stack(xs), list(ys)


def forward_backward(
    cohort: CohortModel,
    members: Sequence[Member],
    x: Tensor,
    ys: Sequence[Tensor],
    dtype: Optional[torch.dtype],
    cache: bool = True,
) -> Tensor:
    """The members' losses on (x, ys), (E,), each member's gradient left in its own parameters.

    `cache`: autocast's weight-cast cache (off inside a CUDA-graph capture, which it must not outlive)."""
    with autocast(x.device.type, dtype, cache_enabled=cache):
        out = functional_call(cohort, stacked_params(cohort, members), (x,), strict=False)
    losses = torch.stack([m.task.loss(out[e], y) for e, (m, y) in enumerate(zip(members, ys))])
    losses.sum().backward()
    for m in members:  # each gradient a tensor of its own: views of one stacked gradient (e.g. of b_ih + b_hh)
        for p in m.params:  # would be scaled twice by the in-place clipping
            if p.grad is not None:
                p.grad = p.grad.clone()
    return losses


class GraphedCohortStep:
    """`forward_backward` of one stack and batch shape captured in a CUDA graph and replayed (accel=graph).

    One capture per stack: a member that leaves changes the stack, and the next step captures the new one.
    The members' batches are drawn eagerly, as in the eager step, and copied into the static inputs.
    """

    def __init__(self, cohort: CohortModel, members: Sequence[Member], dtype: Optional[torch.dtype]) -> None:
        self.cohort, self.members, self.dtype = cohort, list(members), dtype
        self.captured: Optional[accel_mod.Captured] = None
        self.capture_s = 0.0

    def __call__(self) -> tuple[Tensor, int]:
        x, ys = next_batches(self.members)
        if self.captured is None:
            accel_mod.check_graph_device(x.device)
            self.x, self.ys = x.clone(), [y.clone() for y in ys]
            params = [p for m in self.members for p in m.params]
            self.captured = accel_mod.Captured(
                lambda: forward_backward(self.cohort, self.members, self.x, self.ys, self.dtype, cache=False),
                params,
                self.cohort,
                accel_mod.mask_generators(self.cohort),
                x.device,
            )
            self.capture_s = self.captured.capture_s
        self.x.copy_(x)
        for static, y in zip(self.ys, ys):
            static.copy_(y)
        return self.captured.replay(), x.shape[1] * x.shape[2]


def restack(cohort: Optional[CohortModel], stacked: list[Member], active: list[Member]) -> Optional[CohortModel]:
    """The cohort of `active` members; the leaving members' BN statistics go back to their models first.

    None for a last member whose solo model runs torch's fused kernel (`impl_used` native): it trains alone,
    faster than a stack of one. Any other last member stays a stack of one, which may take a fused cohort
    kernel its solo loop lacks (a BN-LSTM: about a third of the solo step, models/cohort_fused_bn.py)."""
    if cohort is not None:
        sync_buffers(cohort, stacked)
    if len(active) == 1 and active[0].model.impl_used is Impl.native:
        return None
    return CohortModel([m.model for m in active]).train()


def step_alone(m: Member, dtype: Optional[torch.dtype], i: int) -> None:
    """Step i of the one member left, through its own model, as its solo run steps
    (`benchmark.training.step.EagerStep`)."""
    t0 = time.perf_counter()
    m.zero_grad()
    x, y = m.batches.next()
    with autocast(x.device.type, dtype):
        out = m.model(x)
    loss = m.task.loss(out, y)
    loss.backward()
    stats = m.stats(loss)
    if not m.update(i, stats) or m.book(i, stats, time.perf_counter() - t0, x.shape[0] * x.shape[1]):
        m.active = False


def check_cohort_configs(cfgs: Sequence[TrainConfig]) -> None:
    """Members step together: they may differ in their learning rate only."""
    base = cfgs[0]
    for c in cfgs[1:]:
        if {**vars(c), "lr": base.lr} != vars(base):
            raise ValueError("the members of a cohort may differ in train.lr only; other train.* keys differ")


def build_members(
    models: Sequence[SequenceModel],
    tasks: Sequence[Task],
    cfgs: Sequence[TrainConfig],
    device: torch.device,
    seeds: Sequence[int],
    dtype: Optional[torch.dtype],
    results: Sequence[TrainResult],
    precise_bn_batches: int,
) -> list[Member]:
    """Each member with its own batches, optimiser and record, its model in training mode."""
    members = []
    for m, t, c, s, r in zip(models, tasks, cfgs, seeds, results):
        batches = t.train_batches(c.batch_size, s, device)
        kw = dict(task=t, cfg=c, device=device, seed=s, dtype=dtype, result=r, precise_bn_batches=precise_bn_batches)
        members.append(Member(m, batches, **kw))
        m.train()
    return members


def train_cohort(
    models: Sequence[SequenceModel],
    tasks: Sequence[Task],
    cfgs: Sequence[TrainConfig],
    device: torch.device,
    seeds: Sequence[int],
    precision: Precision = Precision.fp32,
    progress: bool = True,
    results: Optional[Sequence[TrainResult]] = None,
    precise_bn_batches: int = 0,
    accel: Accel = Accel.none,
) -> list[TrainResult]:
    """Train every member as its solo run (`benchmark.training.train.train`) would, stacked; returns their results.

    `accel=graph` (CUDA): each stack's forward and backward is captured once and replayed (`GraphedCohortStep`).

    `tasks[e]` is member e's task (its own data split where the task draws it from the seed), of one shape.

    `results` keep each member's partial record if this raises.
    """
    check_cohort_configs(cfgs)
    results = list(results) if results is not None else [TrainResult() for _ in models]
    dtype, cfg = autocast_dtype(precision), cfgs[0]
    members = build_members(models, tasks, cfgs, device, seeds, dtype, results, precise_bn_batches)
    bar = progress_bar(tasks[0], cfg.steps, progress)
    cohort, stacked, step, captured_s = None, [], None, 0.0
    kind = GraphedCohortStep if accel is Accel.graph else EagerCohortStep
    try:
        for i in range(1, cfg.steps + 1):
            active = [m for m in members if m.active]
            if not active:
                break
            if active != stacked:
                captured_s += step.capture_s if step is not None else 0.0
                cohort, stacked = restack(cohort, stacked, active), active
                step = None if cohort is None else kind(cohort, active, dtype)
            if step is None:  # the last member, whose own model's fused kernel beats a stack of one
                step_alone(active[0], dtype, i)
            else:
                step_members(step, active, i)
            bar.update(1)
    finally:
        bar.close()
        captured_s += step.capture_s if step is not None else 0.0
        for r in results:  # the capture of every stack the cohort trained as (accel=graph), not throughput
            r.capture_s = captured_s if accel is Accel.graph else None
    if cohort is not None:
        sync_buffers(cohort, stacked)
    for m in members:
        m.finish()
    return results


def step_members(step: EagerCohortStep | GraphedCohortStep, active: list[Member], i: int) -> None:
    """Step i of every active member: gradients together, then each member's update, log and evaluation."""
    t0, capture0 = time.perf_counter(), step.capture_s
    for m in active:
        m.zero_grad()
    losses, tokens = step()
    for m in active:
        m.forwards += 1
    stats = cohort_step_stats(losses, [(m.params, m.groups) for m in active], active[0].cfg.max_norm)
    applied = [m.update(i, s) for m, s in zip(active, stats)]
    dt = (time.perf_counter() - t0 - (step.capture_s - capture0)) / len(active)  # each member's share of the step
    if active[0].evaluates_at(i):  # evaluations read BN's statistics from the members' models
        sync_buffers(step.cohort, active)
        evaluating = [m for m, ok in zip(active, applied) if ok]
        refresh_stacked(evaluating, i)  # precise BN and validation of every member at once (cohort_eval.py)
        validate_stacked(evaluating, i)
    for m, s, ok in zip(active, stats, applied):
        if not ok or m.book(i, s, dt, tokens):
            m.active = False

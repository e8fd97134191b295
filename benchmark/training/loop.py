"""The training loop: E >= 1 members, each its own run, their gradients computed together.

A member is a run in every respect but the forward and backward: its own model (a stack of one, whose
parameters are the leaves its own optimiser steps), seed, batches (`Task.train_batches`), random stream
(`benchmark.models.masks`), learning rate, clipping, precise-BN batches, evaluations and stopping rules
(`benchmark.training.train.Trainee`). Each step of several members concatenates their parameters along the
member dimension and runs them through one stacked model (`benchmark.models.stack`, `torch.func.functional_call`):
one batched GEMM per time step instead of one per member. The summed loss's backward leaves in each member's
parameters exactly the gradient of its own loss, since members share no parameter.

A member that diverges or stops (at its target, early stopping) leaves the stack; the stack is rebuilt of
the others, which go on. A member that trains alone (a job of one, or the last one left) steps through its
own model with its task's step (`Task.train_step`: the eager step, or a stream task's carried state), which
takes torch's fused kernel where the variant allows it.

BN's running statistics live in the stack's buffers while it trains and are written to the members' models
before every evaluation and when the stack changes. At an evaluation, precise BN and validation run for every
member at once through a stacked model (`benchmark.training.evaluate`); each member's stopping rules then
read its own row. Each member's training time is its share of the stack's step time.

With `accel=graph` (CUDA) the forward and backward of each stack (or a member alone) is captured once as a
CUDA graph and replayed every step (the members' random streams are registered with the graph, so a replay
draws the eager step's masks); batches, step statistics and updates stay eager.
"""

from __future__ import annotations

import time
from typing import Optional, Sequence

import torch
from torch import Tensor
from torch.func import functional_call
from tqdm import tqdm

from benchmark.core.config import Accel, Precision, TrainConfig
from benchmark.models.model import SequenceModel
from benchmark.models.stack import member_dim, stack, stacked_params
from benchmark.tasks.base import Task
from benchmark.training import accel as accel_mod
from benchmark.training.evaluate import refresh_members, validate_members
from benchmark.training.precision import autocast, autocast_dtype
from benchmark.training.step import BatchSource, StepFn
from benchmark.training.train import Trainee, TrainResult, progress_bar, stack_step_stats

__all__ = ["Member", "build_members", "train", "train_members"]


class Member(Trainee):
    """A trainee with its batch source, its own step (where it trains alone) and a place in the stack."""

    def __init__(self, model: SequenceModel, batches: BatchSource, step: StepFn, **kwargs) -> None:
        super().__init__(model, **kwargs)
        self.batches, self.step, self.active = batches, step, True
        self.forwards = self.synced = 0  # training forwards through a stack; how many its model's BN statistics saw


@torch.no_grad()
def sync_buffers(stacked: SequenceModel, members: Sequence[Member]) -> None:
    """Write the stack's buffers (BN's running statistics) to each member's model that trained since its last
    sync; a model whose statistics are newer (precise BN after an evaluation) keeps them."""
    stale = [(e, m) for e, m in enumerate(members) if m.forwards > m.synced]
    for name, t in stacked.named_buffers():
        dim = member_dim(stacked, name)
        for e, m in stale:
            m.model.get_buffer(name).copy_(t.narrow(dim, e, 1))
    for _, m in stale:
        m.synced = m.forwards


def next_batches(members: Sequence[Member]) -> tuple[Tensor, list[Tensor]]:
    """Each member's next training batch: inputs stacked (E, B, T, I), targets one per member."""
    xs, ys = zip(*(m.batches.next() for m in members))
    return torch.stack(xs), list(ys)


def forward_backward(
    stacked: SequenceModel,
    members: Sequence[Member],
    x: Tensor,
    ys: Sequence[Tensor],
    dtype: Optional[torch.dtype],
    cache: bool = True,
) -> tuple[Tensor, Tensor]:
    """The members' losses and loss terms on (x, ys), (E,) each, each member's gradient left in its own parameters.

    `cache`: autocast's weight-cast cache (off inside a CUDA-graph capture, which it must not outlive)."""
    with autocast(x.device.type, dtype, cache_enabled=cache):
        out = functional_call(stacked, stacked_params(stacked, [m.model for m in members]), (x,), strict=False)
    losses = torch.stack([m.task.loss(out[e], y) for e, (m, y) in enumerate(zip(members, ys))])
    penalties = stacked.penalty if stacked.penalty is not None else torch.zeros_like(losses)
    (losses + penalties).sum().backward()  # each member's gradients: views of the stacked ones (`own_grads`)
    return losses, penalties


class StackStep:
    """One stack's step: the members' next batches, `forward_backward` eagerly, or (`graph`) captured once in a CUDA
    graph and replayed. Returns (losses, penalties, tokens per member)."""

    def __init__(self, stacked: SequenceModel, members: Sequence[Member], dtype: Optional[torch.dtype], graph: bool):
        self.stacked, self.members, self.dtype, self.graph = stacked, list(members), dtype, graph
        self.captured: Optional[accel_mod.Captured] = None
        self.capture_s = 0.0

    def __call__(self) -> tuple[Tensor, Tensor, int]:
        x, ys = next_batches(self.members)
        tokens = x.shape[1] * x.shape[2]
        if not self.graph:
            return (*forward_backward(self.stacked, self.members, x, ys, self.dtype), tokens)
        if self.captured is None:
            accel_mod.check_graph_device(x.device)
            self.x, self.ys = x.clone(), [y.clone() for y in ys]
            params = [p for m in self.members for p in m.params]
            self.captured = accel_mod.Captured(
                lambda: forward_backward(self.stacked, self.members, self.x, self.ys, self.dtype, cache=False),
                params,
                self.stacked,
                accel_mod.mask_generators(self.stacked),
                x.device,
            )
            self.capture_s = self.captured.capture_s
        self.x.copy_(x)
        for static, y in zip(self.ys, ys):
            static.copy_(y)
        return (*self.captured.replay(), tokens)


def restack(stacked: Optional[SequenceModel], members: list[Member], active: list[Member]) -> Optional[SequenceModel]:
    """The stack of the `active` members; the leaving members' BN statistics go back to their models first.
    None for a member alone: it steps through its own model."""
    if stacked is not None:
        sync_buffers(stacked, members)
    if len(active) == 1:
        return None
    return stack([m.model for m in active]).train()


def capture_s(step: object) -> float:
    """A step's set-up seconds so far (a CUDA-graph capture; a plain function has none)."""
    return float(getattr(step, "capture_s", 0.0))


def step_alone(m: Member, i: int, bar: Optional[tqdm] = None) -> None:
    """Step i of a member alone, through its own model and step (`Member.step`)."""
    t0, capture0 = time.perf_counter(), capture_s(m.step)
    m.zero_grad()
    x, y = m.batches.next()
    stats = m.stats(*m.step(x, y))  # forward, loss, backward; one sync
    dt = time.perf_counter() - t0 - (capture_s(m.step) - capture0)  # a capture (accel=graph) is not throughput
    if not m.update(i, stats) or m.book(i, stats, dt, x.shape[0] * x.shape[1], bar):
        m.active = False


def step_members(step: StackStep, active: list[Member], i: int) -> None:
    """Step i of every active member: gradients together, then each member's update, log and evaluation."""
    t0, capture0 = time.perf_counter(), step.capture_s
    for m in active:
        m.zero_grad()
    losses, penalties, tokens = step()
    for m in active:
        m.forwards += 1
    stats = stack_step_stats(losses, penalties, [(m.params, m.groups) for m in active], active[0].cfg.max_norm)
    applied = [m.update(i, s) for m, s in zip(active, stats)]
    dt = (time.perf_counter() - t0 - (step.capture_s - capture0)) / len(active)  # each member's share of the step
    if active[0].evaluates_at(i):  # evaluations read BN's statistics from the members' models
        sync_buffers(step.stacked, active)
        evaluating = [m for m, ok in zip(active, applied) if ok]
        refresh_members(evaluating, i)  # precise BN and validation of every member at once (evaluate.py)
        validate_members(evaluating, i)
    for m, s, ok in zip(active, stats, applied):
        if not ok or m.book(i, s, dt, tokens):
            m.active = False


def train_members(members: Sequence[Member], progress: bool = True, graph: bool = False) -> None:
    """Train every member as its run (filling its `res`), their gradients computed together where several are
    active; `graph`: each stack's step replayed as a CUDA graph. Each member's `finish` runs at the end."""
    bar = progress_bar(members[0].task, members[0].cfg.steps, progress)
    stacked, in_stack, step, captured = None, [], None, 0.0
    try:
        for i in range(1, members[0].cfg.steps + 1):
            active = [m for m in members if m.active]
            if not active:
                break
            if active != in_stack:
                captured += step.capture_s if step is not None else 0.0
                stacked, in_stack = restack(stacked, in_stack, active), active
                step = None if stacked is None else StackStep(stacked, active, active[0].dtype, graph)
            if step is None:
                step_alone(active[0], i, bar)
            else:
                step_members(step, active, i)
            bar.update(1)
    finally:
        bar.close()
        captured += step.capture_s if step is not None else 0.0
        for m in members:  # the capture of every stack the member trained in (accel=graph), not throughput
            own = capture_s(m.step)
            m.res.capture_s = (captured + own) if graph else (own or None)
    if stacked is not None:
        sync_buffers(stacked, in_stack)
    for m in members:
        m.finish()


def check_member_configs(cfgs: Sequence[TrainConfig]) -> None:
    """Members step together: they may differ in their learning rate only."""
    base = cfgs[0]
    for c in cfgs[1:]:
        if {**vars(c), "lr": base.lr} != vars(base):
            raise ValueError("the members of a stack may differ in train.lr only; other train.* keys differ")


def build_members(
    models: Sequence[SequenceModel],
    tasks: Sequence[Task],
    cfgs: Sequence[TrainConfig],
    device: torch.device,
    seeds: Sequence[int],
    precision: Precision,
    results: Sequence[TrainResult],
    precise_bn_batches: int,
    accel: Accel = Accel.none,
) -> list[Member]:
    """Each member with its own batches, step, optimiser and record, its model in training mode."""
    check_member_configs(cfgs)
    dtype, members = autocast_dtype(precision), []
    for m, t, c, s, r in zip(models, tasks, cfgs, seeds, results):
        batches = t.train_batches(c.batch_size, s, device)
        step = accel_mod.GraphedForwardBackward(m, t.loss, dtype) if accel is Accel.graph else t.train_step(m, dtype)
        kw = dict(task=t, cfg=c, device=device, seed=s, dtype=dtype, result=r, precise_bn_batches=precise_bn_batches)
        members.append(Member(m, batches, step, **kw))
        m.train()
    return members


def train(
    model: SequenceModel,
    task: Task,
    cfg: TrainConfig,
    device: torch.device,
    seed: int,
    precision: Precision = Precision.fp32,
    progress: bool = True,
    result: Optional[TrainResult] = None,
    precise_bn_batches: int = 0,
    step: Optional[StepFn] = None,
    batches: Optional[BatchSource] = None,
) -> TrainResult:
    """Train one run's model (on `device`) on the task's training batches; validate every eval_interval steps.

    `step`/`batches` default to the task's (`Task.train_step`/`train_batches`); `result` keeps the partial
    record if this raises; the stopping rules may end it early and restore the best weights;
    `precise_bn_batches > 0`: precise BN over that many training batches before evaluations."""
    res = result if result is not None else TrainResult()
    (m,) = build_members([model], [task], [cfg], device, [seed], precision, [res], precise_bn_batches)
    m.step = step if step is not None else m.step
    m.batches = batches if batches is not None else m.batches
    train_members([m], progress, graph=isinstance(step, accel_mod.GraphedForwardBackward))
    return res

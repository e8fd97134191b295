"""A member's training step and where its batches come from: the two pieces a task may replace.

The loop (benchmark/training/loop.py) asks each member's `BatchSource` for its next `(x, y)` on the device.
Where one member trains alone its `StepFn` runs forward, loss and backward on it through its own model (a
stack of one), gradients left in `p.grad`, and returns the task's loss and the arm's loss term apart; where
several train together the loop's stacked step does the same for all of them at once. The defaults are
`RandomBatches` (epoch-wise random permutations of the training split) and `EagerStep`; a task that reads
its data in order or carries a hidden state from one batch to the next returns its own from
`Task.train_batches` / `Task.train_step` (`benchmark.tasks.base`), and `benchmark.training.accel` has a
CUDA-graph replay of the same step.
"""

from __future__ import annotations

from typing import Callable, Optional, Protocol

import torch
from torch import Tensor, nn

from benchmark.training.precision import autocast

LossFn = Callable[[Tensor, Tensor], Tensor]


class BatchSource(Protocol):
    def next(self) -> tuple[Tensor, Tensor]:
        """The next training batch (x, y), already on the device."""
        ...


class StepFn(Protocol):
    """`(x, y) -> (loss, penalty)` with every trainable `p.grad` set: the task's loss and the arm's loss term
    (0 without one), 0-d tensors; the gradient is that of their sum.

    `capture_s`: seconds of one-off set-up spent inside calls so far (e.g. a CUDA-graph
    capture); the loop keeps them out of the training throughput.
    """

    capture_s: float

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]: ...


class BatchSampler:
    """Epoch-wise random permutations from a seeded CPU generator (same seed → same batches)."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size = n, batch_size
        self.gen = torch.Generator().manual_seed(seed)
        self.perm, self.pos = torch.randperm(n, generator=self.gen), 0

    def next(self) -> Tensor:
        if self.pos + self.batch_size > self.n:
            self.perm, self.pos = torch.randperm(self.n, generator=self.gen), 0
        idx = self.perm[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx


class RandomBatches:
    """The default `BatchSource`: batches of `min(batch_size, N)` examples of (x, y), drawn by a `BatchSampler`."""

    def __init__(self, x: Tensor, y: Tensor, batch_size: int, seed: int, device: torch.device) -> None:
        self.x, self.y, self.device = x, y, device
        self.sampler = BatchSampler(len(x), min(batch_size, len(x)), seed)

    def next(self) -> tuple[Tensor, Tensor]:
        idx = self.sampler.next()
        return self.x[idx].to(self.device, non_blocking=True), self.y[idx].to(self.device, non_blocking=True)


def penalty_of(model: nn.Module, like: Tensor) -> Tensor:
    """The arm's loss term of a stack of one's last training forward (`SequenceModel.penalty`), 0 without one."""
    p = getattr(model, "penalty", None)
    return like.new_zeros(()) if p is None else p[0]


class EagerStep:
    """The plain step of a stack of one: forward (under autocast if asked) on (1, B, T, I), loss (plus the arm's
    loss term), backward."""

    capture_s = 0.0  # nothing is set up inside a call

    def __init__(self, model: nn.Module, loss_fn: LossFn, autocast_dtype: Optional[torch.dtype] = None) -> None:
        self.model, self.loss_fn, self.dtype = model, loss_fn, autocast_dtype

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        with autocast(x.device.type, self.dtype):
            out = self.model(x.unsqueeze(0))[0]
        loss = self.loss_fn(out, y)
        penalty = penalty_of(self.model, loss)
        (loss + penalty).backward()
        return loss, penalty

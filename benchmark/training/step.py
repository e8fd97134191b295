"""The training step and where its batches come from: the two pieces a task may replace.

The loop in `benchmark.training.train` asks a `BatchSource` for the next `(x, y)` on the device and
a `StepFn` for forward, loss and backward on it (gradients left in `p.grad`, the loss
returned). The defaults are `RandomBatches` (epoch-wise random permutations of the training
split) and `EagerStep`; a task that reads its data in order or carries a hidden state from
one batch to the next returns its own from `Task.train_batches` / `Task.train_step`
(`benchmark.tasks.base`), and `benchmark.training.accel` has a CUDA-graph replay of the same step.
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
    """`(x, y) -> loss` with every trainable `p.grad` set.

    `capture_s`: seconds of one-off set-up spent inside calls so far (e.g. a CUDA-graph
    capture); the loop keeps them out of the training throughput.
    """

    capture_s: float

    def __call__(self, x: Tensor, y: Tensor) -> Tensor: ...


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


class EagerStep:
    """The plain step: forward (under autocast if asked), loss, backward."""

    capture_s = 0.0  # nothing is set up inside a call

    def __init__(self, model: nn.Module, loss_fn: LossFn, autocast_dtype: Optional[torch.dtype] = None) -> None:
        self.model, self.loss_fn, self.dtype = model, loss_fn, autocast_dtype

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        with autocast(x.device.type, self.dtype):
            out = self.model(x)
        loss = self.loss_fn(out, y)
        loss.backward()
        return loss

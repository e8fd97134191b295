"""Batch normalisation for recurrent nets: per-step (Cooijmans) and sequence-wise (Laurent).

`StepBatchNorm` keeps population statistics as one `(max_stats_steps, F)` buffer rather
than one module per step; at eval, steps beyond `max_stats_steps` reuse the last row,
as Cooijmans et al. (2016) prescribe. In training every step uses its own batch
statistics; only rows t < max_stats_steps are updated.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class StepBatchNorm(nn.Module):
    """BN with statistics per time step, gain shared over time.

    Args:
        features: F, the normalised width.
        max_steps: rows of population statistics kept.
        gain_init: initial gamma (Cooijmans recommend 0.1 to keep tanh/sigmoid unsaturated).
        bias: learn a beta. The input/hidden BNs of recurrent BN have none (the cell's
            bias is shared); the cell-state BN has one.
    """

    def __init__(self, features: int, max_steps: int, gain_init: float, momentum: float, eps: float,
                 bias: bool = False) -> None:
        super().__init__()
        self.features, self.max_steps, self.momentum, self.eps = features, max_steps, momentum, eps
        self.weight = nn.Parameter(torch.full((features,), float(gain_init)))
        self.bias = nn.Parameter(torch.zeros(features)) if bias else None
        self.register_buffer("running_mean", torch.zeros(max_steps, features))
        self.register_buffer("running_var", torch.ones(max_steps, features))

    def step(self, x: Tensor, t: int) -> Tensor:
        """Normalise one step's (B, F) with step t's statistics (fused kernel)."""
        row = min(t, self.max_steps - 1)
        if self.training and t >= self.max_steps:  # batch stats, no row to update
            rm = rv = None
        else:
            rm, rv = self.running_mean[row], self.running_var[row]  # views: updated in place
        return F.batch_norm(x, rm, rv, self.weight, self.bias, self.training, self.momentum, self.eps)

    @torch.no_grad()
    def update_population(self, means: Tensor, variances: Tensor, batch: int) -> None:
        """Training update from per-step batch statistics (T, F), as `step` makes it row by row.

        Rows 0..min(T, max_steps)-1 move towards their step's mean and unbiased variance.
        """
        n = min(means.shape[0], self.max_steps)
        self.running_mean[:n].lerp_(means[:n], self.momentum)
        self.running_var[:n].lerp_(variances[:n] * (batch / (batch - 1)), self.momentum)

    def forward(self, x: Tensor) -> Tensor:
        """Normalise a whole (T, B, F) sequence, each step with its own statistics, at once."""
        T = x.shape[0]
        n = min(T, self.max_steps)
        if not self.training:  # population stats: step t reads row min(t, max_steps - 1)
            rows = torch.arange(T, device=x.device).clamp_(max=self.max_steps - 1)
            return self._bn(x, self.running_mean[rows], self.running_var[rows])
        y = self._bn(x[:n], self.running_mean[:n], self.running_var[:n])  # rows 0..n-1 updated in place
        if T > n:  # steps with no row of their own: batch statistics only
            y = torch.cat([y, self._bn(x[n:], None, None)])
        return y

    def _bn(self, x: Tensor, rm: Optional[Tensor], rv: Optional[Tensor]) -> Tensor:
        """One fused batch_norm with every (step, feature) pair as a channel: (T, B, F) -> (B, T·F)."""
        T, B, Fdim = x.shape
        flat = lambda v: None if v is None else v.reshape(-1)  # noqa: E731  (a view: updates reach the buffer)
        bias = None if self.bias is None else self.bias.repeat(T)
        y = F.batch_norm(x.transpose(0, 1).reshape(B, T * Fdim), flat(rm), flat(rv), self.weight.repeat(T), bias,
                         self.training, self.momentum, self.eps)
        return y.view(B, T, Fdim).transpose(0, 1)  # (T, B, F)

    def extra_repr(self) -> str:
        return f"{self.features}, max_steps={self.max_steps}, bias={self.bias is not None}"


class SeqBatchNorm(nn.Module):
    """Sequence-wise BN over (T, B, F): statistics over batch and time (Laurent et al. 2016).

    No beta by default: it would duplicate the cell's own bias added after it.
    """

    def __init__(self, features: int, gain_init: float, momentum: float, eps: float, bias: bool = False) -> None:
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.weight = nn.Parameter(torch.full((features,), float(gain_init)))
        self.bias = nn.Parameter(torch.zeros(features)) if bias else None
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))

    def forward(self, x: Tensor) -> Tensor:
        T, B, Fdim = x.shape
        y = F.batch_norm(x.reshape(T * B, Fdim), self.running_mean, self.running_var, self.weight, self.bias,
                         self.training, self.momentum, self.eps)
        return y.view(T, B, Fdim)

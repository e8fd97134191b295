"""Batch normalisation for recurrent nets: per-step (Cooijmans) and sequence-wise (Laurent).

`StepBatchNorm` keeps population statistics as one `(max_stats_steps, F)` buffer rather
than one module per step; at eval, steps beyond `max_stats_steps` reuse the last row,
as Cooijmans et al. (2016) prescribe. In training every step uses its own batch
statistics; only rows t < max_stats_steps are updated.
"""
from __future__ import annotations

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

    def forward(self, x: Tensor) -> Tensor:
        """Normalise a whole (T, B, F) sequence, each step with its own statistics, at once."""
        T = x.shape[0]
        if self.training:
            mean = x.mean(1)  # (T, F): one reduction over the batch for every step
            var = x.var(1, unbiased=False)
            with torch.no_grad():
                n, m = min(T, self.max_steps), self.momentum
                unbiased = var[:n] * (x.shape[1] / max(x.shape[1] - 1, 1))
                self.running_mean[:n].lerp_(mean[:n], m)
                self.running_var[:n].lerp_(unbiased, m)
        else:
            rows = torch.arange(T, device=x.device).clamp_(max=self.max_steps - 1)
            mean, var = self.running_mean[rows], self.running_var[rows]
        y = (x - mean.unsqueeze(1)) * torch.rsqrt(var.unsqueeze(1) + self.eps) * self.weight
        return y if self.bias is None else y + self.bias

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

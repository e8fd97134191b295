"""Batch normalisation for recurrent nets: per-step (Cooijmans), sequence-wise (Laurent), output.

`StepBatchNorm` keeps population statistics as one `(max_stats_steps, F)` buffer rather
than one module per step; at eval, steps beyond `max_stats_steps` reuse the last row,
as Cooijmans et al. (2016) prescribe (the suite sizes it to the task's length, so every
step has its own). In training every step uses its own batch statistics; only rows
t < max_stats_steps are updated.

Two things make eval describe the trained model (docs/design.md):
- `estimate_population` ("precise BN", Wu & Johnson 2021): population statistics
  re-estimated over training batches with the weights frozen, as a cumulative average
  rather than a momentum average over batches seen under older weights;
- `eval_var`: a feature whose population variance is (near-)zero — the same value for every
  example at that step, e.g. the copy task's blanks — is normalised to exactly 0 at eval, as
  it is in training, instead of dividing a tiny deviation by sqrt(eps) (a ~300x gain).
"""

from __future__ import annotations

import math
from typing import Iterable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# A feature whose population variance is at most this fraction of eps is constant at that step:
# in training its normalised values are below sqrt(1e-4) = 1 % of a unit, so 0 is what it gives.
CONSTANT_VAR_FRACTION = 1e-4


def eval_var(running_var: Tensor, eps: float) -> Tensor:
    """The variance BN divides by at eval: constant features read as infinite, so they normalise to 0."""
    return running_var.masked_fill(running_var <= CONSTANT_VAR_FRACTION * eps, math.inf)


def output_batch_norm(bn: nn.modules.batchnorm._BatchNorm, x: Tensor) -> Tensor:
    """torch's BN over (N, F) in training; at eval with the constant-feature guard of `eval_var`."""
    if bn.training:
        return F.batch_norm(
            x,
            bn.running_mean,
            bn.running_var,
            bn.weight,
            bn.bias,
            True,
            bn.momentum if bn.momentum is not None else 0.0,
            bn.eps,
        )
    return F.batch_norm(x, bn.running_mean, eval_var(bn.running_var, bn.eps), bn.weight, bn.bias, False, 0.0, bn.eps)


class OutputBatchNorm(nn.BatchNorm1d):
    """BN over the features of a (T, B, H) layer output (statistics over batch and time)."""

    def forward(self, x: Tensor) -> Tensor:
        T, B, H = x.shape
        return output_batch_norm(self, x.reshape(T * B, H)).view(T, B, H)


class StepBatchNorm(nn.Module):
    """BN with statistics per time step, gain shared over time.

    Args:
        features: F, the normalised width.
        max_steps: rows of population statistics kept.
        gain_init: initial gamma (Cooijmans recommend 0.1 to keep tanh/sigmoid unsaturated).
        bias: learn a beta. The input/hidden BNs of recurrent BN have none (the cell's
            bias is shared); the cell-state BN has one.
    """

    def __init__(
        self, features: int, max_steps: int, gain_init: float, momentum: float, eps: float, bias: bool = False
    ) -> None:
        super().__init__()
        self.features, self.max_steps, self.momentum, self.eps = features, max_steps, momentum, eps
        self.weight = nn.Parameter(torch.full((features,), float(gain_init)))
        self.bias = nn.Parameter(torch.zeros(features)) if bias else None
        self.register_buffer("running_mean", torch.zeros(max_steps, features))
        self.register_buffer("running_var", torch.ones(max_steps, features))

    def step(self, x: Tensor, t: int) -> Tensor:
        """Normalise one step's (B, F) with step t's statistics (fused kernel)."""
        row = min(t, self.max_steps - 1)
        if not self.training:
            return F.batch_norm(
                x,
                self.running_mean[row],
                eval_var(self.running_var[row], self.eps),
                self.weight,
                self.bias,
                False,
                0.0,
                self.eps,
            )
        if t >= self.max_steps:  # batch stats, no row to update
            rm = rv = None
        else:
            rm, rv = self.running_mean[row], self.running_var[row]  # views: updated in place
        return F.batch_norm(x, rm, rv, self.weight, self.bias, True, self.momentum, self.eps)

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
            return self._bn(x, self.running_mean[rows], eval_var(self.running_var[rows], self.eps))
        y = self._bn(x[:n], self.running_mean[:n], self.running_var[:n])  # rows 0..n-1 updated in place
        if T > n:  # steps with no row of their own: batch statistics only
            y = torch.cat([y, self._bn(x[n:], None, None)])
        return y

    def _bn(self, x: Tensor, rm: Optional[Tensor], rv: Optional[Tensor]) -> Tensor:
        """One fused batch_norm with every (step, feature) pair as a channel: (T, B, F) -> (B, T·F)."""
        T, B, Fdim = x.shape
        flat = lambda v: None if v is None else v.reshape(-1)  # noqa: E731  (a view: updates reach the buffer)
        bias = None if self.bias is None else self.bias.repeat(T)
        y = F.batch_norm(
            x.transpose(0, 1).reshape(B, T * Fdim),
            flat(rm),
            flat(rv),
            self.weight.repeat(T),
            bias,
            self.training,
            self.momentum,
            self.eps,
        )
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
        rv = self.running_var if self.training else eval_var(self.running_var, self.eps)
        y = F.batch_norm(
            x.reshape(T * B, Fdim),
            self.running_mean,
            rv,
            self.weight,
            self.bias,
            self.training,
            self.momentum,
            self.eps,
        )
        return y.view(T, B, Fdim)


def bn_modules(model: nn.Module) -> list[nn.Module]:
    """Every batch-norm module of `model`: per-step, sequence-wise and torch's own (output BN)."""
    return [m for m in model.modules() if isinstance(m, (StepBatchNorm, SeqBatchNorm, nn.modules.batchnorm._BatchNorm))]


@torch.no_grad()
def estimate_population(model: nn.Module, batches: Iterable[Tensor]) -> int:
    """Precise BN: replace every BN's population statistics by their average over `batches`.

    The weights are frozen (no_grad, no optimiser); every module but BN is in eval mode, so
    dropout is off and the statistics describe the network that is evaluated; BN runs in
    batch-statistics mode, as in training. Batch k updates with momentum 1/(k+1): a cumulative
    average — population mean = mean of the batch means, population variance = mean of the
    per-batch unbiased variances (torch's convention), per step for per-step BN, over batch and
    time for sequence-wise and output BN. Rows of steps the batches do not reach are kept.
    Every module's mode and momentum is restored. Returns the number of batches used.

    batches: (B, T, I) inputs on the model's device; B >= 2.
    """
    norms = bn_modules(model)
    if not norms:
        return 0
    modes = {m: m.training for m in model.modules()}
    momenta = [bn.momentum for bn in norms]
    model.eval()
    for bn in norms:
        bn.train()
    n = 0
    try:
        for k, x in enumerate(batches):
            for bn in norms:
                bn.momentum = 1.0 / (k + 1)
            model(x)
            n = k + 1
    finally:
        for bn, mom in zip(norms, momenta):
            bn.momentum = mom
        for m, mode in modes.items():
            m.training = mode
    return n

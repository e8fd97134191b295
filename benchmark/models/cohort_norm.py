"""Norms and masks of a cohort: E models stacked along a leading member dimension (`cohort.py`).

Each is built from the E solo modules it replaces and computes, member by member, exactly what
they compute: BN statistics per member and per step (never across members), LN per member, one
dropout / weight-drop mask per member drawn through `benchmark.models.masks`. Parameters are
stacked along dim 0; per-step BN population statistics are kept as (steps, E, F), so one step's
row of every member is one contiguous (E, F) block that torch's fused batch_norm updates in place.
`member_dims` names the tensors whose member dimension is not 0 (for reading and writing the solos).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from benchmark.models import masks
from benchmark.models.norm import eval_var


def _stack(tensors: Sequence[Optional[Tensor]], dim: int = 0) -> Optional[Tensor]:
    return None if tensors[0] is None else torch.stack([t.detach() for t in tensors], dim)


def stacked_param(tensors: Sequence[Optional[Tensor]]) -> Optional[nn.Parameter]:
    stacked = _stack(tensors)
    return None if stacked is None else nn.Parameter(stacked.clone())


class CohortStepBatchNorm(nn.Module):
    """Per-step BN (Cooijmans et al. 2016) of E members: every (member, feature) pair is its own channel."""

    member_dims = {"running_mean": 1, "running_var": 1}

    def __init__(self, solos: Sequence[nn.Module]) -> None:
        super().__init__()
        s = solos[0]
        self.features, self.max_steps, self.momentum, self.eps = s.features, s.max_steps, s.momentum, s.eps
        self.weight = stacked_param([m.weight for m in solos])  # (E, F)
        self.bias = stacked_param([m.bias for m in solos])
        self.register_buffer("running_mean", _stack([m.running_mean for m in solos], 1).clone())  # (S, E, F)
        self.register_buffer("running_var", _stack([m.running_var for m in solos], 1).clone())

    def step(self, x: Tensor, t: int) -> Tensor:
        """One step's (E, B, F), each member with its own batch statistics and its own row t."""
        E, B, Fd = x.shape
        row = min(t, self.max_steps - 1)
        flat = x.transpose(0, 1).reshape(B, E * Fd)
        bias = None if self.bias is None else self.bias.reshape(-1)
        if not self.training:
            rv = eval_var(self.running_var[row], self.eps).reshape(-1)
            y = F.batch_norm(
                flat, self.running_mean[row].reshape(-1), rv, self.weight.reshape(-1), bias, False, 0.0, self.eps
            )
        else:
            rm, rv = (
                (None, None)
                if t >= self.max_steps
                else (self.running_mean[row].view(-1), self.running_var[row].view(-1))
            )
            y = F.batch_norm(flat, rm, rv, self.weight.reshape(-1), bias, True, self.momentum, self.eps)
        return y.view(B, E, Fd).transpose(0, 1)

    def forward(self, x: Tensor) -> Tensor:
        """A whole (T, E, B, F) sequence, each member and step with its own statistics, at once."""
        T = x.shape[0]
        if not self.training:
            rows = torch.arange(T, device=x.device).clamp_(max=self.max_steps - 1)
            return self._bn(x, self.running_mean[rows], eval_var(self.running_var[rows], self.eps))
        n = min(T, self.max_steps)
        return _SequenceBN.apply(
            x.contiguous(), self.weight, self.bias, self.running_mean[:n], self.running_var[:n], self.momentum, self.eps
        )

    def _bn(self, x: Tensor, rm: Optional[Tensor], rv: Optional[Tensor]) -> Tensor:
        """(T, E, B, F) -> one batch_norm over (B, T·E·F) channels, in the (step, member, feature) order of rm."""
        T, E, B, Fd = x.shape
        flat = lambda v: None if v is None else v.reshape(-1)  # noqa: E731  (a view: updates reach the buffer)
        rep = lambda v: None if v is None else v.repeat(T, 1).reshape(-1)  # noqa: E731
        y = F.batch_norm(
            x.permute(2, 0, 1, 3).reshape(B, T * E * Fd),
            flat(rm),
            flat(rv),
            rep(self.weight),
            rep(self.bias),
            self.training,
            self.momentum,
            self.eps,
        )
        return y.view(B, T, E, Fd).permute(1, 2, 0, 3)


class _SequenceBN(torch.autograd.Function):
    """Training BN of a (T, E, B, F) sequence with its own statistics per (step, member, feature), over B.

    What `CohortStepBatchNorm._bn` computes with torch's batch_norm, without its (B, T·E·F) transposed
    copies, forward and backward (a third of a BN-LSTM cohort's step on CPU): x is read as T·E groups
    of (B, F), whose batch means are (T·E, 1, B)·(T·E, B, F) batched GEMMs (faster here than `mean`),
    the variance in two passes. The running statistics of the first rows (as many as `running_mean`
    has, the steps below max_steps) move by `momentum` towards the batch mean and the unbiased variance.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Optional[Tensor], running_mean: Tensor,
                running_var: Tensor, momentum: float, eps: float) -> Tensor:  # fmt: skip
        T, E, B, Fd = x.shape
        avg = x.new_full((T * E, 1, B), 1.0 / B)
        g = x.view(T * E, B, Fd)
        mean = torch.bmm(avg, g)
        xhat = g - mean
        var = torch.bmm(avg, xhat * xhat)
        rstd = var.add(eps).rsqrt_()
        xhat.mul_(rstd)
        n = running_mean.shape[0]
        with torch.no_grad():
            running_mean.lerp_(mean.view(T, E, Fd)[:n], momentum)
            running_var.lerp_(var.view(T, E, Fd)[:n] * (B / (B - 1)), momentum)
        ctx.save_for_backward(xhat, rstd, weight)
        ctx.avg, ctx.has_bias = avg, bias is not None
        y = xhat.view(T, E, B, Fd) * weight.view(1, E, 1, Fd)
        return y if bias is None else y.add_(bias.view(1, E, 1, Fd))

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Tensor) -> tuple[Optional[Tensor], ...]:
        xhat, rstd, weight = ctx.saved_tensors
        T, E, B, Fd = dy.shape
        g = dy.reshape(T * E, B, Fd)
        dyx = g * xhat
        d_weight = dyx.view(T, E, B, Fd).sum(0).sum(1)
        d_bias = dy.sum(0).sum(1) if ctx.has_bias else None
        # ∂L/∂x = γ/σ · (∂L/∂y − mean_B ∂L/∂y − x̂ · mean_B(∂L/∂y · x̂)), per step, member and feature
        scale = rstd.view(T, E, 1, Fd).mul(weight.view(1, E, 1, Fd)).view(T * E, 1, Fd)
        dx = torch.sub(g, torch.bmm(ctx.avg, g)).addcmul_(xhat, torch.bmm(ctx.avg, dyx), value=-1).mul_(scale)
        return dx.view(T, E, B, Fd), d_weight, d_bias, None, None, None, None


class CohortLayerNorm(nn.Module):
    """Layer norm (Ba et al. 2016) per member: statistics over each example's features, gains per member."""

    def __init__(self, solos: Sequence[nn.Module]) -> None:
        super().__init__()
        self.features, self.eps = solos[0].features, solos[0].eps
        self.weight = stacked_param([m.weight for m in solos])  # (E, F)
        self.bias = stacked_param([m.bias for m in solos])

    def forward(self, x: Tensor) -> Tensor:
        """(…, E, B, F) -> (…, E, B, F): a step (E, B, F) or a whole (T, E, B, F) sequence."""
        y = F.layer_norm(x, (self.features,), None, None, self.eps) * self.weight.unsqueeze(1)
        return y if self.bias is None else y + self.bias.unsqueeze(1)

    def step(self, x: Tensor, t: int) -> Tensor:
        return self.forward(x)


class CohortDropout(nn.Module):
    """Inverted dropout on (T, E, B, F): a fresh mask per element (Zaremba), or, `locked`, one (E, B, F) mask
    per member and sequence shared over T (Gal & Ghahramani). Masks are drawn member first, (E, T, B, F).
    `p` is one probability for every member, or one per member (a cohort over dropout p)."""

    def __init__(self, p: float | Sequence[float], locked: bool) -> None:
        super().__init__()
        ps = (p,) if isinstance(p, (int, float)) else tuple(p)
        self.p: float | tuple[float, ...] = ps[0] if len(set(ps)) == 1 else ps
        self.locked = locked

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        T, E, B, Fd = x.shape
        keep = 1.0 - self.p if isinstance(self.p, float) else [1.0 - p for p in self.p]
        if self.locked:
            return x * masks.bernoulli(x, (E, B, Fd), keep, scale=True)
        return x * masks.bernoulli(x, (E, T, B, Fd), keep, scale=True).transpose(0, 1)

    def extra_repr(self) -> str:
        return f"p={self.p}, locked={self.locked}"


PROJECTED_BN_MAX_INPUT = 8  # inputs up to this width: BN of W·x from the input's moments (`projected_bn`)


def projected_bn(x: Tensor, weight: Tensor, norm: CohortStepBatchNorm) -> Tensor:
    """Training BN of W·x over a (T, E, B, I) input sequence, per (step, member, feature) over B, from the
    input's batch moments: for feature f, mean_B(W·x)_f = W_f·μ and var_B(W·x)_f = W_fᵀ Σ W_f (μ and Σ the
    batch mean and biased covariance of x), so BN(W·x) = (x − μ)·(γ_f W_f / σ_f), one batched GEMM with
    the scale folded into the weights. The same function as `norm(x @ Wᵀ)`, with the wide (T, E, B, gH)
    tensor written once in the forward and read twice in the backward (autograd's, through small tensors),
    instead of `_SequenceBN`'s passes over it; worth it while I is small (digits 1, adding 2).

    weight: W_ih (E, gH, I). Running statistics (rows t < max_steps) move by `momentum` towards W·μ and the
    unbiased variance, as torch's batch_norm moves them.
    """
    T, E, B, _ = x.shape
    mu = x.mean(2, keepdim=True)  # (T, E, 1, I)
    xc = x - mu
    cov = torch.matmul(xc.transpose(2, 3), xc) / B  # (T, E, I, I), biased
    var = (torch.matmul(weight, cov) * weight).sum(-1)  # (T, E, gH): W_fᵀ Σ W_f per feature
    scale = norm.weight * var.add(norm.eps).rsqrt()  # γ / σ, (T, E, gH)
    y = torch.matmul(xc, (weight * scale.unsqueeze(-1)).transpose(2, 3))  # (T, E, B, gH)
    n = min(T, norm.max_steps)
    with torch.no_grad():
        mean = torch.matmul(mu, weight.transpose(1, 2)).squeeze(2)  # (T, E, gH)
        norm.running_mean[:n].lerp_(mean[:n], norm.momentum)
        norm.running_var[:n].lerp_(var[:n] * (B / (B - 1)), norm.momentum)
    return y if norm.bias is None else y + norm.bias.view(1, E, 1, -1)

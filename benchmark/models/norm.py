"""Batch normalisation of E stacked members: per step (Cooijmans), over a sequence (Laurent; output BN).

Every piece normalises each member with its own statistics and gains, never across members: every
(member, feature) pair is its own channel. Parameters are (E, F); `StepBatchNorm` keeps population
statistics as one (max_stats_steps, E, F) buffer (one step's row of every member is one contiguous (E, F)
block, which torch's fused batch_norm updates in place), so `member_dims` names their member dimension 1.
At eval, steps beyond `max_stats_steps` reuse the last row, as Cooijmans et al. (2016) prescribe (the
suite sizes it to the task's length, so every step has its own). In training every step uses its own
batch statistics; only rows t < max_stats_steps are updated.

`eval_var`: a feature whose population variance is (near-)zero — the same value for every example at that
step, e.g. the copy task's blanks — is normalised to exactly 0 at eval, as it is in training, instead of
dividing a tiny deviation by sqrt(eps) (a ~300x gain). Population statistics that describe the trained
weights ("precise BN") are `benchmark.models.stack.estimate_population`'s.

`StepBatchNorm` offers the fused loops (benchmark/models/fused_norm.py) its own hand-written step
(`fused`), and BN of W·x over a narrow input from the input's moments (`project`).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

# A feature whose population variance is at most this fraction of eps is constant at that step:
# in training its normalised values are below sqrt(1e-4) = 1 % of a unit, so 0 is what it gives.
CONSTANT_VAR_FRACTION = 1e-4
PROJECTED_BN_MAX_INPUT = 8  # inputs up to this width: BN of W·x from the input's moments (`project`)


def eval_var(running_var: Tensor, eps: float) -> Tensor:
    """The variance BN divides by at eval: constant features read as infinite, so they normalise to 0."""
    return running_var.masked_fill(running_var <= CONSTANT_VAR_FRACTION * eps, math.inf)


def is_batch_norm(m: nn.Module) -> bool:
    """A module with BN's population statistics (`running_mean`, `running_var`, `momentum`): this package's
    pieces, torch's own, or a user piece that keeps them the same way."""
    return all(hasattr(m, a) for a in ("running_mean", "running_var", "momentum")) and m.running_mean is not None


def bn_modules(model: nn.Module) -> list[nn.Module]:
    """Every batch-norm module of `model` (`is_batch_norm`)."""
    return [m for m in model.modules() if is_batch_norm(m)]


def _gains(members: int, features: int, value: float) -> nn.Parameter:
    return nn.Parameter(torch.full((members, features), float(value)))


class StepBatchNorm(nn.Module):
    """BN with statistics per time step and member, gains per member shared over time.

    Args:
        features: F, the normalised width.
        max_steps: rows of population statistics kept.
        gain_init: initial gamma (Cooijmans recommend 0.1 to keep tanh/sigmoid unsaturated).
        bias: learn a beta. The input/hidden BNs of recurrent BN have none (the cell's
            bias is shared); the cell-state BN has one.
        members: E, the stack's members.
    """

    member_dims = {"running_mean": 1, "running_var": 1}

    def __init__(
        self,
        features: int,
        max_steps: int,
        gain_init: float,
        momentum: float,
        eps: float,
        bias: bool = False,
        members: int = 1,
    ) -> None:
        super().__init__()
        self.features, self.max_steps, self.momentum, self.eps = features, max_steps, momentum, eps
        self.weight = _gains(members, features, gain_init)  # (E, F)
        self.bias = nn.Parameter(torch.zeros(members, features)) if bias else None
        self.register_buffer("running_mean", torch.zeros(max_steps, members, features))  # (S, E, F)
        self.register_buffer("running_var", torch.ones(max_steps, members, features))

    def step(self, x: Tensor, t: int) -> Tensor:
        """One step's (E, B, F), each member with its own batch statistics and its own row t."""
        E, B, Fd = x.shape
        row = min(t, self.max_steps - 1)
        flat = x.transpose(0, 1).reshape(B, E * Fd)
        bias = None if self.bias is None else self.bias.reshape(-1)
        if not self.training:
            rv = eval_var(self.running_var[row], self.eps).reshape(-1)
            mean = self.running_mean[row].reshape(-1)
            y = F.batch_norm(flat, mean, rv, self.weight.reshape(-1), bias, False, 0.0, self.eps)
        else:
            rm, rv = (None, None) if t >= self.max_steps else (self.running_mean[row], self.running_var[row])
            rm, rv = (None, None) if rm is None else (rm.view(-1), rv.view(-1))
            y = F.batch_norm(flat, rm, rv, self.weight.reshape(-1), bias, True, self.momentum, self.eps)
        return y.view(B, E, Fd).transpose(0, 1)

    def forward(self, x: Tensor) -> Tensor:
        """A whole (T, E, B, F) sequence, each member and step with its own statistics, at once."""
        T = x.shape[0]
        if not self.training:
            rows = torch.arange(T, device=x.device).clamp_(max=self.max_steps - 1)
            return self._bn(x, self.running_mean[rows], eval_var(self.running_var[rows], self.eps))
        n = min(T, self.max_steps)
        if torch.is_autocast_enabled(x.device.type):  # torch's batch_norm takes bf16 inputs with fp32 statistics
            y = self._bn(x[:n], self.running_mean[:n], self.running_var[:n])  # rows 0..n-1 updated in place
            return y if T == n else torch.cat([y, self._bn(x[n:], None, None)])
        return _SequenceBN.apply(
            x.contiguous(), self.weight, self.bias, self.running_mean[:n], self.running_var[:n], self.momentum, self.eps
        )

    def _bn(self, x: Tensor, rm: Optional[Tensor], rv: Optional[Tensor]) -> Tensor:
        """(T, E, B, F) -> one torch batch_norm over (B, T·E·F) channels, in the (step, member, feature) order of rm
        (training: the rows of rm and rv move in place; None: batch statistics only)."""
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

    def project(self, x: Tensor, weight: Tensor) -> Optional[Tensor]:
        """BN of W·x in training from the moments of a narrow input x (T, E, B, I) (`projected_bn`); None where
        that does not pay (a wide input, eval, autocast): the caller normalises W·x itself."""
        if not self.training or x.shape[-1] > PROJECTED_BN_MAX_INPUT or torch.is_autocast_enabled(x.device.type):
            return None
        return projected_bn(x, weight, self)

    def fused(self, T: int, like: Tensor) -> "FusedStepBN":
        """This norm's hand-written training step for a fused loop of T steps over (E, B, F) tensors like `like`."""
        return FusedStepBN(self, T, like)

    def extra_repr(self) -> str:
        E = self.weight.shape[0]
        return f"{self.features}, max_steps={self.max_steps}, bias={self.bias is not None}, members={E}"


class _SequenceBN(torch.autograd.Function):
    """Training BN of a (T, E, B, F) sequence with its own statistics per (step, member, feature), over B.

    What torch's batch_norm computes over (B, T·E·F) channels, without the transposed copies, forward and
    backward (a third of a BN-LSTM stack's step on CPU): x is read as T·E groups of (B, F), whose batch means
    are (T·E, 1, B)·(T·E, B, F) batched GEMMs (faster here than `mean`), the variance in two passes. The
    running statistics of the first rows (as many as `running_mean` has, the steps below max_steps) move by
    `momentum` towards the batch mean and the unbiased variance.
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


def projected_bn(x: Tensor, weight: Tensor, norm: StepBatchNorm) -> Tensor:
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


class FusedStepBN:
    """A per-step BN inside a fused loop (benchmark/models/fused_norm.py): x (E, B, F) -> x̂, and its backward.

    Keeps x̂ and γ/σ per step for backward, each step's batch mean and biased variance for the running
    statistics (`finish_forward`); the backward then reuses that room for the batch means of ∂L/∂y
    and ∂L/∂y·x̂, from which `grads` forms ∂L/∂γ and ∂L/∂β. Batch means are (E, 1, B)·(E, B, F) batched
    GEMMs (faster here than mean or var_mean), the variance in two passes.
    """

    def __init__(self, norm: StepBatchNorm, T: int, like: Tensor) -> None:
        E, B, Fd = like.shape[0], like.shape[-2], norm.features
        self.norm, self.T, self.B = norm, T, B
        self.avg = like.new_full((E, 1, B), 1.0 / B)
        self.gamma = norm.weight.detach().unsqueeze(1)  # (E, 1, F)
        self.beta = None if norm.bias is None else norm.bias.detach().unsqueeze(1)
        self.xhat = like.new_empty(T, E, B, Fd)
        self.stats = like.new_empty(2, T, E, 1, Fd)
        self.scale = like.new_empty(T, E, 1, Fd)  # 1/σ in the forward, γ/σ after it
        self.sq = like.new_empty(E, B, Fd)
        self.eps = like.new_full((), norm.eps)  # a tensor: a Python scalar costs a conversion per op
        # every per-step view made once, outside the loops
        self.xhat_, self.scale_ = self.xhat.unbind(0), self.scale.unbind(0)
        self.mean_, self.var_ = self.stats[0].unbind(0), self.stats[1].unbind(0)

    def forward(self, x: Tensor, t: int) -> Tensor:
        """x̂_t of x (E, B, F), kept for backward; the caller applies γ (and β)."""
        mean, var = self.mean_[t], self.var_[t]
        xc = torch.sub(x, torch.bmm(self.avg, x, out=mean), out=self.xhat_[t])
        torch.bmm(self.avg, torch.mul(xc, xc, out=self.sq), out=var)
        return xc.mul_(torch.add(var, self.eps, out=self.scale_[t]).rsqrt_())

    def affine(self, xhat: Tensor, out: Tensor) -> Tensor:
        """γ·x̂ + β into `out` (β where the norm has one)."""
        if self.beta is None:
            return torch.mul(xhat, self.gamma, out=out)
        return torch.addcmul(self.beta, xhat, self.gamma, out=out)

    def finish_forward(self) -> None:
        """Move the running statistics (rows t < max_steps) and keep γ/σ for backward."""
        norm, n = self.norm, min(self.T, self.norm.max_steps)
        norm.running_mean[:n].lerp_(self.stats[0, :n, :, 0], norm.momentum)
        norm.running_var[:n].lerp_(self.stats[1, :n, :, 0] * (self.B / (self.B - 1)), norm.momentum)
        self.scale.mul_(self.gamma)

    def backward(self, dy: Tensor, t: int, out: Tensor) -> Tensor:
        """∂L/∂x_t into `out` given ∂L/∂y_t, y = γ·x̂ (+ β)."""
        xhat, m_dy, m_dyx = self.xhat_[t], self.mean_[t], self.var_[t]  # forward's stats are spent
        torch.bmm(self.avg, dy, out=m_dy)
        torch.bmm(self.avg, torch.mul(dy, xhat, out=self.sq), out=m_dyx)
        return torch.sub(dy, m_dy, out=out).addcmul_(xhat, m_dyx, value=-1).mul_(self.scale_[t])

    def grads(self) -> tuple[Tensor, Optional[Tensor]]:
        """∂L/∂γ and ∂L/∂β (None without β), (E, F): B times the batch means, summed over steps."""
        d_gamma = self.stats[1].sum(0).mul_(self.B).squeeze(1)
        d_beta = None if self.beta is None else self.stats[0].sum(0).mul_(self.B).squeeze(1)
        return d_gamma, d_beta


class SequenceBatchNorm(nn.Module):
    """BN over a (T, E, B, F) sequence with statistics over batch and time per member and feature: BN of W_ih·x
    (Laurent et al. 2016, no beta: the cell's bias follows) or of a layer's output (with a beta, as torch's
    BatchNorm1d over the output's features)."""

    def __init__(
        self, features: int, gain_init: float, momentum: float, eps: float, bias: bool = False, members: int = 1
    ) -> None:
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.weight = _gains(members, features, gain_init)  # (E, F)
        self.bias = nn.Parameter(torch.zeros(members, features)) if bias else None
        self.register_buffer("running_mean", torch.zeros(members, features))
        self.register_buffer("running_var", torch.ones(members, features))

    def forward(self, x: Tensor) -> Tensor:
        T, E, B, Fd = x.shape
        rv = self.running_var if self.training else eval_var(self.running_var, self.eps)
        y = F.batch_norm(
            x.transpose(1, 2).reshape(T * B, E * Fd),
            self.running_mean.view(-1),
            rv.reshape(-1),
            self.weight.reshape(-1),
            None if self.bias is None else self.bias.reshape(-1),
            self.training,
            self.momentum,
            self.eps,
        )
        return y.view(T, B, E, Fd).transpose(1, 2)

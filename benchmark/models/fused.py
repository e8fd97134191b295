"""A whole LSTM sequence with a hand-written backward: the custom loop's fast path.

Autograd records about ten nodes per LSTM step and forms W_hh's gradient with T small
GEMMs. `FusedLSTM` computes the same function on the same parameters, with the same
regulariser semantics as `RecurrentLayer._step` + `LSTMCell.step`, but:
- every step writes into preallocated (T, B, ·) buffers, in place, with no graph;
- the four gates take one sigmoid, via tanh(g) = 2σ(2g) − 1 (torch's CPU tanh costs
  about three sigmoids at these sizes);
- the backward sweep keeps only the per-step GEMM for ∂L/∂h_{t-1}; W_hh's gradient is one
  (gH × T·B)·(T·B × H) GEMM afterwards;
- zoneout (Krueger et al. 2017) mixes each new h and c with the previous ones by the masks
  the layer drew, and the backward passes the kept share of each gradient straight back;
- layer norm of W_hh·h and of the cell state (Ba et al., `reg=ln`) calls ATen's layer-norm
  forward and backward kernels per step (W_ih·x is normalised for all steps before the loop);
- recurrent BN is written out (batch means as a (1, B)·(B, F) GEMM, which beats the
  generic batch-norm kernels at this size), with per-step statistics and running-stat rows
  exactly as `StepBatchNorm.step` / F.batch_norm keep them.

It runs only in training with gradients on (see `RecurrentLayer._loop`); evaluation,
`torch.no_grad`, hidden-gradient probes, autocast and accel=compile take the autograd
loop, which stays the reference: tests/test_fused.py checks that both agree in float64.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from benchmark.models.layernorm import StepLayerNorm
from benchmark.models.norm import StepBatchNorm

_sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input
_tanh_backward = torch.ops.aten.tanh_backward.grad_input


def _tanh_(x: Tensor) -> Tensor:
    """tanh in place; on CPU as 2σ(2x) − 1 (same value to float rounding, ~2× faster there)."""
    if x.device.type != "cpu":
        return x.tanh_()
    return x.mul_(2).sigmoid_().mul_(2).sub_(1)


class _StepBN:
    """One per-step training BN inside the fused loop (Cooijmans): what it saves and how it differentiates.

    Computes what `StepBatchNorm.step` computes in training, with batch means as GEMMs by
    `avg`, a (1, B) row of 1/B. Keeps x̂ and 1/σ per step for backward, and each step's mean
    and (biased) variance for `norm.update_population` after the loop.
    """

    def __init__(self, norm: StepBatchNorm, T: int, like: Tensor, avg: Tensor) -> None:
        B, F = like.shape[1], norm.features
        self.norm, self.avg = norm, avg
        self.gamma = norm.weight.detach()
        self.beta = norm.bias.detach() if norm.bias is not None else None
        self.xhat = like.new_empty(T, B, F)
        self.stats = like.new_empty(2, T, 1, F)  # batch mean, variance; then the means of dy, dy·x̂
        self.invstd: list[Tensor] = []

    def forward(self, x: Tensor, t: int) -> Tensor:
        """x̂_t of x (B, F), kept for backward; the caller applies γ (and β) where the output goes."""
        mean, var = self.stats[0, t], self.stats[1, t]
        torch.mm(self.avg, x, out=mean)
        xc = torch.sub(x, mean, out=self.xhat[t])
        torch.mm(self.avg, xc * xc, out=var)
        invstd = (var + self.norm.eps).rsqrt_()
        self.invstd.append(invstd)
        return xc.mul_(invstd)

    def update_population(self) -> None:
        self.norm.update_population(self.stats[0, :, 0], self.stats[1, :, 0], self.xhat.shape[1])

    def backward(self, dy: Tensor, t: int, out: Tensor) -> Tensor:
        """∂L/∂x_t into `out` given ∂L/∂y_t; keeps the batch means of dy and dy·x̂ for `grads`."""
        xhat, m_dy, m_dyx = self.xhat[t], self.stats[0, t], self.stats[1, t]  # forward's stats are spent
        torch.mm(self.avg, dy, out=m_dy)
        torch.mm(self.avg, dy * xhat, out=m_dyx)
        return torch.addcmul(dy - m_dy, xhat, m_dyx, value=-1, out=out).mul_(self.gamma * self.invstd[t])

    def grads(self) -> tuple[Tensor, Optional[Tensor]]:
        """∂L/∂γ and ∂L/∂β (None without β): B times the summed batch means."""
        B = self.xhat.shape[1]
        d_beta = self.stats[0].sum((0, 1)).mul_(B) if self.beta is not None else None
        return self.stats[1].sum((0, 1)).mul_(B), d_beta


class _StepLN:
    """One per-step layer norm inside the fused loop (Ba et al.): the same interface as `_StepBN`.

    Statistics over the features of each row (example) of one step, through ATen's own layer-norm
    kernels (forward and backward); keeps the input, mean and 1/σ per step, and accumulates ∂L/∂γ
    (and ∂L/∂β) during the backward sweep.
    """

    def __init__(self, norm: StepLayerNorm, T: int, like: Tensor, avg: Tensor) -> None:
        B, F = like.shape[1], norm.features
        self.norm, self.shape = norm, (F,)
        self.gamma = norm.weight.detach()
        self.beta = norm.bias.detach() if norm.bias is not None else None
        self.x = like.new_empty(T, B, F)
        self.stats: list[tuple[Tensor, Tensor]] = []  # per step: mean, 1/σ (B, 1)
        self.d_gamma = like.new_zeros(F)
        self.d_beta = like.new_zeros(F) if self.beta is not None else None

    def forward(self, x: Tensor, t: int) -> Tensor:
        """x̂_t of x (B, F); the caller applies γ (and β)."""
        self.x[t].copy_(x)
        xhat, mean, rstd = torch.native_layer_norm(x, self.shape, None, None, self.norm.eps)
        self.stats.append((mean, rstd))
        return xhat

    def update_population(self) -> None:
        """Nothing: layer norm keeps no statistics between batches."""

    def backward(self, dy: Tensor, t: int, out: Tensor) -> Tensor:
        """∂L/∂x_t into `out` given ∂L/∂y_t, y = γ·x̂ (+ β)."""
        mean, rstd = self.stats[t]
        mask = [True, True, self.beta is not None]
        dx, dg, db = torch.ops.aten.native_layer_norm_backward(
            dy, self.x[t], self.shape, mean, rstd, self.gamma, self.beta, mask
        )
        self.d_gamma.add_(dg)
        if db is not None:
            self.d_beta.add_(db)
        return out.copy_(dx)

    def grads(self) -> tuple[Tensor, Optional[Tensor]]:
        return self.d_gamma, self.d_beta


def _step_norm(norm: Optional[Any], T: int, like: Tensor, avg: Tensor) -> Optional[Any]:
    """The fused loop's helper for a norm slot: per-step BN (Cooijmans) or LN (Ba et al.)."""
    if norm is None:
        return None
    return (_StepLN if isinstance(norm, StepLayerNorm) else _StepBN)(norm, T, like, avg)


class FusedLSTM(torch.autograd.Function):
    """outputs h_1..h_T (T, B, H) of one LSTM layer, given xw = W_ih·x + b_ih + b_hh (T, B, 4H)."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        xw: Tensor,
        w_hh: Tensor,
        gamma_h: Optional[Tensor],
        gamma_c: Optional[Tensor],
        beta_c: Optional[Tensor],
        gamma_x: Optional[Tensor],
        bias: Optional[Tensor],
        h_mask: Optional[Tensor],
        c_masks: Optional[Tensor],
        norm_h: Optional[StepBatchNorm],
        norm_c: Optional[StepBatchNorm],
        norm_x: Optional[StepBatchNorm],
        zone_h: Optional[Tensor],
        zone_c: Optional[Tensor],
    ) -> Tensor:
        T, B, G = xw.shape
        H = G // 4
        g_cols = slice(2 * H, 3 * H)
        wt = w_hh.t()
        hs = xw.new_empty(T + 1, B, H)  # h_0..h_T; the output is hs[1:]
        cs = xw.new_empty(T + 1, B, H)
        hs[0].zero_()
        cs[0].zero_()
        acts = xw.new_empty(T, B, G)  # σ(i), σ(f), tanh(g), σ(o)
        tcs = xw.new_empty(T, B, H)  # tanh(N(c_t))
        hin = hs[:-1] if h_mask is None else xw.new_empty(T, B, H)  # what W_hh multiplies (Gal: masked)
        avg = xw.new_full((1, B), 1.0 / B)
        bn_x, bn_h, bn_c = (_step_norm(n, T, xw, avg) for n in (norm_x, norm_h, norm_c))
        scratch = xw.new_empty(B, G) if norm_h is not None else None
        for t in range(T):
            h = hs[t] if h_mask is None else torch.mul(hs[t], h_mask, out=hin[t])
            a = acts[t]
            x_side = xw[t]
            if bn_x is not None:  # γ_x·BN(W_ih·x) + b: with norm_x, xw is W_ih·x alone and the bias comes after
                x_side = torch.addcmul(bias, bn_x.forward(xw[t], t), gamma_x, out=a)
            if bn_h is None:
                torch.addmm(x_side, h, wt, out=a)
            else:
                torch.addcmul(x_side, bn_h.forward(torch.mm(h, wt, out=scratch), t), gamma_h, out=a)  # + γ_h·BN(W_hh·h)
            a[:, g_cols].mul_(2)
            a.sigmoid_()
            a[:, g_cols].mul_(2).sub_(1)
            i, f, g, o = a.chunk(4, 1)
            if c_masks is not None:
                g = g * c_masks[t]  # Semeniuta: the candidate only
            c = torch.mul(f, cs[t], out=cs[t + 1]).addcmul_(i, g)
            if bn_c is None:
                tcs[t].copy_(c)
            elif beta_c is None:
                torch.mul(bn_c.forward(c, t), gamma_c, out=tcs[t])
            else:
                torch.addcmul(beta_c, bn_c.forward(c, t), gamma_c, out=tcs[t])
            torch.mul(o, _tanh_(tcs[t]), out=hs[t + 1])  # h̃_t from the unzoned c̃_t (Krueger et al.)
            if zone_c is not None:  # zoneout: keep c_{t-1} where the mask is 1
                cs[t + 1].lerp_(cs[t], zone_c[t])
            if zone_h is not None:
                hs[t + 1].lerp_(hs[t], zone_h[t])
        bns = (bn_x, bn_h, bn_c)
        for bn in bns:
            if bn is not None:
                bn.update_population()
        ctx.save_for_backward(w_hh)  # an input: autograd checks it is not modified in place before backward
        ctx.bufs = (acts, cs, tcs, hin, bns, h_mask, c_masks, zone_h, zone_c)
        return hs[1:]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Tensor) -> tuple[Optional[Tensor], ...]:
        (w_hh,) = ctx.saved_tensors
        acts, cs, tcs, hin, (bn_x, bn_h, bn_c), h_mask, c_masks, zone_h, zone_c = ctx.bufs
        T, B, H = dy.shape
        G = 4 * H
        dG = dy.new_empty(T, B, G)  # ∂L/∂gates (= ∂L/∂xw without norm_x)
        dA = dG if bn_h is None else dy.new_empty(T, B, G)  # ∂L/∂(W_hh·h)
        dX = dG if bn_x is None else dy.new_empty(T, B, G)  # ∂L/∂xw
        dh = dy.new_zeros(B, H)  # ∂L/∂h_t from later steps (after the mask)
        dc_next = dy.new_zeros(B, H)
        tmp, dn, dc_bn = dy.new_empty(B, H), dy.new_empty(B, H), dy.new_empty(B, H)
        carry_h = dy.new_empty(B, H) if zone_h is not None else None  # zoneout: the kept part goes straight back
        carry_c = dy.new_empty(B, H) if zone_c is not None else None
        for t in reversed(range(T)):
            dh.add_(dy[t])
            if carry_h is not None:  # h_t = k·h_{t-1} + (1-k)·h̃_t
                torch.mul(dh, zone_h[t], out=carry_h)
                dh.sub_(carry_h)  # now ∂L/∂h̃_t
            i, f, g, o = acts[t].chunk(4, 1)
            di, df, dg, do = dG[t].chunk(4, 1)
            tc = tcs[t]
            _sigmoid_backward(torch.mul(dh, tc, out=tmp), o, grad_input=do)
            _tanh_backward(torch.mul(dh, o, out=tmp), tc, grad_input=dn)
            dc = dn if bn_c is None else bn_c.backward(dn, t, out=dc_bn)
            dc.add_(dc_next)
            if carry_c is not None:  # c_t = k·c_{t-1} + (1-k)·c̃_t: ∂L/∂c̃_t takes (1-k) of ∂L/∂c_t
                torch.mul(dc_next, zone_c[t], out=carry_c)
                dc.sub_(carry_c)
            gd = g if c_masks is None else g * c_masks[t]
            _sigmoid_backward(torch.mul(dc, gd, out=tmp), i, grad_input=di)
            torch.mul(dc, i, out=tmp)
            if c_masks is not None:
                tmp.mul_(c_masks[t])
            _tanh_backward(tmp, g, grad_input=dg)
            _sigmoid_backward(torch.mul(dc, cs[t], out=tmp), f, grad_input=df)
            torch.mul(dc, f, out=dc_next)
            if carry_c is not None:
                dc_next.add_(carry_c)
            if bn_h is not None:
                bn_h.backward(dG[t], t, out=dA[t])
            if bn_x is not None:
                bn_x.backward(dG[t], t, out=dX[t])
            if t > 0:  # h_0 is a constant zero state
                torch.mm(dA[t], w_hh, out=dh)
                if h_mask is not None:
                    dh.mul_(h_mask)
                if carry_h is not None:
                    dh.add_(carry_h)
        d_w_hh = None
        if ctx.needs_input_grad[1]:
            d_w_hh = dA.view(T * B, G).t().mm(hin.reshape(T * B, H))  # one GEMM for all steps
        d_gamma_h = bn_h.grads()[0] if bn_h is not None else None
        d_gamma_c, d_beta_c = bn_c.grads() if bn_c is not None else (None, None)
        d_gamma_x = bn_x.grads()[0] if bn_x is not None else None
        d_bias = dG.sum((0, 1)) if bn_x is not None and ctx.needs_input_grad[6] else None
        return dX, d_w_hh, d_gamma_h, d_gamma_c, d_beta_c, d_gamma_x, d_bias, None, None, None, None, None, None, None


def fused_lstm(
    xw: Tensor,
    w_hh: Tensor,
    h_mask: Optional[Tensor],
    c_masks: Optional[Tensor],
    norm_h: Optional[StepBatchNorm],
    norm_c: Optional[StepBatchNorm],
    norm_x: Optional[StepBatchNorm] = None,
    bias: Optional[Tensor] = None,
    zone: Optional[list[Optional[Tensor]]] = None,
) -> Tensor:
    """(T, B, 4H) input-side pre-activations → (T, B, H) outputs, training mode.

    `zone`: zoneout's keep masks [h, c], each (T, B, H) or None (`zoneout.py`); None = off.

    Without `norm_x`, xw = W_ih·x + b_ih + b_hh. With it (Cooijmans' per-step BN of W_ih·x),
    xw = W_ih·x and `bias` = b_ih + b_hh is added after the normalisation. See the module docstring.
    """
    if (norm_x is None) != (bias is None):
        raise ValueError("fused_lstm: pass the bias separately exactly when norm_x is given")
    gamma_h = norm_h.weight if norm_h is not None else None
    gamma_c = norm_c.weight if norm_c is not None else None
    beta_c = norm_c.bias if norm_c is not None else None
    gamma_x = norm_x.weight if norm_x is not None else None
    zone_h, zone_c = zone if zone is not None else (None, None)
    return FusedLSTM.apply(
        xw, w_hh, gamma_h, gamma_c, beta_c, gamma_x, bias, h_mask, c_masks, norm_h, norm_c, norm_x, zone_h, zone_c
    )

"""A whole LSTM sequence with a hand-written backward: the custom loop's fast path.

Autograd records about ten nodes per LSTM step and forms W_hh's gradient with T small
GEMMs. `FusedLSTM` computes the same function on the same parameters, with the same
regulariser semantics as `RecurrentLayer._step` + `LSTMCell.step`, but:
- every step writes into preallocated (T, B, ·) buffers, in place, with no graph;
- the four gates take one sigmoid, via tanh(g) = 2σ(2g) − 1 (torch's CPU tanh costs
  about three sigmoids at these sizes);
- the backward sweep keeps only the per-step GEMM for ∂L/∂h_{t-1}; W_hh's gradient is one
  (gH × T·B)·(T·B × H) GEMM afterwards;
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

from benchmark.models.norm import StepBatchNorm

_sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input
_tanh_backward = torch.ops.aten.tanh_backward.grad_input


def _tanh_(x: Tensor) -> Tensor:
    """tanh in place; on CPU as 2σ(2x) − 1 (same value to float rounding, ~2× faster there)."""
    if x.device.type != "cpu":
        return x.tanh_()
    return x.mul_(2).sigmoid_().mul_(2).sub_(1)


def _bn_train(x: Tensor, eps: float, avg: Tensor, xhat: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    """Training BN statistics of x (B, F) as F.batch_norm computes them; returns 1/σ (1, F).

    Writes x̂ into `xhat` and the batch mean and (biased) variance into the (1, F) rows
    `mean` and `var`; `avg` is a (1, B) row of 1/B, so batch means are small GEMMs.
    """
    torch.mm(avg, x, out=mean)
    xc = torch.sub(x, mean, out=xhat)
    torch.mm(avg, xc * xc, out=var)
    invstd = (var + eps).rsqrt_()
    xc.mul_(invstd)
    return invstd


def _update_population(norm: StepBatchNorm, means: Tensor, variances: Tensor, batch: int) -> None:
    """Rows 0..min(T, max_steps)-1 move towards each step's statistics, as `StepBatchNorm.step` does."""
    n = min(means.shape[0], norm.max_steps)
    norm.running_mean[:n].lerp_(means[:n], norm.momentum)
    norm.running_var[:n].lerp_(variances[:n] * (batch / (batch - 1)), norm.momentum)  # unbiased, like torch


def _bn_backward(dy: Tensor, xhat: Tensor, invstd: Tensor, gamma: Tensor, avg: Tensor, m_dyx: Tensor,
                 m_dy: Tensor, out: Tensor) -> None:
    """∂L/∂x of training BN into `out`, given ∂L/∂y; leaves the batch means of dy·x̂ and dy in
    the (1, F) rows m_dyx and m_dy (the gain and bias gradients are B times their sums)."""
    torch.mm(avg, dy, out=m_dy)
    torch.mm(avg, dy * xhat, out=m_dyx)
    torch.addcmul(dy - m_dy, xhat, m_dyx, value=-1, out=out).mul_(gamma * invstd)


class FusedLSTM(torch.autograd.Function):
    """outputs h_1..h_T (T, B, H) of one LSTM layer, given xw = W_ih·x + b_ih + b_hh (T, B, 4H)."""

    @staticmethod
    def forward(ctx: FunctionCtx, xw: Tensor, w_hh: Tensor, gamma_h: Optional[Tensor], gamma_c: Optional[Tensor],
                beta_c: Optional[Tensor], gamma_x: Optional[Tensor], bias: Optional[Tensor], h_mask: Optional[Tensor],
                c_masks: Optional[Tensor], norm_h: Optional[StepBatchNorm], norm_c: Optional[StepBatchNorm],
                norm_x: Optional[StepBatchNorm]) -> Tensor:
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
        # recurrent BN (Cooijmans): x̂ and 1/σ per step for backward, batch mean/variance per step
        # for the population statistics, updated once after the loop
        xhat_x = xw.new_empty(T, B, G) if norm_x is not None else None  # with norm_x, xw is W_ih·x alone
        mv_x = xw.new_empty(2, T, 1, G) if norm_x is not None else None
        inv_x: list[Tensor] = []
        xhat_h = xw.new_empty(T, B, G) if norm_h is not None else None
        xhat_c = xw.new_empty(T, B, H) if norm_c is not None else None
        mv_h = xw.new_empty(2, T, 1, G) if norm_h is not None else None
        mv_c = xw.new_empty(2, T, 1, H) if norm_c is not None else None
        scratch = xw.new_empty(B, G) if norm_h is not None else None
        inv_h: list[Tensor] = []
        inv_c: list[Tensor] = []
        for t in range(T):
            h = hs[t] if h_mask is None else torch.mul(hs[t], h_mask, out=hin[t])
            a = acts[t]
            x_side = xw[t]
            if norm_x is not None:  # γ_x·BN(W_ih·x) + b, the bias shared and outside both BNs
                inv_x.append(_bn_train(xw[t], norm_x.eps, avg, xhat_x[t], mv_x[0, t], mv_x[1, t]))
                x_side = torch.addcmul(bias, xhat_x[t], gamma_x, out=a)
            if norm_h is None:
                torch.addmm(x_side, h, wt, out=a)
            else:
                inv_h.append(_bn_train(torch.mm(h, wt, out=scratch), norm_h.eps, avg, xhat_h[t], mv_h[0, t], mv_h[1, t]))
                torch.addcmul(x_side, xhat_h[t], gamma_h, out=a)  # + γ_h·BN(W_hh·h)
            a[:, g_cols].mul_(2)
            a.sigmoid_()
            a[:, g_cols].mul_(2).sub_(1)
            i, f, g, o = a.chunk(4, 1)
            if c_masks is not None:
                g = g * c_masks[t]  # Semeniuta: the candidate only
            c = torch.mul(f, cs[t], out=cs[t + 1]).addcmul_(i, g)
            if norm_c is None:
                tcs[t].copy_(c)
            else:
                inv_c.append(_bn_train(c, norm_c.eps, avg, xhat_c[t], mv_c[0, t], mv_c[1, t]))
                if beta_c is None:
                    torch.mul(xhat_c[t], gamma_c, out=tcs[t])
                else:
                    torch.addcmul(beta_c, xhat_c[t], gamma_c, out=tcs[t])
            torch.mul(o, _tanh_(tcs[t]), out=hs[t + 1])
        for norm, mv in ((norm_h, mv_h), (norm_c, mv_c), (norm_x, mv_x)):
            if norm is not None:
                _update_population(norm, mv[0, :, 0], mv[1, :, 0], B)
        ctx.save_for_backward(w_hh, gamma_h, gamma_c, gamma_x)  # inputs: autograd checks they are not modified in place
        ctx.bufs = (acts, cs, tcs, hin, avg, xhat_h, xhat_c, xhat_x, inv_h, inv_c, inv_x, h_mask, c_masks)
        ctx.has_beta_c = beta_c is not None
        return hs[1:]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Tensor) -> tuple[Optional[Tensor], ...]:
        w_hh, gamma_h, gamma_c, gamma_x = ctx.saved_tensors
        acts, cs, tcs, hin, avg, xhat_h, xhat_c, xhat_x, inv_h, inv_c, inv_x, h_mask, c_masks = ctx.bufs
        T, B, H = dy.shape
        G = 4 * H
        dG = dy.new_empty(T, B, G)  # ∂L/∂gates = ∂L/∂xw
        dA = dG if gamma_h is None else dy.new_empty(T, B, G)  # ∂L/∂(W_hh·h)
        dh = dy.new_zeros(B, H)  # ∂L/∂h_t from later steps (after the mask)
        dc_next = dy.new_zeros(B, H)
        tmp, dn, dc_bn = dy.new_empty(B, H), dy.new_empty(B, H), dy.new_empty(B, H)
        # per-step batch means of dy·x̂ and dy: B times their sums are the BN gain and bias gradients
        m_h = dy.new_empty(2, T, 1, G) if gamma_h is not None else None
        m_c = dy.new_empty(2, T, 1, H) if gamma_c is not None else None
        m_x = dy.new_empty(2, T, 1, G) if gamma_x is not None else None
        dX = dG if gamma_x is None else dy.new_empty(T, B, G)  # ∂L/∂xw
        for t in reversed(range(T)):
            dh.add_(dy[t])
            i, f, g, o = acts[t].chunk(4, 1)
            di, df, dg, do = dG[t].chunk(4, 1)
            tc = tcs[t]
            _sigmoid_backward(torch.mul(dh, tc, out=tmp), o, grad_input=do)
            _tanh_backward(torch.mul(dh, o, out=tmp), tc, grad_input=dn)
            dc = dn
            if gamma_c is not None:
                _bn_backward(dn, xhat_c[t], inv_c[t], gamma_c, avg, m_c[0, t], m_c[1, t], out=dc_bn)
                dc = dc_bn
            dc.add_(dc_next)
            gd = g if c_masks is None else g * c_masks[t]
            _sigmoid_backward(torch.mul(dc, gd, out=tmp), i, grad_input=di)
            torch.mul(dc, i, out=tmp)
            if c_masks is not None:
                tmp.mul_(c_masks[t])
            _tanh_backward(tmp, g, grad_input=dg)
            _sigmoid_backward(torch.mul(dc, cs[t], out=tmp), f, grad_input=df)
            torch.mul(dc, f, out=dc_next)
            if gamma_h is not None:
                _bn_backward(dG[t], xhat_h[t], inv_h[t], gamma_h, avg, m_h[0, t], m_h[1, t], out=dA[t])
            if gamma_x is not None:
                _bn_backward(dG[t], xhat_x[t], inv_x[t], gamma_x, avg, m_x[0, t], m_x[1, t], out=dX[t])
            if t > 0:  # h_0 is a constant zero state
                torch.mm(dA[t], w_hh, out=dh)
                if h_mask is not None:
                    dh.mul_(h_mask)
        d_w_hh = None
        if ctx.needs_input_grad[1]:
            d_w_hh = dA.view(T * B, G).t().mm(hin.reshape(T * B, H))  # one GEMM for all steps
        d_gamma_h = m_h[0].sum((0, 1)).mul_(B) if gamma_h is not None else None
        d_gamma_c = m_c[0].sum((0, 1)).mul_(B) if gamma_c is not None else None
        d_beta_c = m_c[1].sum((0, 1)).mul_(B) if ctx.has_beta_c else None
        d_gamma_x = m_x[0].sum((0, 1)).mul_(B) if gamma_x is not None else None
        d_bias = dG.sum((0, 1)) if gamma_x is not None and ctx.needs_input_grad[6] else None
        return dX, d_w_hh, d_gamma_h, d_gamma_c, d_beta_c, d_gamma_x, d_bias, None, None, None, None, None


def fused_lstm(xw: Tensor, w_hh: Tensor, h_mask: Optional[Tensor], c_masks: Optional[Tensor],
               norm_h: Optional[StepBatchNorm], norm_c: Optional[StepBatchNorm],
               norm_x: Optional[StepBatchNorm] = None, bias: Optional[Tensor] = None) -> Tensor:
    """(T, B, 4H) input-side pre-activations → (T, B, H) outputs, training mode.

    Without `norm_x`, xw = W_ih·x + b_ih + b_hh. With it (Cooijmans' per-step BN of W_ih·x),
    xw = W_ih·x and `bias` = b_ih + b_hh is added after the normalisation. See the module docstring.
    """
    if (norm_x is None) != (bias is None):
        raise ValueError("fused_lstm: pass the bias separately exactly when norm_x is given")
    gamma_h = norm_h.weight if norm_h is not None else None
    gamma_c = norm_c.weight if norm_c is not None else None
    beta_c = norm_c.bias if norm_c is not None else None
    gamma_x = norm_x.weight if norm_x is not None else None
    return FusedLSTM.apply(xw, w_hh, gamma_h, gamma_c, beta_c, gamma_x, bias, h_mask, c_masks, norm_h, norm_c, norm_x)

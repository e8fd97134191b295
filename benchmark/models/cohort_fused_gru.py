"""Whole plain-GRU and plain tanh-RNN sequences of E cohort members with a hand-written backward (`cohort.py`).

As `cohort_fused.py` is for the plain LSTM: the cohort's autograd loop records about ten nodes per
GRU step, whose bookkeeping costs more than the batched math at small sizes. Here
- every step writes into preallocated buffers, in place, with no graph. The GRU's x_rz + b_hrz and
  b_hn ride in the recurrent GEMM (one `baddbmm` gives x_rz + W_hrz·h + b_hrz and W_hn·h + b_hn), so
  σ(r), σ(z) is one in-place sigmoid and h' = lerp(n, h, z) one op, as in `GRUCell.step`;
- tanh is 2σ(2x) − 1 on CPU (as `fused._tanh_`), the factor 2 folded into the inputs before the loop;
- the backward sweep keeps one `bmm` per step for ∂L/∂h_{t-1}; W_hh's gradient is one batched GEMM
  afterwards, (E, gH, T·B)·(E, T·B, H), and b_hh's one reduction.
Buffers the backward multiplies as (E, T·B, ·) matrices (∂L/∂(W_hh·h), the hidden states, so xw and
the outputs too) are laid member first, (E, T, B, ·); per-step buffers of the forward time first,
so each step's GEMM writes a contiguous block.

Only the plain recurrence runs here (no norm, mask, zoneout or weight drop inside it), in training
with gradients on (`CohortLayer._can_fuse`); everything else takes the cohort's autograd loop,
which stays the reference: tests/test_cohort_fused_gru.py checks that both agree in float64.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from benchmark.models.fused import _sigmoid_backward, _tanh_backward


def _tanh_scale(like: Tensor) -> int:
    """2 on CPU, where tanh(x) is taken as 2σ(2x) − 1 (torch's CPU tanh costs about three sigmoids here), else 1."""
    return 2 if like.device.type == "cpu" else 1


def _finish_tanh(pre: Tensor, out: Tensor, scale: int, minus_one: Tensor) -> Tensor:
    """tanh into `out` of the pre-activation x given as `pre` = scale·x."""
    if scale == 1:
        return torch.tanh(pre, out=out)
    pre.sigmoid_()
    return torch.add(minus_one, pre, alpha=2, out=out)


def _gru_gemm_inputs(xw: Tensor, b_hh: Tensor, scale: int) -> tuple[Tensor, Tensor]:
    """What the recurrent GEMM adds to W_hh·h, [x_rz + b_hrz, b_hn] (E, T, B, 3H), and scale·x_n (E, T, B, H)."""
    E, T, B, G = xw.shape
    H = G // 3
    b = b_hh.detach().view(E, 1, 1, G)
    c = xw.new_empty(E, T, B, G)
    torch.add(xw[..., : 2 * H], b[..., : 2 * H], out=c[..., : 2 * H])
    c[..., 2 * H :].copy_(b[..., 2 * H :].expand(E, T, B, H))
    return c, xw[..., 2 * H :] * scale


class CohortGRU(torch.autograd.Function):
    """h_1..h_T (E, T, B, H) of E GRU layers, given xw = W_ih·x + b_ih (E, T, B, 3H), W_hh (E, 3H, H), b_hh (E, 3H).

    Gates in torch's order (r, z, n), b_hn inside the reset product: the math of `GRUCell.step` with
    empty slots, from zero state.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, xw: Tensor, w_hh: Tensor, b_hh: Tensor) -> Tensor:
        E, T, B, G = xw.shape
        H = G // 3
        scale, minus_one = _tanh_scale(xw), xw.new_full((), -1.0)
        c, xn = _gru_gemm_inputs(xw, b_hh, scale)
        hs = xw.new_zeros(E, T + 1, B, H)  # h_0..h_T, member first; the output is hs[:, 1:]
        acts = xw.new_empty(T, E, B, G)  # σ(r), σ(z), W_hn·h + b_hn
        ns = xw.new_empty(T, E, B, H)  # n
        c_, xn_, h_, a_, n_ = c.unbind(1), xn.unbind(1), hs.unbind(1), acts.unbind(0), ns.unbind(0)
        rz_, hn_ = acts[..., : 2 * H].unbind(0), acts[..., 2 * H :].unbind(0)
        r_, z_ = (v.unbind(0) for v in acts[..., : 2 * H].chunk(2, -1))
        wt = w_hh.transpose(1, 2)  # (E, H, 3H)
        for t in range(T):
            torch.baddbmm(c_[t], h_[t], wt, out=a_[t])
            rz_[t].sigmoid_()
            pre = torch.addcmul(xn_[t], r_[t], hn_[t], value=scale, out=n_[t])  # scale·(x_n + r·(W_hn·h + b_hn))
            _finish_tanh(pre, n_[t], scale, minus_one)
            torch.lerp(n_[t], h_[t], z_[t], out=h_[t + 1])  # (1 − z)·n + z·h
        ctx.save_for_backward(w_hh)  # an input: autograd checks it is not modified in place before backward
        ctx.bufs = (acts, ns, hs)
        return hs[:, 1:]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Tensor) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        (w_hh,) = ctx.saved_tensors
        acts, ns, hs = ctx.bufs
        E, T, B, H = dy.shape
        G = 3 * H
        dA = dy.new_empty(E, T, B, G)  # ∂L/∂(W_hh·h + b_hh), member first; its r, z part is ∂L/∂xw's too
        dX = dy.new_empty(E, T, B, G)  # ∂L/∂xw
        dh = dy[:, T - 1].clone()  # ∂L/∂h_t
        dh_h, tmp = dy.new_empty(E, B, H), dy.new_empty(E, B, H)
        r_, z_, hn_ = (v.unbind(0) for v in acts.chunk(3, -1))
        dr_, dz_, dhn_ = (v.unbind(1) for v in dA.chunk(3, -1))
        dxn_, n_, h_, dy_, dA_ = dX[..., 2 * H :].unbind(1), ns.unbind(0), hs.unbind(1), dy.unbind(1), dA.unbind(1)
        for t in reversed(range(T)):  # h_{t+1} = n + z·(h_t − n), n = tanh(x_n + r·hn), r, z = σ(x_rz + hw_rz)
            _tanh_backward(torch.addcmul(dh, dh, z_[t], value=-1, out=tmp), n_[t], grad_input=dxn_[t])
            _sigmoid_backward(torch.sub(h_[t], n_[t], out=tmp).mul_(dh), z_[t], grad_input=dz_[t])
            _sigmoid_backward(torch.mul(dxn_[t], hn_[t], out=tmp), r_[t], grad_input=dr_[t])
            torch.mul(dxn_[t], r_[t], out=dhn_[t])
            if t > 0:  # h_0 is the constant zero state
                torch.addcmul(dy_[t - 1], dh, z_[t], out=dh_h)  # ∂L/∂h_t outside W_hh: the output and through z
                torch.baddbmm(dh_h, dA_[t], w_hh, out=dh)
        dX[..., : 2 * H].copy_(dA[..., : 2 * H])
        d_w_hh = _w_hh_grad(dA, hs) if ctx.needs_input_grad[1] else None
        d_b_hh = dA.sum(1).sum(1) if ctx.needs_input_grad[2] else None
        return dX, d_w_hh, d_b_hh


class CohortRNN(torch.autograd.Function):
    """h_1..h_T (E, T, B, H) of E tanh RNN layers, h' = tanh(xw_t + W_hh·h), xw = W_ih·x + b_ih + b_hh (E, T, B, H)."""

    @staticmethod
    def forward(ctx: FunctionCtx, xw: Tensor, w_hh: Tensor) -> Tensor:
        E, T, B, H = xw.shape
        scale, minus_one = _tanh_scale(xw), xw.new_full((), -1.0)
        xs = xw * scale
        hs = xw.new_zeros(E, T + 1, B, H)
        pre = xw.new_empty(E, B, H)
        x_, h_ = xs.unbind(1), hs.unbind(1)
        wt = w_hh.transpose(1, 2)
        for t in range(T):
            torch.baddbmm(x_[t], h_[t], wt, alpha=scale, out=pre)  # scale·(xw_t + W_hh·h)
            _finish_tanh(pre, h_[t + 1], scale, minus_one)
        ctx.save_for_backward(w_hh)
        ctx.hs = hs
        return hs[:, 1:]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        (w_hh,) = ctx.saved_tensors
        hs = ctx.hs
        E, T, B, H = dy.shape
        dX = dy.new_empty(E, T, B, H)  # ∂L/∂xw = ∂L/∂(W_hh·h), member first
        dh = dy[:, T - 1].clone()
        h_, dy_, dX_ = hs.unbind(1), dy.unbind(1), dX.unbind(1)
        for t in reversed(range(T)):
            _tanh_backward(dh, h_[t + 1], grad_input=dX_[t])
            if t > 0:
                torch.baddbmm(dy_[t - 1], dX_[t], w_hh, out=dh)
        d_w_hh = _w_hh_grad(dX, hs) if ctx.needs_input_grad[1] else None
        return dX, d_w_hh


def _w_hh_grad(dA: Tensor, hs: Tensor) -> Tensor:
    """∂L/∂W_hh for all steps in one batched GEMM: (E, gH, T·B)·(E, T·B, H); dA (E, T, B, gH), hs (E, ≥T, B, H)."""
    E, T, B, G = dA.shape
    return torch.bmm(dA.view(E, T * B, G).transpose(1, 2), hs[:, :T].reshape(E, T * B, -1))


def cohort_gru(xw: Tensor, w_hh: Tensor, b_hh: Tensor) -> Tensor:
    """(E, T, B, 3H) input-side pre-activations (b_ih in), b_hh (E, 3H) -> (E, T, B, H) outputs, training mode."""
    return CohortGRU.apply(xw.contiguous(), w_hh, b_hh)


def cohort_rnn(xw: Tensor, w_hh: Tensor) -> Tensor:
    """(E, T, B, H) input-side pre-activations (both biases in) -> (E, T, B, H) outputs, training mode."""
    return CohortRNN.apply(xw.contiguous(), w_hh)

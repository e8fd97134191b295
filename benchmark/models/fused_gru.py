"""Whole plain-GRU and plain tanh-RNN sequences of E stacked members with a hand-written backward.

As `fused_plain.py` is for the plain LSTM: the layer's autograd loop records about ten nodes per
GRU step, whose bookkeeping costs more than the batched math at small sizes. Here
- every step writes into preallocated buffers, in place, with no graph. The GRU kernel does its own
  input projection, into one (E, T, B, 4H) buffer [x_rz + b_ih,rz + b_hh,rz, b_hn, x_n + b_in] that
  the loop updates in place: W_hh·h (one `bmm` into a dense scratch) adds to its first 3H, σ(r), σ(z)
  is one in-place sigmoid, n overwrites x_n, and h' = lerp(n, h, z) is one op, as in `GRUCell.step`. Fewer, smaller
  fresh buffers matter here: first touches of new pages cost about as much as the math;
- tanh is 2σ(2x) − 1 on CPU (as `fused_plain.tanh_into`), the factor 2 folded into the input GEMM's weights;
- the backward sweep keeps one `bmm` per step for ∂L/∂h_{t-1}, on a dense member-first ∂L/∂(W_hh·h)
  (a strided one costs a copy per step); W_hh's, W_ih's and the input's gradients are one batched
  GEMM each afterwards, the biases' one reduction each.
Buffers the backward multiplies as (E, T·B, ·) matrices are laid member first, (E, T, B, ·).

Only the plain recurrence runs here (no norm, mask or zoneout inside it), in training with gradients on
(`RecurrentLayer._fused`); everything else takes the layer's autograd loop, which stays the reference:
tests/test_fused.py checks that both agree in float64.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from benchmark.models.fused_plain import input_member_first, sigmoid_backward, tanh_backward, w_hh_grad


def _tanh_scale(like: Tensor) -> int:
    """2 on CPU, where tanh(x) is taken as 2σ(2x) − 1 (torch's CPU tanh costs about three sigmoids here), else 1."""
    return 2 if like.device.type == "cpu" else 1


def _finish_tanh(pre: Tensor, out: Tensor, scale: int, minus_one: Tensor) -> Tensor:
    """tanh into `out` of the pre-activation x given as `pre` = scale·x."""
    if scale == 1:
        return torch.tanh(pre, out=out)
    pre.sigmoid_()
    return torch.add(minus_one, pre, alpha=2, out=out)


def _gru_weights(w_ih: Tensor, b_ih: Tensor, b_hh: Tensor, scale: int) -> tuple[Tensor, Tensor]:
    """W_ih (E, 3H, I) and the biases as one (E, 4H, I) weight and (E, 1, 4H) bias for the input GEMM, whose
    output row is [x_rz + b_hrz, b_hn, scale·x_n]: the recurrent GEMM's W_hh·h adds in place to its first 3H."""
    E, G, I = w_ih.shape
    H = G // 3
    w = torch.cat([w_ih[:, : 2 * H], w_ih.new_zeros(E, H, I), w_ih[:, 2 * H :] * scale], 1)
    b = torch.cat([b_ih[:, : 2 * H] + b_hh[:, : 2 * H], b_hh[:, 2 * H :], b_ih[:, 2 * H :] * scale], 1)
    return w, b.unsqueeze(1)


class StackGRU(torch.autograd.Function):
    """h_1..h_T (T, E, B, H) of E GRU layers on x (T, E, B, I), W_ih (E, 3H, I), b_ih, W_hh (E, 3H, H), b_hh (E, 3H).

    The input projection runs inside, so its output (E, T, B, 4H) is this function's own buffer, updated in
    place: [x_rz + W_hrz·h + b_hrz, W_hn·h + b_hn, x_n] becomes [σ(r), σ(z), W_hn·h + b_hn, n], all the
    backward needs. Gates in torch's order (r, z, n), b_hn inside the reset product: the math of
    `GRUCell.step` with empty slots, from zero state.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, w_ih: Tensor, b_ih: Tensor, w_hh: Tensor, b_hh: Tensor) -> Tensor:
        T, E, B, _ = x.shape
        H = w_hh.shape[-1]
        scale, minus_one = _tanh_scale(x), x.new_full((), -1.0)
        xe = x.transpose(0, 1).reshape(E, T * B, -1)  # member first
        w, b = _gru_weights(w_ih, b_ih, b_hh, scale)
        acts = torch.baddbmm(b, xe, w.transpose(1, 2)).view(E, T, B, 4 * H)
        hs = x.new_zeros(E, T + 1, B, H)  # h_0..h_T, member first; the output is hs[:, 1:]
        h_, a_ = hs.unbind(1), acts[..., : 3 * H].unbind(1)
        rz_, (r_, z_, hn_, n_) = acts[..., : 2 * H].unbind(1), (v.unbind(1) for v in acts.chunk(4, -1))
        wt, hw = w_hh.transpose(1, 2), x.new_empty(E, B, 3 * H)  # (E, H, 3H); a dense GEMM output
        for t in range(T):
            a_[t].add_(torch.bmm(h_[t], wt, out=hw))  # faster than a baddbmm_ into the strided a_[t]
            rz_[t].sigmoid_()
            pre = n_[t].addcmul_(r_[t], hn_[t], value=scale)  # scale·(x_n + r·(W_hn·h + b_hn))
            _finish_tanh(pre, n_[t], scale, minus_one)
            torch.lerp(n_[t], h_[t], z_[t], out=h_[t + 1])  # (1 − z)·n + z·h
        ctx.save_for_backward(w_ih, w_hh)  # inputs: autograd checks they are not modified in place before backward
        ctx.bufs = (xe, acts, hs)
        return hs[:, 1:].transpose(0, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Tensor) -> tuple[Optional[Tensor], ...]:
        w_ih, w_hh = ctx.saved_tensors
        xe, acts, hs = ctx.bufs
        T, E, B, H = dy.shape
        dA = dy.new_empty(E, T, B, 3 * H)  # ∂L/∂(W_hh·h + b_hh), member first: a dense (E, B, 3H) operand per step
        dxn = dy.new_empty(E, T, B, H)  # ∂L/∂x_n
        dh = dy[T - 1].clone()  # ∂L/∂h_t
        dh_h, tmp = dy.new_empty(E, B, H), dy.new_empty(E, B, H)
        r_, z_, hn_, n_ = (v.unbind(1) for v in acts.chunk(4, -1))
        dr_, dz_, dhn_ = (v.unbind(1) for v in dA.chunk(3, -1))
        h_, dy_, dA_, dxn_ = hs.unbind(1), dy.unbind(0), dA.unbind(1), dxn.unbind(1)
        for t in reversed(range(T)):  # h_{t+1} = n + z·(h_t − n), n = tanh(x_n + r·hn), r, z = σ(x_rz + hw_rz)
            tanh_backward(torch.addcmul(dh, dh, z_[t], value=-1, out=tmp), n_[t], grad_input=dxn_[t])
            sigmoid_backward(torch.sub(h_[t], n_[t], out=tmp).mul_(dh), z_[t], grad_input=dz_[t])
            sigmoid_backward(torch.mul(dxn_[t], hn_[t], out=tmp), r_[t], grad_input=dr_[t])
            torch.mul(dxn_[t], r_[t], out=dhn_[t])
            if t > 0:  # h_0 is the constant zero state
                torch.addcmul(dy_[t - 1], dh, z_[t], out=dh_h)  # ∂L/∂h_t outside W_hh: the output and through z
                torch.baddbmm(dh_h, dA_[t], w_hh, out=dh)
        return _gru_grads(ctx, dA, dxn, xe, w_ih, hs)


def _gru_grads(ctx: Any, dA: Tensor, dxn: Tensor, xe: Tensor, w_ih: Tensor, hs: Tensor) -> tuple[Optional[Tensor], ...]:
    """∂L/∂(x, W_ih, b_ih, W_hh, b_hh) from dA = ∂L/∂(W_hh·h + b_hh) and dxn = ∂L/∂x_n by batched GEMMs and sums.

    ∂L/∂(W_ih·x + b_ih) is [dA's r, z part, dxn]; the GEMMs take the two parts as they lie (dA's a strided view),
    which costs less than gathering them into one buffer.
    """
    E, T, B, G = dA.shape
    H = G // 3
    need = ctx.needs_input_grad
    dx = d_w_ih = d_b_ih = d_w_hh = d_b_hh = None
    d_rz, d_n = dA.view(E, T * B, G)[..., : 2 * H], dxn.view(E, T * B, H)
    if need[0]:  # as (E, I, 3H)·(E, 3H, T·B), transposed: with I = 1 several times faster on CPU than the other way
        w = w_ih.transpose(1, 2)
        dx = torch.bmm(w[..., : 2 * H], d_rz.transpose(1, 2)).baddbmm_(w[..., 2 * H :], d_n.transpose(1, 2))
        dx = dx.transpose(1, 2).view(E, T, B, -1).transpose(0, 1)
    if need[1]:  # (E, I, 3H), likewise
        xt = xe.transpose(1, 2)
        d_w_ih = torch.cat([torch.bmm(xt, d_rz), torch.bmm(xt, d_n)], -1).transpose(1, 2)
    s = dA.sum(1).sum(1) if need[2] or need[4] else None  # over T first (contiguous slabs), then B
    if need[2]:
        d_b_ih = torch.cat([s[:, : 2 * H], dxn.sum(1).sum(1)], -1)
    if need[3]:
        d_w_hh = w_hh_grad(dA, hs)
    if need[4]:
        d_b_hh = s
    return dx, d_w_ih, d_b_ih, d_w_hh, d_b_hh


class StackRNN(torch.autograd.Function):
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
            tanh_backward(dh, h_[t + 1], grad_input=dX_[t])
            if t > 0:
                torch.baddbmm(dy_[t - 1], dX_[t], w_hh, out=dh)
        d_w_hh = w_hh_grad(dX, hs) if ctx.needs_input_grad[1] else None
        return dX, d_w_hh


def gru_plain(x: Tensor, w_ih: Tensor, b_ih: Tensor, w_hh: Tensor, b_hh: Tensor) -> Tensor:
    """(T, E, B, I) inputs and the stacked GRU parameters -> (T, E, B, H) outputs, training mode."""
    return StackGRU.apply(x, w_ih, b_ih, w_hh, b_hh)


def rnn_plain(x: Tensor, w_ih: Tensor, b_ih: Tensor, w_hh: Tensor, b_hh: Tensor) -> Tensor:
    """x (T, E, B, I) -> (T, E, B, H) outputs of a plain tanh RNN layer, training mode."""
    return StackRNN.apply(input_member_first(x, w_ih, b_ih + b_hh), w_hh).transpose(0, 1)

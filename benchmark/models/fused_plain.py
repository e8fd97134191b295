"""A whole plain-LSTM sequence of E stacked members with a hand-written backward (the layer's fast path).

The layer's autograd loop records about ten nodes per step, whose bookkeeping costs more than
the batched math at small sizes, so a stacked plain LSTM lost to torch's fused nn.LSTM run member
after member. `StackLSTM`:
- every step writes into preallocated buffers, in place, with no graph: one `baddbmm` per step
  for all members' W_hh·h + xw, one sigmoid for all four gates (tanh(g) = 2σ(2g) − 1), tanh(c)
  likewise on CPU (torch's CPU tanh costs about three sigmoids at these sizes);
- the backward sweep keeps one `bmm` per step for ∂L/∂h_{t-1}; W_hh's gradient is one batched
  GEMM afterwards, (E, 4H, T·B)·(E, T·B, H).
Buffers the backward multiplies as (E, T·B, ·) matrices (the gate gradients, the hidden states,
so xw and the outputs too) are laid member first, (E, T, B, ·): those GEMMs need no copy.

Only the plain recurrence runs here (no norm, mask or zoneout inside it; a weight-dropped W_hh is an
ordinary input), in training with gradients on (`RecurrentLayer._fused`); everything else takes the
layer's autograd loop, which stays the reference: tests/test_fused.py checks that both agree in float64.
The helpers here (`tanh_into`, `w_hh_grad`, the ATen backward kernels) serve every fused kernel.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input
tanh_backward = torch.ops.aten.tanh_backward.grad_input


def tanh_constants(like: Tensor) -> tuple[Tensor, Tensor]:
    """2 and −1 as tensors of `like`'s dtype: a Python scalar costs a conversion in every op that takes it."""
    return like.new_full((), 2.0), like.new_full((), -1.0)


def tanh_into(x: Tensor, out: Tensor, two: Tensor, minus_one: Tensor) -> Tensor:
    """tanh(x) into `out`; on CPU as 2σ(2x) − 1 (torch's CPU tanh costs about three sigmoids here)."""
    if x.device.type != "cpu":
        return torch.tanh(x, out=out)
    torch.mul(x, two, out=out).sigmoid_()
    return torch.add(minus_one, out, alpha=2, out=out)


class StackLSTM(torch.autograd.Function):
    """h_1..h_T (E, T, B, H) of E LSTM layers, given xw = W_ih·x + b_ih + b_hh (E, T, B, 4H) and W_hh (E, 4H, H).

    Gates in torch's order (i, f, g, o); the math of `LSTMCell.step` with empty slots, from zero state.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, xw: Tensor, w_hh: Tensor) -> Tensor:
        E, T, B, G = xw.shape
        H = G // 4
        two, minus_one = tanh_constants(xw)  # 2s − 1 as one op: add(−1, s, alpha=2)
        hs = xw.new_empty(E, T + 1, B, H)  # h_0..h_T, member first; the output is hs[:, 1:]
        cs = xw.new_empty(T + 1, E, B, H)  # c_0..c_T
        hs[:, 0].zero_()
        cs[0].zero_()
        acts = xw.new_empty(T, E, B, G)  # σ(i), σ(f), tanh(g), σ(o)
        tcs = xw.new_empty(T, E, B, H)  # tanh(c_t)
        # every per-step view made once, by unbind, outside the loop
        x_, h_, c_, tc_, a_ = xw.unbind(1), hs.unbind(1), cs.unbind(0), tcs.unbind(0), acts.unbind(0)
        i_, f_, g_, o_ = (v.unbind(0) for v in acts.chunk(4, -1))
        wt = w_hh.transpose(1, 2)  # (E, H, 4H)
        for t in range(T):
            torch.baddbmm(x_[t], h_[t], wt, out=a_[t])
            g_[t].mul_(2)
            a_[t].sigmoid_()
            torch.add(minus_one, g_[t], alpha=2, out=g_[t])  # tanh(g) = 2σ(2g) − 1
            c = torch.mul(f_[t], c_[t], out=c_[t + 1]).addcmul_(i_[t], g_[t])
            torch.mul(o_[t], tanh_into(c, tc_[t], two, minus_one), out=h_[t + 1])
        ctx.save_for_backward(w_hh)  # an input: autograd checks it is not modified in place before backward
        ctx.bufs = (acts, cs, tcs, hs)
        return hs[:, 1:]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        (w_hh,) = ctx.saved_tensors
        acts, cs, tcs, hs = ctx.bufs
        E, T, B, H = dy.shape
        G = 4 * H
        dG = dy.new_empty(E, T, B, G)  # ∂L/∂gates = ∂L/∂xw, member first like xw
        dh = dy[:, T - 1].clone()  # ∂L/∂h_t
        dc_next = dy.new_zeros(E, B, H)  # ∂L/∂c_t through c_{t+1}
        tmp, dc = dy.new_empty(E, B, H), dy.new_empty(E, B, H)
        i_, f_, g_, o_ = (v.unbind(0) for v in acts.chunk(4, -1))
        di_, df_, dg_, do_ = (v.unbind(1) for v in dG.chunk(4, -1))
        c_, tc_, dy_, dG_ = cs.unbind(0), tcs.unbind(0), dy.unbind(1), dG.unbind(1)
        for t in reversed(range(T)):
            sigmoid_backward(torch.mul(dh, tc_[t], out=tmp), o_[t], grad_input=do_[t])
            tanh_backward(torch.mul(dh, o_[t], out=tmp), tc_[t], grad_input=dc)
            dc.add_(dc_next)
            sigmoid_backward(torch.mul(dc, g_[t], out=tmp), i_[t], grad_input=di_[t])
            tanh_backward(torch.mul(dc, i_[t], out=tmp), g_[t], grad_input=dg_[t])
            sigmoid_backward(torch.mul(dc, c_[t], out=tmp), f_[t], grad_input=df_[t])
            if t > 0:  # h_0 and c_0 are constant zero states
                torch.mul(dc, f_[t], out=dc_next)
                torch.baddbmm(dy_[t - 1], dG_[t], w_hh, out=dh)
        return dG, (w_hh_grad(dG, hs) if ctx.needs_input_grad[1] else None)


def w_hh_grad(dA: Tensor, hs: Tensor) -> Tensor:
    """∂L/∂W_hh for all steps in one batched GEMM: (E, gH, T·B)·(E, T·B, H); dA (E, T, B, gH), hs (E, ≥T, B, H).

    Shared by every fused kernel (`fused_gru.py`, `fused_norm.py`, `fused_masks.py`)."""
    E, T, B, G = dA.shape
    return torch.bmm(dA.view(E, T * B, G).transpose(1, 2), hs[:, :T].reshape(E, T * B, -1))


def input_member_first(x: Tensor, w_ih: Tensor, bias: Tensor) -> Tensor:
    """W_ih·x + bias for every member and step as one (E, T·B, I)·(E, I, gH) GEMM, laid member first (E, T, B, gH).

    x (T, E, B, I), w_ih (E, gH, I), bias (E, gH)."""
    T, E, B, _ = x.shape
    xe = x.transpose(0, 1).reshape(E, T * B, -1)
    return torch.baddbmm(bias.unsqueeze(1), xe, w_ih.transpose(1, 2)).view(E, T, B, -1)


def lstm_plain(x: Tensor, w_ih: Tensor, b_ih: Tensor, w_hh: Tensor, b_hh: Tensor) -> Tensor:
    """x (T, E, B, I) -> (T, E, B, H) outputs of a plain LSTM layer, training mode (a view of member-first outputs)."""
    return StackLSTM.apply(input_member_first(x, w_ih, b_ih + b_hh), w_hh).transpose(0, 1)

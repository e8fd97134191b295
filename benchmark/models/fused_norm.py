"""Per-step normalisation inside the recurrence (recurrent BN, Cooijmans et al. 2016; LN, Ba et al. 2016) of E
stacked members with a hand-written backward (the layer's fast path).

With a norm of W_hh·h inside the recurrence, the layer's autograd loop records some twenty nodes per step,
and each BN goes through a transpose, a copy and the generic batch-norm kernels. These functions compute
what that loop computes (`RecurrentLayer._step` with the norms' `step` and the cell's `step`), as
`fused_plain.py` does for the plain LSTM:
- every step writes into preallocated buffers, in place, with no graph; each norm takes its step through
  the hand-written form the norm piece itself offers (`norm.fused(T, like)`: BN's in
  benchmark/models/norm.py, LN's in layernorm.py; any piece with that method fuses likewise): x̂ forward,
  γ·x̂ + β, its backward, ∂L/∂γ and ∂L/∂β, and the running statistics after the loop;
- tanh is 2σ(2x) − 1 on CPU (as `fused_plain.tanh_into`);
- the backward sweep keeps one `bmm` per step for ∂L/∂h_{t-1}; W_hh's gradient is one batched
  GEMM afterwards.
A norm of W_ih·x (norm_x) is computed before, for the whole sequence, and the biases added after it by
`add_bias`, whose gradient avoids autograd's slow reduction over two dims.

Only in training with gradients on, with nothing else inside the recurrence (`RecurrentLayer._fused`);
the autograd loop stays the reference: tests/test_fused_norm.py checks both agree in float64.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from benchmark.models.fused_plain import sigmoid_backward, tanh_backward, tanh_constants, tanh_into, w_hh_grad

Norm = Any  # a norm piece with `weight`, `bias` and `fused(T, like)` (its per-step helper)


class _AddBias(torch.autograd.Function):
    """xw + bias, (T, E, B, G) + (E, 1, G); ∂L/∂bias summed over T first (contiguous slabs), then over B:
    about 8× faster on CPU than autograd's one reduction over both dims."""

    @staticmethod
    def forward(ctx: FunctionCtx, xw: Tensor, bias: Tensor) -> Tensor:
        return xw + bias

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Tensor) -> tuple[Tensor, Tensor]:
        return dy, dy.sum(0).sum(1, keepdim=True)


def add_bias(xw: Tensor, bias: Tensor) -> Tensor:
    """xw (T, E, B, G) + bias (E, 1, G), with a fast gradient for the bias."""
    return _AddBias.apply(xw, bias)


class NormLSTM(torch.autograd.Function):
    """h_1..h_T (T, E, B, H) of E LSTM layers: gates = xw_t + γ_h·N(W_hh·h), h = σ(o)·tanh(γ_c·N(c) + β_c).

    xw (T, E, B, 4H) holds the input side with both biases (and norm_x, if any); gates (i, f, g, o).
    """

    @staticmethod
    def forward(ctx: FunctionCtx, xw: Tensor, w_hh: Tensor, gamma_h: Tensor, gamma_c: Optional[Tensor],
                beta_c: Optional[Tensor], norm_h: Norm,
                norm_c: Optional[Norm]) -> Tensor:  # fmt: skip
        T, E, B, G = xw.shape
        H = G // 4
        two, minus_one = tanh_constants(xw)
        hs = xw.new_zeros(E, T + 1, B, H)  # h_0..h_T, member first (W_hh's GEMM); the output is hs[:, 1:]
        cs = xw.new_zeros(T + 1, E, B, H)  # c_0..c_T
        acts = xw.new_empty(T, E, B, G)  # σ(i), σ(f), tanh(g), σ(o)
        tcs = xw.new_empty(T, E, B, H)  # tanh(N(c_t))
        hw = xw.new_empty(E, B, G)
        bn_h = norm_h.fused(T, hw)
        bn_c = None if norm_c is None else norm_c.fused(T, tcs[0])
        x_, h_, c_, tc_, a_ = xw.unbind(0), hs.unbind(1), cs.unbind(0), tcs.unbind(0), acts.unbind(0)
        i_, f_, g_, o_ = (v.unbind(0) for v in acts.chunk(4, -1))
        wt = w_hh.transpose(1, 2)
        for t in range(T):
            xhat = bn_h.forward(torch.bmm(h_[t], wt, out=hw), t)
            torch.addcmul(x_[t], xhat, bn_h.gamma, out=a_[t])
            g_[t].mul_(two)
            a_[t].sigmoid_()
            torch.add(minus_one, g_[t], alpha=2, out=g_[t])  # tanh(g) = 2σ(2g) − 1
            c = torch.mul(f_[t], c_[t], out=c_[t + 1]).addcmul_(i_[t], g_[t])
            n = c if bn_c is None else bn_c.affine(bn_c.forward(c, t), out=tc_[t])
            torch.mul(o_[t], tanh_into(n, tc_[t], two, minus_one), out=h_[t + 1])
        for bn in (bn_h, bn_c):
            if bn is not None:
                bn.finish_forward()
        ctx.save_for_backward(w_hh)  # an input: autograd checks it is not modified in place before backward
        ctx.bufs = (acts, cs, tcs, hs, bn_h, bn_c)
        return hs[:, 1:].transpose(0, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Tensor) -> tuple[Optional[Tensor], ...]:
        (w_hh,) = ctx.saved_tensors
        acts, cs, tcs, hs, bn_h, bn_c = ctx.bufs
        T, E, B, H = dy.shape
        dG = dy.new_empty(T, E, B, 4 * H)  # ∂L/∂gates = ∂L/∂xw
        dA = dy.new_empty(E, T, B, 4 * H)  # ∂L/∂(W_hh·h), member first for W_hh's GEMM
        dh = dy[T - 1].clone()  # ∂L/∂h_t
        dc_next = dy.new_zeros(E, B, H)  # ∂L/∂c_t through c_{t+1}
        tmp, dn, dc_bn = dy.new_empty(E, B, H), dy.new_empty(E, B, H), dy.new_empty(E, B, H)
        i_, f_, g_, o_ = (v.unbind(0) for v in acts.chunk(4, -1))
        di_, df_, dg_, do_ = (v.unbind(0) for v in dG.chunk(4, -1))
        c_, tc_, dy_, dG_, dA_ = cs.unbind(0), tcs.unbind(0), dy.unbind(0), dG.unbind(0), dA.unbind(1)
        for t in reversed(range(T)):
            sigmoid_backward(torch.mul(dh, tc_[t], out=tmp), o_[t], grad_input=do_[t])
            tanh_backward(torch.mul(dh, o_[t], out=tmp), tc_[t], grad_input=dn)
            dc = (dn if bn_c is None else bn_c.backward(dn, t, out=dc_bn)).add_(dc_next)
            sigmoid_backward(torch.mul(dc, g_[t], out=tmp), i_[t], grad_input=di_[t])
            tanh_backward(torch.mul(dc, i_[t], out=tmp), g_[t], grad_input=dg_[t])
            sigmoid_backward(torch.mul(dc, c_[t], out=tmp), f_[t], grad_input=df_[t])
            bn_h.backward(dG_[t], t, out=dA_[t])
            if t > 0:  # h_0 and c_0 are constant zero states
                torch.mul(dc, f_[t], out=dc_next)
                torch.baddbmm(dy_[t - 1], dA_[t], w_hh, out=dh)
        d_w_hh = w_hh_grad(dA, hs) if ctx.needs_input_grad[1] else None
        d_gamma_c, d_beta_c = bn_c.grads() if bn_c is not None else (None, None)
        return dG, d_w_hh, bn_h.grads()[0], d_gamma_c, d_beta_c, None, None


class NormGRU(torch.autograd.Function):
    """h_1..h_T (T, E, B, H) of E GRU layers: hw = γ_h·N(W_hh·h) + b_hh, then `GRUCell.step` on (xw_t, hw).

    xw (T, E, B, 3H) holds W_ih·x + b_ih (after norm_x, if any); gates (r, z, n), b_hn inside the reset product.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, xw: Tensor, w_hh: Tensor, gamma_h: Tensor, b_hh: Tensor,
                norm_h: Norm) -> Tensor:  # fmt: skip
        T, E, B, G = xw.shape
        H = G // 3
        two, minus_one = tanh_constants(xw)
        hs = xw.new_zeros(E, T + 1, B, H)  # h_0..h_T, member first
        acts = xw.new_empty(T, E, B, G)  # σ(r), σ(z), n
        hws = xw.new_empty(T, E, B, G)  # γ_h·BN(W_hh·h) + b_hh
        hw, tmp = xw.new_empty(E, B, G), xw.new_empty(E, B, H)
        bn_h = norm_h.fused(T, hw)
        b = b_hh.detach().unsqueeze(1)
        h_, hw_ = hs.unbind(1), hws.unbind(0)
        xrz_, xn_ = (v.unbind(0) for v in xw.split((2 * H, H), -1))
        rz_, hrz_, hn_ = (v.unbind(0) for v in (acts[..., : 2 * H], hws[..., : 2 * H], hws[..., 2 * H :]))
        r_, z_, n_ = (v.unbind(0) for v in acts.chunk(3, -1))
        wt = w_hh.transpose(1, 2)
        for t in range(T):
            xhat = bn_h.forward(torch.bmm(h_[t], wt, out=hw), t)
            torch.addcmul(b, xhat, bn_h.gamma, out=hw_[t])
            torch.add(xrz_[t], hrz_[t], out=rz_[t]).sigmoid_()
            tanh_into(torch.addcmul(xn_[t], r_[t], hn_[t], out=tmp), n_[t], two, minus_one)
            torch.sub(h_[t], n_[t], out=tmp)
            torch.addcmul(n_[t], z_[t], tmp, out=h_[t + 1])  # lerp(n, h, z)
        bn_h.finish_forward()
        ctx.save_for_backward(w_hh)
        ctx.bufs = (acts, hws, hs, bn_h)
        return hs[:, 1:].transpose(0, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Tensor) -> tuple[Optional[Tensor], ...]:
        (w_hh,) = ctx.saved_tensors
        acts, hws, hs, bn_h = ctx.bufs
        T, E, B, H = dy.shape
        dX = dy.new_empty(T, E, B, 3 * H)  # ∂L/∂xw
        dHW = dy.new_empty(T, E, B, 3 * H)  # ∂L/∂hw (= ∂L/∂b_hh per step)
        dA = dy.new_empty(E, T, B, 3 * H)  # ∂L/∂(W_hh·h), member first
        dh = dy[T - 1].clone()
        tmp, dh_z = dy.new_empty(E, B, H), dy.new_empty(E, B, H)
        r_, z_, n_ = (v.unbind(0) for v in acts.chunk(3, -1))
        dr_, dz_, dn_ = (v.unbind(0) for v in dX.chunk(3, -1))
        drz_, dhrz_, dhn_ = (v.unbind(0) for v in (dX[..., : 2 * H], dHW[..., : 2 * H], dHW[..., 2 * H :]))
        h_, hn_, dy_, dHW_, dA_ = hs.unbind(1), hws[..., 2 * H :].unbind(0), dy.unbind(0), dHW.unbind(0), dA.unbind(1)
        for t in reversed(range(T)):  # h' = n + z·(h − n), n = tanh(x_n + r·hw_n), r, z = σ(x_rz + hw_rz)
            torch.mul(dh, z_[t], out=dh_z)  # ∂L/∂h_{t-1} directly through z
            tanh_backward(torch.sub(dh, dh_z, out=tmp), n_[t], grad_input=dn_[t])
            sigmoid_backward(dh.mul_(torch.sub(h_[t], n_[t], out=tmp)), z_[t], grad_input=dz_[t])
            sigmoid_backward(torch.mul(dn_[t], hn_[t], out=tmp), r_[t], grad_input=dr_[t])
            dhrz_[t].copy_(drz_[t])
            torch.mul(dn_[t], r_[t], out=dhn_[t])
            bn_h.backward(dHW_[t], t, out=dA_[t])
            if t > 0:
                torch.baddbmm(dh_z, dA_[t], w_hh, out=dh).add_(dy_[t - 1])
        d_w_hh = w_hh_grad(dA, hs) if ctx.needs_input_grad[1] else None
        d_b_hh = dHW.sum((0, 2)) if ctx.needs_input_grad[3] else None
        return dX, d_w_hh, bn_h.grads()[0], d_b_hh, None


class NormRNN(torch.autograd.Function):
    """h_1..h_T (T, E, B, H) of E tanh RNN layers: h = tanh(xw_t + γ_h·N(W_hh·h)); xw holds both biases."""

    @staticmethod
    def forward(ctx: FunctionCtx, xw: Tensor, w_hh: Tensor, gamma_h: Tensor, norm_h: Norm) -> Tensor:
        T, E, B, H = xw.shape
        two, minus_one = tanh_constants(xw)
        hs = xw.new_zeros(E, T + 1, B, H)
        hw = xw.new_empty(E, B, H)
        bn_h = norm_h.fused(T, hw)
        x_, h_ = xw.unbind(0), hs.unbind(1)
        wt = w_hh.transpose(1, 2)
        for t in range(T):
            xhat = bn_h.forward(torch.bmm(h_[t], wt, out=hw), t)
            tanh_into(torch.addcmul(x_[t], xhat, bn_h.gamma, out=hw), h_[t + 1], two, minus_one)
        bn_h.finish_forward()
        ctx.save_for_backward(w_hh)
        ctx.bufs = (hs, bn_h)
        return hs[:, 1:].transpose(0, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Tensor) -> tuple[Optional[Tensor], ...]:
        (w_hh,) = ctx.saved_tensors
        hs, bn_h = ctx.bufs
        T, E, B, H = dy.shape
        dX = dy.new_empty(T, E, B, H)  # ∂L/∂xw
        dA = dy.new_empty(E, T, B, H)  # ∂L/∂(W_hh·h), member first
        dh = dy[T - 1].clone()
        h_, dy_, dX_, dA_ = hs.unbind(1), dy.unbind(0), dX.unbind(0), dA.unbind(1)
        for t in reversed(range(T)):
            tanh_backward(dh, h_[t + 1], grad_input=dX_[t])
            bn_h.backward(dX_[t], t, out=dA_[t])
            if t > 0:
                torch.baddbmm(dy_[t - 1], dA_[t], w_hh, out=dh)
        d_w_hh = w_hh_grad(dA, hs) if ctx.needs_input_grad[1] else None
        return dX, d_w_hh, bn_h.grads()[0], None


def lstm_norm(xw: Tensor, w_hh: Tensor, b_hh: Tensor, norm_h: Norm, norm_c: Optional[Norm]) -> Tensor:
    """(T, E, B, 4H) input side (both biases in) -> (T, E, B, H) outputs, training mode (b_hh is in xw)."""
    gamma_c, beta_c = (None, None) if norm_c is None else (norm_c.weight, norm_c.bias)
    return NormLSTM.apply(xw.contiguous(), w_hh, norm_h.weight, gamma_c, beta_c, norm_h, norm_c)


def gru_norm(xw: Tensor, w_hh: Tensor, b_hh: Tensor, norm_h: Norm, norm_c: Optional[Norm]) -> Tensor:
    """(T, E, B, 3H) input side (b_ih in), b_hh (E, 1, 3H) -> (T, E, B, H) outputs, training mode (no cell norm)."""
    return NormGRU.apply(xw.contiguous(), w_hh, norm_h.weight, b_hh.squeeze(1), norm_h)


def rnn_norm(xw: Tensor, w_hh: Tensor, b_hh: Tensor, norm_h: Norm, norm_c: Optional[Norm]) -> Tensor:
    """(T, E, B, H) input side (both biases in) -> (T, E, B, H) outputs, training mode."""
    return NormRNN.apply(xw.contiguous(), w_hh, norm_h.weight, norm_h)

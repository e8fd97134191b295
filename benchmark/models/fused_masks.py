"""A whole LSTM sequence of E stacked members with masks or zoneout inside the recurrence, with a hand-written
backward (the layer's fast path for variational and recurrent dropout and zoneout).

Autograd records about ten nodes per LSTM step and forms W_hh's gradient with T small GEMMs.
`MaskedLSTM` computes the same function on the same parameters, with the same regulariser semantics as
`RecurrentLayer._step` + `LSTMCell.step` + zoneout after it, but:
- every step writes into preallocated buffers, in place, with no graph; the four gates take one sigmoid,
  via tanh(g) = 2σ(2g) − 1 (torch's CPU tanh costs about three sigmoids at these sizes);
- Gal's state mask multiplies h_{t-1} before W_hh (one mask per member and sequence), Semeniuta's
  per-step mask the candidate only;
- zoneout (Krueger et al. 2017) mixes each new h and c with the previous ones by the masks the layer drew,
  and the backward passes the kept share of each gradient straight back;
- the backward sweep keeps only the per-step `bmm` for ∂L/∂h_{t-1}; W_hh's gradient is one batched GEMM
  afterwards, (E, 4H, T·B)·(E, T·B, H).

It runs only in training with gradients on (`RecurrentLayer._fused`); evaluation, `torch.no_grad`,
hidden-gradient probes, autocast and accel=compile take the autograd loop, which stays the reference:
tests/test_fused.py checks that both agree in float64.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from benchmark.models.fused_plain import sigmoid_backward, tanh_backward, tanh_constants, tanh_into, w_hh_grad


def _steps(m: Optional[Tensor]) -> Optional[tuple[Tensor, ...]]:
    """A member-first (E, T, B, H) mask as T (E, B, H) views (None stays None)."""
    return None if m is None else m.unbind(1)


class MaskedLSTM(torch.autograd.Function):
    """h_1..h_T (T, E, B, H) given xw = W_ih·x + b_ih + b_hh (T, E, B, 4H), W_hh (E, 4H, H), and the masks:
    h_mask (E, B, H) on h_{t-1}, c_masks (E, T, B, H) on the candidate, zone_h / zone_c (E, T, B, H) keep masks."""

    @staticmethod
    def forward(ctx: FunctionCtx, xw: Tensor, w_hh: Tensor, h_mask: Optional[Tensor], c_masks: Optional[Tensor],
                zone_h: Optional[Tensor], zone_c: Optional[Tensor]) -> Tensor:  # fmt: skip
        T, E, B, G = xw.shape
        H = G // 4
        two, minus_one = tanh_constants(xw)
        hs = xw.new_zeros(E, T + 1, B, H)  # h_0..h_T, member first (W_hh's GEMM); the output is hs[:, 1:]
        cs = xw.new_zeros(T + 1, E, B, H)  # c_0..c_T
        acts = xw.new_empty(T, E, B, G)  # σ(i), σ(f), tanh(g), σ(o)
        tcs = xw.new_empty(T, E, B, H)  # tanh(c̃_t)
        hin = hs if h_mask is None else xw.new_empty(E, T, B, H)  # what W_hh multiplies (Gal: masked)
        x_, h_, c_, tc_, a_, hin_ = (
            xw.unbind(0),
            hs.unbind(1),
            cs.unbind(0),
            tcs.unbind(0),
            acts.unbind(0),
            hin.unbind(1),
        )
        i_, f_, g_, o_ = (v.unbind(0) for v in acts.chunk(4, -1))
        cm_, zh_, zc_ = _steps(c_masks), _steps(zone_h), _steps(zone_c)
        wt = w_hh.transpose(1, 2)
        for t in range(T):
            h = h_[t] if h_mask is None else torch.mul(h_[t], h_mask, out=hin_[t])
            torch.baddbmm(x_[t], h, wt, out=a_[t])
            g_[t].mul_(two)
            a_[t].sigmoid_()
            torch.add(minus_one, g_[t], alpha=2, out=g_[t])  # tanh(g) = 2σ(2g) − 1
            g = g_[t] if cm_ is None else g_[t] * cm_[t]  # Semeniuta: the candidate only
            c = torch.mul(f_[t], c_[t], out=c_[t + 1]).addcmul_(i_[t], g)
            torch.mul(o_[t], tanh_into(c, tc_[t], two, minus_one), out=h_[t + 1])  # h̃_t from the unzoned c̃_t
            if zc_ is not None:  # zoneout: keep c_{t-1} where the mask is 1
                c_[t + 1].lerp_(c_[t], zc_[t])
            if zh_ is not None:
                h_[t + 1].lerp_(h_[t], zh_[t])
        ctx.save_for_backward(w_hh)  # an input: autograd checks it is not modified in place before backward
        ctx.bufs = (acts, cs, tcs, hin, h_mask, cm_, zh_, zc_)
        return hs[:, 1:].transpose(0, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Tensor) -> tuple[Optional[Tensor], ...]:
        (w_hh,) = ctx.saved_tensors
        acts, cs, tcs, hin, h_mask, cm_, zh_, zc_ = ctx.bufs
        T, E, B, H = dy.shape
        dG = dy.new_empty(E, T, B, 4 * H)  # ∂L/∂gates = ∂L/∂xw, member first for W_hh's GEMM
        dh, dc_next = dy.new_zeros(E, B, H), dy.new_zeros(E, B, H)  # ∂L/∂h_t (after the mask), ∂L/∂c_t via c_{t+1}
        tmp, dc = dy.new_empty(E, B, H), dy.new_empty(E, B, H)
        carry_h = dy.new_empty(E, B, H) if zh_ is not None else None  # zoneout: the kept part goes straight back
        carry_c = dy.new_empty(E, B, H) if zc_ is not None else None
        i_, f_, g_, o_ = (v.unbind(0) for v in acts.chunk(4, -1))
        di_, df_, dg_, do_ = (v.unbind(1) for v in dG.chunk(4, -1))
        c_, tc_, dy_, dG_ = cs.unbind(0), tcs.unbind(0), dy.unbind(0), dG.unbind(1)
        for t in reversed(range(T)):
            dh.add_(dy_[t])
            if carry_h is not None:  # h_t = k·h_{t-1} + (1-k)·h̃_t
                dh.sub_(torch.mul(dh, zh_[t], out=carry_h))  # now ∂L/∂h̃_t
            sigmoid_backward(torch.mul(dh, tc_[t], out=tmp), o_[t], grad_input=do_[t])
            tanh_backward(torch.mul(dh, o_[t], out=tmp), tc_[t], grad_input=dc)
            dc.add_(dc_next)
            if carry_c is not None:  # c_t = k·c_{t-1} + (1-k)·c̃_t: ∂L/∂c̃_t takes (1-k) of ∂L/∂c_t
                dc.sub_(torch.mul(dc_next, zc_[t], out=carry_c))
            gd = g_[t] if cm_ is None else g_[t] * cm_[t]
            sigmoid_backward(torch.mul(dc, gd, out=tmp), i_[t], grad_input=di_[t])
            torch.mul(dc, i_[t], out=tmp)
            if cm_ is not None:
                tmp.mul_(cm_[t])
            tanh_backward(tmp, g_[t], grad_input=dg_[t])
            sigmoid_backward(torch.mul(dc, c_[t], out=tmp), f_[t], grad_input=df_[t])
            torch.mul(dc, f_[t], out=dc_next)
            if carry_c is not None:
                dc_next.add_(carry_c)
            if t > 0:  # h_0 is a constant zero state
                torch.bmm(dG_[t], w_hh, out=dh)
                if h_mask is not None:
                    dh.mul_(h_mask)
                if carry_h is not None:
                    dh.add_(carry_h)
        d_w_hh = w_hh_grad(dG, hin) if ctx.needs_input_grad[1] else None
        return dG.transpose(0, 1), d_w_hh, None, None, None, None


def lstm_masked(
    xw: Tensor, w_hh: Tensor, h_mask: Optional[Tensor], c_masks: Optional[Tensor], zone: Optional[list]
) -> Tensor:
    """(T, E, B, 4H) input-side pre-activations (both biases in) -> (T, E, B, H) outputs, training mode.

    `zone`: zoneout's keep masks [h, c], each (E, T, B, H) or None; None = off."""
    zone_h, zone_c = zone if zone is not None else (None, None)
    return MaskedLSTM.apply(xw.contiguous(), w_hh, h_mask, c_masks, zone_h, zone_c)

"""The recurrent GEMM with its weight gradient formed once per sequence, not once per step.

Autograd's `addmm(b, h, W_hh^T)` costs two small GEMMs per step in backward (dh and dW).
Here each step's backward computes only `dh = g @ W_hh` and records `(g_t, h_{t-1})` on a
tape; a sink node on W_hh, which autograd runs after every step's backward (it depends on
all of them), forms `dW_hh = Σ_t g_tᵀ h_{t-1}` as one (gH × T·B) × (T·B × H) GEMM — the
trick fused RNN kernels use (PERFORMANCE-NOTES.md, technique 6). The forward is unchanged.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable


class Tape:
    """(g_t, h_{t-1}) pairs of one sequence, filled during backward."""

    def __init__(self) -> None:
        self.grads: list[Tensor] = []
        self.inputs: list[Tensor] = []


class _WeightSink(Function):
    @staticmethod
    def forward(ctx, w: Tensor, tape: Tape) -> Tensor:
        ctx.tape = tape
        return w.view_as(w)

    @staticmethod
    @once_differentiable
    def backward(ctx, g_w: Tensor):
        tape = ctx.tape
        if tape.grads:
            g_w = torch.addmm(g_w, torch.cat(tape.grads).t(), torch.cat(tape.inputs))  # (gH, H)
            tape.grads.clear()
            tape.inputs.clear()
        return g_w, None


class _RecurrentMM(Function):
    @staticmethod
    def forward(ctx, bias: Optional[Tensor], h: Tensor, w: Tensor, tape: Tape) -> Tensor:
        ctx.save_for_backward(h, w)
        ctx.tape = tape
        ctx.bias_dim = None if bias is None else bias.dim()
        return torch.mm(h, w.t()) if bias is None else torch.addmm(bias, h, w.t())

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor):
        h, w = ctx.saved_tensors
        ctx.tape.grads.append(g)
        ctx.tape.inputs.append(h)
        g_bias = None
        if ctx.needs_input_grad[0]:
            g_bias = g if ctx.bias_dim == 2 else g.sum(0)
        g_h = torch.mm(g, w) if ctx.needs_input_grad[1] else None
        return g_bias, g_h, None, None


class RecurrentMM:
    """`bias + h @ W^T` per step, with W's gradient deferred to one GEMM per sequence."""

    def __init__(self, w: Tensor) -> None:
        self.deferred = w.requires_grad and torch.is_grad_enabled()
        self.tape = Tape()
        self.w = _WeightSink.apply(w, self.tape) if self.deferred else w
        self.w_t = None if self.deferred else w.t()

    def __call__(self, h: Tensor, bias: Optional[Tensor] = None) -> Tensor:
        if self.deferred:
            return _RecurrentMM.apply(bias, h, self.w, self.tape)
        return torch.mm(h, self.w_t) if bias is None else torch.addmm(bias, h, self.w_t)

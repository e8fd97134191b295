"""One recurrent layer with two implementations over the same parameters.

`native` calls torch's fused module (cuDNN / oneDNN / ATen); `custom` is the suite's own
time loop, needed whenever a regulariser acts inside the recurrence. Both read the same
`weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0`, so switching impl changes speed,
never the function.

The custom loop is O(T) in time and memory, forward and backward:
- the input projection of all steps is one GEMM: (T·B, I) × (I, gH);
- input-side BN is one vectorised op over the (T, B, gH) tensor;
- steps are taken with `unbind(0)` (indexing `xw[t]` makes backward O(T²));
- when the cell is additive and h is not normalised, `xw_t` rides in the recurrent GEMM
  as its bias: `addmm(xw_t, h, W_hh^T)`.
Cells that declare a `fused` sequence function (LSTM: `fused.py`, a hand-written backward
with one GEMM for W_hh's gradient) take it in training with gradients on; everything else,
and every cell from outside the package, runs this autograd loop, which stays the reference.
Dropout masks are drawn before the loop, once per sequence ((B, H), Gal) or per step
((T, B, H), Semeniuta), so both paths and the compiled step see the same masks.
Layer normalisation (`reg=ln`, `layernorm.py`) fills the same three norm slots as recurrent
BN; zoneout (`reg=zoneout`, `zoneout.py`) mixes each new state with the previous one after
the step, with (T, B, H) masks drawn before the loop. The fused LSTM runs both (LN of W_ih·x
for all steps at once before it, LN of W_hh·h and c inside it; the same zoneout masks).
Every such piece comes from the run's arm (benchmark/arms/), asked once when the layer is built;
an arm's `weight_hh` module (weight drop) turns W_hh into the matrix one whole forward uses,
which the loop and the fused LSTM then read like W_hh itself.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import Tensor, nn

from benchmark.arms.base import Arm
from benchmark.arms.none import NoArm
from benchmark.models.cells import CellMath, Slots
from benchmark.models.dropout import sequence_mask
from benchmark.models.layernorm import StepLayerNorm
from benchmark.models.norm import SeqBatchNorm, StepBatchNorm
from benchmark.models.zoneout import keep_masks, zone
from benchmark.training.precision import _needs_fp32, native_rnn


class CellParams(nn.Module):
    """Parameters in torch's RNN layout, for cells that have no native module."""

    def __init__(self, input_size: int, hidden_size: int, gates: int) -> None:
        super().__init__()
        gh = gates * hidden_size
        self.weight_ih_l0 = nn.Parameter(torch.empty(gh, input_size))
        self.weight_hh_l0 = nn.Parameter(torch.empty(gh, hidden_size))
        self.bias_ih_l0 = nn.Parameter(torch.empty(gh))
        self.bias_hh_l0 = nn.Parameter(torch.empty(gh))
        k = 1.0 / math.sqrt(hidden_size)  # torch's RNN initialisation
        for p in self.parameters():
            nn.init.uniform_(p, -k, k)


class RecurrentLayer(nn.Module):
    """A single recurrent layer. Input and output are (T, B, ·).

    `reg`: the regulariser (benchmark/arms/), asked for the pieces of this layer; None = no arm.
    `stats_steps`: rows of per-step population statistics its norms keep (`Arm.stats_steps`).
    """

    def __init__(
        self,
        cell: type[CellMath],
        input_size: int,
        hidden_size: int,
        reg: Optional[Arm] = None,
        stats_steps: Optional[int] = None,
    ) -> None:
        super().__init__()
        reg = reg if reg is not None else NoArm("none")
        self.cell = cell()
        self.hidden_size = hidden_size
        gh = cell.gates * hidden_size
        self.rnn = (
            cell.native(input_size, hidden_size)
            if cell.native is not None
            else CellParams(input_size, hidden_size, cell.gates)
        )
        # The arm's pieces (benchmark/arms/base.py); None / 0 where it has none.
        self.norm_x: Optional[nn.Module] = reg.norm_x(gh, stats_steps)  # on W_ih·x
        self.norm_h: Optional[nn.Module] = reg.norm_h(gh, stats_steps)  # on W_hh·h
        self.norm_c = reg.norm_c(hidden_size, stats_steps) if cell.has_cell_state else None  # on the cell state
        self.zone_p: Optional[tuple[float, ...]] = reg.zoneout(cell.has_cell_state)  # (p_h[, p_c])
        self.p_state = reg.state_dropout()  # Gal: one mask per sequence on h_{t-1}
        self.p_candidate = reg.candidate_dropout()  # Semeniuta: a fresh mask per step on the candidate
        self.weight_hh: Optional[nn.Module] = reg.weight_hh(gh, hidden_size)  # W_hh -> what this forward uses
        # torch.compile of the step, set by benchmark/training/accel.py
        self.compiled_step: Optional[Callable[..., tuple[Tensor, tuple[Tensor, ...]]]] = None

    def weights(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        r = self.rnn
        return r.weight_ih_l0, r.weight_hh_l0, r.bias_ih_l0, r.bias_hh_l0

    def forward(self, x: Tensor, custom: bool, hiddens: Optional[list[Tensor]] = None) -> Tensor:
        """x: (T, B, I) -> (T, B, H). `hiddens`, if given, collects each h_t with retain_grad()."""
        if not custom and hiddens is None:
            return native_rnn(self.rnn, x)  # fp32 where this CPU has no bf16 kernel for it
        return self._loop(x, hiddens)

    # -- carried state (truncated BPTT over a stream, tasks/ptb.py): an optional initial state in, the final out --
    def forward_carry(
        self, x: Tensor, custom: bool, state: Optional[tuple[Tensor, ...]]
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """x: (T, B, I), state: the previous window's final (h[, c]), (B, H) each, or None (zeros)
        -> ((T, B, H), the final state). The fused LSTM starts from zeros, so this takes the autograd loop."""
        if custom:
            return self._loop(x, None, state, want_state=True)
        has_c = self.cell.has_cell_state
        hx = None if state is None else (tuple(s.unsqueeze(0) for s in state) if has_c else state[0].unsqueeze(0))
        if _needs_fp32(self.rnn, x):
            with torch.autocast("cpu", enabled=False):
                hx = None if hx is None else (tuple(h.float() for h in hx) if has_c else hx.float())
                out, hn = self.rnn(x.float(), hx)
        else:
            out, hn = self.rnn(x, hx)
        return out, (tuple(h[0] for h in hn) if has_c else (hn[0],))

    def candidate_masks(self, T: int, like: Tensor) -> Optional[Tensor]:
        """Semeniuta's (T, B, H) inverted-dropout masks on the candidate, fresh each step; None when off."""
        if not (self.p_candidate > 0 and self.training):
            return None
        return sequence_mask(like.new_empty(T, *like.shape), self.p_candidate)

    def zone_masks(self, T: int, like: Tensor) -> Optional[list[Optional[Tensor]]]:
        """Zoneout's keep masks in training, per state (h[, c]): (T, B, H), or None where p = 0; None when off."""
        if self.zone_p is None or not self.training:
            return None
        return [keep_masks(T, like, p) for p in self.zone_p]

    def zone_keeps(self, T: int, masks: Optional[list[Optional[Tensor]]]) -> Optional[list[tuple]]:
        """Per step, what each state keeps of its previous value: (B, H) masks in training, p at eval."""
        if self.zone_p is None:
            return None
        if masks is None:  # eval: the expectation
            return [tuple(p if p > 0 else None for p in self.zone_p)] * T
        return list(zip(*((m.unbind(0) if m is not None else (None,) * T) for m in masks)))

    def _slots(self, c_mask: Optional[Tensor] = None) -> Slots:
        """The cell's regulariser hooks; `c_mask` (B, H) is this step's candidate mask."""
        slots = Slots()
        if c_mask is not None:
            slots.candidate = c_mask.mul
        if self.norm_c is not None:
            slots.cell_norm = self.norm_c.step
        return slots

    def _step(
        self,
        xw_t: Tensor,
        state: tuple[Tensor, ...],
        h_mask: Optional[Tensor],
        c_mask: Optional[Tensor],
        w_hh_t: Tensor,
        b_hh: Tensor,
        t: int,
        slots: Optional[Slots] = None,
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """One step of the custom loop: xw_t (B, gH) -> h_t (B, H) and the new state.

        Everything per step lives here, so `benchmark.training.accel` can compile exactly this (never the
        unrolled loop). `slots=None` builds them here (the compiled path and candidate dropout).
        """
        slots = self._slots(c_mask) if slots is None else slots
        cell, norm_h, additive = self.cell, self.norm_h, self.cell.additive
        h = state[0] if h_mask is None else state[0] * h_mask  # Gal: the same mask every step
        if additive and norm_h is None:  # xw_t rides in the recurrent GEMM as its bias
            return cell.step(None, torch.addmm(xw_t, h, w_hh_t), state, t, slots)
        if norm_h is not None:
            hw = norm_h.step(torch.mm(h, w_hh_t), t)  # Cooijmans: BN(W_hh h) with the bias shared, outside it
            return cell.step(xw_t, hw if additive else hw + b_hh, state, t, slots)
        return cell.step(xw_t, torch.addmm(b_hh, h, w_hh_t), state, t, slots)

    def _can_fuse(self, x: Tensor, hiddens: Optional[list[Tensor]]) -> bool:
        """The cell's fused sequence function applies: training with gradients, nothing per step to hook."""
        return (
            self.cell.fused is not None
            and self.training
            and torch.is_grad_enabled()
            and hiddens is None
            and self.compiled_step is None
            and not torch.is_autocast_enabled(x.device.type)
            and all(
                n is None or (n.training and isinstance(n, (StepBatchNorm, SeqBatchNorm, StepLayerNorm)))
                for n in (self.norm_x, self.norm_h, self.norm_c)
            )
        )

    def _loop(
        self,
        x: Tensor,
        hiddens: Optional[list[Tensor]],
        state0: Optional[tuple[Tensor, ...]] = None,
        want_state: bool = False,
    ):
        """The custom loop: (T, B, H) outputs; with want_state (forward_carry) also the final state,
        starting from `state0` (None: zeros)."""
        T, B, _ = x.shape
        w_ih, w_hh, b_ih, b_hh = self.weights()
        if self.weight_hh is not None:  # e.g. weight drop: one W_hh for the whole forward
            w_hh = self.weight_hh(w_hh)
        additive = self.cell.additive  # gates see xw + hw only: b_hh can join b_ih in xw
        bias = b_ih + b_hh if additive else b_ih
        fuse = self._can_fuse(x, hiddens) and not want_state  # forward_carry: the fused LSTM has no state in/out
        fuse_norm_x = fuse and isinstance(self.norm_x, StepBatchNorm)  # the fused loop normalises W_ih·x per step
        if self.norm_x is None:
            xw = torch.addmm(bias, x.reshape(T * B, -1), w_ih.t()).view(T, B, -1)  # (T, B, gH): one GEMM
        elif fuse_norm_x:
            xw = torch.matmul(x, w_ih.t())
        else:
            xw = self.norm_x(torch.matmul(x, w_ih.t())) + bias
        state = self.cell.init_state(B, self.hidden_size, xw) if state0 is None else state0
        h_mask = sequence_mask(state[0], self.p_state) if self.p_state > 0 and self.training else None
        c_masks = self.candidate_masks(T, state[0])
        zone_masks = self.zone_masks(T, state[0])
        compiled = self.compiled_step
        if fuse:
            norm_x_and_bias = (self.norm_x, bias) if fuse_norm_x else ()
            return self.cell.fused(
                xw, w_hh, h_mask, c_masks, self.norm_h, self.norm_c, *norm_x_and_bias, zone=zone_masks
            )
        w_hh_t = w_hh.t()
        # benchmark.training.accel may set `compiled_step`: torch.compile of the unbound `_step`, shared by every
        # layer (so a deep copy stays correct); it builds its slots inside the compiled frame, since a
        # fresh closure passed in would force a recompile per call.
        slots = self._slots() if compiled is None and c_masks is None else None
        step_masks = c_masks.unbind(0) if c_masks is not None else (None,) * T
        zone_keeps = self.zone_keeps(T, zone_masks)
        outs: list[Tensor] = []
        for t, (xw_t, c_mask) in enumerate(zip(xw.unbind(0), step_masks)):
            prev = state
            if compiled is None:
                h, state = self._step(xw_t, state, h_mask, c_mask, w_hh_t, b_hh, t, slots)
            else:
                h, state = compiled(self, xw_t, state, h_mask, c_mask, w_hh_t, b_hh, t)
            if zone_keeps is not None:  # Krueger: mix the new state with the previous one, unit by unit
                state = tuple(zone(new, old, keep) for new, old, keep in zip(state, prev, zone_keeps[t]))
                h = state[0]
            if hiddens is not None:
                h.retain_grad()
                hiddens.append(h)
            outs.append(h)
        return (torch.stack(outs), state) if want_state else torch.stack(outs)

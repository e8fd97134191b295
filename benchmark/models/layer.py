"""One recurrent layer of E stacked members: (T, E, B, I) -> (T, E, B, H). A run alone is a stack of one.

Every parameter is the E members' stacked along dim 0, in torch's RNN layout per member
(`weight_ih_l0` (E, gH, I), `weight_hh_l0` (E, gH, H), `bias_ih_l0`, `bias_hh_l0` (E, gH)). Three paths
compute the same function on the same parameters:

- **native**: a stack of one whose variant allows it (`impl_used` native) calls torch's fused kernel
  (cuDNN / oneDNN / ATen) on member 0's weights;
- **fused**: in training with gradients on, the cell's hand-written kernels (`CellMath.fused`: plain,
  per-step norms whose pieces offer a `fused` step, masks and zoneout), chosen by what the pieces inside
  the recurrence are (`_fused`);
- **loop**: the autograd loop over the cell's `step`, which serves everything else and stays the reference.

The loop is O(T) in time and memory, forward and backward: the input projection of all members and steps
is one batched GEMM (T, E, B, I)·(E, I, gH); input-side norms act on that whole tensor at once; steps are
taken with `unbind(0)` (indexing `xw[t]` makes backward O(T²)); when the cell is additive and h is not
normalised, `xw_t` rides in the recurrent GEMM as its bias: `baddbmm(xw_t, h, W_hh^T)`.

Every piece comes from the run's arm (benchmark/arms/), asked once when the layer is built and built for
the stack's E members: norms of W_ih·x, W_hh·h and the cell state; a state mask (Gal), candidate masks
(Semeniuta) and zoneout (Krueger), drawn before the loop, member first, through
`benchmark.models.masks` (row e from member e's stream); an arm's `weight_hh` module (weight drop) turns
W_hh into the matrix one whole forward uses, which every path then reads like W_hh itself.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Callable, Iterator, Optional

import torch
from torch import Tensor, nn

from benchmark.arms.base import Arm, Site
from benchmark.models import masks
from benchmark.models.cells import CellMath, Slots
from benchmark.models.fused_norm import add_bias
from benchmark.models.zoneout import keep_masks, zone
from benchmark.training.precision import needs_fp32

# torch's fused sequence functions by the cell's native module (what nn.RNN/LSTM/GRU.forward call)
NATIVE_FNS: dict[type, Callable[..., tuple]] = {nn.RNN: torch.rnn_tanh, nn.LSTM: torch.lstm, nn.GRU: torch.gru}
_REFERENCE: contextvars.ContextVar[bool] = contextvars.ContextVar("reference_loop", default=False)


@contextlib.contextmanager
def reference_loop() -> Iterator[None]:
    """Inside, every layer takes the autograd loop (neither torch's kernel nor a fused one): the reference the
    fast paths are checked against (tests/test_fused.py, `benchmark.models.check.check_arm`)."""
    token = _REFERENCE.set(True)
    try:
        yield
    finally:
        _REFERENCE.reset(token)


class StackedWeights(nn.Module):
    """W_ih, W_hh, b_ih, b_hh of E members, (E, …) each, under torch's names; torch's RNN initialisation
    U(-1/√H, 1/√H) in torch's order, member by member (a stack of one draws what nn.LSTM draws)."""

    def __init__(self, members: int, input_size: int, hidden_size: int, gates: int) -> None:
        super().__init__()
        gh = gates * hidden_size
        self.weight_ih_l0 = nn.Parameter(torch.empty(members, gh, input_size))
        self.weight_hh_l0 = nn.Parameter(torch.empty(members, gh, hidden_size))
        self.bias_ih_l0 = nn.Parameter(torch.empty(members, gh))
        self.bias_hh_l0 = nn.Parameter(torch.empty(members, gh))
        k = 1.0 / math.sqrt(hidden_size)
        with torch.no_grad():
            for e in range(members):
                for p in self.parameters():
                    p[e].uniform_(-k, k)


class RecurrentLayer(nn.Module):
    """A single recurrent layer of E members. Input and output are (T, E, B, ·).

    `site`: the stack's members and this layer's index (`Site`), which the arm builds its pieces for.
    `native`: a stack of one whose variant torch's fused kernel runs (`impl_used` native).
    """

    def __init__(
        self, cell: type[CellMath], input_size: int, hidden_size: int, reg: Arm, site: Site, native: bool = False
    ) -> None:
        super().__init__()
        self.cell, self.hidden_size, self.members = cell(), hidden_size, site.members
        gh = cell.gates * hidden_size
        self.rnn = StackedWeights(site.members, input_size, hidden_size, cell.gates)
        self.native = native and site.members == 1 and cell.native is not None
        # The arm's pieces (benchmark/arms/base.py), built for the stack's members; None / 0 where it has none.
        self.norm_x: Optional[nn.Module] = reg.norm_x(site, gh)  # on W_ih·x
        self.norm_h: Optional[nn.Module] = reg.norm_h(site, gh)  # on W_hh·h
        self.norm_c = reg.norm_c(site, hidden_size) if cell.has_cell_state else None  # on the cell state
        self.zone_p: Optional[tuple[float, ...]] = reg.zoneout(cell.has_cell_state)  # (p_h[, p_c])
        self.p_state = reg.state_dropout()  # Gal: one mask per sequence on h_{t-1}
        self.p_candidate = reg.candidate_dropout()  # Semeniuta: a fresh mask per step on the candidate
        self.weight_hh: Optional[nn.Module] = reg.weight_hh(site, gh, hidden_size)  # W_hh -> what this forward uses
        # torch.compile of the step, set by benchmark/training/accel.py
        self.compiled_step: Optional[Callable[..., tuple[Tensor, tuple[Tensor, ...]]]] = None

    def weights(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        r = self.rnn
        return r.weight_ih_l0, r.weight_hh_l0, r.bias_ih_l0, r.bias_hh_l0

    def forward(self, x: Tensor, hiddens: Optional[list[Tensor]] = None) -> Tensor:
        """x: (T, E, B, I) -> (T, E, B, H). `hiddens`, if given, collects each h_t (E, B, H) with retain_grad()."""
        if _REFERENCE.get():
            return self._loop(x, hiddens)
        if self.native and hiddens is None and self.compiled_step is None:
            return self._native(x, None)[0]
        out = self._fused(x) if hiddens is None else None
        return out if out is not None else self._loop(x, hiddens)

    def forward_carry(self, x: Tensor, state: Optional[tuple[Tensor, ...]]) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Carried state (truncated BPTT over a stream, tasks/ptb.py): x (T, E, B, I), the previous window's final
        (h[, c]), (E, B, H) each, or None (zeros) -> ((T, E, B, H), the final state). The fused kernels start
        from zeros, so a custom layer takes the autograd loop."""
        if self.native and self.compiled_step is None and not _REFERENCE.get():
            return self._native(x, state)
        return self._loop(x, None, state, want_state=True)

    def _native(self, x: Tensor, state: Optional[tuple[Tensor, ...]]) -> tuple[Tensor, tuple[Tensor, ...]]:
        """torch's fused kernel on member 0 (E = 1): the member dimension stands where torch keeps its layers."""
        T, E, B, _ = x.shape
        has_c, H = self.cell.has_cell_state, self.hidden_size
        native = type(self.cell).native
        if state is None:
            state = tuple(x.new_zeros(1, B, H) for _ in range(2 if has_c else 1))
        w_ih, w_hh, b_ih, b_hh = (w[0] for w in self.weights())
        if needs_fp32(native, x):  # this CPU has no bf16 kernel for it: float32, autocast off
            with torch.autocast("cpu", enabled=False):
                return self._call_native(x.float(), tuple(s.float() for s in state), (w_ih, w_hh, b_ih, b_hh))
        return self._call_native(x, state, (w_ih, w_hh, b_ih, b_hh))

    def _call_native(self, x: Tensor, state: tuple[Tensor, ...], weights: tuple[Tensor, ...]) -> tuple:
        fn = NATIVE_FNS[type(self.cell).native]
        hx = state if self.cell.has_cell_state else state[0]
        out, *final = fn(x[:, 0], hx, weights, True, 1, 0.0, self.training, False, False)
        return out.unsqueeze(1), tuple(final)

    # --- the fused kernels -------------------------------------------------------------------------
    def _fusable(self, x: Tensor) -> bool:
        """Training with gradients, nothing per step to hook (no compiled step), no autocast."""
        return (
            self.cell.fused is not None
            and self.training
            and torch.is_grad_enabled()
            and self.compiled_step is None
            and not torch.is_autocast_enabled(x.device.type)
        )

    def _fused(self, x: Tensor) -> Optional[Tensor]:
        """The cell's kernel for what sits inside the recurrence, or None (the autograd loop runs): plain (nothing
        inside), norm (per-step norms with a `fused` step, nothing else), masked (masks or zoneout, no norm)."""
        if not self._fusable(x):
            return None
        kernels, w_hh = self.cell.fused, self._w_hh()
        inside = self.p_state > 0 or self.p_candidate > 0 or self.zone_p is not None
        if self.norm_h is None and self.norm_c is None:
            if not inside and self.norm_x is None and kernels.plain is not None:
                w_ih, _, b_ih, b_hh = self.weights()
                return kernels.plain(x, w_ih, b_ih, w_hh, b_hh)
            if kernels.masked is not None and self.cell.additive:
                xw, _ = self._input_side(x)
                state = x.new_empty(x.shape[1], x.shape[2], self.hidden_size)
                h_mask, c_masks, zones = self._masks(x.shape[0], state)
                return kernels.masked(xw, w_hh, h_mask, c_masks, zones)
            return None
        norms = [n for n in (self.norm_h, self.norm_c) if n is not None]
        if inside or kernels.norm is None or self.norm_h is None or not all(hasattr(n, "fused") for n in norms):
            return None
        xw, b_hh = self._input_side(x, add_bias)
        return kernels.norm(xw, w_hh, b_hh, self.norm_h, self.norm_c)

    def _w_hh(self) -> Tensor:
        w_hh = self.rnn.weight_hh_l0
        return w_hh if self.weight_hh is None else self.weight_hh(w_hh)  # e.g. weight drop: one W_hh per forward

    def _input_side(self, x: Tensor, add: Callable[[Tensor, Tensor], Tensor] = torch.add) -> tuple[Tensor, Tensor]:
        """xw = (norm_x of) W_ih·x + the biases outside the recurrent GEMM, (T, E, B, gH), and b_hh (E, 1, gH).

        `add` adds the biases after norm_x (the fused path's `add_bias`: the same sum, a faster gradient).
        """
        w_ih, _, b_ih, b_hh = self.weights()
        b_hh = b_hh.unsqueeze(1)  # (E, 1, gH)
        bias = b_ih.unsqueeze(1) + b_hh if self.cell.additive else b_ih.unsqueeze(1)
        # (T, E, B, I) @ (E, I, gH): every member and step in one batched GEMM, laid out (T, E, B, gH) so
        # each step's (E, B, gH) slice is contiguous (no copy per step, a plain stack in backward).
        if self.norm_x is None:  # the bias as one more input row: its gradient comes out of the GEMM too
            T, E, B, _ = x.shape
            ones = x.new_ones(1, 1, 1, 1).expand(T, E, B, 1)
            return torch.matmul(torch.cat([x, ones], -1), torch.cat([w_ih.transpose(1, 2), bias], 1)), b_hh
        project = getattr(self.norm_x, "project", None)  # a cheaper form of norm_x(W·x) the piece may offer
        xw = project(x, w_ih) if project is not None else None
        if xw is None:
            xw = self.norm_x(torch.matmul(x, w_ih.transpose(1, 2)))
        return add(xw, bias), b_hh

    # --- the autograd loop ---------------------------------------------------------------------------
    def _masks(self, T: int, like: Tensor) -> tuple[Optional[Tensor], Optional[Tensor], Optional[list]]:
        """Training: state mask (E, B, H), candidate masks (E, T, B, H), zoneout keep masks [h, c] (E, T, B, H),
        drawn in this order, member first; at eval none, and zoneout's expectation p."""
        if not self.training:
            return None, None, None if self.zone_p is None else [p if p > 0 else None for p in self.zone_p]
        E, B, H = like.shape
        h_mask = masks.bernoulli(like, (E, B, H), 1.0 - self.p_state, scale=True) if self.p_state > 0 else None
        c_masks = None
        if self.p_candidate > 0:
            c_masks = masks.bernoulli(like, (E, T, B, H), 1.0 - self.p_candidate, scale=True)
        zones = None if self.zone_p is None else [keep_masks(T, like, p) for p in self.zone_p]
        return h_mask, c_masks, zones

    def _slots(self) -> Slots:
        slots = Slots()
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
        """One step for every member: xw_t (E, B, gH) -> h_t (E, B, H) and the new state.

        Everything per step lives here, so `benchmark.training.accel` can compile exactly this (never the
        unrolled loop). `slots=None` builds them here (the compiled path). `c_mask`: this step's candidate mask.
        """
        slots = self._slots() if slots is None else slots
        if c_mask is not None:
            slots = Slots(candidate=c_mask.mul, cell_norm=slots.cell_norm)
        cell, norm_h = self.cell, self.norm_h
        h = state[0] if h_mask is None else state[0] * h_mask  # Gal: the same mask every step
        if cell.additive and norm_h is None:  # xw_t (biases included) rides in the recurrent GEMM
            return cell.step(None, torch.baddbmm(xw_t, h, w_hh_t), state, t, slots)
        if norm_h is not None:  # Cooijmans: BN(W_hh h) with the bias shared, outside it
            hw = norm_h.step(torch.bmm(h, w_hh_t), t)
            return cell.step(xw_t, hw if cell.additive else hw + b_hh, state, t, slots)
        return cell.step(xw_t, torch.baddbmm(b_hh, h, w_hh_t), state, t, slots)

    def _loop(
        self,
        x: Tensor,
        hiddens: Optional[list[Tensor]],
        state0: Optional[tuple[Tensor, ...]] = None,
        want_state: bool = False,
    ):
        """The autograd loop: (T, E, B, H) outputs; with want_state (forward_carry) also the final state,
        starting from `state0` (None: zeros)."""
        T, E, B, _ = x.shape
        xw, b_hh = self._input_side(x)
        w_hh_t = self._w_hh().transpose(1, 2).contiguous()  # (E, H, gH): one copy, not one per step
        if state0 is None:
            state0 = tuple(s.view(E, B, -1) for s in self.cell.init_state(E * B, self.hidden_size, xw))
        state = state0
        h_mask, c_masks, zones = self._masks(T, state[0])
        step_masks = c_masks.unbind(1) if c_masks is not None else (None,) * T
        keeps = self._keeps(T, zones)
        compiled = self.compiled_step
        slots = self._slots() if compiled is None else None
        outs: list[Tensor] = []
        for t, (xw_t, c_mask) in enumerate(zip(xw.unbind(0), step_masks)):
            prev = state
            if compiled is None:
                h, state = self._step(xw_t, state, h_mask, c_mask, w_hh_t, b_hh, t, slots)
            else:
                h, state = compiled(self, xw_t, state, h_mask, c_mask, w_hh_t, b_hh, t)
            if keeps is not None:  # Krueger: mix the new state with the previous one, unit by unit
                state = tuple(zone(new, old, keep) for new, old, keep in zip(state, prev, keeps[t]))
                h = state[0]
            if hiddens is not None:
                h.retain_grad()
                hiddens.append(h)
            outs.append(h)
        return (torch.stack(outs), state) if want_state else torch.stack(outs)

    @staticmethod
    def _keeps(T: int, zones: Optional[list]) -> Optional[list[tuple]]:
        """Per step, what each state keeps of its previous value: (E, B, H) masks in training, p at eval."""
        if zones is None:
            return None
        per_state = [z.unbind(1) if isinstance(z, Tensor) else (z,) * T for z in zones]
        return list(zip(*per_state))

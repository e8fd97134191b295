"""A cohort: E models of one `ModelSpec` (different seeds) run as ONE model with a leading member dimension.

Every parameter is the E solo parameters stacked along dim 0 (per-step BN statistics along dim 1,
`cohort_norm.py`), under the solo's own name, so `read_solos` / `write_solos` move weights both
ways and evaluation can reuse the solo code. The forward is the custom loop of `layer.py` with E
in front: the input projection of all members and steps is one batched GEMM, each step one
`torch.bmm` (or `baddbmm`) for the recurrence, and the gate math is the cell's own `CellMath.step`
(it splits gates on the last dimension, so (E, B, gH) tensors pass through it unchanged).
A plain LSTM recurrence (nothing inside it) in training takes `cohort_fused.py` instead: the same
function with a hand-written backward, as `fused.py` is for a solo layer (`CohortLayer._can_fuse`);
a plain GRU or tanh RNN recurrence takes `cohort_fused_gru.py` likewise;
a recurrence with per-step BN (Cooijmans) and nothing else inside it takes `cohort_fused_bn.py`.
Masks are drawn per member through `benchmark.models.masks`, in the order the solo model draws
them; BN reduces over each member's own batch, per step; LN and zoneout act per member.

Member e of a cohort computes exactly what solo model e computes on x[e] with the same masks
(tests/test_cohort.py). A piece with no cohort form (BN over the input sequence or a layer's
output, a token embedding, a user arm's module) raises NotImplementedError naming the arm.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from benchmark.arms.weightdrop import weight_drop_class
from benchmark.models import masks
from benchmark.models.cells import GRUCell, LSTMCell, RNNCell, Slots
from benchmark.models.cohort_fused import cohort_lstm
from benchmark.models.cohort_fused_bn import add_bias, cohort_bn_gru, cohort_bn_lstm, cohort_bn_rnn
from benchmark.models.cohort_fused_gru import cohort_gru, cohort_rnn
from benchmark.models.cohort_norm import (
    PROJECTED_BN_MAX_INPUT,
    CohortDropout,
    CohortLayerNorm,
    CohortStepBatchNorm,
    projected_bn,
    stacked_param,
)
from benchmark.models.dropout import LockedDropout, StepDropout
from benchmark.models.layer import RecurrentLayer
from benchmark.models.layernorm import StepLayerNorm
from benchmark.models.model import ModelSpec, SequenceModel
from benchmark.models.norm import StepBatchNorm
from benchmark.models.zoneout import zone


def _unsupported(arm: str, piece: str, module: object) -> NotImplementedError:
    return NotImplementedError(
        f"reg={arm}: its {piece} ({type(module).__name__}) has no cohort form yet; "
        "train this variant as solo runs (one model per seed)"
    )


def _norm(arm: str, piece: str, solos: Sequence[Optional[nn.Module]]) -> Optional[nn.Module]:
    first = solos[0]
    if first is None:
        return None
    if isinstance(first, StepBatchNorm):
        return CohortStepBatchNorm(solos)
    if isinstance(first, StepLayerNorm):
        return CohortLayerNorm(solos)
    raise _unsupported(arm, piece, first)


def _dropout(arm: str, piece: str, modules: Sequence[nn.Module]) -> nn.Module:
    """The members' dropout at one place as one module: each member keeps its own p."""
    first = modules[0]
    if any(type(m) is not type(first) for m in modules):
        raise _unsupported(arm, piece, first)
    if isinstance(first, nn.Identity):
        return first
    if isinstance(first, StepDropout):
        return CohortDropout([m.p for m in modules], locked=False)
    if isinstance(first, LockedDropout):
        return CohortDropout([m.p for m in modules], locked=True)
    raise _unsupported(arm, piece, first)


class StackedWeights(nn.Module):
    """W_ih, W_hh, b_ih, b_hh of E members, (E, …) each, under torch's names (weight_ih_l0, …)."""

    def __init__(self, solos: Sequence[nn.Module]) -> None:
        super().__init__()
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            setattr(self, name, stacked_param([getattr(m, name) for m in solos]))


class StackedLinear(nn.Module):
    """E linear heads: weight (E, O, H), bias (E, O); (E, N, H) -> (E, N, O) in one batched GEMM."""

    def __init__(self, solos: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.weight = stacked_param([m.weight for m in solos])
        self.bias = stacked_param([m.bias for m in solos])

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))


class CohortLayer(nn.Module):
    """E recurrent layers as one: (T, E, B, I) -> (T, E, B, H), the custom loop of `RecurrentLayer`."""

    def __init__(self, solos: Sequence[RecurrentLayer], arm: str) -> None:
        super().__init__()
        s = solos[0]
        if s.compiled_step is not None:
            raise _unsupported(arm, "compiled step", s.compiled_step)
        self.cell, self.hidden_size = s.cell, s.hidden_size
        self.rnn = StackedWeights([m.rnn for m in solos])
        self.norm_x = _norm(arm, "norm_x", [m.norm_x for m in solos])
        self.norm_h = _norm(arm, "norm_h", [m.norm_h for m in solos])
        self.norm_c = _norm(arm, "norm_c", [m.norm_c for m in solos])
        self.zone_p, self.p_state, self.p_candidate = s.zone_p, s.p_state, s.p_candidate
        self.weight_hh: Optional[nn.Module] = None
        if s.weight_hh is not None:
            if not isinstance(s.weight_hh, weight_drop_class()):
                raise _unsupported(arm, "weight_hh", s.weight_hh)
            self.weight_hh = weight_drop_class()(s.weight_hh.p)  # w.shape has the member dim: a mask per member

    def _masks(self, T: int, like: Tensor) -> tuple[Optional[Tensor], Optional[Tensor], Optional[list]]:
        """State mask (E, B, H), candidate masks (E, T, B, H), zoneout keeps per state: drawn as the solo draws."""
        E, B, H = like.shape
        train = self.training
        h_mask = (
            masks.bernoulli(like, (E, B, H), 1.0 - self.p_state, scale=True) if train and self.p_state > 0 else None
        )
        c_masks = None
        if train and self.p_candidate > 0:
            c_masks = masks.bernoulli(like, (E, T, B, H), 1.0 - self.p_candidate, scale=True)
        zones = None
        if self.zone_p is not None:
            if train:
                zones = [
                    masks.bernoulli(like, (E, T, B, H), p, scale=False).unbind(1) if p > 0 else None
                    for p in self.zone_p
                ]
                zones = [[None if z is None else z[t] for z in zones] for t in range(T)]
            else:  # eval: the expectation
                zones = [[p if p > 0 else None for p in self.zone_p]] * T
        return h_mask, c_masks, zones

    def _step(
        self,
        xw_t: Tensor,
        state: tuple[Tensor, ...],
        h_mask: Optional[Tensor],
        slots: Slots,
        w_hh_t: Tensor,
        b_hh: Tensor,
        t: int,
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """One step for every member: xw_t (E, B, gH) -> h_t (E, B, H) and the new state (see RecurrentLayer._step)."""
        cell, norm_h = self.cell, self.norm_h
        h = state[0] if h_mask is None else state[0] * h_mask
        if cell.additive and norm_h is None:  # xw_t (biases included) rides in the recurrent GEMM
            return cell.step(None, torch.baddbmm(xw_t, h, w_hh_t), state, t, slots)
        if norm_h is not None:
            hw = norm_h.step(torch.bmm(h, w_hh_t), t)
            return cell.step(xw_t, hw if cell.additive else hw + b_hh, state, t, slots)
        return cell.step(xw_t, torch.baddbmm(b_hh, h, w_hh_t), state, t, slots)

    def _plain_cell(self) -> bool:
        """A built-in cell whose plain recurrence has a fused cohort kernel (`cohort_fused*.py`)."""
        return self.cell.fused is LSTMCell.fused or type(self.cell).step in (GRUCell.step, RNNCell.step)

    def _can_fuse(self, x: Tensor) -> bool:
        """A fused plain cohort kernel (`cohort_fused.py`, `cohort_fused_gru.py`) applies: a plain LSTM, GRU or
        tanh RNN recurrence, training with gradients.

        As `RecurrentLayer._can_fuse` decides for a solo layer, but only without any regulariser inside
        the recurrence (norm, state or candidate dropout, zoneout, weight drop): those take the autograd loop.
        """
        no_norm = self.norm_x is None and self.norm_h is None and self.norm_c is None
        return self._plain_cell() and no_norm and self._trains_without_masks(x)

    def _trains_without_masks(self, x: Tensor) -> bool:
        """Training with gradients, no autocast, and no mask or weight drop inside the recurrence (state or
        candidate dropout, zoneout, weight drop): what every fused cohort kernel needs."""
        return (
            self.training
            and torch.is_grad_enabled()
            and not torch.is_autocast_enabled(x.device.type)
            and self.zone_p is None
            and self.p_state == 0
            and self.p_candidate == 0
            and self.weight_hh is None
        )

    def _fused(self, x: Tensor) -> Tensor:
        """The fused path: the input projection as one (E, T·B, I)·(E, I, gH) GEMM, member first, both biases in, then
        the cell's kernel; the GRU's kernel takes x and does its projection itself."""
        T, E, B, _ = x.shape
        r = self.rnn
        if type(self.cell).step is GRUCell.step:
            return cohort_gru(x, r.weight_ih_l0, r.bias_ih_l0, r.weight_hh_l0, r.bias_hh_l0)
        bias = (r.bias_ih_l0 + r.bias_hh_l0).unsqueeze(1)  # (E, 1, gH)
        xe = x.transpose(0, 1).reshape(E, T * B, -1)
        xw = torch.baddbmm(bias, xe, r.weight_ih_l0.transpose(1, 2)).view(E, T, B, -1)
        kernel = cohort_lstm if self.cell.fused is LSTMCell.fused else cohort_rnn
        return kernel(xw, r.weight_hh_l0).transpose(0, 1)  # (T, E, B, H), a view of member-first outputs

    def _can_fuse_bn(self, x: Tensor) -> bool:
        """The fused recurrent-BN cohort (`cohort_fused_bn.py`) applies: per-step BN of W_hh·h (and of the LSTM
        cell state) and nothing else inside the recurrence of a built-in cell, in training with gradients.

        norm_x runs before the recurrence, for the whole sequence, so it may be anything; dropout outside the
        recurrence (reg=both: between layers, before the head) is no concern of the layer.
        """
        return (
            type(self.cell).step in (LSTMCell.step, GRUCell.step, RNNCell.step)
            and isinstance(self.norm_h, CohortStepBatchNorm)
            and (self.norm_c is None or isinstance(self.norm_c, CohortStepBatchNorm))
            and self._trains_without_masks(x)
        )

    def _fused_bn(self, x: Tensor) -> Tensor:
        """The fused recurrent-BN path: the input side as the autograd loop forms it, then the cell's kernel."""
        xw, b_hh = self._input_side(x, add_bias)
        w_hh, step = self.rnn.weight_hh_l0, type(self.cell).step
        if step is LSTMCell.step:
            return cohort_bn_lstm(xw, w_hh, self.norm_h, self.norm_c)
        if step is GRUCell.step:
            return cohort_bn_gru(xw, w_hh, b_hh.squeeze(1), self.norm_h)
        return cohort_bn_rnn(xw, w_hh, self.norm_h)

    def _input_side(self, x: Tensor, add: Callable[[Tensor, Tensor], Tensor] = torch.add) -> tuple[Tensor, Tensor]:
        """xw = (norm_x of) W_ih·x + the biases outside the recurrent GEMM, (T, E, B, gH), and b_hh (E, 1, gH).

        `add` adds the biases after norm_x (the fused path's `add_bias`: the same sum, a faster gradient).
        """
        r = self.rnn
        b_hh = r.bias_hh_l0.unsqueeze(1)  # (E, 1, gH)
        bias = r.bias_ih_l0.unsqueeze(1) + b_hh if self.cell.additive else r.bias_ih_l0.unsqueeze(1)
        # (T, E, B, I) @ (E, I, gH): every member and step in one batched GEMM, laid out (T, E, B, gH) so
        # each step's (E, B, gH) slice is contiguous (no copy per step, a plain stack in backward).
        if self.norm_x is None:  # the bias as one more input row: its gradient comes out of the GEMM too
            T, E, B, _ = x.shape
            ones = x.new_ones(1, 1, 1, 1).expand(T, E, B, 1)
            xw = torch.matmul(torch.cat([x, ones], -1), torch.cat([r.weight_ih_l0.transpose(1, 2), bias], 1))
        elif self._projects_norm_x(x):
            xw = add(projected_bn(x, r.weight_ih_l0, self.norm_x), bias)
        else:
            xw = add(self.norm_x(torch.matmul(x, r.weight_ih_l0.transpose(1, 2))), bias)
        return xw, b_hh

    def _projects_norm_x(self, x: Tensor) -> bool:
        """BN of W_ih·x in training, from the moments of a narrow input (`cohort_norm.projected_bn`)."""
        norm = self.norm_x
        return (
            isinstance(norm, CohortStepBatchNorm)
            and norm.training
            and x.shape[-1] <= PROJECTED_BN_MAX_INPUT
            and not torch.is_autocast_enabled(x.device.type)
        )

    def forward(self, x: Tensor) -> Tensor:
        if self._can_fuse(x):
            return self._fused(x)
        if self._can_fuse_bn(x):
            return self._fused_bn(x)
        T, E, B, _ = x.shape
        r = self.rnn
        w_hh = r.weight_hh_l0 if self.weight_hh is None else self.weight_hh(r.weight_hh_l0)
        xw, b_hh = self._input_side(x)
        state = tuple(s.view(E, B, -1) for s in self.cell.init_state(E * B, self.hidden_size, xw))
        h_mask, c_masks, zones = self._masks(T, state[0])
        slots = Slots()
        if self.norm_c is not None:
            slots.cell_norm = self.norm_c.step
        w_hh_t = w_hh.transpose(1, 2).contiguous()  # (E, H, gH): one copy, not one per step
        outs: list[Tensor] = []
        for t, xw_t in enumerate(xw.unbind(0)):
            if c_masks is not None:
                slots.candidate = c_masks[:, t].mul
            prev = state
            h, state = self._step(xw_t, state, h_mask, slots, w_hh_t, b_hh, t)
            if zones is not None:  # Krueger: mix the new state with the previous one, unit by unit
                state = tuple(zone(new, old, keep) for new, old, keep in zip(state, prev, zones[t]))
                h = state[0]
            outs.append(h)
        return torch.stack(outs)


def stackable_specs(a: ModelSpec, b: ModelSpec) -> bool:
    """Two members' specs allow one stack: equal but for their arms' settings that `Arm.stack_key` leaves out
    (read only by modules that keep one value per member, such as output dropout's p)."""
    return dataclasses.replace(a, reg=b.reg) == b and a.reg.stack_key() == b.reg.stack_key()


class CohortModel(nn.Module):
    """E `SequenceModel`s of one spec as one model. Input (E, B, T, I) -> (E, B, O) or (E, B, T, O).

    Built from the solos (their current weights and BN statistics are stacked); `write_solos` copies
    the cohort's state back into them, `read_solos` takes theirs again.
    """

    def __init__(self, solos: Sequence[SequenceModel]) -> None:
        super().__init__()
        if not solos:
            raise ValueError("a cohort needs at least one member model")
        spec = solos[0].spec
        if any(not stackable_specs(m.spec, spec) for m in solos):
            raise ValueError(
                "the members of a cohort must share one ModelSpec (they differ in their weights and in the settings "
                "their arm's `stack_key` leaves out only)"
            )
        arm = spec.reg.name
        if solos[0].embed is not None:
            raise _unsupported(arm, "token embedding", solos[0].embed)
        self.spec, self.size = spec, len(solos)
        self.layers = nn.ModuleList(CohortLayer([m.layers[k] for m in solos], arm) for k in range(spec.num_layers))
        self.drops = nn.ModuleList(
            _dropout(arm, "dropout", [m.drops[k] for m in solos]) for k in range(len(solos[0].drops))
        )
        for norm in solos[0].norms:
            if not isinstance(norm, nn.Identity):
                raise _unsupported(arm, "output_norm", norm)
        self.head = StackedLinear([m.head for m in solos])
        # the members' own mask streams, the very generators their solo models draw from
        gens = [m.mask_gen for m in solos]
        self.mask_gens: Optional[list[torch.Generator]] = None if any(g is None for g in gens) else gens
        self.train(solos[0].training)
        missing = set(solos[0].state_dict()) ^ set(self.state_dict())
        if missing:  # every solo tensor has exactly one stacked counterpart under its name
            raise _unsupported(arm, "tensors " + ", ".join(sorted(missing)), solos[0])

    def forward(self, x: Tensor) -> Tensor:
        with masks.drawn_from(self.mask_gens, stacked=True):
            return self._forward(x)

    def _forward(self, x: Tensor) -> Tensor:
        z = x.permute(2, 0, 1, 3)  # (T, E, B, I): time first, as in the solo model's layers
        for layer, drop in zip(self.layers, self.drops):
            z = layer(drop(z))
        T, E, B, H = z.shape
        if self.spec.per_step:
            z = self.drops[-1](z).permute(1, 0, 2, 3).reshape(E, T * B, H)
            return self.head(z).view(E, T, B, -1).transpose(1, 2)
        return self.head(self.drops[-1](z[-1:])[0])  # only the last step reaches the head, as solo

    def member_dim(self, name: str) -> int:
        """The dimension of state-dict tensor `name` that indexes members (0, or 1 for per-step BN statistics)."""
        module, _, leaf = name.rpartition(".")
        return getattr(self.get_submodule(module), "member_dims", {}).get(leaf, 0)

    @torch.no_grad()
    def read_solos(self, solos: Sequence[SequenceModel]) -> None:
        """Stack the solos' parameters and buffers into the cohort (member e = solos[e])."""
        self._check_members(solos)
        states = [m.state_dict() for m in solos]
        for name, t in self.state_dict().items():
            t.copy_(torch.stack([s[name] for s in states], self.member_dim(name)))

    @torch.no_grad()
    def write_solos(self, solos: Sequence[SequenceModel]) -> None:
        """Copy member e's parameters and buffers into solos[e] (e.g. to evaluate with the solo code)."""
        self._check_members(solos)
        for name, t in self.state_dict().items():
            dim = self.member_dim(name)
            for e, m in enumerate(solos):
                m.state_dict()[name].copy_(t.select(dim, e))

    def _check_members(self, solos: Sequence[SequenceModel]) -> None:
        if len(solos) != self.size or any(not stackable_specs(m.spec, self.spec) for m in solos):
            raise ValueError(f"expected {self.size} models of the cohort's spec, got {len(solos)}")

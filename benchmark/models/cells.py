"""The gate math of each recurrent cell, written once.

A cell here is pure math over pre-activations: the layer (`layer.py`) owns the weights,
computes `xw = W_ih·x + b_ih` for all steps in one GEMM and `hw = W_hh·h + b_hh` per step,
and hands both to `step`. Regularisers that act *inside* a cell arrive as two slots
(`Slots`) that default to the identity, so no variant copies the gate math:

- `candidate`: applied to the candidate update (Semeniuta et al. 2016 recurrent dropout);
- `cell_norm`: applied to the LSTM cell state before its output tanh (Cooijmans et al. 2016).

Gate order and the placement of biases follow torch's nn.RNN/LSTM/GRU exactly, so the
custom loop and the fused kernels compute the same function on the same parameters.

Every tensor here may lead with the member dimension E of a stack (`layer.py`): gates are split on the
last dimension, so (E, B, gH) tensors pass through `step` unchanged.

To add a cell: subclass `CellMath`, set `gates` (pre-activation width in units of H),
`native` (a torch module with the same parameter layout, or None) and write `step`;
then point a `conf/cell/<name>.yaml` `_target_` at the class. A cell may also set `fused`,
its whole-sequence functions with their own backward (`Kernels`; the built-in cells do:
fused_plain.py, fused_gru.py, fused_norm.py, fused_masks.py); without them the layer's autograd
loop over `step` runs, which is always correct.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Optional

import torch
from torch import Tensor, nn

from benchmark.core.config import ConfigError
from benchmark.models.fused_gru import gru_plain, rnn_plain
from benchmark.models.fused_masks import lstm_masked
from benchmark.models.fused_norm import gru_norm, lstm_norm, rnn_norm
from benchmark.models.fused_plain import lstm_plain

State = tuple[Tensor, ...]


def _identity(x: Tensor) -> Tensor:
    return x


def _identity_t(x: Tensor, t: int) -> Tensor:
    return x


@dataclass
class Slots:
    """Regulariser hooks inside the cell step; identity unless a variant sets them."""

    candidate: Callable[[Tensor], Tensor] = _identity
    cell_norm: Callable[[Tensor, int], Tensor] = _identity_t


@dataclass(frozen=True)
class Kernels:
    """A cell's hand-written whole-sequence functions for training with gradients, each computing exactly what
    the layer's autograd loop over `step` computes (tests/test_fused.py); None where the cell has none.

    plain: `(x (T, E, B, I), w_ih, b_ih, w_hh, b_hh) -> (T, E, B, H)`, nothing inside the recurrence.
    norm: `(xw (T, E, B, gH), w_hh, b_hh (E, 1, gH), norm_h, norm_c) -> (T, E, B, H)`, per-step norms inside
        (pieces with a `fused(T, like)` step); xw holds W_ih·x (after norm_x) plus b_ih, and b_hh where
        the cell is additive.
    masked: `(xw (T, E, B, gH) both biases in, w_hh, h_mask, c_masks, zone) -> (T, E, B, H)`, a state mask,
        candidate masks and zoneout inside.
    """

    plain: Optional[Callable[..., Tensor]] = None
    norm: Optional[Callable[..., Tensor]] = None
    masked: Optional[Callable[..., Tensor]] = None


class CellMath:
    """One recurrent cell's step. Stateless; parameters live in the layer.

    Class attributes:
        name: label used in results.
        gates: the pre-activation width is `gates * hidden_size`.
        native: torch's fused module with the same parameter layout, or None.
        additive: True when the gates depend on `xw + hw` only, so the layer may fold
            `xw_t` into the recurrent GEMM (`addmm(xw_t, h, W_hh^T)`) and pass `xw=None`.
        has_cell_state: True when the state carries a memory besides h (LSTM's c).
        fused: the cell's hand-written kernels (`Kernels`), or None.
    """

    name: ClassVar[str] = "cell"
    gates: ClassVar[int] = 1
    native: ClassVar[Optional[type[nn.RNNBase]]] = None
    additive: ClassVar[bool] = True
    has_cell_state: ClassVar[bool] = False
    fused: ClassVar[Optional[Kernels]] = None

    def init_state(self, batch: int, hidden: int, like: Tensor) -> State:
        """Zero initial state, (B, H) per state tensor."""
        n = 2 if self.has_cell_state else 1
        return tuple(like.new_zeros(batch, hidden) for _ in range(n))

    def step(self, xw: Optional[Tensor], hw: Tensor, state: State, t: int, slots: Slots) -> tuple[Tensor, State]:
        """One time step. xw, hw: (B, gates*H) incl. biases (xw None: already summed into hw).

        Gates are split on the last dimension, so the same math runs on (E, B, gates*H) tensors of
        E members stacked along a leading member dimension (`layer.py`).

        Returns the output h_t (B, H) and the new state.
        """
        raise NotImplementedError


class RNNCell(CellMath):
    """Elman RNN, tanh: h' = tanh(W_ih x + b_ih + W_hh h + b_hh).

    Recurrent dropout (Semeniuta) drops the update tanh(...): a vanilla RNN has no
    separate memory path, so this equals dropout on the new state with a per-step mask.
    """

    name = "rnn"
    gates = 1
    native = nn.RNN
    fused = Kernels(plain=rnn_plain, norm=rnn_norm)

    def step(self, xw, hw, state, t, slots):
        pre = hw if xw is None else xw + hw
        h = slots.candidate(torch.tanh(pre))
        return h, (h,)


class LSTMCell(CellMath):
    """LSTM with torch's gate order (i, f, g, o).

    c' = σ(f)⊙c + σ(i)⊙d(tanh(g));  h' = σ(o)⊙tanh(N(c'))
    with d = recurrent dropout (Semeniuta: the candidate only, memory kept) and
    N = the cell-state BN of Cooijmans et al.; both identity by default.
    """

    name = "lstm"
    gates = 4
    native = nn.LSTM
    has_cell_state = True
    fused = Kernels(plain=lstm_plain, norm=lstm_norm, masked=lstm_masked)

    def step(self, xw, hw, state, t, slots):
        h, c = state
        gates = hw if xw is None else xw + hw  # (B, 4H)
        i, f, g, o = gates.chunk(4, -1)  # one split node: its backward is one cat, not 4 zero-fills
        c = torch.addcmul(torch.sigmoid(f) * c, torch.sigmoid(i), slots.candidate(torch.tanh(g)))
        h = torch.sigmoid(o) * torch.tanh(slots.cell_norm(c, t))
        return h, (h, c)


class GRUCell(CellMath):
    """GRU with torch's gate order (r, z, n) and b_hn inside the reset product.

    n = d(tanh(x_n + r⊙(W_hn h + b_hn)));  h' = (1-z)⊙n + z⊙h = lerp(n, h, z)
    with d = recurrent dropout on the candidate (Semeniuta).
    """

    name = "gru"
    gates = 3
    native = nn.GRU
    additive = False
    fused = Kernels(plain=gru_plain, norm=gru_norm)

    def step(self, xw, hw, state, t, slots):
        (h,) = state
        H = h.shape[-1]
        x_rz, x_n = xw.split((2 * H, H), -1)  # split, not slicing: one cheap node in backward
        h_rz, h_n = hw.split((2 * H, H), -1)
        r, z = torch.sigmoid(x_rz + h_rz).chunk(2, -1)  # (B, H) each
        n = slots.candidate(torch.tanh(torch.addcmul(x_n, r, h_n)))
        h = torch.lerp(n, h, z)
        return h, (h,)


CELLS: dict[str, type[CellMath]] = {c.name: c for c in (RNNCell, LSTMCell, GRUCell)}


def get_cell(name: str) -> type[CellMath]:
    """Look a built-in cell up by name, with an error that lists the choices."""
    try:
        return CELLS[name]
    except KeyError:
        raise ConfigError("cell.name", name, "one of: " + ", ".join(sorted(CELLS))) from None


def check_cell_class(cls: object, key: str = "cell._target_") -> type[CellMath]:
    """Make sure a class given by import path is a usable cell."""
    if not (isinstance(cls, type) and issubclass(cls, CellMath)):
        raise ConfigError(key, getattr(cls, "__name__", cls), "a subclass of benchmark.models.cells.CellMath")
    if cls.gates < 1:
        raise ConfigError(key, cls.__name__, "a CellMath with gates >= 1")
    return cls

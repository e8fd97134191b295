"""Layer normalisation per time step (Ba, Kiros & Hinton 2016, "Layer Normalization").

Statistics are the mean and variance over the features of one example at one step, so
training and evaluation compute the same function and nothing is kept between batches.
`RecurrentLayer` puts it where the LayerNorm-LSTM (Ba et al., eq. 20-22) does:

    gates = LN(W_ih·x_t) + LN(W_hh·h_{t-1}) + b,   h_t = σ(o) ⊙ tanh(LN_c(c_t))

each LN over the whole pre-activation vector (all gates together, width gates·H), with its
own gain and no beta on the two pre-activation LNs (the cell's bias b plays that role, the
same function class), and gain and beta on the cell-state LN. The same two pre-activation
LNs serve the GRU and the vanilla RNN (see docs/arms.md for the GRU's reset gate).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class StepLayerNorm(nn.Module):
    """LN over the last dimension; `forward` takes a whole (T, B, F) sequence, `step` one (B, F) step.

    Args:
        features: F, the normalised width.
        gain_init: initial gain (Ba et al.: 1).
        eps: added to the variance.
        bias: learn a beta (the cell-state LN does; the pre-activation LNs share the cell's bias).
    """

    def __init__(self, features: int, gain_init: float = 1.0, eps: float = 1e-5, bias: bool = False) -> None:
        super().__init__()
        self.features, self.eps = features, eps
        self.weight = nn.Parameter(torch.full((features,), float(gain_init)))
        self.bias = nn.Parameter(torch.zeros(features)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        """(…, F) -> (…, F): every (step, example) normalised over its own F features at once."""
        return F.layer_norm(x, (self.features,), self.weight, self.bias, self.eps)

    def step(self, x: Tensor, t: int) -> Tensor:
        """One step's (B, F); `t` is unused (no per-step statistics), kept for the slot's signature."""
        return self.forward(x)

    def extra_repr(self) -> str:
        return f"{self.features}, eps={self.eps}, bias={self.bias is not None}"

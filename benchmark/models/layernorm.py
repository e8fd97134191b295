"""Layer normalisation per time step (Ba, Kiros & Hinton 2016, "Layer Normalization"), for E stacked members.

Statistics are the mean and variance over the features of one example at one step, so
training and evaluation compute the same function and nothing is kept between batches.
`RecurrentLayer` puts it where the LayerNorm-LSTM (Ba et al., eq. 20-22) does:

    gates = LN(W_ih·x_t) + LN(W_hh·h_{t-1}) + b,   h_t = σ(o) ⊙ tanh(LN_c(c_t))

each LN over the whole pre-activation vector (all gates together, width gates·H), with its
own gain per member and no beta on the two pre-activation LNs (the cell's bias b plays that role,
the same function class), and gain and beta on the cell-state LN. The same two pre-activation
LNs serve the GRU and the vanilla RNN (see docs/arms.md for the GRU's reset gate).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class StepLayerNorm(nn.Module):
    """LN over the last dimension with gains (E, F): a step (E, B, F) or a whole (T, E, B, F) sequence.

    Args:
        features: F, the normalised width.
        gain_init: initial gain (Ba et al.: 1).
        eps: added to the variance.
        bias: learn a beta (the cell-state LN does; the pre-activation LNs share the cell's bias).
        members: E, the stack's members.
    """

    def __init__(
        self, features: int, gain_init: float = 1.0, eps: float = 1e-5, bias: bool = False, members: int = 1
    ) -> None:
        super().__init__()
        self.features, self.eps = features, eps
        self.weight = nn.Parameter(torch.full((members, features), float(gain_init)))
        self.bias = nn.Parameter(torch.zeros(members, features)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        """(…, E, B, F) -> (…, E, B, F): every (member, example[, step]) normalised over its own F features."""
        y = F.layer_norm(x, (self.features,), None, None, self.eps) * self.weight.unsqueeze(1)
        return y if self.bias is None else y + self.bias.unsqueeze(1)

    def step(self, x: Tensor, t: int) -> Tensor:
        """One step's (E, B, F); `t` is unused (no per-step statistics), kept for the slot's signature."""
        return self.forward(x)

    def fused(self, T: int, like: Tensor) -> "FusedStepLN":
        """This norm's hand-written step for a fused loop (benchmark/models/fused_norm.py)."""
        return FusedStepLN(self, T, like)

    def extra_repr(self) -> str:
        return f"{self.features}, eps={self.eps}, bias={self.bias is not None}, members={self.weight.shape[0]}"


class FusedStepLN:
    """A per-step LN inside a fused loop: the interface of `benchmark.models.norm.FusedStepBN`.

    The forward is ATen's layer norm without affine (the same x̂ as `StepLayerNorm`); keeps x̂ and 1/σ
    (E, B, 1) per step, and in the backward ∂L/∂x = γ/σ · (g − mean_F g − x̂ · mean_F(g · x̂)) with g = ∂L/∂y,
    accumulating ∂L/∂γ and ∂L/∂β over steps.
    """

    def __init__(self, norm: StepLayerNorm, T: int, like: Tensor) -> None:
        E, B, Fd = like.shape[0], like.shape[-2], norm.features
        self.norm, self.shape = norm, (Fd,)
        self.gamma = norm.weight.detach().unsqueeze(1)  # (E, 1, F)
        self.beta = None if norm.bias is None else norm.bias.detach().unsqueeze(1)
        self.xhat = like.new_empty(T, E, B, Fd)
        self.rstd = like.new_empty(T, E, B, 1)
        self.d_gamma = like.new_zeros(E, 1, Fd)
        self.d_beta = like.new_zeros(E, 1, Fd) if self.beta is not None else None
        self.g = like.new_empty(E, B, Fd)

    def forward(self, x: Tensor, t: int) -> Tensor:
        """x̂_t of x (E, B, F); the caller applies γ (and β)."""
        xhat, _, rstd = torch.native_layer_norm(x, self.shape, None, None, self.norm.eps)
        self.xhat[t].copy_(xhat)
        self.rstd[t].copy_(rstd)
        return self.xhat[t]

    def affine(self, xhat: Tensor, out: Tensor) -> Tensor:
        if self.beta is None:
            return torch.mul(xhat, self.gamma, out=out)
        return torch.addcmul(self.beta, xhat, self.gamma, out=out)

    def finish_forward(self) -> None:
        """Nothing: layer norm keeps no statistics between batches."""

    def backward(self, dy: Tensor, t: int, out: Tensor) -> Tensor:
        """∂L/∂x_t into `out` given ∂L/∂y_t, y = γ·x̂ (+ β)."""
        xhat = self.xhat[t]
        self.d_gamma.add_((dy * xhat).sum(1, keepdim=True))
        if self.d_beta is not None:
            self.d_beta.add_(dy.sum(1, keepdim=True))
        g = torch.mul(dy, self.gamma, out=self.g)
        m_g, m_gx = g.mean(-1, keepdim=True), (g * xhat).mean(-1, keepdim=True)
        return torch.sub(g, m_g, out=out).addcmul_(xhat, m_gx, value=-1).mul_(self.rstd[t])

    def grads(self) -> tuple[Tensor, Optional[Tensor]]:
        """∂L/∂γ and ∂L/∂β (None without β), (E, F)."""
        return self.d_gamma.squeeze(1), None if self.d_beta is None else self.d_beta.squeeze(1)

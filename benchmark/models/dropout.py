"""Dropout masks over time: fresh per step (Zaremba) or one per sequence (Gal).

Inverted dropout throughout: kept units are scaled by 1/(1-p) in training, so nothing
is rescaled at eval and expectations match.
"""

from __future__ import annotations

from torch import Tensor, nn

from benchmark.models import masks


def sequence_mask(like: Tensor, p: float) -> Tensor:
    """An inverted-dropout mask shaped like `like` ((B, F): reused at every step of a sequence)."""
    return masks.bernoulli(like, like.shape, 1.0 - p, scale=True)


class _Dropout(nn.Module):
    """Inverted dropout with probability p in training, the identity at eval: `mask(x)` says which units."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * self.mask(x)

    def mask(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"p={self.p}"


class StepDropout(_Dropout):
    """Dropout with a fresh mask per element (and so per step; Zaremba): `nn.Dropout`'s law, drawn by
    `masks.bernoulli` so a trained model's masks come from its own stream (benchmark/models/masks.py)."""

    def mask(self, x: Tensor) -> Tensor:
        return masks.bernoulli(x, x.shape, 1.0 - self.p, scale=True)


class LockedDropout(_Dropout):
    """Variational dropout on a (T, B, F) sequence: one mask per sequence, shared over T."""

    def mask(self, x: Tensor) -> Tensor:
        return sequence_mask(x[0], self.p).unsqueeze(0)  # (1, B, F) broadcast over T

"""Dropout of E stacked members over time: a fresh mask per step (Zaremba) or one per sequence (Gal).

Inverted dropout throughout: kept units are scaled by 1/(1-p) in training, so nothing is rescaled at
eval and expectations match. Masks are drawn member first through `benchmark.models.masks` (row e from
member e's stream), and each member may drop out with its own p (a stack over dropout p).
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from benchmark.models import masks


class SequenceDropout(nn.Module):
    """Inverted dropout on (T, E, B, F): a fresh mask per element (Zaremba), or, `locked`, one (E, B, F) mask
    per member and sequence shared over T (Gal & Ghahramani). `p`: one probability, or one per member."""

    def __init__(self, p: float | Sequence[float], locked: bool) -> None:
        super().__init__()
        ps = (float(p),) if isinstance(p, (int, float)) else tuple(float(q) for q in p)
        self.p: float | tuple[float, ...] = ps[0] if len(set(ps)) == 1 else ps
        self.locked = locked

    def keep(self) -> float | tuple[float, ...]:
        return 1.0 - self.p if isinstance(self.p, float) else tuple(1.0 - p for p in self.p)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        T, E, B, Fd = x.shape
        if self.locked:
            return x * masks.bernoulli(x, (E, B, Fd), self.keep(), scale=True)
        return x * masks.bernoulli(x, (E, T, B, Fd), self.keep(), scale=True).transpose(0, 1)

    def extra_repr(self) -> str:
        return f"p={self.p}, locked={self.locked}"

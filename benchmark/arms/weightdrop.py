"""`reg=weightdrop`: DropConnect on the recurrent weights W_hh (Merity, Keskar & Socher 2018, AWD-LSTM).

Wan et al. 2013 (DropConnect) drop weights rather than activations; Merity et al. apply it to the
hidden-to-hidden matrix of an LSTM ("weight-dropped LSTM"): in training one Bernoulli mask over
the entries of W_hh is drawn per forward pass and the same dropped matrix is used at every time
step and for every example of the batch, so the recurrence itself is regularised while the
cell's fast recurrent kernel sees an ordinary matrix. As in their code (`WeightDrop`, which calls
`F.dropout` on the raw weight), the mask is inverted: kept entries are scaled by 1/(1-p) in
training and W_hh is used as it is at evaluation. The biases and W_ih are not dropped.

The layer asks for it through the `weight_hh` piece: the dropped W_hh replaces W_hh for the whole
forward, in the autograd loop and in the fused LSTM alike (gradients reach W_hh through the mask).
torch's fused modules read their own parameter, so the arm needs the custom loop.

This module stays torch-free at import (the variant registry imports it); the module class is
made on first use.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from benchmark.arms.base import Arm, ArmVariant, Site
from benchmark.core.config import ConfigError


@dataclass
class WeightDropConfig:
    # Merity et al. 2018 use 0.5 on the hidden-to-hidden weights of their word-level LSTMs (PTB, WT2).
    p: float = 0.5


@functools.lru_cache(maxsize=None)
def weight_drop_class() -> type:
    """`WeightDrop(p)`: W_hh (E, gH, H) -> W_hh ⊙ mask / (1 - p) in training (one mask per member and call, from
    the member's stream), W_hh at eval."""
    from torch import Tensor, nn

    from benchmark.models import masks

    class WeightDrop(nn.Module):
        def __init__(self, p: float) -> None:
            super().__init__()
            self.p = p

        def forward(self, w: Tensor) -> Tensor:
            if not self.training or self.p == 0.0:
                return w
            return w * masks.bernoulli(w, w.shape, 1.0 - self.p, scale=True)

        def extra_repr(self) -> str:
            return f"p={self.p}"

    return WeightDrop


class WeightDropArm(Arm):
    """DropConnect on W_hh, one mask per forward (module docstring)."""

    blocks = {"weightdrop": WeightDropConfig}
    order = 60

    def __init__(self, name: str = "weightdrop", **blocks: Any) -> None:
        super().__init__(name, **blocks)
        self.p = self.config["weightdrop"].p
        if not 0.0 <= self.p < 1.0:
            raise ConfigError("reg.weightdrop.p", self.p, "a probability in [0, 1)")

    def needs_custom(self) -> list[str]:
        return [f"reg={self.name} (W_hh is dropped per forward; torch's fused module reads its own parameter)"]

    def weight_hh(self, site: Site, gates_hidden: int, hidden: int) -> Any:
        return weight_drop_class()(self.p) if self.p > 0 else None

    @classmethod
    def variants(cls, option: str) -> list[ArmVariant]:
        return [
            ArmVariant(
                None,
                (),
                ("custom",),
                "Merity, Keskar & Socher 2018, Regularizing and Optimizing LSTM Language Models",
                "DropConnect on the recurrent weights W_hh: one mask per forward, shared by every step "
                "and example; W_hh unchanged at eval",
            )
        ]

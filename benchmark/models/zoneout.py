"""Zoneout (Krueger et al. 2017, "Zoneout: Regularizing RNNs by Randomly Preserving Hidden Activations").

In training each unit of a recurrent state keeps its previous value with probability p
and takes the cell's new value otherwise, a fresh Bernoulli mask per step and unit:

    s_t = d_t ⊙ s_{t-1} + (1 − d_t) ⊙ s̃_t,   d_t ~ Bernoulli(p)

At evaluation the mask is replaced by its expectation, s_t = p·s_{t-1} + (1 − p)·s̃_t. For
the LSTM both states are zoned with their own probability (p_c on c, p_h on h), and h̃_t is
computed from the new, unzoned c̃_t, as in the paper's equations and its reference code;
the layer's output at step t is the zoned h_t. Gradients flow through both branches, so
a kept unit passes its gradient back unchanged (the identity the paper motivates it with).
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor

from benchmark.models import masks

Keep = Union[Tensor, float]  # an (E, B, H) 0/1 mask in training, the probability p at eval


def keep_masks(T: int, like: Tensor, p: float) -> Optional[Tensor]:
    """(E, T, B, H) float masks for a state like `like` (E, B, H), 1 where a unit keeps its previous value
    (probability p), member first; None if p == 0."""
    if p == 0.0:
        return None
    E, B, H = like.shape
    return masks.bernoulli(like, (E, T, B, H), p, scale=False)


def zone(new: Tensor, old: Tensor, keep: Optional[Keep]) -> Tensor:
    """keep ⊙ old + (1 − keep) ⊙ new (one lerp); `keep` None = no zoneout on this state."""
    if keep is None:
        return new
    return torch.lerp(new, old, keep)

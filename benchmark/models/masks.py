"""Random 0/1 masks, drawn in one place.

Every arm's mask (dropout per step or per sequence, zoneout's keep masks, weight drop) is a
Bernoulli draw shaped like a tensor it acts on; drawing them all here keeps their law and
their random stream in one definition, and is the one place a leading "member" dimension
(several models trained side by side) would add its own masks.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor


def bernoulli(like: Tensor, shape: Sequence[int], keep: float, scale: bool) -> Tensor:
    """A float mask of `shape` on like's device and dtype: 1 with probability `keep`, else 0.

    `scale`: divide by `keep` (inverted dropout: kept units carry 1/keep, so the expectation is 1
    and nothing is rescaled at eval).
    """
    m = like.new_empty(tuple(shape)).bernoulli_(keep)
    return m.div_(keep) if scale else m

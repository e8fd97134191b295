"""Random 0/1 masks, drawn in one place, from the model's own random stream.

Every arm's mask (dropout per step or per sequence, zoneout's keep masks, weight drop) is a
Bernoulli draw shaped like a tensor it acts on; drawing them all here keeps their law and
their random stream in one definition.

A trained model draws from its own `torch.Generator` (seeded from the run's seed, `generator`),
never from torch's global stream: so a cohort (benchmark/models/cohort.py), whose masks lead with
a member dimension, draws member e's masks from member e's generator, in the order and shapes
its solo model draws them, and each member sees exactly its solo run's masks. The model's
forward names its streams for the duration of the call (`drawn_from`); a model without one draws
from the global stream, as torch's own dropout does.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator, Optional, Sequence

import torch
from torch import Tensor

from benchmark.tasks.base import split_seed

# (generators, stacked): stacked = the first dimension of every mask indexes the generators' members
_STREAMS: contextvars.ContextVar[Optional[tuple[tuple[torch.Generator, ...], bool]]] = contextvars.ContextVar(
    "mask_streams", default=None
)


def generator(seed: int, device: torch.device) -> torch.Generator:
    """A run's mask stream: its own generator on the model's device, seeded from the run's seed."""
    return torch.Generator(device=device).manual_seed(split_seed("masks", seed))


@contextlib.contextmanager
def drawn_from(gens: Optional[Sequence[torch.Generator]], stacked: bool = False) -> Iterator[None]:
    """Masks drawn inside come from `gens` (None: leave the current streams as they are).

    `stacked`: masks lead with one row per generator (a cohort); else one generator draws all.
    """
    if gens is None:
        yield
        return
    token = _STREAMS.set((tuple(gens), stacked))
    try:
        yield
    finally:
        _STREAMS.reset(token)


def bernoulli(like: Tensor, shape: Sequence[int], keep: float | Sequence[float], scale: bool) -> Tensor:
    """A float mask of `shape` on like's device and dtype: 1 with probability `keep`, else 0.

    `scale`: divide by `keep` (inverted dropout: kept units carry 1/keep, so the expectation is 1
    and nothing is rescaled at eval). `keep` may be one per member (a cohort whose members drop out
    with their own p, drawn stacked): row e is then what member e's solo model draws.
    """
    streams = _STREAMS.get()
    shape = tuple(shape)
    if streams is not None and streams[1]:
        keeps = (keep,) * len(streams[0]) if isinstance(keep, (int, float)) else tuple(keep)
        return _stacked(like, shape, streams[0], keeps, scale)
    if not isinstance(keep, (int, float)):
        raise ValueError(f"masks with one keep per member {keep} need the members' stacked streams")
    m = like.new_empty(shape).bernoulli_(keep, **({} if streams is None else {"generator": streams[0][0]}))
    return m.div_(keep) if scale else m


def _stacked(
    like: Tensor, shape: tuple[int, ...], gens: Sequence[torch.Generator], keeps: tuple[float, ...], scale: bool
) -> Tensor:
    """Row e from member e's stream with keep probability keeps[e], as its solo model draws it; a member that
    keeps everything draws nothing (its solo model, with p = 0, never calls its stream)."""
    if shape[0] != len(gens) or len(keeps) != len(gens):
        raise ValueError(f"a stacked mask {shape} must lead with one row (and one keep) per member ({len(gens)})")
    rows = []
    for g, k in zip(gens, keeps):
        m = like.new_ones(shape[1:]) if k == 1.0 else like.new_empty(shape[1:]).bernoulli_(k, generator=g)
        rows.append(m.div_(k) if scale and k != 1.0 else m)
    return torch.stack(rows)

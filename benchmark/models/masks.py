"""Random draws of a model's pieces (dropout, zoneout and weight-drop masks, noise), in one place, from
each member's own random stream.

Every random tensor a piece draws leads with the member dimension E of the stack it serves: row e is
member e's. A trained model draws row e from member e's own `torch.Generator` (seeded from that
member's seed, `generator`), never from torch's global stream, so member e of a stack draws exactly
what a stack of one of member e draws, in the same order and shapes. The model's forward names its
streams for the duration of the call (`drawn_from`); a model without any (built by hand) draws from
the global stream, as torch's own dropout does.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Callable, Iterator, Optional, Sequence

import torch
from torch import Tensor

from benchmark.tasks.base import split_seed

_STREAMS: contextvars.ContextVar[Optional[tuple[torch.Generator, ...]]] = contextvars.ContextVar(
    "mask_streams", default=None
)


def generator(seed: int, device: torch.device) -> torch.Generator:
    """A member's random stream: its own generator on the model's device, seeded from the member's seed."""
    return torch.Generator(device=device).manual_seed(split_seed("masks", seed))


@contextlib.contextmanager
def drawn_from(gens: Optional[Sequence[torch.Generator]]) -> Iterator[None]:
    """Draws inside come from `gens`, one per member (None: leave the current streams as they are)."""
    if gens is None:
        yield
        return
    token = _STREAMS.set(tuple(gens))
    try:
        yield
    finally:
        _STREAMS.reset(token)


def _per_member(
    like: Tensor, shape: Sequence[int], draw: Callable[[Tensor, Optional[torch.Generator], int], Tensor]
) -> Tensor:
    """A tensor of `shape` (E, ...) whose row e is `draw(empty row, member e's generator, e)`."""
    shape = tuple(shape)
    gens = _STREAMS.get()
    if gens is not None and len(gens) != shape[0]:
        raise ValueError(f"a draw {shape} must lead with one row per member ({len(gens)})")
    rows = [draw(like.new_empty(shape[1:]), None if gens is None else gens[e], e) for e in range(shape[0])]
    return rows[0].unsqueeze(0) if len(rows) == 1 else torch.stack(rows)


def bernoulli(like: Tensor, shape: Sequence[int], keep: float | Sequence[float], scale: bool) -> Tensor:
    """A float mask of `shape` (E, ...) on like's device and dtype: 1 with probability `keep`, else 0.

    `keep`: one probability, or one per member (a stack whose members drop out with their own p). `scale`:
    divide by keep (inverted dropout: kept units carry 1/keep, so nothing is rescaled at eval). A member that
    keeps everything draws nothing (with p = 0 its stack of one never calls its stream).
    """
    keeps = (keep,) * shape[0] if isinstance(keep, (int, float)) else tuple(keep)
    if len(keeps) != shape[0]:
        raise ValueError(f"a mask {tuple(shape)} needs one keep probability per member, got {keeps}")

    def draw(row: Tensor, gen: Optional[torch.Generator], e: int) -> Tensor:
        k = keeps[e]
        if k == 1.0:
            return row.fill_(1.0)
        m = row.bernoulli_(k, generator=gen)
        return m.div_(k) if scale else m

    return _per_member(like, shape, draw)


def normal(like: Tensor, shape: Sequence[int]) -> Tensor:
    """Standard normal noise of `shape` (E, ...), row e from member e's stream (e.g. a user arm's noise)."""
    return _per_member(like, shape, lambda row, gen, e: row.normal_(generator=gen))

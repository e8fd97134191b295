"""Members into one stack and back: the models of E members (each a stack of one, or any stacks) as one
`SequenceModel` whose member dimension holds them all, in order.

Every tensor of a model leads with the member dimension (dim 0), but for a piece that names another in its
`member_dims` (per-step BN's population statistics, (steps, E, F): dim 1); so stacking is a concatenation
along each tensor's member dimension, and member e of the stack computes exactly what its own model computes
on the same inputs with the same random streams (tests/test_stack.py). The stack is built without drawing
any random number (on the meta device, then filled from the members).

`estimate_population` ("precise BN", Wu & Johnson 2021) runs through a stack too: K copies of a model, copy k
on batch k with BN's momentum at 1, so each copy's statistics are its batch's (mean, unbiased variance), and
their mean over the copies is the population every BN piece keeps.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Sequence

import torch
from torch import Tensor, nn

from benchmark.models.model import ModelSpec, SequenceModel
from benchmark.models.norm import bn_modules


def member_dim(model: nn.Module, name: str) -> int:
    """The dimension of state-dict tensor `name` that indexes members (0, or what its module's `member_dims` says)."""
    module, _, leaf = name.rpartition(".")
    return getattr(model.get_submodule(module), "member_dims", {}).get(leaf, 0)


def stackable_specs(specs: Sequence[ModelSpec]) -> bool:
    """Members' specs that form one stack: equal but for their arms' settings that `Arm.stack_key` leaves out."""
    first = specs[0]
    return all(
        dataclasses.replace(s, reg=first.reg) == first and s.reg.stack_key() == first.reg.stack_key() for s in specs
    )


def stackable(models: Sequence[SequenceModel]) -> bool:
    """Models that form one stack (`stackable_specs`)."""
    return stackable_specs([m.spec for m in models])


def stack(models: Sequence[SequenceModel]) -> SequenceModel:
    """One model of every member of `models` in order (their parameters and buffers copied), on their device and
    in the first's mode; the members' random streams are its streams. ValueError when they cannot stack."""
    if not models:
        raise ValueError("a stack needs at least one member model")
    if not stackable(models):
        raise ValueError(
            "the members of a stack must share one ModelSpec (they differ in their weights and in the settings "
            "their arm's `stack_key` leaves out only)"
        )
    arms = [a for m in models for a in m.member_arms]
    with torch.device("meta"):
        out = SequenceModel(models[0].spec, arms=arms)
    like = next(models[0].parameters())
    out = out.to_empty(device=like.device).to(like.dtype)
    read(out, models)
    gens = [g for m in models for g in (m.mask_gens or [])]
    out.mask_gens = gens if len(gens) == out.members else None
    return out.train(models[0].training)


@torch.no_grad()
def read(stacked: SequenceModel, models: Sequence[SequenceModel]) -> None:
    """Copy the models' parameters and buffers into `stacked`, member dimension by member dimension."""
    states = [m.state_dict() for m in models]
    for name, t in stacked.state_dict().items():
        t.copy_(torch.cat([s[name] for s in states], member_dim(stacked, name)))


@torch.no_grad()
def write(stacked: SequenceModel, models: Sequence[SequenceModel], buffers_only: bool = False) -> None:
    """Copy `stacked`'s parameters (unless `buffers_only`) and buffers back into the models it was stacked from."""
    tensors = dict(stacked.named_buffers()) if buffers_only else stacked.state_dict()
    for name, t in tensors.items():
        for src, m in zip(_split(t, member_dim(stacked, name), models), models):
            m.state_dict()[name].copy_(src)


def _split(t: Tensor, dim: int, models: Sequence[SequenceModel]) -> tuple[Tensor, ...]:
    return t.split([m.members for m in models], dim)


def stacked_params(stacked: SequenceModel, models: Sequence[SequenceModel]) -> dict[str, Tensor]:
    """The models' own parameters concatenated along the member dimension (differentiable: gradients reach them)."""
    own = [dict(m.named_parameters()) for m in models]
    return {n: torch.cat([o[n] for o in own], member_dim(stacked, n)) for n, _ in stacked.named_parameters()}


@torch.no_grad()
def estimate_population(models: Sequence[SequenceModel], batches: Sequence[Sequence[Tensor]]) -> None:
    """Precise BN: each model's BN population statistics become their average over its `batches` (K inputs
    (E, B, T[, I]) each, on the models' device; B >= 2) under its current weights.

    K copies of each model are stacked (copy k on batch k), every module but BN in eval mode (dropout off, so the
    statistics describe the network that is evaluated) and BN in batch-statistics mode with momentum 1: a copy's
    statistics are its batch's mean and unbiased variance (torch's convention), and the models' become the mean
    over their copies, per step for per-step BN, over batch and time for sequence-wise BN. Rows of steps the
    batches do not reach are kept. The models themselves only receive the statistics.
    """
    k = len(batches[0])
    if not bn_modules(models[0]) or k == 0:
        return
    copies = stack([m for m in models for _ in range(k)]).eval()
    norms = {name: bn for name, bn in copies.named_modules() if bn in bn_modules(copies)}
    for bn in norms.values():
        bn.train()
        bn.momentum = 1.0
    copies(torch.cat([b for bs in batches for b in bs]))
    T = batches[0][0].shape[2]
    for name, bn in norms.items():
        for leaf in ("running_mean", "running_var"):
            _average_copies(getattr(bn, leaf), name, leaf, copies, models, k, T)


def _average_copies(
    t: Tensor, name: str, leaf: str, copies: SequenceModel, models: Sequence[SequenceModel], k: int, T: int
) -> None:
    """Write the mean over each model's k copies of buffer `name.leaf` into the model (per-step rows: those < T)."""
    dim = member_dim(copies, f"{name}.{leaf}")
    rows = min(T, t.shape[0]) if dim == 1 else None  # per-step statistics: only the steps the batches reach
    parts: Iterator[Tensor] = iter(t.split([m.members * k for m in models], dim))
    for m, part in zip(models, parts):
        mean = part.unflatten(dim, (k, m.members)).mean(dim)
        target = m.get_buffer(f"{name}.{leaf}")
        (target if rows is None else target[:rows]).copy_(mean if rows is None else mean[:rows])

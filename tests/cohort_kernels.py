"""What the fused cohort kernels' tests share (tests/test_cohort_fused*.py): a spy on the kernels a cohort layer
calls, solo models of one spec, and one forward + backward with its gradients."""

from __future__ import annotations

from typing import Callable, Iterable, Optional

import torch

from benchmark.models import ModelSpec, build_model
from benchmark.models import cohort as cohort_mod


def spy_kernels(monkeypatch, names: Iterable[str]) -> list:
    """Names of the `benchmark.models.cohort` kernels (of `names`) the layers ran, in order."""
    calls: list = []
    for name in names:
        original = getattr(cohort_mod, name)

        def spy(*args, _name=name, _original=original):
            calls.append(_name)
            return _original(*args)

        monkeypatch.setattr(cohort_mod, name, spy)
    return calls


def solo_models(spec: ModelSpec, members: int, prepare: Optional[Callable] = None) -> list:
    """Float64 solo models of `spec` in training mode, seeds 0..members-1 (`prepare` edits each one)."""
    solos = []
    for seed in range(members):
        torch.manual_seed(seed)
        model = build_model(spec).double().train()
        if prepare is not None:
            prepare(model)
        solos.append(model)
    return solos


def forward_backward(model, x: torch.Tensor, w=None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Output, input gradient and parameter gradients of a random readout `w` of the output (None: seed 7)."""
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    y = model(x)
    if w is None:
        w = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(7))
    (y * w).sum().backward()
    return y.detach(), x.grad, {n: p.grad.clone() for n, p in model.named_parameters()}

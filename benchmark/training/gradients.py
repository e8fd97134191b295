"""Gradient measurements: norms per parameter group, and ‖∂L/∂h_t‖ over time.

The hidden-state profile is the direct view of vanishing or exploding gradients: on a
fixed probe batch, how much does the loss depend on the top layer's state at each step?
It is measured on a deep copy of the model, in eval mode by default: the function the model
computes (BN from its population statistics, no dropout), not an artifact of one batch's
statistics. In train mode a step whose input is the same across the batch (digits' first pixel
is 0 in every image) has zero batch variance, and backprop through BN multiplies by γ/√eps
(31.6 at γ = 0.1): ‖∂L/∂h_1‖ inflates by orders of magnitude that the trained function does not
have. At the start, BN's population statistics are their initial values (mean 0, variance 1).
Measured under `torch.random.fork_rng` with a fixed seed, so measuring it changes neither the
model (BN statistics, grads) nor any random stream of the run.
The loss it differentiates is the task's `probe_loss` (the copy task's recall window only:
with a loss at every step, each step's own term would hide any decay), and the ratio
compares the task's `probe_steps`.
"""

from __future__ import annotations

import copy
import math
from typing import Callable, Iterable, Optional

import torch
from torch import Tensor, nn

from benchmark.core.record import INIT_GAINS, filled_gain_key
from benchmark.models.norm import bn_modules
from benchmark.models.stack import estimate_population

GROUPS = ("input", "recurrent", "norm", "head")


def group_norm_tensors(groups: dict[str, list[nn.Parameter]]) -> dict[str, Optional[Tensor]]:
    """L2 norm of each group's gradient as a 0-d tensor (no sync); None for an empty group."""
    out: dict[str, Optional[Tensor]] = {}
    for name in GROUPS:
        grads = [p.grad for p in groups.get(name, []) if p.grad is not None]
        out[name] = (
            torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])) if grads else None
        )
    return out


def total_norm(params: Iterable[nn.Parameter]) -> Tensor:
    """Global L2 norm over every gradient, as clip_grad_norm_ computes it (0-d tensor)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


def hidden_grad_profile(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    seed: int = 0,
    train_mode: bool = False,
) -> list[float]:
    """‖∂L/∂h_t‖ (Frobenius over the batch) for t = 1..T of the top layer, on (x, y).

    model: a stack of one; x: (B, T, I) on the model's device. Runs forward with `return_hidden=True` (the model
    API's custom loop, each h_t retaining its grad) on a deep copy in eval mode (`train_mode`: through
    the batch statistics, as the training step sees them), in float64, and
    with norms that cannot underflow (`_scaled_norm`): a vanishing gradient would otherwise read as
    exactly 0, an undefined ratio — at T = 100 from the norm squaring ~1e-23, at T = 1000 from
    values below float32's smallest number (1e-45); float64 measures them to ~1e-308.
    """
    probe = copy.deepcopy(model).train(train_mode).double()
    for p in probe.parameters():
        p.grad = None
    # token ids stay ids; the loss may compute in float32 (tasks cast y_hat); the chain back through time is float64
    x = x.double() if x.is_floating_point() else x
    devices = [x.device.index or 0] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.enable_grad():
        torch.manual_seed(seed)
        y_hat, hs = probe(x.unsqueeze(0), return_hidden=True)  # hs: T tensors (1, B, H)
        loss_fn(y_hat[0], y).backward()
    return [0.0 if h.grad is None else _scaled_norm(h.grad) for h in hs]


def init_gain_profiles(
    model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor, seed: int = 0
) -> dict[float, list[float]]:
    """`hidden_grad_profile` of `model` with every BN gain set to γ, for each γ of `record.INIT_GAINS`;
    {} for a model without BN. At the start of training the gain is what decides whether the gradient
    through the per-step BN vanishes or explodes (Cooijmans et al. 2016); `model` is left unchanged."""
    if not bn_modules(model):
        return {}
    return {gain: hidden_grad_profile(with_gain(model, gain), loss_fn, x, y, seed) for gain in INIT_GAINS}


def with_gain(model: nn.Module, gain: float) -> nn.Module:
    """A copy of `model` with every BN gain set to `gain` (the model itself is left unchanged)."""
    probe = copy.deepcopy(model)
    with torch.no_grad():
        for bn in bn_modules(probe):
            if bn.weight is not None:
                bn.weight.fill_(gain)
    return probe


def filled_init_ratios(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    batches: list[Tensor],  # (B, T, I) each
    steps: tuple[int, int],
    seed: int = 0,
) -> dict[str, Optional[float]]:
    """The profile ratio at initialisation with BN's population statistics filled first (precise BN over
    the training `batches`, on a copy): the function training starts from, where the eval-mode start probe
    would read BN's initial population (mean 0, variance 1), not the batch-normalised network. For a BN model
    also the same at every BN gain init γ of `record.INIT_GAINS` (the gain set before the filling, since the
    pre-activations the population describes depend on it): Cooijmans et al. (2016, Fig. 1) show the gain
    deciding between vanishing and exploding gradients at initialisation."""

    def ratio(probe: nn.Module) -> Optional[float]:
        estimate_population([probe], [[b.unsqueeze(0) for b in batches]])  # a stack of one, batches (1, B, T, I)
        return profile_ratio(hidden_grad_profile(probe, loss_fn, x, y, seed), *steps)

    if not bn_modules(model):
        return {"hidden_grad_ratio_init_filled": ratio(copy.deepcopy(model))}
    out = {filled_gain_key(gain): ratio(with_gain(model, gain)) for gain in INIT_GAINS}
    own = initial_gain(model)  # a model at one of the γ (recurrent BN's 0.1) is that copy: probed once
    at_own = out[filled_gain_key(own)] if own is not None else ratio(copy.deepcopy(model))
    return {"hidden_grad_ratio_init_filled": at_own} | out


def initial_gain(model: nn.Module) -> Optional[float]:
    """The γ of `record.INIT_GAINS` that every BN gain of `model` holds (compared in the gains' dtype, as
    `with_gain` would set it), or None: gains that differ (a trained model) or none of the γ."""
    gains = [bn.weight.detach() for bn in bn_modules(model) if bn.weight is not None]
    for gain in INIT_GAINS if gains else ():
        if all(bool((g == torch.tensor(gain, dtype=g.dtype)).all()) for g in gains):
            return gain
    return None


def _scaled_norm(g: Tensor) -> float:
    """‖g‖ without underflow: the plain norm squares its entries, so any below √(smallest number)
    (1e-23 in float32, 1e-154 in float64) would vanish from the sum; scaling by max|g| first keeps them."""
    top = g.abs().max()
    return 0.0 if top == 0 else (top * torch.linalg.vector_norm(g / top)).item()


def balance(ratio: Optional[float]) -> Optional[float]:
    """Distance from balance |log10 ratio|: 0 = the gradient neither vanishes nor explodes over the
    sequence; a vanishing (ratio ≪ 1) and an exploding (≫ 1) profile both score high."""
    if ratio is None or not ratio > 0 or not math.isfinite(ratio):
        return None
    return abs(math.log10(ratio))


def profile_ratio(profile: list[float], first: int = 0, last: int = -1) -> Optional[float]:
    """‖∂L/∂h_first‖ / ‖∂L/∂h_last‖ (default h_1 and h_T): ≪ 1 vanishing, ≫ 1 exploding; None when undefined."""
    if not profile:
        return None
    a, b = profile[first], profile[last]
    if b == 0 or not math.isfinite(a) or not math.isfinite(b):
        return None
    return a / b

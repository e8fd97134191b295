"""`check_arm`: the parity checks every arm must pass, built in or a user's, run on any arm in float64.

1. **Fast path = reference loop.** A model's forward and backward, on whatever path a job takes (torch's
   kernel for a stack of one where the variant allows it, a hand-written fused kernel, the autograd loop),
   equal the same model under `reference_loop()` (every layer takes the per-step autograd loop), with the
   same random streams, in training and evaluation.
2. **Member = stack of one.** Member e of a stack of E equals its own stack of one: outputs, loss terms
   (`Arm.penalty`), input and parameter gradients, and BN population statistics afterwards, in training
   (every random tensor drawn from the member's own stream, `benchmark.models.masks`) and in evaluation.

A piece that passes both trains its seeds stacked with no change to the package (docs/extending.md).
The tolerances are float64's (1e-10 relative); a mismatch raises AssertionError naming the check, the cell,
the mode and the tensor.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Callable, Iterator, Optional, Sequence

import torch
from torch import Tensor

from benchmark.arms.base import Arm
from benchmark.models import masks
from benchmark.models.cells import CELLS, CellMath
from benchmark.models.layer import reference_loop
from benchmark.models.model import ModelSpec, SequenceModel, build_model
from benchmark.models.stack import member_dim, stack

TOL = dict(rtol=1e-10, atol=1e-12)
Outcome = dict[str, Tensor]  # "y", "penalty", "x.grad", each parameter's gradient, each buffer


def stacks_of_one(spec: ModelSpec, n: int) -> list[SequenceModel]:
    """Float64 stacks of one of `spec`, member e initialised from seed e, in training mode."""
    out = []
    for seed in range(n):
        torch.manual_seed(seed)
        out.append(build_model(spec).double().train())
    return out


def give_streams(models: Sequence[SequenceModel]) -> None:
    """Fresh random streams, member e's seeded from e (the same draws at every call)."""
    for seed, m in enumerate(models):
        m.mask_gens = [masks.generator(seed, torch.device("cpu"))]


def outcome(model: SequenceModel, x: Tensor, w: Tensor) -> Outcome:
    """Forward on x; in training, backward of sum(y·w) + the loss terms. Everything a member's run reads."""
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(x.is_floating_point())
    y = model(x)
    penalty = model.penalty if model.training and model.penalty is not None else y.new_zeros(y.shape[0])
    out = {"y": y.detach(), "penalty": penalty.detach()}
    if model.training:
        ((y * w).sum() + penalty.sum()).backward()
        out["x.grad"] = x.grad
        out |= {f"{n}.grad": p.grad for n, p in model.named_parameters() if p.grad is not None}
    return out | {n: b.detach().clone() for n, b in model.named_buffers()}


def _compare(got: Outcome, want: Outcome, what: str) -> None:
    assert set(got) == set(want), f"{what}: tensors differ, {sorted(set(got) ^ set(want))}"
    for name, t in want.items():
        torch.testing.assert_close(got[name], t, **TOL, msg=lambda m, n=name: f"{what}, {n}: {m}")


def _member(out: Outcome, model: SequenceModel, e: int) -> Outcome:
    """Member e's slice of a stack's outcome, each tensor along its member dimension."""
    dims = {n: member_dim(model, n.removesuffix(".grad")) for n in out if n not in ("y", "penalty", "x.grad")}
    return {n: t.narrow(dims.get(n, 0), e, 1) for n, t in out.items()}


def check_fast_path(spec: ModelSpec, x: Tensor, w: Tensor, training: bool, what: str) -> None:
    """Check 1 on a stack of one (torch's kernel where the variant allows it) and on a stack of `len(x)`."""
    for n in sorted({1, len(x)}):
        fast = stack(stacks_of_one(spec, n)).train(training)
        ref = copy.deepcopy(fast)
        for m in (fast, ref):
            m.mask_gens = [masks.generator(e, torch.device("cpu")) for e in range(n)]
        got = outcome(fast, x[:n], w[:n])
        with reference_loop():
            want = outcome(ref, x[:n], w[:n])
        _compare(got, want, f"{what}: fast path vs reference loop, E={n}")


def check_members(spec: ModelSpec, x: Tensor, w: Tensor, training: bool, what: str) -> None:
    """Check 2: member e of the stack of E = len(x) against its own stack of one."""
    solos = stacks_of_one(spec, len(x))
    for m in solos:
        m.train(training)
    give_streams(solos)
    stacked = stack(solos)
    give_streams(solos)  # the members alone draw what the stack drew
    got = outcome(stacked, x, w)
    for e, m in enumerate(solos):
        _compare(_member(got, stacked, e), outcome(m, x[e : e + 1], w[e : e + 1]), f"{what}: member {e} vs alone")


@contextlib.contextmanager
def _named(what: str) -> Iterator[None]:
    try:
        yield
    except Exception as e:
        raise AssertionError(f"check_arm, {what}: {type(e).__name__}: {e}") from e


def check_arm(
    arm: Arm,
    cells: Optional[Sequence[type[CellMath]]] = None,
    members: int = 3,
    steps: int = 6,
    layers: int = 2,
    checks: Sequence[Callable[..., None]] = (check_fast_path, check_members),
) -> None:
    """Run the parity checks (module docstring) on `arm`: every cell (default: rnn, lstm, gru), training and
    evaluation, `layers` layers of 4 units over `steps` steps, `members` members. AssertionError on a mismatch."""
    for cell in cells if cells is not None else list(CELLS.values()):
        spec = ModelSpec(cell, 3, 4, layers, 2, reg=arm, total_len=steps)
        g = torch.Generator().manual_seed(1)
        x = torch.randn(members, 5, steps, 3, dtype=torch.float64, generator=g)
        w = torch.randn(members, 5, 2, dtype=torch.float64, generator=g)
        for training in (True, False):
            what = f"reg={arm.name} cell={cell.name} {'train' if training else 'eval'}"
            for check in checks:
                with _named(what):
                    check(spec, x, w, training, what)


__all__ = ["check_arm", "check_fast_path", "check_members"]

"""Member e of a stack is its own stack of one (benchmark/models/stack.py): float64 parity, every cell x arm.

Three members (seeds 0-2) are built each as a stack of one, with their own random streams; the stack of the
three then runs on the three inputs with fresh copies of those streams. Each member's outputs, input and
parameter gradients and BN population statistics must equal its stack of one's to 1e-10, in training (every
mask drawn from the member's own stream, in the same order and shapes) and in evaluation. Whatever path each
runs (torch's kernel alone, a fused kernel, the loop) is what a job runs.
"""

from __future__ import annotations

import pytest
import torch
from arm_configs import arm

import benchmark as bm  # noqa: F401  (pytest-benchmark owns the name `benchmark`)
from benchmark.arms import load_arm, options
from benchmark.models import ModelSpec, build_model
from benchmark.models.cells import GRUCell, LSTMCell, RNNCell
from benchmark.models.check import check_members as member_check
from benchmark.models.check import give_streams, outcome, stacks_of_one
from benchmark.models.stack import estimate_population, stack, stackable, write

CELLS = [RNNCell, LSTMCell, GRUCell]
E, B, I, H, L, O, T = 3, 5, 3, 4, 2, 2, 6
TOL = dict(rtol=1e-10, atol=1e-12)
VARIANTS = {
    **{o: (lambda o=o: load_arm(o)) for o in options()},
    "bn.input": lambda: arm("bn", bn="input"),
    "bn.output": lambda: arm("bn", bn="output"),
    "dropout.variational": lambda: arm("dropout", drop="variational", p=0.3, input_p=0.2),
    "dropout.recurrent": lambda: arm("dropout", drop="recurrent", p=0.3),
}


def members(spec: ModelSpec, n: int = E) -> list:
    """Float64 stacks of one of `spec`, seeds 0..n-1, in training mode."""
    return stacks_of_one(spec, n)


def streams(models) -> None:
    give_streams(models)


def run(model, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
    out = outcome(model, x, w)
    return out["y"], out.get("x.grad"), {n.removesuffix(".grad"): t for n, t in out.items() if n.endswith(".grad")}


def check_members(spec: ModelSpec, training: bool) -> None:
    """`benchmark.models.check.check_members`: outputs, loss terms, gradients and buffers of member e of a stack
    of three against its stack of one."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(E, B, T, I, dtype=torch.float64, generator=g)
    w = torch.randn(E, B, O, dtype=torch.float64, generator=g)
    member_check(spec, x, w, training, f"{spec.reg.name} {spec.cell.name}")


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
def test_member_of_a_stack_is_its_stack_of_one(cell, variant: str, training: bool) -> None:
    spec = ModelSpec(cell, I, H, L, O, reg=VARIANTS[variant](), total_len=T)
    check_members(spec, training)


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
def test_members_with_their_own_dropout_p_are_their_stacks_of_one(cell) -> None:
    """A stack over dropout p (the settings `stack_key` leaves out): each member drops with its own p."""
    specs = [ModelSpec(cell, I, H, L, O, reg=arm("dropout", p=p), total_len=T) for p in (0.1, 0.25, 0.5)]
    solos = []
    for seed, spec in enumerate(specs):
        torch.manual_seed(seed)
        solos.append(build_model(spec).double().train())
    assert stackable(solos)
    x = torch.randn(E, B, T, I, dtype=torch.float64)
    w = torch.randn(E, B, O, dtype=torch.float64)
    streams(solos)
    stacked = stack(solos)
    streams(solos)
    y, _, _ = run(stacked, x, w)
    for e, m in enumerate(solos):
        torch.testing.assert_close(y[e : e + 1], run(m, x[e : e + 1], w[e : e + 1])[0], **TOL)


def test_members_of_different_arms_do_not_stack() -> None:
    a = members(ModelSpec(LSTMCell, I, H, 1, O, reg=load_arm("bn"), total_len=T), 1)
    b = members(ModelSpec(LSTMCell, I, H, 1, O, reg=load_arm("ln"), total_len=T), 1)
    c = members(ModelSpec(LSTMCell, I, H, 1, O, reg=arm("dropout", drop="variational", p=0.3), total_len=T), 1)
    d = members(ModelSpec(LSTMCell, I, H, 1, O, reg=arm("dropout", drop="variational", p=0.5), total_len=T), 1)
    for pair in ([a[0], b[0]], [c[0], d[0]]):
        with pytest.raises(ValueError, match="share one ModelSpec"):
            stack(pair)


def test_write_gives_each_member_its_state_back() -> None:
    solos = members(ModelSpec(GRUCell, I, H, 1, O, reg=load_arm("bn"), total_len=T))
    stacked = stack(solos)
    with torch.no_grad():
        for p in stacked.parameters():
            p.add_(1.0)
    stacked(torch.randn(E, B, T, I, dtype=torch.float64))  # moves the BN statistics
    write(stacked, solos)
    again = stack(solos)
    for (name, a), b in zip(stacked.state_dict().items(), again.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("variant", ["bn", "bn.input", "bn.output", "both"])
def test_precise_bn_of_a_stack_is_each_members_own(variant: str) -> None:
    """Population statistics re-estimated for three members at once equal each one's alone, and their definition:
    the mean over the batches of each batch's mean and unbiased variance (checked on per-step BN of W_ih·x)."""
    spec = ModelSpec(LSTMCell, I, H, 1, O, reg=VARIANTS[variant](), total_len=T)
    solos, alone = members(spec), members(spec)
    batches = [[torch.randn(1, B, T, I, dtype=torch.float64) for _ in range(4)] for _ in range(E)]
    estimate_population(solos, batches)
    for m, bs in zip(alone, batches):
        estimate_population([m], [bs])
    for a, b in zip(solos, alone):
        for name, buf in a.named_buffers():
            torch.testing.assert_close(buf, b.get_buffer(name), **TOL, msg=name)
    if variant == "bn":
        m, bs = solos[0], batches[0]
        w_ih = m.layers[0].rnn.weight_ih_l0.detach()[0]
        pre = [b[0] @ w_ih.T for b in bs]  # (B, T, gH) per batch
        mean = torch.stack([p.mean(0) for p in pre]).mean(0)  # (T, gH)
        var = torch.stack([p.var(0) for p in pre]).mean(0)
        torch.testing.assert_close(m.layers[0].norm_x.running_mean[:, 0], mean, **TOL)
        torch.testing.assert_close(m.layers[0].norm_x.running_var[:, 0], var, **TOL)

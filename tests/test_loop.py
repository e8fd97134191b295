"""Members of a stack train exactly as their runs alone (benchmark/training/loop.py), in float64.

Six members (3 seeds x 2 learning rates) of every cell x arm train for 50 steps as one stack (8 passes
over the data, 10 logged rows, 5 evaluations);
each one's history (training losses, gradient norms, validation scores), stopping and final
metrics must equal its run alone (the same loop with one member, on its own model), to 1e-4 relative.
"""

from __future__ import annotations

import math

import pytest
import torch

import benchmark as bm  # noqa: F401  (pytest-benchmark owns the name `benchmark`)
from benchmark.arms import load_arm, options
from benchmark.core.config import Accel, Optimizer, Precision, TrainConfig
from benchmark.models import ModelSpec, build_model, masks
from benchmark.models.cells import GRUCell, LSTMCell, RNNCell
from benchmark.models.stack import stack
from benchmark.tasks import get_task
from benchmark.training import loop as loop_mod
from benchmark.training.evaluate import final_metrics as final_metrics_of
from benchmark.training.loop import build_members, train, train_members
from benchmark.training.train import TrainResult

CPU = torch.device("cpu")
SEEDS, LRS = (0, 1, 2), (0.01, 0.03)
REL = 1e-4
# The parity tests over every cell x arm: as many logged rows and evaluations as config()'s 100 steps, in half
# the steps (the tests that need members to stop at different evaluations keep the 100).
SHORT = dict(steps=50, eval_interval=10, log_interval=5)


def tiny_task(name: str = "adding", **kw):
    base = dict(seq_len=8, n_train=96, n_val=32, n_test=32)
    return get_task(name, **{**base, **kw})


def member_model(task, cell, arm, seed: int, device: torch.device = CPU):
    spec = ModelSpec(
        cell, task.input_size, 8, 1, task.output_size, per_step=task.per_step, reg=arm, total_len=task.total_len
    )
    torch.manual_seed(seed)
    m = build_model(spec).to(device)
    m.mask_gens = [masks.generator(seed, device)]
    return m


def final_metrics(model, task, device):
    return final_metrics_of([model], [task], device)[0]


def train_stack(models, tasks, cfgs, device, seeds, precise_bn_batches=0, accel=Accel.none) -> list[TrainResult]:
    """The members trained together, as the job's executor trains them."""
    results = [TrainResult() for _ in models]
    members = build_members(models, tasks, cfgs, device, seeds, Precision.fp32, results, precise_bn_batches, accel)
    train_members(members, progress=False, graph=accel is Accel.graph)
    return results


def config(lr: float, **kw) -> TrainConfig:
    return TrainConfig(
        **{**dict(steps=100, batch_size=16, lr=lr, eval_interval=20, log_interval=10, progress=False), **kw}
    )


def solo_and_cohort(task, cell, arm, lrs=LRS, seeds=SEEDS, device=CPU, accels=(Accel.none,), **cfg_kw):
    """The runs alone (trained eagerly, one by one) and, per entry of `accels`, the same runs as one stack."""
    grid = [(s, lr) for lr in lrs for s in seeds]
    n_precise = arm.precise_batches()
    solos = []
    for s, lr in grid:
        m = member_model(task, cell, arm, s, device)
        res = train(m, task, config(lr, **cfg_kw), device, s, progress=False, precise_bn_batches=n_precise)
        solos.append((res, m))
    cohorts = []
    for accel in accels:
        models = [member_model(task, cell, arm, s, device) for s, _ in grid]
        results = train_stack(
            models,
            [task] * len(models),
            [config(lr, **cfg_kw) for _, lr in grid],
            device,
            [s for s, _ in grid],
            precise_bn_batches=n_precise,
            accel=accel,
        )
        cohorts.append(list(zip(results, models)))
    return (solos, *cohorts)


def close(a, b, what: str) -> None:
    if a is None or b is None or isinstance(a, (bool, str)):
        assert a == b, what
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), what
    else:
        assert a == pytest.approx(b, rel=REL, abs=1e-9), f"{what}: stacked {b} vs alone {a}"


def assert_same_run(solo, member, task, device: torch.device = CPU) -> None:
    (rs, ms), (rc, mc) = solo, member
    assert (rc.status, rc.steps_done, rc.diverged_at_step) == (rs.status, rs.steps_done, rs.diverged_at_step)
    assert (rc.steps_to_target, rc.stopped_early) == (rs.steps_to_target, rs.stopped_early)
    assert len(rc.history) == len(rs.history)
    for hs, hc in zip(rs.history, rc.history):
        for k in ("step", "train_loss", "grad_norm", "lr", "val_loss", "val_score", "grad_norm_hh"):
            close(hs.get(k), hc.get(k), f"history step {hs['step']} {k}")
    alone, stacked = final_metrics(ms, task, device), final_metrics(mc, task, device)
    for k, v in alone.items():
        close(v, stacked[k], k)


@pytest.mark.parametrize("cell", [RNNCell, LSTMCell, GRUCell], ids=lambda c: c.name)
@pytest.mark.parametrize("option", options())
def test_every_member_of_a_six_member_stack_is_its_run_alone(option, cell, float64):
    task = tiny_task()
    solos, members = solo_and_cohort(task, cell, load_arm(option), **SHORT)
    for solo, member in zip(solos, members):
        assert_same_run(solo, member, task)


CUDA = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason=f"no CUDA device (torch {torch.__version__}, built for CUDA {torch.version.cuda})",
)


@pytest.mark.gpu
@CUDA
@pytest.mark.parametrize("cell", [RNNCell, LSTMCell, GRUCell], ids=lambda c: c.name)
@pytest.mark.parametrize("option", options())
def test_on_cuda_every_member_eager_and_graphed_is_its_solo_run(option, cell, float64):
    """On a GPU: the stack's eager step and its CUDA-graph replay (accel=graph, the members' random streams
    registered with the graph) each give every member its run alone (eager), 4 members x 60 steps."""
    task, cuda = tiny_task(), torch.device("cuda")
    solos, eager, graphed = solo_and_cohort(
        task, cell, load_arm(option), lrs=LRS, seeds=(0, 1), device=cuda, accels=(Accel.none, Accel.graph), steps=60
    )
    assert graphed[0][0].capture_s > 0
    for solo, a, b in zip(solos, eager, graphed):
        assert_same_run(solo, a, task, cuda)
        assert_same_run(solo, b, task, cuda)


@pytest.mark.gpu
@CUDA
def test_on_cuda_a_graphed_cohort_recaptures_when_members_stop_at_their_targets(float64):
    """accel=graph: each stack (members leave at their targets) is captured anew; every member is its run alone."""
    task, cuda = tiny_task(), torch.device("cuda")
    task.target_score = 0.5
    solos, graphed = solo_and_cohort(
        task,
        GRUCell,
        load_arm("both"),
        lrs=(0.003, 0.03),
        seeds=(0, 1),
        device=cuda,
        accels=(Accel.graph,),
        stop_at_target=True,
        eval_interval=10,
    )
    assert len({r.steps_done for r, _ in graphed}) > 1, "every member stopped at one step: the test would not tell"
    for solo, member in zip(solos, graphed):
        assert_same_run(solo, member, task, cuda)
        assert member[0].steps_to_target == solo[0].steps_to_target


def test_a_diverging_member_stops_alone_and_the_others_are_their_runs_alone(float64):
    task = tiny_task()
    solos, members = solo_and_cohort(
        task, RNNCell, load_arm("dropout"), lrs=(0.01, 1e30), seeds=(0, 1), max_norm=None, optimizer=Optimizer.sgd
    )
    statuses = [r.status for r, _ in members]
    assert "diverged" in statuses and "ok" in statuses, statuses
    for solo, member in zip(solos, members):
        assert_same_run(solo, member, task)


@pytest.mark.parametrize("arm, seeds", [("dropout", (1,)), ("bn", (0, 1))])
def test_with_stop_at_target_each_member_stops_at_its_own_step(arm, seeds, float64, monkeypatch):
    """The last member left trains alone through its own model (torch's fused GRU where the arm allows it, dropout;
    the fused BN kernel otherwise): it is its run alone."""
    calls = []
    step_alone = loop_mod.step_alone
    monkeypatch.setattr(loop_mod, "step_alone", lambda *a: calls.append(1) or step_alone(*a))
    task = tiny_task()
    task.target_score = 0.5  # reached at different evaluations by different members
    solos, members = solo_and_cohort(
        task, GRUCell, load_arm(arm), lrs=(0.003, 0.03), seeds=seeds, stop_at_target=True, eval_interval=10
    )
    stops = sorted(r.steps_done for r, _ in members)
    assert stops[-2] < stops[-1], f"no member trained last on its own {stops}: the test would not tell"
    assert calls
    for solo, member in zip(solos, members):
        assert_same_run(solo, member, task)
        assert member[0].steps_to_target == solo[0].steps_to_target


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("max_norm", [None, 1.0])
def test_step_stats_of_members_together_are_each_ones_own(dtype, max_norm):
    """Clipping and norms of E runs in one pass (`stack_step_stats`) equal `step_stats` run by run: the
    clipped gradients, the loss, the loss term and the global norm bit for bit, the group norms to rounding."""
    from benchmark.training.train import stack_step_stats, step_stats

    task = tiny_task()

    def models():
        out = []
        for e, scale in enumerate((1e-3, 1.0, 30.0)):  # one run inside the norm, two clipped
            m = member_model(task, LSTMCell, load_arm("bn"), e).to(dtype)
            gen = torch.Generator().manual_seed(e)
            for p in m.parameters():
                p.grad = torch.randn(p.shape, generator=gen, dtype=dtype) * scale
            out.append(m)
        return out

    losses = torch.tensor([0.5, 2.0, 1e39 if dtype == torch.float64 else 3.0], dtype=dtype)  # 1e39: inf as float32
    penalties = torch.tensor([0.0, 0.25, 0.125], dtype=dtype)
    alone, together = models(), models()
    expected = [
        step_stats(loss, pen, list(m.parameters()), m.param_groups(), max_norm)
        for loss, pen, m in zip(losses, penalties, alone)
    ]
    got = stack_step_stats(losses, penalties, [(list(m.parameters()), m.param_groups()) for m in together], max_norm)
    for a, b in zip(expected, got):
        assert (b.loss, b.penalty, b.grad_norm, b.clipped, b.finite) == (
            a.loss,
            a.penalty,
            a.grad_norm,
            a.clipped,
            a.finite,
        )
        assert b.groups == pytest.approx(a.groups, rel=1e-6)
    assert [s.clipped for s in got] == ([False] * 3 if max_norm is None else [False, True, True])
    for ma, mb in zip(alone, together):
        for pa, pb in zip(ma.parameters(), mb.parameters()):
            assert torch.equal(pa.grad, pb.grad)


@pytest.mark.parametrize("option", ["dropout", "both"])
@pytest.mark.parametrize("cell", [RNNCell, LSTMCell, GRUCell], ids=lambda c: c.name)
def test_members_with_their_own_dropout_p_are_their_runs_alone(option, cell, float64):
    """Dropout p as a cohort axis: output dropout keeps one p per member, so four members (2 seeds x p 0.1,
    0.5) train as one stack and each is its run alone at its own p."""
    task = tiny_task()
    grid = [(s, p) for p in (0.1, 0.5) for s in (0, 1)]
    arms = {p: load_arm(option, f"dropout.p={p}") for _, p in grid}
    n_precise = arms[0.1].precise_batches()
    solos = []
    for s, p in grid:
        m = member_model(task, cell, arms[p], s)
        solos.append((train(m, task, config(0.01, **SHORT), CPU, s, progress=False, precise_bn_batches=n_precise), m))
    models = [member_model(task, cell, arms[p], s) for s, p in grid]
    assert stack(models).drops[-1].p == (0.1, 0.1, 0.5, 0.5)
    results = train_stack(models, [task] * 4, [config(0.01, **SHORT)] * 4, CPU, [s for s, _ in grid], n_precise)
    for solo, member in zip(solos, zip(results, models)):
        assert_same_run(solo, member, task)


def test_members_that_differ_in_a_setting_the_stack_shares_are_refused():
    task = tiny_task()
    a, b = (member_model(task, LSTMCell, load_arm("bn", f"bn.eps={eps}"), 0) for eps in (1e-5, 1e-3))
    with pytest.raises(ValueError, match="share one ModelSpec"):
        stack([a, b])
    c, d = (
        member_model(task, LSTMCell, load_arm("dropout", "dropout.placement=variational", f"dropout.p={p}"), 0)
        for p in (0.1, 0.5)
    )
    with pytest.raises(ValueError, match="share one ModelSpec"):  # p inside the recurrence: one per stack
        stack([c, d])

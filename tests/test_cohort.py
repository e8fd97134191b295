"""A cohort (benchmark/models/cohort.py) is its members' solo models, run as one: float64 parity.

Three solo models of one spec (different seeds) run first, each on its own batch, and every mask
they draw is recorded (at `benchmark.models.masks.bernoulli`; torch's dropout is routed through it
for the test, same law). The cohort stacked from them then replays those masks member by member
(the replay fails when the cohort asks for a mask the solo did not draw, or in another order) and
must give each member's outputs, input and parameter gradients, and BN running statistics of its
solo model, to 1e-10 relative.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import benchmark as bm  # noqa: F401  (pytest-benchmark owns the name `benchmark`)
from benchmark.arms import Arm, load_arm, options
from benchmark.models import ModelSpec, build_model
from benchmark.models import masks as masks_mod
from benchmark.models.cells import GRUCell, LSTMCell, RNNCell
from benchmark.models.cohort import CohortModel

CELLS = [RNNCell, LSTMCell, GRUCell]
E, B, I, H, L, O, T = 3, 5, 3, 4, 2, 2, 6
TOL = dict(rtol=1e-10, atol=1e-12)


@pytest.fixture
def recorder(monkeypatch):
    """Every mask drawn, in order, as (shape, keep, scale, mask); torch's dropout drawn through the helper."""
    seen: list = []
    original = masks_mod.bernoulli

    def record(like, shape, keep, scale):
        m = original(like, shape, keep, scale)
        seen.append((tuple(shape), keep, scale, m))
        return m

    def dropout(x, p=0.5, training=True, inplace=False):
        return x * masks_mod.bernoulli(x, x.shape, 1.0 - p, True) if training and p > 0 else x

    monkeypatch.setattr(masks_mod, "bernoulli", record)
    monkeypatch.setattr(F, "dropout", dropout)
    return seen


def replay(monkeypatch, queues: list[list]) -> None:
    """masks.bernoulli for the cohort: request (E, *shape) -> the members' next recorded masks, stacked."""

    def draw(like, shape, keep, scale):
        assert shape[0] == len(queues)
        out = []
        for q in queues:
            assert q, f"the cohort drew a mask {tuple(shape)} the solo did not"
            s, k, sc, m = q.pop(0)
            assert (s, k, sc) == (tuple(shape[1:]), keep, scale), "the cohort draws masks in another order"
            out.append(m)
        return torch.stack(out)

    monkeypatch.setattr(masks_mod, "bernoulli", draw)


def solos_for(cell, arm: Arm, per_step: bool = True) -> list:
    spec = ModelSpec(cell, I, H, L, O, per_step=per_step, reg=arm, total_len=T)
    models = []
    for seed in range(E):
        torch.manual_seed(seed)
        m = build_model(spec).double()
        with torch.no_grad():  # norm gains, betas and statistics off their init, so all of them are tested
            for n, p in m.named_parameters():
                if "norm" in n:
                    p.add_(torch.rand_like(p) - 0.3)
            for n, b in m.named_buffers():
                if n.endswith("running_mean"):
                    b.add_(torch.randn_like(b) * 0.1)
                elif n.endswith("running_var"):
                    b.mul_(torch.rand_like(b) + 0.5)
        models.append(m)
    return models


def run_both(cell, arm: Arm, mode: str, recorder, monkeypatch, per_step: bool = True):
    solos = solos_for(cell, arm, per_step)
    cohort = CohortModel(solos)
    for m in [*solos, cohort]:
        m.train(mode == "train")
    x = torch.randn(E, B, T, I, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    xs = [x[e].clone().requires_grad_() for e in range(E)]
    queues, ys = [], []
    for m, xe in zip(solos, xs):
        recorder.clear()
        ys.append(m(xe))
        queues.append(list(recorder))
    replay(monkeypatch, queues)
    xc = x.clone().requires_grad_()
    y = cohort(xc)
    assert all(not q for q in queues), "the cohort drew fewer masks than the solos"
    w = torch.randn(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    (y * w).sum().backward()
    for e, ye in enumerate(ys):
        (ye * w[e]).sum().backward()
    return solos, cohort, y, ys, xc, xs


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
@pytest.mark.parametrize("option", options())
def test_each_member_equals_its_solo_model_in_float64(option, cell, mode, recorder, monkeypatch):
    solos, cohort, y, ys, xc, xs = run_both(cell, load_arm(option), mode, recorder, monkeypatch)
    assert y.shape == (E, B, T, O)
    for e, solo in enumerate(solos):
        torch.testing.assert_close(y[e], ys[e], **TOL, msg=f"member {e} output")
        torch.testing.assert_close(xc.grad[e], xs[e].grad, **TOL, msg=f"member {e} input gradient")
        grads = dict(solo.named_parameters())
        for name, p in cohort.named_parameters():
            torch.testing.assert_close(p.grad[e], grads[name].grad, **TOL, msg=f"member {e} {name}.grad")
        state = solo.state_dict()  # parameters and BN running statistics after the forward
        for name, t in cohort.state_dict().items():
            torch.testing.assert_close(t.select(cohort.member_dim(name), e), state[name], **TOL, msg=name)


@pytest.mark.parametrize("option", ["none", "dropout", "bn", "zoneout"])
def test_a_last_step_head_equals_the_solo_models(option, recorder, monkeypatch):
    solos, cohort, y, ys, *_ = run_both(LSTMCell, load_arm(option), "train", recorder, monkeypatch, per_step=False)
    assert y.shape == (E, B, O)
    torch.testing.assert_close(y, torch.stack(ys), **TOL)


@pytest.mark.parametrize("option", ["variational", "recurrent"])
def test_the_other_dropout_placements_equal_the_solo_models(option, recorder, monkeypatch):
    arm = load_arm("dropout", f"dropout.placement={option}")
    solos, cohort, y, ys, *_ = run_both(GRUCell, arm, "train", recorder, monkeypatch)
    torch.testing.assert_close(y, torch.stack(ys), **TOL)
    for name, p in cohort.named_parameters():
        for e, solo in enumerate(solos):
            torch.testing.assert_close(p.grad[e], solo.get_parameter(name).grad, **TOL)


def test_bn_statistics_are_per_member_never_across_members():
    solos = solos_for(LSTMCell, load_arm("bn"))
    cohort = CohortModel(solos).train()
    x = torch.randn(E, B, T, I, dtype=torch.float64)
    x[1] *= 100.0  # one member's batch far off the others
    cohort(x)
    alone = CohortModel(solos[:1]).train()
    alone(x[:1])
    for name, t in alone.state_dict().items():
        torch.testing.assert_close(
            t.select(alone.member_dim(name), 0), cohort.state_dict()[name].select(cohort.member_dim(name), 0)
        )


def test_trained_weights_go_back_into_the_solo_models_and_come_out_again():
    solos = solos_for(LSTMCell, load_arm("bn"))
    cohort = CohortModel(solos).train()
    x = torch.randn(E, B, T, I, dtype=torch.float64)
    opt = torch.optim.SGD(cohort.parameters(), lr=0.5)
    cohort(x).pow(2).sum().backward()
    opt.step()
    cohort.eval()
    before = [m(x[e]).detach() for e, m in enumerate(solos)]
    cohort.write_solos(solos)
    after = torch.stack([m.eval()(x[e]) for e, m in enumerate(solos)])
    assert not torch.allclose(after, torch.stack(before))  # the step changed every member
    torch.testing.assert_close(after, cohort(x), **TOL)
    fresh = CohortModel(solos_for(LSTMCell, load_arm("bn"))).eval()
    fresh.read_solos(solos)
    torch.testing.assert_close(fresh(x), cohort(x), **TOL)


@pytest.mark.parametrize("placement", ["input", "output"])
def test_a_piece_without_a_cohort_form_is_refused_naming_the_arm(placement):
    solos = solos_for(LSTMCell, load_arm("bn", f"bn.placement={placement}"))
    with pytest.raises(
        NotImplementedError, match=r"reg=bn: its (norm_x|output_norm) \((SeqBatchNorm|OutputBatchNorm)\)"
    ):
        CohortModel(solos)


def test_members_of_different_specs_are_refused():
    a, b = solos_for(LSTMCell, load_arm("none"))[:1], solos_for(GRUCell, load_arm("none"))[:1]
    with pytest.raises(ValueError, match="share one ModelSpec"):
        CohortModel(a + b)
    with pytest.raises(ValueError, match="expected 1 models"):
        CohortModel(a).write_solos(a + a)


def test_a_user_arms_module_without_a_cohort_form_is_refused_naming_the_arm(monkeypatch):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).parent / "plugin_example"))
    from my_plugin import NoiseArm

    solos = solos_for(LSTMCell, NoiseArm(noise={"std": 0.1}))
    with pytest.raises(NotImplementedError, match=r"reg=noise: its dropout \(GaussianNoise\) has no cohort form"):
        CohortModel(solos)

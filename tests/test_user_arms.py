"""Arms from outside the package are first-class (tests/plugin_example, docs/extending.md): a piece written
for E members stacks with no package change (`check_arm` proves it, and catches a piece that is not
member-aware); spectral normalisation of W_hh trains its seeds as one stack; an AR/TAR arm's loss term is
in the record apart from the task's loss; two settings of one arm in one sweep are two variants."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import Tensor

import benchmark as bm  # noqa: F401  (pytest-benchmark owns the name `benchmark`)
from benchmark.arms import Arm, Site
from benchmark.models.cells import GRUCell, LSTMCell
from benchmark.models.check import check_arm, check_members

from helpers import PLUGIN, PLUGIN_SEARCHPATH, ROOT, TINY, run

sys.path.insert(0, str(PLUGIN))
from my_plugin import NoiseArm, SpectralArm, TARArm  # noqa: E402


@pytest.mark.parametrize(
    "make", [SpectralArm, lambda: TARArm(tar={"alpha": 0.5, "beta": 1.0}), NoiseArm], ids=["spectral", "tar", "noise"]
)
def test_every_user_arm_passes_check_arm(make):
    check_arm(make())


class GlobalNoise(torch.nn.Module):
    """Not member-aware: noise from torch's global stream, so member e of a stack draws another's numbers."""

    def forward(self, x: Tensor) -> Tensor:
        return x + 0.1 * torch.randn_like(x) if self.training else x


class MixingNorm(torch.nn.Module):
    """Not member-aware: W_hh scaled by its norm over every member of the stack at once."""

    def forward(self, w: Tensor) -> Tensor:
        return w / w.norm()


class GlobalNoiseArm(Arm):
    def hidden_dropout(self, site: Site, features: int):
        return GlobalNoise()


class MixingArm(Arm):
    def needs_custom(self) -> list[str]:
        return ["reg=mixing (W_hh rescaled per forward)"]

    def weight_hh(self, site: Site, gates_hidden: int, hidden: int):
        return MixingNorm()


@pytest.mark.parametrize("arm", [GlobalNoiseArm("global"), MixingArm("mixing")], ids=["global-stream", "mixing"])
def test_check_arm_catches_a_piece_that_is_not_member_aware(arm):
    with pytest.raises(AssertionError, match=r"member \d vs alone"):
        check_arm(arm, cells=[LSTMCell, GRUCell], checks=[check_members])
    with pytest.raises(AssertionError, match=r"reg=\w+ cell=lstm train"):  # the full check names where it failed
        check_arm(arm, cells=[LSTMCell])


def multirun(tmp_path: Path, sweep: str, *overrides: str):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGIN), str(ROOT)])}
    args = ["--multirun", PLUGIN_SEARCHPATH, "task=sign", *TINY, f"results_dir={tmp_path}", f"sweep={sweep}"]
    r = run([sys.executable, "-m", "benchmark.run", *args, *overrides], cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return [json.loads(p.read_text()) for p in sorted((tmp_path / sweep).glob("runs/*/metrics.json"))]


def test_spectral_norm_of_w_hh_from_outside_trains_its_seeds_as_one_stack(tmp_path):
    metrics = multirun(tmp_path, "spectral", "reg=spectral", "cell=gru", "seed=0,1,2", "cohort.axes=[seed]")
    assert len(metrics) == 3 and all(m["status"] == "ok" for m in metrics)
    assert {(m["cohort_mode"], m["cohort_size"], m["impl_used"]) for m in metrics} == {("stacked", 3, "custom")}
    assert len({m["test_loss"] for m in metrics}) == 3  # three seeds, three runs


def test_a_loss_term_arm_trains_with_its_penalty_apart_and_two_settings_are_two_variants(tmp_path):
    from benchmark.analysis import report

    metrics = multirun(tmp_path, "tar", "reg=tar", "cell=gru", "reg.tar.beta=0.5,4", "seed=0,1", "cohort.axes=[seed]")
    assert len(metrics) == 4 and all(m["status"] == "ok" and m["cohort_mode"] == "stacked" for m in metrics)
    by_beta = {b: [m for m in metrics if f"tar.beta={b}" in m["reg_params"]] for b in ("0.5", "4")}
    assert all(len(ms) == 2 for ms in by_beta.values())
    for ms in by_beta.values():
        assert all(m["train_penalty_mean"] > 0 for m in ms)
    assert min(m["train_penalty_mean"] for m in by_beta["4"]) > max(m["train_penalty_mean"] for m in by_beta["0.5"])
    history = pd.read_csv(next((tmp_path / "tar").glob("runs/*/history.csv")))
    assert history["train_penalty"].notna().all() and (history["train_penalty"] > 0).all()
    assert len(multirun(tmp_path, "tar", "reg=none", "cell=gru", "seed=0,1")) == 6  # the verdicts' baseline
    out = report.build(tmp_path / "tar", tmp_path / "report")
    verdicts = pd.read_csv(out.parent / "verdicts.csv")
    assert {"tar[tar.beta=0.5]", "tar[tar.beta=4.0]"} <= set(verdicts["variant"])
    assert "AR and TAR: a loss term" in out.read_text() and "Revisiting Activation Regularization" in out.read_text()


def test_a_variant_name_carries_only_the_settings_that_differ_at_one_point():
    """Built-in names stay as they were (their sweeps vary what the name already says: p, or a setting that
    follows the length); an arm's settings that differ between runs of one name at one point enter the name."""
    from benchmark.analysis.comparisons import add_variants, family

    rows = [
        dict(task="adding", seq_len=t, cell="lstm", reg="bn", bn_placement="recurrent", reg_params=f"bn.steps={t}")
        for t in (15, 30)
    ]
    rows += [
        dict(task="adding", seq_len=15, cell="lstm", reg="dropout", dropout_placement="output", dropout_p=p,
             reg_params=f"dropout.p={p}")
        for p in (0.25, 0.5)
    ]  # fmt: skip
    rows += [
        dict(task="adding", seq_len=15, cell="lstm", reg="tar", reg_params=f"tar.alpha=0.0 tar.beta={b}")
        for b in (0.5, 4.0, 4.0)
    ]
    got = list(add_variants(pd.DataFrame(rows))["variant"])
    assert got == [
        "bn.recurrent",
        "bn.recurrent",
        "dropout.output@p=0.25",
        "dropout.output@p=0.5",
        "tar[tar.beta=0.5]",
        "tar[tar.beta=4.0]",
        "tar[tar.beta=4.0]",
    ]
    assert {family(v) for v in got} == {"bn", "dropout", "tar"}

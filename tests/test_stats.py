"""Bootstrap intervals, probability of improvement and verdict words (benchmark.stats)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import benchmark as bm  # noqa: F401
from benchmark import stats


def test_same_seed_same_interval_other_seed_other_interval():
    base = {0: 0.50, 1: 0.55, 2: 0.48, 3: 0.52, 4: 0.51}
    treat = {0: 0.53, 1: 0.54, 2: 0.55, 3: 0.50, 4: 0.58}
    a = stats.effect(treat, base, seed=7, key="lstm|bn")
    b = stats.effect(treat, base, seed=7, key="lstm|bn")
    c = stats.effect(treat, base, seed=8, key="lstm|bn")
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)
    assert a.ci_low <= a.mean_diff <= a.ci_high and a.paired and a.n_pairs == 5


def test_paired_constant_improvement_helps_and_constant_loss_hurts():
    base = pd.Series([0.4, 0.6, 0.5], index=[0, 1, 2])
    up = stats.effect(base + 0.1, base)
    assert up.verdict == stats.HELPS and up.ci_low == pytest.approx(0.1) and up.ci_high == pytest.approx(0.1)
    down = stats.effect(base - 0.1, base)
    assert down.verdict == stats.HURTS and down.mean_diff == pytest.approx(-0.1)
    # paired by seed: the seed-to-seed spread (0.4..0.6) cancels; unpaired it would swamp +0.1
    assert stats.effect((base + 0.1).set_axis([10, 11, 12]), base).verdict == stats.UNCLEAR


def test_mixed_signs_no_clear_effect_and_one_seed_too_few():
    base = {0: 0.5, 1: 0.5, 2: 0.5}
    assert stats.effect({0: 0.53, 1: 0.47, 2: 0.51}, base).verdict == stats.UNCLEAR
    assert stats.effect({0: 0.9}, {0: 0.1}).verdict == stats.TOO_FEW
    assert stats.effect({}, base).verdict == stats.NO_DATA
    assert stats.effect({0: np.nan, 1: np.nan}, base).verdict == stats.NO_DATA  # failed runs are dropped


def test_lower_is_better_orientation():
    base = {0: 0.20, 1: 0.22, 2: 0.18}
    better = {0: 0.10, 1: 0.12, 2: 0.08}  # lower MSE
    e = stats.effect(better, base, lower_better=True)
    assert e.verdict == stats.HELPS and e.mean_diff == pytest.approx(0.1) and e.prob_improvement == 1.0
    assert stats.lower_is_better("mse") and stats.lower_is_better("error") and not stats.lower_is_better("accuracy")


def test_probability_of_improvement_counts_pairs_and_ties():
    assert stats.probability_of_improvement([1, 2], [0, 3]) == 0.5
    assert stats.probability_of_improvement([1, 1], [1, 1]) == 0.5
    assert stats.probability_of_improvement([5, 6, 7], [1, 2]) == 1.0
    assert stats.probability_of_improvement([0], [1, 2]) == 0.0


def test_bootstrap_interval_covers_the_true_mean_about_95_percent():
    rng = np.random.default_rng(0)
    hits = 0
    trials = 300
    for i in range(trials):
        x = rng.normal(1.0, 1.0, size=30)
        _, lo, hi = stats.bootstrap_mean_ci(x, n_boot=1000, rng=stats.rng_for(i))
        hits += lo <= 1.0 <= hi
    assert 0.88 <= hits / trials <= 0.99  # percentile bootstrap slightly under-covers at n=30


def test_effects_table_rows_and_stable_intervals_when_rows_are_added():
    rows = [{"cell": c, "reg": r, "seed": s, "acc": 0.5 + (0.1 if r == "bn" else 0) + 0.01 * s * (c == "gru")}
            for c in ("lstm", "gru") for r in ("none", "bn", "dropout") for s in range(3)]
    df = pd.DataFrame(rows)
    t = stats.effects_table(df, value="acc", by=["cell"], treatment_col="reg", baseline="none", seed=3)
    assert len(t) == 4 and set(t["reg"]) == {"bn", "dropout"}
    assert (t.loc[t["reg"] == "bn", "verdict"] == stats.HELPS).all()
    assert {"mean_diff", "ci_low", "ci_high", "prob_improvement", "verdict", "paired"} <= set(t.columns)
    more = pd.concat([df, df[df["cell"] == "lstm"].assign(cell="rnn")])
    t2 = stats.effects_table(more, value="acc", by=["cell"], treatment_col="reg", baseline="none", seed=3)
    pd.testing.assert_frame_equal(t2[t2["cell"] != "rnn"].reset_index(drop=True), t.reset_index(drop=True))

"""Time to target as survival data (benchmark/analysis/survival.py) against a direct Kaplan-Meier
computation on synthetic censored data, and the restricted mean's interval by simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as ss

from benchmark.analysis import survival


def direct_km(times: np.ndarray, reached: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The product-limit estimator written out: S(t_j) = prod_{i<=j} (1 - d_i / n_i)."""
    out_t, out_s, s = [], [], 1.0
    for x in np.unique(times[reached]):
        n = (times >= x).sum()
        d = ((times == x) & reached).sum()
        s *= 1 - d / n
        out_t.append(x)
        out_s.append(s)
    return np.array(out_t), np.array(out_s)


def synthetic(rng: np.random.Generator, n: int, scale: float, budget: float) -> tuple[np.ndarray, np.ndarray]:
    """Exponential times to target on an evaluation grid of 100 steps, censored at the budget."""
    t = np.ceil(rng.exponential(scale, n) / 100) * 100
    return np.minimum(t, budget), t <= budget


def test_kaplan_meier_and_restricted_mean_match_the_direct_computation():
    rng = np.random.default_rng(0)
    times, reached = synthetic(rng, 25, 900.0, 1500.0)
    assert (~reached).sum() >= 3 and len(np.unique(times[reached])) < reached.sum()  # censoring and ties
    km = survival.kaplan_meier(times, reached)
    t, s = direct_km(times, reached)
    np.testing.assert_allclose(km.times, t)
    np.testing.assert_allclose(km.survival, s)
    mean, se = survival.rmst(km, 1500.0)
    grid = np.arange(0, 1500.0)  # S is right-continuous and constant between events: integrate per step
    s_at = np.array([s[t <= x][-1] if (t <= x).any() else 1.0 for x in grid])
    assert mean == pytest.approx(s_at.sum())
    assert se > 0


def test_without_censoring_the_restricted_mean_is_the_sample_mean():
    times = np.array([100.0, 300, 300, 700, 900])
    mean, _ = survival.rmst(survival.kaplan_meier(times, np.ones(5, bool)), 1000.0)
    assert mean == pytest.approx(times.mean())


def test_misses_are_censored_not_counted_as_the_budget():
    # arm A reaches the target at 200 in 5 of 10 runs and never otherwise; B at 600 in all 10 runs
    a_t, a_r = np.r_[np.full(5, 200.0), np.full(5, 1000.0)], np.r_[np.ones(5, bool), np.zeros(5, bool)]
    b_t, b_r = np.full(10, 600.0), np.ones(10, bool)
    c = survival.compare(a_t, a_r, b_t, b_r, tau=1000.0)
    assert c.reached_treat == 5 and c.rmst_treat == pytest.approx(200 + 0.5 * 800)
    assert c.rmst_base == pytest.approx(600.0) and c.mean_diff == pytest.approx(0.0)
    assert c.p_value == pytest.approx(
        ss.logrank(ss.CensoredData(uncensored=a_t[a_r], right=a_t[~a_r]), ss.CensoredData(uncensored=b_t)).pvalue
    )


def test_the_restricted_mean_difference_interval_covers_and_logrank_holds_its_size():
    rng = np.random.default_rng(3)
    big_t, big_r = synthetic(rng, 200_000, 900.0, 1500.0)
    true_rmst = np.minimum(big_t, 1500.0).mean()
    cover = reject = 0
    trials = 300
    for _ in range(trials):
        a, b = synthetic(rng, 20, 900.0, 1500.0), synthetic(rng, 20, 900.0, 1500.0)
        c = survival.compare(*a, *b, tau=1500.0)
        cover += c.ci_low <= 0.0 <= c.ci_high
        reject += c.p_value < 0.05
        mean, se = survival.rmst(survival.kaplan_meier(*a), 1500.0)
    assert cover / trials >= 0.92 and reject / trials <= 0.08
    assert abs(mean - true_rmst) < 4 * se


def test_the_kaplan_meier_figure_draws_each_arm_and_marks_the_censored_runs():
    import pandas as pd

    from benchmark.analysis import plots

    runs = pd.DataFrame(
        {
            "task": "adding",
            "seq_len": 100,
            "cell": "lstm",
            "steps": 1000,
            "variant": ["none"] * 4 + ["bn.recurrent"] * 4,
            "steps_to_target": [600, 800, None, None, 200, 300, 300, None],
        }
    )
    fig = plots.km_curves(runs)
    ax = fig.axes[0]
    steps = [line for line in ax.get_lines() if line.get_linestyle() != "None"]
    marks = [line for line in ax.get_lines() if line.get_marker() == "+"]
    assert len(steps) == 2 and [len(m.get_xdata()) for m in marks] == [2, 1]  # none: 2 censored, bn: 1
    assert plots.to_data_uri(fig).startswith("data:image/png;base64,")

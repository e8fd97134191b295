"""Time to target as survival data (benchmark/analysis/survival.py) against a direct Kaplan-Meier
computation on synthetic censored data, and the restricted mean's interval by simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as ss

from benchmark.analysis import stats, survival


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
    grid = np.arange(0, 1500.0)  # S is right-continuous and constant between events: integrate per step
    s_at = np.array([s[t <= x][-1] if (t <= x).any() else 1.0 for x in grid])
    assert survival.rmst(times, reached, 1500.0)[0] == pytest.approx(s_at.sum())
    early = times.copy()  # censoring before tau too (a run that stopped early): still the KM area
    early[:4], reached_e = early[:4] / 2, reached.copy()
    reached_e[:4] = False
    t, s = direct_km(early, reached_e)
    s_at = np.array([s[t <= x][-1] if (t <= x).any() else 1.0 for x in grid])
    assert survival.rmst(early, reached_e, 1500.0)[0] == pytest.approx(s_at.sum())
    loo = survival.rmst(times, reached, 1500.0, 1.0 - np.eye(times.size))  # leave-one-out, in one call
    assert loo[3] == pytest.approx(survival.rmst(np.delete(times, 3), np.delete(reached, 3), 1500.0)[0])


def test_without_censoring_the_restricted_mean_is_the_sample_mean_and_its_variance_the_t_tests():
    times = np.array([100.0, 300, 300, 700, 900])
    a = survival.arm_time(times, np.ones(5, bool), 1000.0)
    assert a.value == pytest.approx(times.mean())
    assert a.var_log == pytest.approx(times.var(ddof=1) / 5 / times.mean() ** 2) and a.df == 4


def test_misses_are_censored_not_counted_as_the_budget():
    # arm A reaches the target at 200 in 5 of 10 runs and never otherwise; B at 600 in all 10 runs
    a_t, a_r = np.r_[np.full(5, 200.0), np.full(5, 1000.0)], np.r_[np.ones(5, bool), np.zeros(5, bool)]
    b_t, b_r = np.full(10, 600.0), np.ones(10, bool)
    a, b = survival.arm_time(a_t, a_r, 1000.0), survival.arm_time(b_t, b_r, 1000.0)
    assert a.reached == 5 and a.value == pytest.approx(200 + 0.5 * 800) and b.value == pytest.approx(600.0)
    est, *_, p = stats.log_ratio([a], [b])
    assert est == pytest.approx(0.0) and p == pytest.approx(1.0)


def test_the_permutation_log_rank_uses_scipys_statistic():
    rng = np.random.default_rng(4)
    a, b = synthetic(rng, 10, 900.0, 1500.0), synthetic(rng, 10, 400.0, 1500.0)
    ref = ss.logrank(
        ss.CensoredData(uncensored=a[0][a[1]], right=a[0][~a[1]]),
        ss.CensoredData(uncensored=b[0][b[1]], right=b[0][~b[1]]),
    )
    p = survival.logrank_p(*a, *b, np.random.default_rng(0), n_resamples=20_000)
    assert p == pytest.approx(ref.pvalue, abs=0.03)  # away from the ties' trouble, the asymptotic p is close


def lognormal(rng: np.random.Generator, n: int, scale: float, budget: float, grid: float, sigma: float = 0.5):
    """Steps to target on an evaluation grid (ties), censored at the budget: (times, reached)."""
    t = np.ceil(scale * np.exp(rng.normal(0.0, sigma, n)) / grid) * grid
    return np.minimum(t, budget), t <= budget


SCENARIOS = {  # name: draw(rng, n, speed-up) -> (times, reached); with 10 runs per arm
    "lognormal, 3 % misses, 100-step grid": lambda rng, n, c: lognormal(rng, n, 600 / c, 1500.0, 100.0),
    "lognormal, 3 % misses, 25-step grid": lambda rng, n, c: lognormal(rng, n, 600 / c, 1500.0, 25.0),
    "exponential, 19 % misses, 100-step grid": lambda rng, n, c: synthetic(rng, n, 900.0 / c, 1500.0),
}


def true_log_ratio(draw, c: float) -> float:
    rng = np.random.default_rng(99)
    return float(np.log(draw(rng, 400_000, 1.0)[0].mean() / draw(rng, 400_000, c)[0].mean()))


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_restricted_mean_ratio_interval_covers_95_percent_with_ties_at_n_10(name):
    """With 10 runs per arm and steps to target on an evaluation grid (ties), the interval of the log
    RMST ratio covers the truth 0.95 +- 0.02, with no effect and with a 1.5x speed-up. (Misses count at
    tau = the budget, so the true RMST is the mean of min(T, budget).)"""
    draw, trials = SCENARIOS[name], 1500
    for c in (1.0, 1.5):
        truth, rng, cover = true_log_ratio(draw, c), np.random.default_rng([7, int(10 * c)]), 0
        for _ in range(trials):
            t, b = draw(rng, 10, c), draw(rng, 10, 1.0)
            _, _, _, lo, hi, _ = stats.log_ratio([survival.arm_time(*t, 1500.0)], [survival.arm_time(*b, 1500.0)])
            cover += lo <= truth <= hi
        assert 0.93 <= cover / trials <= 0.97, (name, c, cover / trials)


@pytest.mark.parametrize("grid", [100.0, 25.0])
def test_the_permutation_log_rank_holds_its_size_with_ties_at_n_10(grid):
    """No effect, 10 runs per arm, times on a 100-step grid (19 % censored at the budget) or a 25-step one:
    the permutation log-rank rejects at most 5.5 % at a nominal 5 % (scipy's asymptotic one: 6.4 %).
    99 resamples keep it fast; a permutation p is valid at any number of them (size 4 % here)."""
    rng, trials, rejected = np.random.default_rng(int(grid)), 1500, 0
    for _ in range(trials):
        if grid == 100.0:
            a, b = synthetic(rng, 10, 900.0, 1500.0), synthetic(rng, 10, 900.0, 1500.0)
        else:
            a, b = lognormal(rng, 10, 600.0, 1500.0, grid), lognormal(rng, 10, 600.0, 1500.0, grid)
        rejected += survival.logrank_p(*a, *b, rng, n_resamples=99) < 0.05
    assert rejected / trials <= 0.055, rejected / trials


def test_the_ratio_tests_minimum_detectable_effect_has_80_percent_power():
    """MDE on the log scale (noncentral t, Welch-Satterthwaite df) at the true standard error; log-normal
    times to target (sigma 0.5), 10 runs per arm: simulated power 0.80 +- 0.03."""
    rng, n = np.random.default_rng(5), 10
    big = lognormal(rng, 400_000, 600.0, 1e9, 1.0)[0]
    se = np.sqrt(2 * big.var() / big.mean() ** 2 / n)
    ratio = np.exp(stats.mde(se, 2 * (n - 1), 0.05))
    draw = lambda rng, n, c: lognormal(rng, n, 600.0 / c, 1e9, 1.0)  # noqa: E731
    assert true_log_ratio(draw, ratio) == pytest.approx(np.log(ratio), abs=0.01)  # no censoring: scale = ratio
    hits = 0
    for _ in range(2000):
        t, b = draw(rng, n, ratio), draw(rng, n, 1.0)
        hits += stats.log_ratio([survival.arm_time(*t, 1e9)], [survival.arm_time(*b, 1e9)])[-1] < 0.05
    assert 0.77 <= hits / 2000 <= 0.83, (ratio, hits / 2000)


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

"""Intervals that cover what they claim, p-values, the multiplicity correction and the words
(benchmark.analysis.stats), checked by seeded simulation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as ss

import benchmark as bm  # noqa: F401
from benchmark.analysis import stats

LEVEL = 0.95
REPS = 4000  # simulated experiments per case: the coverage estimate's standard error is ~0.0035


def draws(kind: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """(REPS, n) per-seed differences and their true mean."""
    if kind == "normal":
        return rng.normal(0.3, 1.0, (REPS, n)), 0.3
    if kind == "heavy":  # Student t with 3 degrees of freedom: infinite kurtosis
        return 0.3 + rng.standard_t(3, (REPS, n)), 0.3
    if kind == "skewed":  # gamma, shape 8: skewness 0.71
        return rng.gamma(8.0, 1.0, (REPS, n)), 8.0
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["normal", "heavy", "skewed"])
@pytest.mark.parametrize("n", [3, 5, 10])
def test_t_interval_covers_at_least_93_percent_of_a_nominal_95(kind, n):
    rng = np.random.default_rng([n, len(kind)])
    x, mu = draws(kind, n, rng)
    hits = sum(lo <= mu <= hi for lo, hi in (stats.t_interval(row, LEVEL) for row in x))
    assert hits / REPS >= 0.93, (kind, n, hits / REPS)


def test_bca_limits_are_what_the_docs_say():
    """BCa (`--ci bca`) under-covers badly with few seeds and is near nominal from ~30 (docs/statistics.md)."""
    rng = np.random.default_rng(11)
    cover = {}
    for n in (3, 30):
        x, mu = draws("normal", n, rng)
        x = x[:1000]
        r = ss.bootstrap(
            (x,), np.mean, axis=-1, method="BCa", n_resamples=999, rng=rng, vectorized=True, batch=50
        )  # (50, 1000, n) per batch: a few MB, not the 240 MB of all resamples at once
        lo, hi = r.confidence_interval
        cover[n] = float(np.mean((lo <= mu) & (mu <= hi)))
    assert cover[3] < 0.85 and cover[30] >= 0.92, cover


def test_compare_uses_the_paired_t_interval_and_test():
    base = {s: 0.5 + 0.1 * s for s in range(6)}
    treat = {s: base[s] + d for s, d in enumerate([0.05, 0.02, 0.07, 0.01, 0.04, 0.03])}
    c = stats.compare(treat, base)
    d = np.array([0.05, 0.02, 0.07, 0.01, 0.04, 0.03])
    assert c.paired and c.n == 6 and c.mean_diff == pytest.approx(d.mean())
    assert (c.ci_low, c.ci_high) == pytest.approx(tuple(ss.ttest_1samp(d, 0).confidence_interval(LEVEL)))
    assert c.p_value == pytest.approx(ss.ttest_1samp(d, 0).pvalue)
    # paired by seed: the seed-to-seed spread cancels; unpaired (other seeds) Welch sees it
    u = stats.compare(pd.Series(treat).set_axis(range(10, 16)), base)
    assert not u.paired and u.p_value > 0.5 and u.ci_low < 0 < u.ci_high


def test_signflip_is_exact_and_cannot_reject_below_six_seeds():
    rng = stats.rng_for(0)
    assert stats.paired_p(np.array([0.1, 0.2, 0.3, 0.4, 0.5]), stats.Test.signflip, rng) == pytest.approx(2 / 32)
    assert stats.paired_p(np.arange(1.0, 7.0), stats.Test.signflip, rng) == pytest.approx(2 / 64)


def test_degenerate_differences():
    same = stats.compare({0: 0.5, 1: 0.6, 2: 0.7}, {0: 0.5, 1: 0.6, 2: 0.7})
    assert same.p_value == 1.0 and same.mean_diff == 0 and (same.ci_low, same.ci_high) == (0, 0)
    shift = stats.compare({0: 0.6, 1: 0.7, 2: 0.8}, {0: 0.5, 1: 0.6, 2: 0.7})
    assert shift.p_value == pytest.approx(2 ** (1 - 3)) and shift.ci_low == pytest.approx(0.1)  # exact sign-flip p
    assert math.isnan(stats.compare({0: 0.9}, {0: 0.1}).p_value)  # one seed: nothing to test
    assert stats.compare({}, {0: 0.5}).n == 0


def test_holm_and_bh_match_their_definitions():
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan])
    holm = stats.adjust(p, stats.Adjust.holm)
    assert holm[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and math.isnan(holm[4])
    bh = stats.adjust(p, stats.Adjust.bh)
    assert bh[:4] == pytest.approx(ss.false_discovery_control(p[:4]))


def test_words_need_seeds_and_an_adjusted_rejection():
    assert stats.verdict(0.1, 0.001, 4, min_seeds=5) == stats.TOO_FEW
    assert stats.verdict(0.1, 0.001, 5, min_seeds=5) == stats.HELPS
    assert stats.verdict(-0.1, 0.001, 5, min_seeds=5) == stats.HURTS
    assert stats.verdict(0.1, 0.06, 10) == stats.UNCLEAR
    assert stats.verdict(math.nan, math.nan, 0) == stats.NO_DATA
    t = pd.DataFrame({"mean_diff": [0.1, 0.1, 0.1], "p_value": [0.01, 0.02, 0.001], "n": [6, 6, 2]})
    w = stats.add_words(t, adjust_method=stats.Adjust.holm, min_seeds=5, alpha=0.05)
    assert list(w["p_adjusted"][:2]) == pytest.approx([0.02, 0.02]) and math.isnan(w["p_adjusted"][2])
    assert list(w["verdict"]) == [stats.HELPS, stats.HELPS, stats.TOO_FEW]  # the 2-seed row is not in the family


def test_probability_of_improvement_counts_pairs_and_ties():
    assert stats.probability_of_improvement([1, 2], [0, 3]) == 0.5
    assert stats.probability_of_improvement([1, 1], [1, 1]) == 0.5
    assert stats.probability_of_improvement([5, 6, 7], [1, 2]) == 1.0


def test_stratified_aggregates_are_seedable_and_right():
    rng = np.random.default_rng(0)
    treat = [rng.normal(0.7, 0.05, 6) for _ in range(4)]
    base = [rng.normal(0.5, 0.05, 6) for _ in range(4)]
    a = stats.stratified(treat, base, seed=3, key="lstm|bn")
    assert a == stats.stratified(treat, base, seed=3, key="lstm|bn")
    assert a != stats.stratified(treat, base, seed=4, key="lstm|bn")
    assert a["iqm_variant"] == pytest.approx(ss.trim_mean(np.concatenate(treat), 0.25))
    assert a["prob_improvement"] == 1.0 and a["iqm_diff_low"] > 0.1 and a["poi_low"] > 0.5


def test_a_stratum_of_one_run_gives_point_estimates_and_no_interval():
    """One failed seed of a pair leaves a task with a single run on one side: the bootstrap cannot resample
    its spread, so the interval is NaN (scipy refuses such a stratum) and the estimates stay."""
    treat = [np.array([0.7, 0.72]), np.array([0.6])]
    base = [np.array([0.5, 0.52]), np.array([0.4, 0.41])]
    a = stats.stratified(treat, base, seed=0)
    iqm = lambda parts: ss.trim_mean(np.concatenate(parts), 0.25)  # noqa: E731
    assert a["iqm_diff"] == pytest.approx(iqm(treat) - iqm(base)) and a["prob_improvement"] == 1.0
    assert all(np.isnan(a[k]) for k in ("iqm_diff_low", "iqm_diff_high", "poi_low", "poi_high"))


def test_constant_differences_get_the_exact_signflip_p_and_the_test_says_when_it_cannot_reject():
    rng = stats.rng_for(0)
    for n in (3, 5, 8):
        d = np.full(n, 0.2)
        exact = stats.paired_p(d + 1e-12 * np.arange(n), stats.Test.signflip, rng)  # not constant: enumerated
        assert stats.paired_p(d, stats.Test.signflip, rng) == pytest.approx(exact) == pytest.approx(2.0 ** (1 - n))
    assert not stats.can_reject(5, stats.Test.signflip, 0.05) and stats.can_reject(6, stats.Test.signflip, 0.05)
    t = pd.DataFrame({"mean_diff": [0.2, 0.2], "p_value": [2**-4, 2**-9], "n": [5, 10]})
    w = stats.add_words(t, adjust_method=stats.Adjust.holm, min_seeds=5, alpha=0.05, test=stats.Test.signflip)
    assert list(w["verdict"]) == [stats.TOO_FEW, stats.HELPS]  # n=5 can never reject: no word, not "inconclusive"


def test_tost_reads_no_effect_only_within_the_margin_and_is_calibrated():
    rng = np.random.default_rng(1)
    n, margin, trials = 10, 0.5, 2000
    d = rng.normal(margin, 1.0, (trials, n))  # true difference exactly at the margin: equivalence is false
    se = d.std(axis=1, ddof=1) / np.sqrt(n)
    p = np.array([stats.tost_p(m, s, n - 1, margin) for m, s in zip(d.mean(axis=1), se)])
    assert (p < 0.05).mean() <= 0.055  # TOST's size is at most alpha at the boundary
    assert stats.tost_p(0.0, 0.01, 9, 0.1) < 0.001 and stats.tost_p(0.0, 0.2, 9, 0.1) > 0.3
    assert math.isnan(stats.tost_p(0.0, 0.1, 9, math.nan))
    assert stats.verdict(0.01, 0.5, 10, p_equivalent=0.01) == stats.NO_EFFECT
    assert stats.verdict(0.01, 0.5, 10, p_equivalent=0.2) == stats.UNCLEAR


@pytest.mark.parametrize(("n", "m"), [(10, 1), (10, 72), (5, 8), (20, 8)])
def test_the_exact_minimum_detectable_effect_has_80_percent_power_by_simulation(n, m):
    """The MDE of the paired t-test at alpha / m (Holm's first step over m tests) has 80 % +- 3 % power;
    at n = 10 and m = 72 it is 1.96 sd, where (t_{1-a/2} + t_{0.8}) * se gives 1.87 sd (75 % power)."""
    rng = np.random.default_rng([n, m])
    alpha, sd, reps = 0.05 / m, 1.0, 6000
    delta = stats.mde(sd / np.sqrt(n), n - 1, alpha)
    d = rng.normal(delta, sd, (reps, n))
    power = (ss.ttest_1samp(d, 0, axis=1).pvalue < alpha).mean()
    assert 0.77 <= power <= 0.83, power
    assert stats.power_t(delta * np.sqrt(n) / sd, n - 1, alpha) == pytest.approx(0.8)
    if (n, m) == (10, 72):
        assert delta == pytest.approx(1.96, abs=0.005)
    assert stats.mde(0.1, math.inf, 0.05) == pytest.approx((ss.norm.ppf(0.975) + ss.norm.ppf(0.8)) * 0.1, rel=1e-3)

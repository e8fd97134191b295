"""Claim (h)'s test (benchmark/analysis/varratio.py): the log ratio of spreads (mean absolute deviation
from the median), by seeded simulation: its standard error, interval and p come from one t statistic and
agree; it holds its size with normal and heavy-tailed scores; its simulated MDE and the seeds it says a
variance ratio needs have the power they claim."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as ss

from benchmark.analysis import stats, varratio


def spread_test(t: np.ndarray, b: np.ndarray) -> tuple[float, ...]:
    """(h)'s test of two arms' scores: estimate, SE, df, interval, p."""
    return stats.log_ratio([varratio.spread(t)], [varratio.spread(b)])


def test_the_standard_error_the_interval_and_the_p_value_agree():
    """Where p < 0.05 the 95 % interval excludes 0 and only there; the standard error is the one the
    interval is built from; and it is close to the spread of the estimate over simulated experiments."""
    rng = np.random.default_rng(0)
    ests = []
    for _ in range(2000):
        t, b = rng.normal(0, 1, 20), rng.normal(0, 1.5, 20)
        est, se, df, lo, hi, p = spread_test(t, b)
        assert (p < 0.05) == (lo > 0 or hi < 0)
        assert hi - est == pytest.approx(se * float(ss.t.ppf(0.975, df)))
        ests.append((est, se))
    est, se = np.array(ests).T
    assert np.median(se) == pytest.approx(est.std(), rel=0.12)


@pytest.mark.parametrize(("kind", "n", "bound"), [("normal", 10, 0.06), ("normal", 30, 0.06), ("t5", 10, 0.07)])
def test_the_spread_ratio_holds_its_size(kind, n, bound):
    """No effect: rejects about 5 % with normal scores, and stays near it with heavy tails (Student t,
    5 df), where the F-test on variances rejects about 13 % (docs/statistics.md)."""
    rng, reps = np.random.default_rng([n, len(kind)]), 3000
    draw = (lambda m: rng.normal(0, 1, m)) if kind == "normal" else (lambda m: rng.standard_t(5, m))
    rejected = np.mean([spread_test(draw(n), draw(n))[-1] < 0.05 for _ in range(reps)])
    assert rejected <= bound, rejected


@pytest.mark.parametrize(("sizes", "alpha"), [(((10, 10),), 0.05), (((12, 10), (10, 10)), 0.05 / 8)])
def test_the_simulated_mde_has_80_percent_power(sizes, alpha):
    """At the MDE the design's test rejects 80 % +- 3 % of fresh simulated experiments (normal scores)."""
    mde = varratio.Design(sizes).mde(alpha)
    rng, reps, hits = np.random.default_rng(len(sizes)), 3000, 0
    for _ in range(reps):
        t = [rng.normal(0, 1, nt) for nt, _ in sizes]
        b = [rng.normal(0, math.exp(mde), nb) for _, nb in sizes]
        hits += stats.log_ratio([varratio.spread(x) for x in t], [varratio.spread(x) for x in b])[-1] < alpha
    assert 0.77 <= hits / reps <= 0.83, (mde, hits / reps)


def test_the_seeds_a_variance_ratio_needs_give_it_80_percent_power():
    """A variance ratio of 2 (a spread ratio of sqrt 2) at alpha = 0.05 at one point: n per arm such that
    fresh experiments with n seeds reject at least 77 % of the time, and with n - 10 below 80 %."""
    n = varratio.seeds_needed(2.0, 1, 0.05)
    assert 60 <= n <= 100
    rng = np.random.default_rng(9)
    for m, ok in ((n, lambda x: x >= 0.77), (n - 10, lambda x: x < 0.8)):
        draws = ((rng.normal(0, 1, m), rng.normal(0, math.sqrt(2), m)) for _ in range(2000))
        power = np.mean([spread_test(t, b)[-1] < 0.05 for t, b in draws])
        assert ok(power), (n, m, power)
    assert varratio.seeds_needed(2.0, 4, 0.05) < n / 3  # four points share the work

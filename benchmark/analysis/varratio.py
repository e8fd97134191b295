"""Claim (h)'s test: is one arm's score steadier across seeds? The ratio of the arms' spreads.

Spread is the mean absolute deviation from the median (Brown & Forsythe 1974: Levene's test on it is
robust to heavy tails, where the F-test on variances is not: with Student-t (5 df) scores at n = 10 the
F-test rejected 13 % of the time at a nominal 5 %, this test 5.2 %). For a location-scale family the
ratio of these spreads is the ratio of standard deviations, so a declared **variance** ratio rho is a
spread ratio sqrt(rho). The effect is log(spread base / spread treat) (positive: the treatment is
steadier), its standard error the delta method's over each arm's absolute deviations, and the interval
and p one Welch-Satterthwaite t statistic (`stats.log_ratio`), so the three agree (the previous version
paired a normal-theory interval with a Brown-Forsythe p). Over K points the log ratios are averaged.

The t statistic is not noncentral t under an effect (the log and the median's centring), so the power,
the minimum detectable effect and the seeds a declared ratio needs are simulated: under normal scores the
statistic minus log(spread ratio) does not depend on the scale, so one seeded set of null draws per
design gives the power at every ratio (`Design`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
from scipy import stats as ss
from scipy.optimize import brentq

from benchmark.analysis.stats import POWER

DRAWS = 20_000  # simulated experiments per design: the power's Monte Carlo error is about 0.003
MAX_SEEDS = 1000


@dataclass(frozen=True)
class Spread:
    """One arm at one point: mean |x - median(x)| and the delta-method variance of its log (a
    `stats.LogEstimate`)."""

    n: int
    value: float
    var_log: float
    df: float


def spread(x: np.ndarray) -> Spread:
    """The arm's spread; NaN where fewer than 3 values or no spread at all."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    z = np.abs(x - np.median(x)) if x.size else x
    if x.size < 3 or not z.mean() > 0:
        return Spread(x.size, math.nan, math.nan, math.nan)
    return Spread(x.size, float(z.mean()), float(z.var(ddof=1) / z.size / z.mean() ** 2), float(x.size - 1))


def _log_ratio_t(zt: np.ndarray, zb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised over draws: absolute deviations (draws, n) of one point -> (log ratio, its variance parts)."""
    mt, mb = zt.mean(-1), zb.mean(-1)
    vt = zt.var(-1, ddof=1) / zt.shape[-1] / mt**2
    vb = zb.var(-1, ddof=1) / zb.shape[-1] / mb**2
    return np.log(mb / mt), np.stack([vt, vb])


@dataclass(frozen=True)
class Design:
    """Seeds per arm at each point, ((n_treat, n_base), ...): the test's power under normal scores."""

    sizes: tuple[tuple[int, int], ...]

    def power(self, log_ratio: float, alpha: float) -> float:
        """P(the two-sided test at alpha rejects) when the true log spread ratio is `log_ratio`."""
        est, bound = _null(self.sizes), _bound(self.sizes, alpha)
        return float(np.mean(np.abs(est[0] + log_ratio) > bound))

    def mde(self, alpha: float, power: float = POWER) -> float:
        """The log spread ratio (> 0) the test finds with probability `power`."""
        if self.power(20.0, alpha) < power:
            return math.inf
        return float(brentq(lambda x: self.power(x, alpha) - power, 0.0, 20.0, xtol=1e-4))


@lru_cache(maxsize=256)
def _null(sizes: tuple[tuple[int, int], ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(estimate, se, df) of DRAWS simulated experiments with equal spreads, seeded by the design."""
    rng = np.random.default_rng([7, *(n for pair in sizes for n in pair)])
    k, logs, parts = len(sizes), [], []
    for nt, nb in sizes:
        est, v = zip(*(_point(rng, nt, nb, m) for m in _chunks(DRAWS, 4_000_000 // (nt + nb))))
        logs.append(np.concatenate(est))
        parts.append(np.concatenate(v, axis=1))
    v = np.concatenate(parts) / k**2  # (2K, DRAWS): each arm's variance share
    f = np.array([n - 1 for pair in sizes for n in pair], float)[:, None]
    total = v.sum(0)
    return np.mean(logs, 0), np.sqrt(total), total**2 / (v**2 / f).sum(0)


@lru_cache(maxsize=256)
def _bound(sizes: tuple[tuple[int, int], ...], alpha: float) -> np.ndarray:
    """Per simulated experiment, the |estimate| its two-sided t-test at alpha rejects beyond."""
    _, se, df = _null(sizes)
    return se * ss.t.ppf(1 - alpha / 2, df)


def _chunks(total: int, size: int) -> list[int]:
    size = max(1, size)
    return [min(size, total - i) for i in range(0, total, size)]


def _point(rng: np.random.Generator, nt: int, nb: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """m simulated experiments at one point: log spread ratio and each arm's variance part."""
    xt, xb = rng.standard_normal((m, nt)), rng.standard_normal((m, nb))
    zt = np.abs(xt - np.median(xt, -1, keepdims=True))
    zb = np.abs(xb - np.median(xb, -1, keepdims=True))
    return _log_ratio_t(zt, zb)


def seeds_needed(ratio: float, points: int, alpha: float, power: float = POWER) -> int:
    """Seeds per arm at each of `points` points for the test at alpha to find a **variance** ratio `ratio`
    (a spread ratio sqrt(ratio)) with probability `power`; MAX_SEEDS + 1 where even that many do not.
    Starts at the large-sample answer (the log spread's variance is about 0.61 / n per arm) and walks to
    the smallest n whose simulated power reaches `power`."""
    target = 0.5 * math.log(ratio)

    def ok(n: int) -> bool:
        return n <= MAX_SEEDS and Design(((n, n),) * points).power(target, alpha) >= power

    z = float(ss.norm.ppf(1 - alpha / 2) + ss.norm.ppf(power))
    n = min(MAX_SEEDS, max(3, math.ceil(2 * 0.61 / points * (z / target) ** 2)))
    if ok(n):
        while n > 3 and ok(n - 1):
            n -= 1
        return n
    while not ok(n):
        n += 1
        if n > MAX_SEEDS:
            return MAX_SEEDS + 1
    return n


def as_sizes(treat: Sequence[Spread], base: Sequence[Spread]) -> tuple[tuple[int, int], ...]:
    return tuple((t.n, b.n) for t, b in zip(treat, base))

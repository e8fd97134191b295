"""Effect sizes over seeds: bootstrap intervals and probability of improvement (rliable-style).

Pure functions over small arrays (one value per seed). The bootstrap is seedable all the way
down (a `numpy.random.Generator` per comparison, derived from `seed` and the comparison's key),
so the same seed gives the same interval, and adding a row to a table never changes the
intervals of the other rows.

Conventions: a positive effect is an improvement. For metrics where lower is better (MSE,
cross-entropy, error) the difference is taken as baseline - treatment.
"""
from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

# Metric names where a lower value is better (metrics.json `metric_name`, and losses).
LOWER_IS_BETTER = frozenset({"mse", "cross_entropy", "error", "loss", "test_loss", "train_loss"})

HELPS, HURTS, UNCLEAR, TOO_FEW, NO_DATA = "helps", "hurts", "no clear effect", "too few seeds", "no data"


def lower_is_better(metric_name: Optional[str]) -> bool:
    return str(metric_name) in LOWER_IS_BETTER


def rng_for(seed: int, key: str = "") -> np.random.Generator:
    """A generator that depends on `seed` and a stable hash of `key` (not Python's salted hash)."""
    return np.random.default_rng([int(seed), zlib.crc32(key.encode())])


def bootstrap_mean_ci(x: Sequence[float], n_boot: int = 2000, level: float = 0.95,
                      rng: Optional[np.random.Generator] = None) -> tuple[float, float, float]:
    """Mean of `x` (n,) and its percentile bootstrap interval, resampling the n values.

    Returns (mean, low, high); NaNs for an empty input, (m, m, m) for a single value.
    """
    x = np.asarray(x, dtype=float)
    if x.size == 0:
        return (np.nan, np.nan, np.nan)
    m = float(x.mean())
    if x.size == 1:
        return (m, m, m)
    rng = rng if rng is not None else np.random.default_rng(0)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))  # (n_boot, n) resampled seeds
    means = x[idx].mean(axis=1)  # (n_boot,)
    a = (1 - level) / 2
    lo, hi = np.quantile(means, [a, 1 - a])
    return (m, float(lo), float(hi))


def bootstrap_diff_ci(treat: Sequence[float], base: Sequence[float], n_boot: int = 2000, level: float = 0.95,
                      rng: Optional[np.random.Generator] = None) -> tuple[float, float, float]:
    """Unpaired: mean(treat) - mean(base), each group resampled on its own. Returns (diff, low, high)."""
    t, b = np.asarray(treat, dtype=float), np.asarray(base, dtype=float)
    if t.size == 0 or b.size == 0:
        return (np.nan, np.nan, np.nan)
    d = float(t.mean() - b.mean())
    if t.size == 1 and b.size == 1:
        return (d, d, d)
    rng = rng if rng is not None else np.random.default_rng(0)
    tm = t[rng.integers(0, t.size, size=(n_boot, t.size))].mean(axis=1)  # (n_boot,)
    bm = b[rng.integers(0, b.size, size=(n_boot, b.size))].mean(axis=1)  # (n_boot,)
    a = (1 - level) / 2
    lo, hi = np.quantile(tm - bm, [a, 1 - a])
    return (d, float(lo), float(hi))


def probability_of_improvement(treat: Sequence[float], base: Sequence[float]) -> float:
    """P(X > Y), X a treatment run and Y a baseline run, ties counting 1/2 (rliable; Mann-Whitney U / nm).

    Inputs are already oriented so that larger is better.
    """
    t, b = np.asarray(treat, dtype=float), np.asarray(base, dtype=float)
    if t.size == 0 or b.size == 0:
        return float("nan")
    gt = (t[:, None] > b[None, :]).mean()  # (n_t, n_b) pairwise comparisons
    eq = (t[:, None] == b[None, :]).mean()
    return float(gt + 0.5 * eq)


def verdict(low: float, high: float, n: int) -> str:
    """The word the interval supports: helps if it lies above 0, hurts if below, else no clear effect."""
    if n == 0 or not np.isfinite(low) or not np.isfinite(high):
        return NO_DATA
    if n < 2:
        return TOO_FEW
    if low > 0:
        return HELPS
    if high < 0:
        return HURTS
    return UNCLEAR


@dataclass
class Effect:
    """The effect of a treatment versus the baseline over seeds; positive = improvement."""

    mean_diff: float  # mean improvement (oriented: + is better)
    ci_low: float
    ci_high: float
    prob_improvement: float
    n_treat: int
    n_base: int
    n_pairs: int  # seeds present in both (the paired bootstrap is used when >= 2)
    paired: bool
    verdict: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def effect(treat: Mapping[Any, float] | pd.Series, base: Mapping[Any, float] | pd.Series, *,
           lower_better: bool = False, n_boot: int = 2000, level: float = 0.95, seed: int = 0,
           key: str = "") -> Effect:
    """Treatment vs baseline, values keyed by seed; NaNs (failed runs) are dropped.

    Paired by seed where at least two seeds appear in both (the difference per seed is
    resampled), else the two groups are resampled independently. `seed` and `key` fix the
    bootstrap's random stream.
    """
    t = pd.Series(treat, dtype=float).dropna()
    b = pd.Series(base, dtype=float).dropna()
    sign = -1.0 if lower_better else 1.0
    t, b = sign * t, sign * b  # oriented: larger is better
    rng = rng_for(seed, key)
    common = t.index.intersection(b.index)
    paired = len(common) >= 2
    if paired:
        d = (t.loc[common] - b.loc[common]).to_numpy()  # (n_pairs,) per-seed improvement
        m, lo, hi = bootstrap_mean_ci(d, n_boot, level, rng)
        n = len(common)
    else:
        m, lo, hi = bootstrap_diff_ci(t.to_numpy(), b.to_numpy(), n_boot, level, rng)
        n = min(len(t), len(b))
    poi = probability_of_improvement(t.to_numpy(), b.to_numpy())
    return Effect(mean_diff=m, ci_low=lo, ci_high=hi, prob_improvement=poi, n_treat=len(t), n_base=len(b),
                  n_pairs=len(common), paired=paired, verdict=verdict(lo, hi, n))


def effects_table(df: pd.DataFrame, *, value: str, by: Sequence[str], treatment_col: str, baseline: str,
                  lower_better: bool | str = False, n_boot: int = 2000, level: float = 0.95,
                  seed: int = 0) -> pd.DataFrame:
    """One row per group of `by` x treatment (every value of `treatment_col` except `baseline`).

    `df` is tidy: one row per run with columns `by`, `treatment_col`, "seed" and `value`.
    `lower_better` is a bool, or the name of a column holding a metric name (e.g. "metric_name").
    Columns out: by..., treatment_col, mean_diff, ci_low, ci_high, prob_improvement, n_treat,
    n_base, n_pairs, paired, verdict.
    """
    rows: list[dict[str, Any]] = []
    for keys, g in df.groupby(list(by), sort=True, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        base = g[g[treatment_col] == baseline].groupby("seed")[value].mean()
        lb = lower_better
        if isinstance(lower_better, str):
            names = g[lower_better].dropna().unique()
            lb = bool(len(names)) and lower_is_better(names[0])
        for treat_name, gt in g[g[treatment_col] != baseline].groupby(treatment_col, sort=False):
            key = "|".join(map(str, (*keys, treat_name, value)))
            e = effect(gt.groupby("seed")[value].mean(), base, lower_better=bool(lb), n_boot=n_boot,
                       level=level, seed=seed, key=key)
            rows.append({**dict(zip(by, keys)), treatment_col: treat_name, **e.as_dict()})
    cols = [*by, treatment_col, *Effect.__dataclass_fields__]
    return pd.DataFrame(rows, columns=cols)

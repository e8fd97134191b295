"""Effects over seeds with honest intervals, p-values, a multiplicity correction and words.

Pure functions over small arrays (one value per seed), built on `scipy.stats`. Values come in
already oriented (larger = better): callers flip lower-is-better endpoints using the direction
the run record declares, never a name list.

- Pairing: a variant and its baseline are paired by seed (the per-seed difference removes the
  seed-to-seed spread); where fewer than two seeds are shared, the groups are compared unpaired
  (Welch).
- Interval (`ci`): `t` (default) is the Student-t interval of the mean difference; `bca` is
  scipy's BCa bootstrap. Measured coverage of a nominal 95 % interval (tests/test_stats.py,
  docs/statistics.md): t covers >= 0.93 at n = 3, 5, 10 for normal, heavy-tailed (t, 3 df) and
  mildly skewed (gamma, k = 8) differences; strongly skewed ones (exponential) get about 0.88-0.90.
  BCa covers only 0.70-0.90 at n <= 10: use it with many seeds, not few.
- Test (`test`): paired t-test (Welch unpaired), or the exact sign-flip permutation test
  (`signflip`; distribution-free for symmetric differences, but its smallest two-sided p-value
  is 2 / 2^n, so it cannot reject at 0.05 below 6 seeds).
- Family: p-values of a whole table are adjusted together (`holm`: family-wise error;
  `bh`: Benjamini-Hochberg false discovery rate, `scipy.stats.false_discovery_control`).
- Word: `helps`/`hurts` only with at least `min_seeds` seeds and an adjusted p below
  `alpha`; otherwise `no clear effect`, or `too few seeds` (the numbers are still shown).
"""
from __future__ import annotations

import enum
import math
import warnings
import zlib
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
from scipy import stats as ss

HELPS, HURTS, UNCLEAR, TOO_FEW, NO_DATA = "helps", "hurts", "no clear effect", "too few seeds", "no data"
WORDS = (HELPS, HURTS, UNCLEAR, TOO_FEW, NO_DATA)
DEFAULT_MIN_SEEDS = 5


class CI(str, enum.Enum):
    t = "t"  # Student-t (paired) or Welch (unpaired)
    bca = "bca"  # scipy.stats.bootstrap, method BCa


class Test(str, enum.Enum):
    t = "t"  # paired t-test (Welch unpaired)
    signflip = "signflip"  # exact sign-flip (paired) or label permutation (unpaired)


class Adjust(str, enum.Enum):
    holm = "holm"
    bh = "bh"


ADJUST_NAMES = {Adjust.holm: "Holm (family-wise error rate)", Adjust.bh: "Benjamini-Hochberg (false discovery rate)"}


def rng_for(seed: int, key: str = "") -> np.random.Generator:
    """A generator that depends on `seed` and a stable hash of `key` (not Python's salted hash)."""
    return np.random.default_rng([int(seed), zlib.crc32(key.encode())])


@dataclass
class Comparison:
    """A treatment versus its baseline over seeds; positive = improvement."""

    n: int  # paired seeds (paired) or the smaller group (unpaired)
    n_treat: int
    n_base: int
    paired: bool
    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    prob_improvement: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def t_interval(d: np.ndarray, level: float) -> tuple[float, float]:
    """Student-t interval of the mean of `d` (n,); a point when every value is equal."""
    m, n = float(d.mean()), d.size
    if n < 2:
        return (math.nan, math.nan)
    if _constant(d):
        return (m, m)
    se = float(d.std(ddof=1)) / math.sqrt(n)
    half = float(ss.t.ppf(0.5 + level / 2, n - 1)) * se
    return (m - half, m + half)


def _constant(x: np.ndarray) -> bool:
    """Every value equal, up to rounding (a t-test of such data only measures floating-point noise)."""
    return bool(np.ptp(x) <= 1e-9 * max(1.0, float(np.abs(x).max())))


def _degenerate_p(mean: float) -> float:
    """Every difference equal: no spread to test against. Identical values are no evidence (p = 1);
    the same non-zero difference at every seed is as consistent as data get (p = 0)."""
    return 1.0 if mean == 0 else 0.0


def paired_p(d: np.ndarray, test: Test, rng: np.random.Generator) -> float:
    """Two-sided p-value of mean(d) = 0."""
    if d.size < 2:
        return math.nan
    if _constant(d):
        return _degenerate_p(float(d.mean()))
    if test is Test.t:
        return float(ss.ttest_1samp(d, 0.0).pvalue)
    exact = 2 ** d.size
    res = ss.permutation_test((d,), np.mean, permutation_type="samples", vectorized=True,
                              n_resamples=exact if d.size <= 16 else 9999, rng=rng)
    return float(res.pvalue)


def unpaired(t: np.ndarray, b: np.ndarray, ci: CI, test: Test, level: float,
             rng: np.random.Generator) -> tuple[float, float, float]:
    """(ci_low, ci_high, p) of mean(t) - mean(b): Welch's interval and test, or BCa / permutation."""
    if t.size < 2 or b.size < 2:
        return (math.nan, math.nan, math.nan)
    diff = float(t.mean() - b.mean())
    if _constant(t) and _constant(b):
        return (diff, diff, _degenerate_p(diff))
    welch = ss.ttest_ind(t, b, equal_var=False)
    lo, hi = welch.confidence_interval(level)
    if ci is CI.bca:
        lo, hi = _bca((t, b), lambda x, y, axis: x.mean(axis) - y.mean(axis), level, rng)
    p = float(welch.pvalue)
    if test is Test.signflip:
        p = float(ss.permutation_test((t, b), lambda x, y, axis: x.mean(axis) - y.mean(axis), vectorized=True,
                                      permutation_type="independent", n_resamples=9999, rng=rng).pvalue)
    return (float(lo), float(hi), p)


def _bca(data: tuple[np.ndarray, ...], statistic: Any, level: float, rng: np.random.Generator) -> tuple[float, float]:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # BCa warns on degenerate resamples; the interval is then NaN
        r = ss.bootstrap(data, statistic, method="BCa", confidence_level=level, n_resamples=1999, rng=rng,
                         vectorized=True)
    return (float(r.confidence_interval.low), float(r.confidence_interval.high))


def probability_of_improvement(treat: Sequence[float], base: Sequence[float]) -> float:
    """P(X > Y), X a treatment run and Y a baseline run, ties counting 1/2 (rliable; Mann-Whitney U / nm)."""
    t, b = np.asarray(treat, dtype=float), np.asarray(base, dtype=float)
    if t.size == 0 or b.size == 0:
        return math.nan
    gt = (t[:, None] > b[None, :]).mean()  # (n_t, n_b) pairwise comparisons
    eq = (t[:, None] == b[None, :]).mean()
    return float(gt + 0.5 * eq)


def compare(treat: Mapping[Any, float] | pd.Series, base: Mapping[Any, float] | pd.Series, *, ci: CI = CI.t,
            test: Test = Test.t, level: float = 0.95, seed: int = 0, key: str = "") -> Comparison:
    """Treatment vs baseline, values keyed by seed and oriented (larger = better); NaNs are dropped.

    Paired by seed where at least two seeds appear in both, else unpaired (Welch). `seed` and
    `key` fix the random stream of the bootstrap and permutation options.
    """
    t = pd.Series(treat, dtype=float).dropna()
    b = pd.Series(base, dtype=float).dropna()
    rng = rng_for(seed, key)
    common = t.index.intersection(b.index)
    poi = probability_of_improvement(t.to_numpy(), b.to_numpy())
    if len(common) >= 2:
        d = (t.loc[common] - b.loc[common]).to_numpy()  # (n,) per-seed improvement
        lo, hi = t_interval(d, level)
        if ci is CI.bca and not _constant(d):
            lo, hi = _bca((d,), lambda x, axis: x.mean(axis), level, rng)
        return Comparison(n=d.size, n_treat=len(t), n_base=len(b), paired=True, mean_diff=float(d.mean()),
                          ci_low=lo, ci_high=hi, p_value=paired_p(d, test, rng), prob_improvement=poi)
    diff = float(t.mean() - b.mean()) if len(t) and len(b) else math.nan
    lo, hi, p = unpaired(t.to_numpy(), b.to_numpy(), ci, test, level, rng)
    return Comparison(n=min(len(t), len(b)), n_treat=len(t), n_base=len(b), paired=False, mean_diff=diff,
                      ci_low=lo, ci_high=hi, p_value=p, prob_improvement=poi)


def adjust(p: Sequence[float], method: Adjust = Adjust.bh) -> np.ndarray:
    """Adjusted p-values of one family; NaNs stay NaN and are not counted in the family."""
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if not ok.any():
        return out
    q = p[ok]
    if method is Adjust.bh:
        out[ok] = ss.false_discovery_control(q, method="bh")
        return out
    order = np.argsort(q, kind="stable")  # Holm: step down, (m - i) * p_(i), kept monotone
    m = q.size
    stepped = np.maximum.accumulate((m - np.arange(m)) * q[order])
    adj = np.empty(m)
    adj[order] = np.minimum(stepped, 1.0)
    out[ok] = adj
    return out


def verdict(mean_diff: float, p_adjusted: float, n: int, *, min_seeds: int = DEFAULT_MIN_SEEDS,
            alpha: float = 0.05) -> str:
    """The word the corrected test supports (see the module docstring)."""
    if n == 0 or not np.isfinite(mean_diff):
        return NO_DATA
    if n < min_seeds:
        return TOO_FEW
    if np.isfinite(p_adjusted) and p_adjusted < alpha:
        return HELPS if mean_diff > 0 else HURTS
    return UNCLEAR


def add_words(table: pd.DataFrame, *, adjust_method: Adjust, min_seeds: int, alpha: float) -> pd.DataFrame:
    """Adjust `p_value` over the rows that may earn a word (n >= min_seeds) and set `verdict`."""
    t = table.copy()
    family = (t["n"] >= min_seeds) & np.isfinite(t["p_value"].astype(float)) if len(t) else t.get("n", [])
    t["p_adjusted"] = np.nan
    if len(t):
        t.loc[family, "p_adjusted"] = adjust(t.loc[family, "p_value"].to_numpy(float), adjust_method)
    t["verdict"] = [verdict(m, p, int(n), min_seeds=min_seeds, alpha=alpha)
                    for m, p, n in zip(t.get("mean_diff", []), t["p_adjusted"], t.get("n", []))]
    return t


# ----------------------------------------------------------------------------- aggregates across tasks


def iqm(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean (rliable's robust aggregate): the mean of the middle 50 %."""
    return ss.trim_mean(x, 0.25, axis=axis)


def _poi_over_tasks(*groups: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean over tasks of P(X > Y); `groups` = (x_1..x_K, y_1..y_K), each (..., n_k)."""
    k = len(groups) // 2
    vals = []
    for x, y in zip(groups[:k], groups[k:]):
        gt = (x[..., :, None] > y[..., None, :]).mean(axis=(-1, -2))
        eq = (x[..., :, None] == y[..., None, :]).mean(axis=(-1, -2))
        vals.append(gt + 0.5 * eq)
    return np.mean(vals, axis=0)


def _iqm_diff(*groups: np.ndarray, axis: int = -1) -> np.ndarray:
    k = len(groups) // 2
    return iqm(np.concatenate(groups[:k], axis=-1)) - iqm(np.concatenate(groups[k:], axis=-1))


def stratified(treat: Sequence[np.ndarray], base: Sequence[np.ndarray], *, level: float = 0.95,
               n_resamples: int = 2000, seed: int = 0, key: str = "") -> dict[str, float]:
    """IQM of each side, the IQM difference and the probability of improvement over K tasks
    (rliable: Agarwal et al. 2021), with percentile intervals from a stratified bootstrap: runs
    are resampled within each task and each side (`scipy.stats.bootstrap`, one sample per stratum).

    `treat`, `base`: K arrays of run scores, one per task (same task order), NaNs removed.
    """
    groups = [np.asarray(g, float) for g in (*treat, *base)]
    if not treat or any(g.size == 0 for g in groups):
        return dict.fromkeys(["iqm_variant", "iqm_baseline", "iqm_diff", "iqm_diff_low", "iqm_diff_high",
                              "prob_improvement", "poi_low", "poi_high"], math.nan)
    out = {"iqm_variant": float(iqm(np.concatenate(groups[:len(treat)]))),
           "iqm_baseline": float(iqm(np.concatenate(groups[len(treat):]))),
           "iqm_diff": float(_iqm_diff(*groups)), "prob_improvement": float(_poi_over_tasks(*groups))}
    rng = rng_for(seed, key)
    for name, fn in (("iqm_diff", _iqm_diff), ("poi", _poi_over_tasks)):
        if all(g.size < 2 for g in groups):
            lo = hi = math.nan
        else:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                r = ss.bootstrap(tuple(groups), fn, method="percentile", confidence_level=level,
                                 n_resamples=n_resamples, rng=rng, vectorized=True)
            lo, hi = float(r.confidence_interval.low), float(r.confidence_interval.high)
        out[f"{name}_low"], out[f"{name}_high"] = lo, hi
    return out

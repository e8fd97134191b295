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
  `alpha`; `no effect` only where an equivalence test (TOST, margin declared per endpoint) rejects
  a difference of at least the margin; otherwise `inconclusive`, or `too few seeds` (the numbers
  are still shown). Every row carries its minimum detectable effect at 80 % power (`mde`).
- Survival (time to target): Kaplan-Meier per arm (`scipy.stats.ecdf` on censored data), the
  restricted mean time to target with its Greenwood-type interval, and the log-rank p
  (`scipy.stats.logrank`); a run that never reached the target is censored at its budget.
"""

from __future__ import annotations

import enum
import math
import warnings
import zlib
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Mapping, Optional, Protocol, Sequence

import numpy as np
import pandas as pd
from scipy import stats as ss
from scipy.optimize import brentq

HELPS, HURTS, UNCLEAR, TOO_FEW, NO_DATA = "helps", "hurts", "inconclusive", "too few seeds", "no data"
TOO_FEW_TASKS = "too few tasks"  # an aggregate across fewer than MIN_TASKS tasks gets no word
MIN_TASKS = 5
NO_EFFECT = "no effect"  # only where TOST shows equivalence within the endpoint's declared margin
WORDS = (HELPS, HURTS, NO_EFFECT, UNCLEAR, TOO_FEW, TOO_FEW_TASKS, NO_DATA)
POWER = 0.8  # the power the minimum detectable effect is computed at
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
    se: float = math.nan  # standard error of mean_diff (for the TOST and the minimum detectable effect)
    df: float = math.nan  # its degrees of freedom (inf = normal)

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


def _degenerate_p(mean: float, n: int) -> float:
    """Every difference equal: no spread to test against. Identical values are no evidence (p = 1);
    the same non-zero difference at every one of n seeds gets the exact sign-flip p-value 2^(1-n)
    (only the observed signs and their mirror image are as extreme), never 0."""
    return 1.0 if abs(mean) < 1e-12 else float(2.0 ** (1 - n))  # below 1e-12: rounding of equal values


def smallest_p(n: int, test: "Test") -> float:
    """The smallest two-sided p-value `test` can return with n paired seeds (0 where unbounded)."""
    return float(2.0 ** (1 - n)) if test is Test.signflip else 0.0


def can_reject(n: int, test: "Test", alpha: float) -> bool:
    """Whether `test` with n seeds can reach p < alpha at all (the sign-flip test cannot below
    log2(2/alpha) seeds: at alpha = 0.05 it needs 6); a row that never can gets no word."""
    return smallest_p(n, test) < alpha


def paired_p(d: np.ndarray, test: Test, rng: np.random.Generator) -> float:
    """Two-sided p-value of mean(d) = 0."""
    if d.size < 2:
        return math.nan
    if _constant(d):
        return _degenerate_p(float(d.mean()), d.size)
    if test is Test.t:
        return float(ss.ttest_1samp(d, 0.0).pvalue)
    exact = 2**d.size
    res = ss.permutation_test(
        (d,), np.mean, permutation_type="samples", vectorized=True, n_resamples=exact if d.size <= 16 else 9999, rng=rng
    )
    return float(res.pvalue)


def unpaired(
    t: np.ndarray, b: np.ndarray, ci: CI, test: Test, level: float, rng: np.random.Generator
) -> tuple[float, float, float]:
    """(ci_low, ci_high, p) of mean(t) - mean(b): Welch's interval and test, or BCa / permutation."""
    if t.size < 2 or b.size < 2:
        return (math.nan, math.nan, math.nan)
    diff = float(t.mean() - b.mean())
    if _constant(t) and _constant(b):
        # exact permutation p: only the observed labelling and its mirror are as extreme
        exact = 1.0 if abs(diff) < 1e-12 else min(1.0, 2.0 / math.comb(t.size + b.size, t.size))
        return (diff, diff, exact)
    welch = ss.ttest_ind(t, b, equal_var=False)
    lo, hi = welch.confidence_interval(level)
    if ci is CI.bca:
        lo, hi = _bca((t, b), lambda x, y, axis: x.mean(axis) - y.mean(axis), level, rng)
    p = float(welch.pvalue)
    if test is Test.signflip:
        p = float(
            ss.permutation_test(
                (t, b),
                lambda x, y, axis: x.mean(axis) - y.mean(axis),
                vectorized=True,
                permutation_type="independent",
                n_resamples=9999,
                rng=rng,
            ).pvalue
        )
    return (float(lo), float(hi), p)


def _bca(data: tuple[np.ndarray, ...], statistic: Any, level: float, rng: np.random.Generator) -> tuple[float, float]:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # BCa warns on degenerate resamples; the interval is then NaN
        r = ss.bootstrap(
            data, statistic, method="BCa", confidence_level=level, n_resamples=1999, rng=rng, vectorized=True
        )
    return (float(r.confidence_interval.low), float(r.confidence_interval.high))


def probability_of_improvement(treat: Sequence[float], base: Sequence[float]) -> float:
    """P(X > Y), X a treatment run and Y a baseline run, ties counting 1/2 (rliable; Mann-Whitney U / nm)."""
    t, b = np.asarray(treat, dtype=float), np.asarray(base, dtype=float)
    if t.size == 0 or b.size == 0:
        return math.nan
    gt = (t[:, None] > b[None, :]).mean()  # (n_t, n_b) pairwise comparisons
    eq = (t[:, None] == b[None, :]).mean()
    return float(gt + 0.5 * eq)


def compare(
    treat: Mapping[Any, float] | pd.Series,
    base: Mapping[Any, float] | pd.Series,
    *,
    ci: CI = CI.t,
    test: Test = Test.t,
    level: float = 0.95,
    seed: int = 0,
    key: str = "",
) -> Comparison:
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
        return Comparison(
            n=d.size,
            n_treat=len(t),
            n_base=len(b),
            paired=True,
            mean_diff=float(d.mean()),
            ci_low=lo,
            ci_high=hi,
            p_value=paired_p(d, test, rng),
            prob_improvement=poi,
            se=float(d.std(ddof=1)) / math.sqrt(d.size),
            df=float(d.size - 1),
        )
    diff = float(t.mean() - b.mean()) if len(t) and len(b) else math.nan
    lo, hi, p = unpaired(t.to_numpy(), b.to_numpy(), ci, test, level, rng)
    se, df = welch_se(t.to_numpy(), b.to_numpy())
    return Comparison(
        n=min(len(t), len(b)),
        n_treat=len(t),
        n_base=len(b),
        paired=False,
        mean_diff=diff,
        ci_low=lo,
        ci_high=hi,
        p_value=p,
        prob_improvement=poi,
        se=se,
        df=df,
    )


def satterthwaite(variances: Sequence[float], dfs: Sequence[float]) -> tuple[float, float]:
    """Standard error of a sum of independent estimates with these variances, and its Welch-Satterthwaite
    degrees of freedom: (sum v)^2 / sum(v^2 / df). NaN where a variance is missing."""
    v, f = np.asarray(variances, float), np.asarray(dfs, float)
    if v.size == 0 or not np.all(np.isfinite(v)) or not np.all(f > 0):
        return (math.nan, math.nan)
    total = float(v.sum())
    if total == 0:
        return (0.0, float(f.sum()))
    return (math.sqrt(total), total**2 / float((v**2 / f).sum()))


class LogEstimate(Protocol):
    """A positive per-arm estimate (a restricted mean time, a mean absolute deviation) for `log_ratio`."""

    n: int
    value: float
    var_log: float  # variance of log(value)
    df: float


def log_ratio(
    treat: Sequence[LogEstimate], base: Sequence[LogEstimate], level: float = 0.95
) -> tuple[float, float, float, float, float, float]:
    """(estimate, se, df, ci_low, ci_high, p) of the mean over points of log(base / treat): one Student-t
    statistic with Welch-Satterthwaite degrees of freedom over every arm's variance, so the interval, the
    p-value and the standard error agree. Every arm at one value (no spread): the exact permutation p."""
    k = len(treat)
    est = float(np.mean([math.log(b.value / t.value) for t, b in zip(treat, base)]))
    parts = [a for pair in zip(treat, base) for a in pair]
    se, df = satterthwaite([a.var_log / k**2 for a in parts], [a.df for a in parts])
    if not np.isfinite(se):
        return (est, se, df, math.nan, math.nan, math.nan)
    if se == 0:  # only the observed labelling (per point) and its mirror are as extreme
        ways = math.prod(math.comb(t.n + b.n, t.n) for t, b in zip(treat, base))
        return (est, 0.0, df, est, est, 1.0 if abs(est) < 1e-12 else min(1.0, 2.0 / ways))
    q = float(ss.t.ppf(0.5 + level / 2, df))
    return (est, se, df, est - q * se, est + q * se, float(2 * ss.t.sf(abs(est) / se, df)))


def welch_se(t: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Standard error of mean(t) - mean(b) and its Welch-Satterthwaite degrees of freedom."""
    if t.size < 2 or b.size < 2:
        return (math.nan, math.nan)
    return satterthwaite([t.var(ddof=1) / t.size, b.var(ddof=1) / b.size], [t.size - 1, b.size - 1])


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


def tost_p(mean_diff: float, se: float, df: float, margin: float) -> float:
    """Two one-sided tests (Schuirmann 1987): p of |true difference| >= margin; small = equivalent.
    NaN without a margin or a standard error."""
    if not (np.isfinite(mean_diff) and np.isfinite(margin) and margin > 0 and np.isfinite(se)):
        return math.nan
    if se == 0:
        return 0.0 if abs(mean_diff) < margin else 1.0
    dist = ss.norm if not np.isfinite(df) else ss.t(df)
    return float(max(dist.sf((mean_diff + margin) / se), dist.cdf((mean_diff - margin) / se)))


def power_t(lam: float, df: float, alpha: float) -> float:
    """Power of the two-sided t-test at `alpha` when the true effect is `lam` standard errors: exactly
    P(|T| > t_{1-alpha/2, df}) for T noncentral t with noncentrality `lam` (normal where df is infinite)."""
    if not np.isfinite(df):
        z = float(ss.norm.ppf(1 - alpha / 2))
        return float(ss.norm.sf(z - lam) + ss.norm.cdf(-z - lam))
    c = float(ss.t.ppf(1 - alpha / 2, df))
    # far in a tail scipy's nct returns NaN for a probability below ~1e-16: it counts as 0
    return float(np.nan_to_num(ss.nct.sf(c, df, lam)) + np.nan_to_num(ss.nct.cdf(-c, df, lam)))


def mde(se: float, df: float, alpha: float, power: float = POWER) -> float:
    """Minimum detectable effect: the true difference a two-sided t-test at `alpha` with `df` degrees of
    freedom finds with probability `power`, lam * se, lam solving power_t(lam) = power exactly (the
    noncentral t; the usual (t_{1-alpha/2} + t_{power}) * se is 5 % too small at n = 10 and alpha/72)."""
    if not (np.isfinite(se) and se >= 0) or not (df > 0) or not (0 < alpha < 1):
        return math.nan
    return _noncentrality(float(df), float(alpha), float(power)) * se


@lru_cache(maxsize=4096)
def _noncentrality(df: float, alpha: float, power: float) -> float:
    """The noncentrality at which the two-sided t-test has `power` (rows of a table share their df)."""
    hi = 2.0 * (float(ss.t.ppf(1 - alpha / 2, df)) + 3.0)  # power there is close to 1
    return float(brentq(lambda x: power_t(x, df, alpha) - power, 0.0, hi, xtol=1e-10))


def verdict(
    mean_diff: float,
    p_adjusted: float,
    n: int,
    *,
    min_seeds: int = DEFAULT_MIN_SEEDS,
    alpha: float = 0.05,
    p_equivalent: float = math.nan,
) -> str:
    """The word the corrected tests support (see the module docstring)."""
    if n == 0 or not np.isfinite(mean_diff):
        return NO_DATA
    if n < min_seeds:
        return TOO_FEW
    if np.isfinite(p_adjusted) and p_adjusted < alpha:
        return HELPS if mean_diff > 0 else HURTS
    if np.isfinite(p_equivalent) and p_equivalent < alpha:
        return NO_EFFECT
    return UNCLEAR


def add_words(
    table: pd.DataFrame, *, adjust_method: Adjust, min_seeds: int, alpha: float, test: Optional["Test"] = None
) -> pd.DataFrame:
    """Adjust `p_value` over the rows that may earn a word (n >= min_seeds) and set `verdict`.

    Where the table has `se`, `df` and `margin` columns it also gets `p_equivalent` (TOST, adjusted
    over the same family) and `mde` (at the per-row level alpha / m, Bonferroni: Holm's first step).
    With `test` = sign-flip, rows whose n can never reach p < alpha get no word (`too few seeds`).
    """
    t = table.copy()
    fam = (t["n"] >= min_seeds) & np.isfinite(t["p_value"].astype(float)) if len(t) else t.get("n", [])
    if len(t) and test is not None:
        fam &= np.array([can_reject(int(n), test, alpha) for n in t["n"]], dtype=bool)
    t["p_adjusted"] = np.nan
    t["p_equivalent"] = np.nan
    t["mde"] = np.nan  # an empty table keeps the column too
    m = int(np.sum(fam)) if len(t) else 0
    if len(t):
        t.loc[fam, "p_adjusted"] = adjust(t.loc[fam, "p_value"].to_numpy(float), adjust_method)
        if {"se", "df", "margin"} <= set(t.columns):
            raw = np.array([tost_p(*r) for r in t[["mean_diff", "se", "df", "margin"]].to_numpy(float)])
            t.loc[fam, "p_equivalent"] = adjust(raw[np.asarray(fam, bool)], adjust_method)
        if {"se", "df"} <= set(t.columns):
            t["mde"] = [mde(se, df, alpha / max(1, m)) for se, df in t[["se", "df"]].to_numpy(float)]
    short = [not f for f in fam] if len(t) else []
    t["verdict"] = [
        TOO_FEW
        if s and n >= min_seeds and np.isfinite(md)
        else verdict(md, p, int(n), min_seeds=min_seeds, alpha=alpha, p_equivalent=q)
        for md, p, n, q, s in zip(t.get("mean_diff", []), t["p_adjusted"], t.get("n", []), t["p_equivalent"], short)
    ]
    return t


# ----------------------------------------------------------------------------- aggregates across tasks


# What the across-task aggregate returns, in table order (comparisons' aggregate table reads it).
AGGREGATE_KEYS = (
    "iqm_variant",
    "iqm_baseline",
    "iqm_diff",
    "iqm_diff_low",
    "iqm_diff_high",
    "prob_improvement",
    "poi_low",
    "poi_high",
)


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


def stratified(
    treat: Sequence[np.ndarray],
    base: Sequence[np.ndarray],
    *,
    level: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    key: str = "",
) -> dict[str, float]:
    """IQM of each side, the IQM difference and the probability of improvement over K tasks
    (rliable: Agarwal et al. 2021), with percentile intervals from a stratified bootstrap: runs
    are resampled within each task and each side (`scipy.stats.bootstrap`, one sample per stratum).

    `treat`, `base`: K arrays of run scores, one per task (same task order), NaNs removed. Where any
    stratum holds fewer than two runs (a failed seed of a pair) the intervals are NaN: no resampling
    within it can show its spread.
    """
    groups = [np.asarray(g, float) for g in (*treat, *base)]
    if not treat or any(g.size == 0 for g in groups):
        return dict.fromkeys(AGGREGATE_KEYS, math.nan)
    out = {
        "iqm_variant": float(iqm(np.concatenate(groups[: len(treat)]))),
        "iqm_baseline": float(iqm(np.concatenate(groups[len(treat) :]))),
        "iqm_diff": float(_iqm_diff(*groups)),
        "prob_improvement": float(_poi_over_tasks(*groups)),
    }
    rng = rng_for(seed, key)
    for name, fn in (("iqm_diff", _iqm_diff), ("poi", _poi_over_tasks)):
        if any(g.size < 2 for g in groups):  # scipy resamples every stratum: one of a single run has no spread
            lo = hi = math.nan
        else:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                r = ss.bootstrap(
                    tuple(groups),
                    fn,
                    method="percentile",
                    confidence_level=level,
                    n_resamples=n_resamples,
                    rng=rng,
                    vectorized=True,
                )
            lo, hi = float(r.confidence_interval.low), float(r.confidence_interval.high)
        out[f"{name}_low"], out[f"{name}_high"] = lo, hi
    return out

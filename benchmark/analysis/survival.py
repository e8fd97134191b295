"""Time to target as survival data: a run that never reached the target is censored at its budget.

Counting a miss as the budget (a point mass at the budget) favours the arm that misses more and
breaks a t-test; the survival view keeps what is known: "not before step b". Per arm, the
Kaplan-Meier estimate of P(still short of the target at step t) (`scipy.stats.ecdf` on
`scipy.stats.CensoredData`); the restricted mean time to target up to tau (the area under that
curve, Royston & Parmar 2013) with its Greenwood-type standard error; between arms the difference
of restricted means and the log-rank p (`scipy.stats.logrank`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as ss


@dataclass(frozen=True)
class KM:
    """A Kaplan-Meier curve: S(t) just after each distinct event time (steps), and the risk sets."""

    times: np.ndarray  # (k,) distinct event times, ascending
    survival: np.ndarray  # (k,) S just after each
    at_risk: np.ndarray  # (k,) runs still short of the target (and not censored) just before each
    events: np.ndarray  # (k,) runs reaching the target at each


def _censored(times: np.ndarray, reached: np.ndarray) -> ss.CensoredData:
    return ss.CensoredData(uncensored=times[reached], right=times[~reached])


def kaplan_meier(times: np.ndarray, reached: np.ndarray) -> KM:
    """KM of the steps to target; `reached` False = censored at that time (the budget)."""
    t, r = np.asarray(times, float), np.asarray(reached, bool)
    if not r.any():
        return KM(np.array([]), np.array([]), np.array([]), np.array([]))
    res = ss.ecdf(_censored(t, r)).sf
    q = np.asarray(res.quantiles, float)
    keep = np.isin(q, t[r])  # scipy lists censoring times too; the curve steps only at events
    ev = np.array([int(((t == x) & r).sum()) for x in q[keep]])
    risk = np.array([int((t >= x).sum()) for x in q[keep]])
    return KM(q[keep], np.asarray(res.probabilities, float)[keep], risk, ev)


def rmst(km: KM, tau: float) -> tuple[float, float]:
    """Restricted mean time to target up to tau and its standard error (Greenwood-type:
    Var = sum_j A_j^2 d_j / (n_j (n_j - d_j)), A_j = the area under S from t_j to tau)."""
    t = km.times[km.times <= tau]
    s = km.survival[: t.size]
    edges = np.concatenate([[0.0], t, [tau]])
    level = np.concatenate([[1.0], s])  # S on each interval [edges_i, edges_{i+1})
    widths = np.diff(edges)
    mean = float((level * widths).sum())
    area_after = np.cumsum((level * widths)[::-1])[::-1][1:]  # A_j: area from t_j to tau
    n, d = km.at_risk[: t.size].astype(float), km.events[: t.size].astype(float)
    ok = n > d
    var = float((area_after[ok] ** 2 * d[ok] / (n[ok] * (n[ok] - d[ok]))).sum())
    return mean, math.sqrt(var)


@dataclass(frozen=True)
class SurvivalComparison:
    """Control minus treatment restricted mean time to target (positive = the treatment is faster)."""

    n_treat: int
    n_base: int
    reached_treat: int
    reached_base: int
    tau: float
    rmst_treat: float
    rmst_base: float
    mean_diff: float
    se: float
    ci_low: float
    ci_high: float
    p_value: float  # log-rank, two-sided


def compare(
    t_treat: np.ndarray, r_treat: np.ndarray, t_base: np.ndarray, r_base: np.ndarray, tau: float, level: float = 0.95
) -> SurvivalComparison:
    """Two arms' steps to target (each with `reached` flags), restricted at tau (the common budget)."""
    tt, rt, tb, rb = (
        np.asarray(a, float if i % 2 == 0 else bool) for i, a in enumerate((t_treat, r_treat, t_base, r_base))
    )
    mt, st = rmst(kaplan_meier(tt, rt), tau)
    mb, sb = rmst(kaplan_meier(tb, rb), tau)
    diff, se = mb - mt, math.hypot(st, sb)
    z = float(ss.norm.ppf(0.5 + level / 2))
    p = math.nan
    if (rt.any() or rb.any()) and tt.size >= 2 and tb.size >= 2:
        p = float(ss.logrank(_censored(tt, rt), _censored(tb, rb)).pvalue)
    return SurvivalComparison(
        int(tt.size),
        int(tb.size),
        int(rt.sum()),
        int(rb.sum()),
        float(tau),
        mt,
        mb,
        diff,
        se,
        diff - z * se,
        diff + z * se,
        p,
    )

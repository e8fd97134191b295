"""The claims' effect estimates over one point or several (a stratified primary test): one row of numbers.

Each function takes a list of points, each a (treatment runs, baseline runs) pair, and returns the row's
numbers: `n`, `n_treat`, `n_base`, `paired`, `mean_diff` (oriented: positive = the claim's direction),
`ci_low`, `ci_high`, `p_value` (two-sided), `se`, `df`, `prob_improvement`, `variant_mean`,
`baseline_mean`, `note`. Over several points a paired endpoint is first averaged per seed over the points
(each seed's mean paired difference), then tested over seeds; a ratio endpoint averages the log ratios.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats as ss

from benchmark.analysis import stats, survival, varratio

Row = dict[str, Any]
Points = Sequence[tuple[pd.DataFrame, pd.DataFrame]]


def column(g: pd.DataFrame, col: str) -> pd.Series:
    """A column as numbers; all NaN where the runs lack it (no data, never an error)."""
    return pd.to_numeric(g[col], errors="coerce") if col in g else pd.Series(np.nan, index=g.index, dtype=float)


def by_seed(g: pd.DataFrame, col: str, sign: float = 1.0) -> pd.Series:
    """One value per seed (the mean where a seed ran more than once), oriented by `sign`."""
    v = pd.Series(column(g, col).to_numpy(float), index=g["seed"].to_numpy())
    return sign * (v.groupby(level=0).mean() if v.index.has_duplicates else v)


def _means(points: Points, col: str) -> dict[str, float]:
    t = pd.concat([column(t, col) for t, _ in points]) if points else pd.Series(dtype=float)
    b = pd.concat([column(b, col) for _, b in points]) if points else pd.Series(dtype=float)
    return {"variant_mean": float(t.mean()), "baseline_mean": float(b.mean())}


def paired(points: Points, col: str, higher_is_better: bool, opts: Any, key: str) -> Row:
    """Treatment vs baseline on `col`, paired by seed; over K > 1 points each seed's mean difference."""
    sign = 1.0 if higher_is_better else -1.0
    kw = dict(ci=opts.ci, test=opts.test, level=opts.level, seed=opts.seed, key=key)
    if len(points) == 1:
        t, b = points[0]
        c = stats.compare(by_seed(t, col, sign), by_seed(b, col, sign), **kw)
        return {**c.as_dict(), **_means(points, col)}
    diffs = pd.concat([by_seed(t, col, sign) - by_seed(b, col, sign) for t, b in points], axis=1)
    d = diffs.mean(axis=1, skipna=True).dropna()  # (seeds,) each seed's mean over the points it has
    c = stats.compare(d, pd.Series(0.0, index=d.index), **kw)
    out = {**c.as_dict(), **_means(points, col), "prob_improvement": math.nan}
    out["n_treat"] = int(sum(len(t) for t, _ in points))
    out["n_base"] = int(sum(len(b) for _, b in points))
    return out


def _unpaired_row(n: Sequence[int], est: tuple[float, ...]) -> Row:
    mean_diff, se, df, lo, hi, p = est
    return {
        "n": min(n[0], n[1]),
        "n_treat": n[0],
        "n_base": n[1],
        "paired": False,
        "mean_diff": mean_diff,
        "ci_low": lo,
        "ci_high": hi,
        "p_value": p,
        "se": se,
        "df": df,
        "prob_improvement": math.nan,
    }


def time_ratio(points: Points, level: float) -> Row:
    """(a): log(RMST baseline / RMST treatment) of the steps to target, misses censored at the budget
    (tau = the budget); positive = the treatment reaches the target sooner."""
    arms: list[list[survival.ArmTime]] = [[], []]
    for t, b in points:
        tau = float(pd.concat([column(t, "steps"), column(b, "steps")]).min())
        for i, g in enumerate((t, b)):
            reached = column(g, "steps_to_target")
            times = reached.fillna(column(g, "steps")).to_numpy(float)
            arms[i].append(survival.arm_time(np.minimum(times, tau), reached.notna().to_numpy(), tau))
    n = [sum(a.n for a in arms[0]), sum(a.n for a in arms[1])]
    row = _unpaired_row(n, stats.log_ratio(arms[0], arms[1], level))
    reached = [sum(a.reached for a in arms[i]) for i in (0, 1)]
    return {
        **row,
        "variant_mean": float(np.mean([a.value for a in arms[0]])),
        "baseline_mean": float(np.mean([a.value for a in arms[1]])),
        "note": f"reached the target {reached[0]}/{n[0]} vs {reached[1]}/{n[1]} runs; misses censored at the budget",
    }


def logrank_note(t: pd.DataFrame, b: pd.DataFrame, opts: Any, key: str) -> str:
    """(a) at one point: the log-rank p by permutation, for the note."""
    arms = []
    for g in (t, b):
        reached = column(g, "steps_to_target")
        arms += [reached.fillna(column(g, "steps")).to_numpy(float), reached.notna().to_numpy()]
    p = survival.logrank_p(*arms, stats.rng_for(opts.seed, key))
    return f"log-rank (permutation) p = {p:.3g}" if np.isfinite(p) else ""


def spread_ratio(points: Points, col: str, level: float) -> Row:
    """(h): log(spread baseline / spread treatment) of `col` over seeds (spread: mean absolute deviation
    from the median); positive = the treatment is steadier. `sizes` feeds the simulated MDE."""
    arms = [[varratio.spread(column(g, col).to_numpy(float)) for g in side] for side in zip(*points)]
    n = [sum(a.n for a in arms[0]), sum(a.n for a in arms[1])]
    if any(not np.isfinite(a.value) for side in arms for a in side):
        est: tuple[float, ...] = (math.nan,) * 6
    else:
        est = stats.log_ratio(arms[0], arms[1], level)
    return {
        **_unpaired_row(n, est),
        "variant_mean": float(np.mean([a.value for a in arms[0]])),
        "baseline_mean": float(np.mean([a.value for a in arms[1]])),
        "sizes": varratio.as_sizes(arms[0], arms[1]) if np.isfinite(est[0]) else (),
        "note": "means are the spreads (mean |score - median|)",
    }


def intersection_union(parts: Sequence[tuple[str, Row]]) -> tuple[str, Row]:
    """Every component must improve (Berger 1982), each tested two-sided. Where all point the claim's way
    the row is the component with the largest p (rejecting it rejects them all); otherwise the component
    against the claim with the smallest p. The row reports that one component: its effect, interval,
    standard error, two-sided p and hence its MDE, never a mix."""
    missing = [(name, r) for name, r in parts if not np.isfinite(r["p_value"])]
    if missing:  # a component without a test: the row has none either
        return missing[0]
    ok = list(parts)
    if all(r["mean_diff"] > 0 for _, r in ok):
        return max(ok, key=lambda nr: nr[1]["p_value"])
    against = [(name, r) for name, r in ok if not r["mean_diff"] > 0]
    return min(against, key=lambda nr: nr[1]["p_value"])


MIN_GRID = 5  # rates a width needs (a 5-7-point log-spaced grid)


def grid_spacing(lrs: Sequence[float]) -> float:
    """The spacing in decades of a log-spaced grid of rates (the mean step; a 1-3-10 grid, whose steps are
    0.48 and 0.52 decades, counts as log-spaced at 0.5); NaN where the steps differ by more than 10 %."""
    x = np.diff(np.log10(np.sort(np.asarray(lrs, float))))
    return float(x.mean()) if x.size and np.allclose(x, x.mean(), rtol=0.1) else math.nan


def rate_widths(g: pd.DataFrame, lrs: Sequence[float], fraction: float) -> pd.DataFrame:
    """(f), per seed that ran every rate of the grid: the width in decades of the rates whose validation
    score reaches `fraction` x the seed's best (the count of such rates x the grid's spacing: a lone best
    rate is one grid step wide); a rate whose run has no score (diverged) is outside. Also the seed's
    best score (for the gate) and whether it diverged at the largest rate."""
    step = grid_spacing(lrs)
    d = g.assign(lr=column(g, "lr"), val=column(g, "val_score"))
    full = d.groupby("seed")["lr"].nunique() == len(lrs)
    d = d[d["seed"].isin(full[full].index)]
    rows = []
    for seed, s in d.groupby("seed"):
        val = s.groupby("lr")["val"].mean()
        best = float(val.max())
        rows.append(
            {
                "seed": seed,
                "lr_width": float((val >= fraction * best).sum()) * step if np.isfinite(best) else 0.0,
                "best_val_over_grid": best,
                "diverged": float((s.loc[s["lr"] == max(lrs), "status"] == "diverged").any()),
                "steps": float(column(s, "steps").max()),
                "stop_at_target": bool(
                    s.get("stop_at_target", pd.Series(False, index=s.index)).fillna(False).astype(bool).any()
                ),
            }
        )
    cols = ["seed", "lr_width", "best_val_over_grid", "diverged", "steps", "stop_at_target"]
    return pd.DataFrame(rows, columns=cols)


def divergences(t: pd.DataFrame, b: pd.DataFrame) -> Row:
    """(f)'s secondary: share of seeds diverged at the largest rate, baseline minus treatment (positive =
    fewer divergences), Fisher's exact p."""
    kt, kb, nt, nb = int(t["diverged"].sum()), int(b["diverged"].sum()), len(t), len(b)
    p = float(ss.fisher_exact([[kt, nt - kt], [kb, nb - kb]]).pvalue) if nt and nb else math.nan
    pt, pb = (kt / nt if nt else math.nan), (kb / nb if nb else math.nan)
    return {
        **_unpaired_row([nt, nb], (pb - pt, math.nan, math.nan, math.nan, math.nan, p)),
        "variant_mean": pt,
        "baseline_mean": pb,
        "note": f"{kt}/{nt} vs {kb}/{nb} diverged at the largest rate",
    }

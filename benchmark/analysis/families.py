"""The claims' rows as multiplicity families, and their words.

Three roles: a claim's confirmatory test (`primary`: one per claim, the claims together one family,
corrected with Holm), the per-point rows (`point`: secondary, their own Benjamini-Hochberg family, or
Holm where they are the only tests, in a sweep without a design) and other endpoints (`secondary`:
descriptive, numbers and no word). Within a family only the rows that pass the testability gate
(benchmark/analysis/gate.py) are adjusted and worded; the others read their gate's reason. Every row
carries its minimum detectable effect at its family's level alpha / m.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from benchmark.analysis import gate, stats, varratio
from benchmark.analysis.comparisons import Options

PRIMARY, POINT, SECONDARY = "primary", "point", "secondary"  # a row's role
DESCRIPTIVE = "descriptive"  # a secondary endpoint: numbers, no word

CLAIM_COLUMNS = [
    "claim",
    "role",
    "points",
    "task",
    "seq_len",
    "cell",
    "variant",
    "baseline",
    "endpoint",
    "higher_is_better",
    "n",
    "n_treat",
    "n_base",
    "paired",
    "variant_mean",
    "baseline_mean",
    "mean_diff",
    "ci_low",
    "ci_high",
    "p_value",
    "p_adjusted",
    "margin",
    "p_equivalent",
    "mde",
    "prob_improvement",
    "note",
    "verdict",
]


NUMERIC = (
    "n",
    "n_treat",
    "n_base",
    "variant_mean",
    "baseline_mean",
    "mean_diff",
    "ci_low",
    "ci_high",
    "p_value",
    "p_adjusted",
    "margin",
    "p_equivalent",
    "mde",
    "prob_improvement",
    "se",
    "df",
)


def _mde(r: pd.Series, alpha: float) -> float:
    """The row's minimum detectable effect at `alpha`: noncentral t, or (a spread ratio) simulated."""
    sizes = r.get("sizes")
    if isinstance(sizes, tuple):  # a spread ratio: simulated; () where there was no spread to simulate from
        return varratio.Design(sizes).mde(alpha) if sizes else math.nan
    return stats.mde(r["se"], r["df"], alpha)


def _family(rows: pd.DataFrame, method: stats.Adjust, opts: Options) -> pd.DataFrame:
    """One family: the testable rows adjusted together and worded; the others read their gate's reason."""
    ok = rows["gate"].fillna("") == ""
    fam = ok & (rows["n"] >= opts.min_seeds) & np.isfinite(rows["p_value"].astype(float))
    alpha = opts.alpha / max(1, int(fam.sum()))
    out = gate.worded(
        rows,
        rows["gate"],
        lambda r: stats.add_words(r, adjust_method=method, min_seeds=opts.min_seeds, alpha=opts.alpha, test=opts.test),
    )
    out["mde"] = [_mde(r, alpha) for _, r in out.iterrows()]
    return out


def words(t: pd.DataFrame, opts: Options, exploratory: bool) -> pd.DataFrame:
    """Holm over the claims' confirmatory tests; BH over the per-point rows (Holm where they are the only
    tests: an exploratory sweep); descriptive rows get numbers and no word."""
    t = t.assign(gate=t["gate"].fillna("")) if "gate" in t else t.assign(gate="")
    prim = _family(t[t["role"] == PRIMARY], stats.Adjust.holm, opts)
    point = _family(t[t["role"] == POINT], stats.Adjust.holm if exploratory else stats.Adjust.bh, opts)
    sec = t[t["role"] == SECONDARY].assign(p_adjusted=np.nan, p_equivalent=np.nan, verdict=DESCRIPTIVE)
    sec["mde"] = [_mde(r, opts.alpha) for _, r in sec.iterrows()]
    return pd.concat([prim, point, sec], ignore_index=True)

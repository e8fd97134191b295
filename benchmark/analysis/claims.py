"""The seeds' claims as tests declared before looking at the data.

Each claim names the runs it compares, its endpoints (with their direction) and, where the
claim presupposes something of the baseline, the condition under which it can be tested at a
point at all. Every (claim, endpoint, task, seq_len, cell, variant) is one comparison; all
comparisons of all claims form one family for the multiplicity correction. A claim the sweep
cannot test says so, with the reason.

(a) BN speeds up training: `bn` vs `none` on steps to the task's target validation score (a run
    that never reached it counts as the step budget: a lower bound, favouring neither; a point where
    no run of either side reached it is left out, with the reason) and on the area under the
    validation-score curve.
(b) BN eases vanishing gradients: `bn` vs `none` on log10(‖∂L/∂h_1‖/‖∂L/∂h_T‖) before and after
    training, at the points where `none`'s gradient vanishes (its median log10 ratio < 0).
(c) Dropout curbs overfitting: `dropout` vs `none` on the generalisation gap (train score -
    test score) and the test score, at the points where `none` overfits (mean gap > MIN_GAP).
(d) BN and dropout complement each other: `both` vs the better of `bn` and `dropout` at that
    point, chosen by mean validation score (the test split selects nothing), on the test score.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import pandas as pd

from benchmark.analysis import stats
from benchmark.analysis.comparisons import (BASELINE, KEY, Options, compare_rows, family, ordered, sort_rows,
                                           steps_to_target_or_budget)

MIN_GAP = 0.02  # `none` overfits at a point when its mean train-test score gap exceeds this
CLAIM_COLUMNS = ["claim", "task", "seq_len", "cell", "variant", "baseline", "endpoint", "higher_is_better", "n",
                 "n_treat", "n_base", "paired", "variant_mean", "baseline_mean", "mean_diff", "ci_low", "ci_high",
                 "p_value", "p_adjusted", "prob_improvement", "verdict"]


@dataclass(frozen=True)
class Claim:
    key: str
    title: str
    treatment: str  # regulariser family of the treated runs
    endpoints: tuple[tuple[str, bool], ...]  # (column, higher_is_better)
    condition: Optional[Callable[[pd.DataFrame], tuple[bool, str]]] = None  # on `none`'s runs at a point
    condition_text: str = ""
    against_best_of: tuple[str, ...] = ()  # compare with the better of these families instead of `none`


def _vanishes(base: pd.DataFrame) -> tuple[bool, str]:
    r = base["log10_grad_ratio_start"].median()
    return bool(np.isfinite(r) and r < 0), f"none's median log10 ratio at start {r:+.2f}"


def _overfits(base: pd.DataFrame) -> tuple[bool, str]:
    g = base["score_gap"].mean()
    return bool(np.isfinite(g) and g > MIN_GAP), f"none's mean gap {g:+.3f}"


CLAIMS: tuple[Claim, ...] = (
    Claim("a", "BN speeds up training", "bn", (("steps_to_target_or_budget", False), ("val_score_auc", True))),
    Claim("b", "BN eases vanishing gradients", "bn", (("log10_grad_ratio_start", True), ("log10_grad_ratio_end", True)),
          _vanishes, "none's gradient vanishes (median log10 ratio < 0)"),
    Claim("c", "Dropout curbs overfitting", "dropout", (("score_gap", False), ("test_score", True)),
          _overfits, f"none overfits (mean train - test score gap > {MIN_GAP})"),
    Claim("d", "BN and dropout complement each other", "both", (("test_score", True),),
          against_best_of=("bn", "dropout")),
)


def endpoints(selected: pd.DataFrame) -> pd.DataFrame:
    """The derived endpoints the claims use, as columns of the run table."""
    d = selected.copy()
    for w in ("start", "end"):
        r = pd.to_numeric(d.get(f"hidden_grad_ratio_{w}"), errors="coerce")
        d[f"log10_grad_ratio_{w}"] = np.log10(r.where(r > 0))
    d["score_gap"] = pd.to_numeric(d.get("train_score"), errors="coerce") - pd.to_numeric(d.get("test_score"),
                                                                                          errors="coerce")
    d["steps_to_target_or_budget"] = steps_to_target_or_budget(d)
    d["family"] = d["variant"].map(family)
    return d


@dataclass
class ClaimResult:
    claim: Claim
    rows: pd.DataFrame  # this claim's comparisons (after the family-wide correction)
    not_testable: str = ""  # why, when the sweep cannot test it at all
    skipped: list[str] = field(default_factory=list)  # points where the condition failed, with the numbers

    @property
    def summary(self) -> str:
        if self.not_testable:
            return f"not testable in this sweep: {self.not_testable}"
        counts = self.rows["verdict"].value_counts()
        worded = int(counts.get(stats.HELPS, 0) + counts.get(stats.HURTS, 0) + counts.get(stats.UNCLEAR, 0))
        return (f"supported in {int(counts.get(stats.HELPS, 0))}, contradicted in {int(counts.get(stats.HURTS, 0))}, "
                f"no clear effect in {int(counts.get(stats.UNCLEAR, 0))} of {worded} comparisons")


def _pairs(claim: Claim, d: pd.DataFrame, skipped: list[str]) -> list:
    pairs = []
    for keys, g in d.groupby(KEY, sort=True):
        where = ", ".join(f"{k}={v}" for k, v in zip(KEY, keys))
        base_name = BASELINE
        if claim.against_best_of:
            cands = g[g["family"].isin(claim.against_best_of)]
            if cands.empty:
                continue
            base_name = str(cands.groupby("variant")["val_score"].mean().sort_values(ascending=False,
                                                                                      kind="stable").index[0])
        base = g[g["variant"] == base_name]
        if base.empty:
            continue
        if claim.condition is not None:
            ok, why = claim.condition(base)
            if not ok:
                skipped.append(f"{where}: {why}")
                continue
        for v in ordered(g.loc[g["family"] == claim.treatment, "variant"].unique()):
            pairs.append(({**dict(zip(KEY, keys)), "variant": v, "baseline": base_name}, g[g["variant"] == v], base))
    return pairs


def _uninformative(col: str, treat: pd.DataFrame, base: pd.DataFrame) -> Optional[str]:
    """Why a comparison on `col` would carry no information at a point (None when it would)."""
    if col == "steps_to_target_or_budget":
        both = pd.concat([treat, base])
        if pd.to_numeric(both.get("steps_to_target"), errors="coerce").notna().sum() == 0:
            target = pd.to_numeric(both.get("target_score"), errors="coerce").dropna()
            return ("steps to target: no run of either side reached the target validation score"
                    + (f" {target.iloc[0]:g}" if len(target) else "") + " within its budget")
    return None


def _informative_pairs(col: str, pairs: list, skipped: list[str]) -> list:
    """The pairs worth comparing on `col`; the others are noted in `skipped` with the reason."""
    keep = []
    for ident, treat, base in pairs:
        why = _uninformative(col, treat, base)
        if why is None:
            keep.append((ident, treat, base))
        else:
            skipped.append(", ".join(f"{k}={ident[k]}" for k in KEY) + f" ({ident['variant']}): {why}")
    return keep


def _why_not(claim: Claim, d: pd.DataFrame, skipped: list[str], opts: Options) -> str:
    fams = set(d["family"]) if len(d) else set()
    if claim.treatment not in fams:
        return f"no `{claim.treatment}` runs"
    need = set(claim.against_best_of) or {BASELINE}
    if not need & fams:
        return "no " + " or ".join(f"`{n}`" for n in sorted(need)) + " runs to compare with"
    if skipped:
        why = f"the condition ({claim.condition_text}) holds nowhere" if claim.condition else "nothing to compare"
        return why + ": " + "; ".join(skipped[:6]) + (f"; ... ({len(skipped)} points)" if len(skipped) > 6 else "")
    return "no point has both sides"


def run_claims(selected: pd.DataFrame, opts: Options) -> list[ClaimResult]:
    """Every claim's comparisons, corrected together; one result per claim."""
    d = endpoints(selected)
    results, tables = [], []
    for claim in CLAIMS:
        skipped: list[str] = []
        pairs = _pairs(claim, d, skipped)
        rows = [r for col, hib in claim.endpoints
                for r in compare_rows(d, _informative_pairs(col, pairs, skipped), col, hib, opts)]
        t = pd.DataFrame(rows).assign(claim=claim.key) if rows else pd.DataFrame(columns=CLAIM_COLUMNS)
        results.append(ClaimResult(claim, t, "" if rows else _why_not(claim, d, skipped, opts), skipped))
        tables.append(t)
    everything = pd.concat([t for t in tables if len(t)], ignore_index=True) if any(len(t) for t in tables) \
        else pd.DataFrame(columns=[c for c in CLAIM_COLUMNS if c not in ("p_adjusted", "verdict")])
    everything = stats.add_words(everything, adjust_method=opts.adjust, min_seeds=opts.min_seeds, alpha=opts.alpha)
    for r in results:
        r.rows = sort_rows(everything[everything["claim"] == r.claim.key])[CLAIM_COLUMNS] \
            if len(everything) else pd.DataFrame(columns=CLAIM_COLUMNS)
        if len(r.rows) and (r.rows["n"] < opts.min_seeds).all():
            r.not_testable = (f"at most {int(r.rows['n'].max())} seeds per comparison, fewer than "
                              f"--min-seeds {opts.min_seeds} (the numbers are shown, without a word)")
    return results


def claims_table(results: list[ClaimResult]) -> pd.DataFrame:
    """All claims' comparisons in one table (claims.csv)."""
    tabs = [r.rows for r in results if len(r.rows)]
    return pd.concat(tabs, ignore_index=True)[CLAIM_COLUMNS] if tabs else pd.DataFrame(columns=CLAIM_COLUMNS)

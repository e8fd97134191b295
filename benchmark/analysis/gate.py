"""The testability gate: a comparison is tested only where it can inform.

Before any test, each comparison's arms are checked (`check`):
1. the arms learned: an arm learned when the one-sided lower 95 % bound (Student t over its runs) of its
   mean score clears chance (0 on the normalised score) by the declared `learned_margin`; a run with no
   score (diverged to NaN) counts as chance. Which arms must learn is the claim's rule: `both` (the
   regulariser claims: an effect between two arms at chance is a floor, not an answer), `either` (one arm
   learning is enough), `reached` (claim (a): every arm reached the target in at least one run, so the time
   to target measures speed and not whether it is reached at all), `reached either` (claim (g): some run of
   either arm reached the target — that the tanh RNN never does is the claim itself), or `none` (claim (b):
   a probe at initialisation, before any learning);
2. the endpoint is free to vary: an endpoint read from the scores is pinned where runs stop at the first
   evaluation at or above the target (`stop_at_target`) and every run of the arms reached it: it then
   measures the overshoot within one evaluation interval;
3. equal budgets: the same step budget (`steps`) in every arm, and the test score read at the same kind
   of checkpoint (`test_checkpoint`: last or best validation) where the runs record it.

A comparison that fails reads "not testable: <reason>", keeps its numbers and joins no family.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Optional

import numpy as np
import pandas as pd
from scipy import stats as ss

BOTH, EITHER, REACHED, REACHED_EITHER, NONE = "both", "either", "reached", "reached either", "none"
NOT_TESTABLE = "not testable"


def _num(g: pd.DataFrame, col: str) -> pd.Series:
    """A column as numbers; all NaN where the runs lack it (no data, never an error)."""
    return pd.to_numeric(g[col], errors="coerce") if col in g else pd.Series(np.nan, index=g.index, dtype=float)


def lower_bound(scores: pd.Series, level: float = 0.95) -> float:
    """One-sided lower `level` bound of the mean score; NaN (a diverged run) counts as chance (0)."""
    x = pd.to_numeric(scores, errors="coerce").fillna(0.0).to_numpy(float)
    if x.size < 2:
        return -math.inf
    sd = float(x.std(ddof=1))
    return float(x.mean() - (ss.t.ppf(level, x.size - 1) * sd / math.sqrt(x.size) if sd > 0 else 0.0))


def learned(scores: pd.Series, margin: float, level: float = 0.95) -> bool:
    return lower_bound(scores, level) > margin


def _learn_reason(arms: Mapping[str, pd.DataFrame], rule: str, score: str, margin: float, level: float) -> str:
    if rule == NONE:
        return ""
    if rule in (REACHED, REACHED_EITHER):
        missed = [a for a, g in arms.items() if not _num(g, "steps_to_target").notna().any()]
        if rule == REACHED_EITHER and len(missed) < len(arms):
            return ""
        return f"{' and '.join(missed)} never reached the target" if missed else ""
    bounds = {a: lower_bound(g[score], level) if score in g else -math.inf for a, g in arms.items()}
    failed = [a for a, b in bounds.items() if not b > margin]
    if (rule == BOTH and not failed) or (rule == EITHER and len(failed) < len(arms)):
        return ""
    shown = ", ".join(f"{a} {_fmt(bounds[a])}" for a in failed)
    who = "no arm learned" if len(failed) == len(arms) else " and ".join(failed) + " did not learn"
    return f"{who} ({score}: lower {100 * level:g} % bound {shown}; needs > {margin:g} above chance)"


def _fmt(x: float) -> str:
    return f"{x:+.3f}" if np.isfinite(x) else "n/a (fewer than 2 runs)"


def _budget_reason(arms: Mapping[str, pd.DataFrame]) -> str:
    steps = {a: sorted(_num(g, "steps").dropna().unique()) for a, g in arms.items()}
    if len({s for v in steps.values() for s in v}) > 1:
        return (
            "unequal budgets ("
            + ", ".join(f"{a} {'/'.join(f'{s:g}' for s in v)}" for a, v in steps.items())
            + " steps)"
        )
    return ""


def _checkpoint_reason(arms: Mapping[str, pd.DataFrame]) -> str:
    seen = {
        a: sorted(g["test_checkpoint"].dropna().astype(str).unique()) for a, g in arms.items() if "test_checkpoint" in g
    }
    if len({c for v in seen.values() for c in v}) > 1:
        return (
            "test scores read at different checkpoints ("
            + ", ".join(f"{a} {'/'.join(v)}" for a, v in seen.items())
            + ")"
        )
    return ""


def _pinned(arms: Mapping[str, pd.DataFrame]) -> bool:
    """Runs stop at the target, and every run of every arm reached it (where `steps_to_target` is recorded):
    then each score is the target plus an overshoot. Where an arm's runs miss the target, their scores
    differ by more than the overshoot (the tanh RNN that never reaches it against BN that does)."""
    stops = any(
        g.get("stop_at_target", pd.Series(False, index=g.index)).fillna(False).astype(bool).any() for g in arms.values()
    )
    return stops and all("steps_to_target" not in g or bool(g["steps_to_target"].notna().all()) for g in arms.values())


def check(
    arms: Mapping[str, pd.DataFrame],
    *,
    rule: str,
    score: str = "test_score",
    pinnable: bool = True,
    margin: float,
    level: float = 0.95,
) -> Optional[str]:
    """None where the comparison of `arms` (name -> its runs) can inform, else the reason it cannot."""
    reasons = [
        _learn_reason(arms, rule, score, margin, level),
        "pinned: every run stopped at the first evaluation at or above the target (stop_at_target), so the "
        "score measures only the overshoot"
        if pinnable and _pinned(arms)
        else "",
        _budget_reason(arms),
        _checkpoint_reason(arms) if pinnable else "",
    ]
    found = [r for r in reasons if r]
    return "; ".join(found) if found else None


def word(reason: str) -> str:
    """The verdict a comparison that fails the gate shows ("not testable at this budget: ..." as it is)."""
    return reason if reason.startswith(NOT_TESTABLE) else f"{NOT_TESTABLE}: {reason}"


def worded(rows: pd.DataFrame, reasons: pd.Series, word_family: Callable[[pd.DataFrame], pd.DataFrame]) -> pd.DataFrame:
    """`rows` worded: those whose `reasons` is empty as one family (`word_family`: adjust and word them), the
    others with their gate's reason as the verdict and no adjusted p: they join no family."""
    ok = reasons.fillna("") == ""
    rest = rows[~ok].assign(p_adjusted=np.nan, p_equivalent=np.nan, verdict=[word(r) for r in reasons[~ok]])
    return pd.concat([word_family(rows[ok]), rest]).loc[rows.index] if len(rows) else word_family(rows)

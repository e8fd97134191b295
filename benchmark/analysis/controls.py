"""The instrument check: positive controls, effects whose direction the literature establishes, each
reproduced in the suite's own regime at the point its design declares.

A control passes when its claim's per-point comparison there is testable (benchmark/analysis/gate.py) and
points the literature's way at p < alpha (two-sided, unadjusted: each control checks its own instrument).
Anything else fails, and the report says so above every other word: a failed control means an
"inconclusive" or "no effect" elsewhere may be a blind instrument rather than the data's answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from benchmark.analysis import claims as claims_mod
from benchmark.analysis import design as design_mod
from benchmark.analysis import gate

PASS, FAIL = "pass", "fail"


@dataclass(frozen=True)
class ControlResult:
    control: design_mod.Control
    outcome: str  # pass / fail
    why: str  # what decided it
    row: Optional[pd.Series]  # the claim's per-point row there (None: the sweep has none)


def _row(result: claims_mod.ClaimResult, point: dict) -> Optional[pd.Series]:
    rows = result.rows[result.rows["role"] == claims_mod.POINT] if len(result.rows) else result.rows
    for _, r in rows.iterrows():
        have = {"task": r["task"], "seq_len": r["seq_len"], "cell": r["cell"], "variant": r["variant"]}
        if all(k in have and _same(k, have[k], v) for k, v in point.items()):
            return r
    return None


def _same(key: str, a: object, b: object) -> bool:
    return int(a) == int(b) if key == "seq_len" else str(a) == str(b)  # type: ignore[call-overload]


def check(
    results: list[claims_mod.ClaimResult], design: Optional[design_mod.Design], alpha: float
) -> list[ControlResult]:
    """Each declared control's outcome (none without a design)."""
    if design is None:
        return []
    by_key = {r.claim.key: r for r in results}
    out = []
    for c in design.controls:
        r = _row(by_key[c.claim], c.point) if c.claim in by_key else None
        if r is None:
            out.append(ControlResult(c, FAIL, "the sweep has no comparison of this claim at the control's point", None))
        elif str(r["verdict"]).startswith(gate.NOT_TESTABLE):
            out.append(ControlResult(c, FAIL, str(r["verdict"]), r))
        elif np.isfinite(r["p_value"]) and r["p_value"] < alpha and r["mean_diff"] > 0:
            out.append(ControlResult(c, PASS, f"the literature's direction at p = {r['p_value']:.3g} < {alpha:g}", r))
        else:
            why = (
                f"the literature's direction, but p = {r['p_value']:.3g} (needs < {alpha:g})"
                if r["mean_diff"] > 0
                else f"against the literature's direction (p = {r['p_value']:.3g})"
            )
            out.append(ControlResult(c, FAIL, why, r))
    return out

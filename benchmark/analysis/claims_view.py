"""The report's claims sections as template data: "Claims at a glance" (one row per claim: its confirmatory
test, effect, interval, adjusted p, MDE and word, or why it has none), the "Instrument check" (each
positive control with its numbers and pass / fail), the design's hash and seeds, and each claim's
per-point and descriptive rows. Ratio endpoints are tested as log ratios and shown as ratios.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import pandas as pd

from benchmark.analysis import claims as claims_mod
from benchmark.analysis import controls as controls_mod
from benchmark.analysis import design as design_mod
from benchmark.analysis import gate, stats
from benchmark.analysis.html import fmt, fmt_p, present

WORD_CLASS = {
    stats.HELPS: "v-helps",
    stats.HURTS: "v-hurts",
    stats.UNCLEAR: "v-unclear",
    stats.NO_EFFECT: "v-unclear",
    stats.TOO_FEW: "v-few",
}
LOG_ENDPOINTS = {c.primary.column for c in claims_mod.CLAIMS if c.primary.log}


def word_class(verdict: Any) -> str:
    return WORD_CLASS.get(str(verdict), "v-nodata")


def effect(r: pd.Series) -> dict[str, str]:
    """The row's effect, interval and MDE in the endpoint's units: ratios for log-ratio endpoints."""
    if r["endpoint"] in LOG_ENDPOINTS:
        ratio = lambda x: f"{math.exp(x):.3g}" if present(x) and math.isfinite(x) else "—"  # noqa: E731
        return {
            "diff": "× " + ratio(r["mean_diff"]),
            "ci": f"[{ratio(r['ci_low'])}, {ratio(r['ci_high'])}]",
            "mde": "× " + ratio(r["mde"]),
            "margin": "× " + ratio(r["margin"]),
        }
    return {
        "diff": fmt(r["mean_diff"], sign=True),
        "ci": f"[{fmt(r['ci_low'], sign=True)}, {fmt(r['ci_high'], sign=True)}]",
        "mde": fmt(r["mde"]),
        "margin": fmt(r["margin"]),
    }


def row_view(r: pd.Series) -> dict[str, Any]:
    """One claim row as the template shows it."""
    return {
        **{k: ("" if not present(r[k]) else r[k]) for k in ("role", "points", "variant", "baseline", "endpoint")},
        **effect(r),
        "base_mean": fmt(r["baseline_mean"]),
        "p": fmt_p(r["p_value"]),
        "p_adj": fmt_p(r["p_adjusted"]),
        "p_eq": fmt_p(r["p_equivalent"]),
        "n": int(r["n"]) if present(r["n"]) else 0,
        "paired": bool(r["paired"]) if present(r["paired"]) else False,
        "verdict": r["verdict"],
        "cls": word_class(r["verdict"]),
        "note": r["note"] if isinstance(r["note"], str) else "",
    }


def glance(results: list[claims_mod.ClaimResult]) -> list[dict[str, Any]]:
    """One row per claim: its confirmatory test and word, or why it has none."""
    out = []
    for res in results:
        c, prim = res.claim, res.primary
        base = {"key": c.key, "title": c.title, "test": c.test}
        if prim is None:
            counts = res.rows.loc[res.rows["role"] == claims_mod.POINT, "verdict"].map(_short).value_counts()
            tally = ", ".join(f"{n} {w}" for w, n in counts.items())
            out.append({**base, "row": None, "status": res.status, "points": tally, "component": ""})
            continue
        part = prim["endpoint"] if prim["endpoint"] != c.primary.column else ""  # an intersection-union component
        out.append({**base, "row": row_view(prim), "status": "", "points": prim["points"], "component": part})
    return out


def _short(verdict: Any) -> str:
    return gate.NOT_TESTABLE if str(verdict).startswith(gate.NOT_TESTABLE) else str(verdict)


def instrument(checked: list[controls_mod.ControlResult]) -> dict[str, Any]:
    """The positive controls with their numbers; `failed` lists the ones the report puts above every word."""
    rows = []
    for c in checked:
        r = c.row
        rows.append(
            {
                "name": c.control.name,
                "claim": c.control.claim,
                "point": design_mod.describe(c.control.point),
                "source": c.control.source,
                "outcome": c.outcome,
                "why": c.why,
                **(effect(r) if r is not None else {"diff": "—", "ci": "", "mde": "—", "margin": "—"}),
                "p": fmt_p(r["p_value"]) if r is not None else "—",
                "n": int(r["n"]) if r is not None and present(r["n"]) else 0,
            }
        )
    return {"rows": rows, "failed": [r for r in rows if r["outcome"] != controls_mod.PASS]}


def design_view(design: Optional[design_mod.Design], error: str = "") -> dict[str, Any]:
    """The design's identity for the report: hash, experiment and seeds (or why there is none)."""
    if design is None:
        return {"declared": False, "error": error}
    return {
        "declared": True,
        "error": "",
        "hash": design.hash,
        "experiment": design.experiment,
        "tuning": " ".join(map(str, design.tuning_seeds)),
        "confirmation": " ".join(map(str, design.confirmation_seeds)),
        "n_confirmation": len(design.confirmation_seeds),
        "learned_margin": f"{design.learned_margin:g}",
    }


def details(results: list[claims_mod.ClaimResult]) -> list[dict[str, Any]]:
    """Each claim's per-point and descriptive rows, folded under its heading."""
    return [
        {
            "key": r.claim.key,
            "title": r.claim.title,
            "condition": r.claim.condition_text,
            "params": ", ".join(f"{k} {v:g}" for k, v in r.params.items()),
            "rows": [row_view(x) for _, x in r.rows[r.rows["role"] != claims_mod.PRIMARY].iterrows()],
        }
        for r in results
    ]

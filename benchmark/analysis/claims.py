"""The seeds' claims (a)-(h): each claim's endpoint and test defined here, where to test it declared in the
sweep's design (`plan/design.json`, benchmark/analysis/design.py).

Each claim has **one confirmatory test**, over the points its design declares that pass the testability
gate (benchmark/analysis/gate.py): at one point, the comparison there; at several, a stratified test (each
seed's mean paired difference over the points, one test over seeds; for a ratio endpoint the mean of the
points' log ratios). The claims' confirmatory tests are one family, corrected with **Holm**. Every point
where the sweep has a claim's arms also gets a **per-point** row (secondary: which length, which cell),
corrected as its own family with Benjamini-Hochberg, shown with numbers, never as the claim's word. Other
endpoints (the gap of (e), the interaction of (d), the widening of (g), the divergences of (f), the
probe per BN gain of (b)) are **descriptive**: numbers, no word. A row that fails the gate reads
"not testable: <reason>", keeps its numbers and joins no family. "no effect" needs an equivalence test
(TOST) within the margin the design declares.

A sweep without a design has no confirmatory tests: its per-point rows are the claims' only rows, in one
Holm family, labelled exploratory (as before the designs).

(a) BN speeds up training: steps to the validation target as survival data (misses censored at the
    budget), ratio of restricted means none / bn (benchmark/analysis/survival.py).
(b) BN eases vanishing gradients: |log10 ‖∂L/∂h_1‖/‖∂L/∂h_T‖| of the eval-mode probe at initialisation
    with BN's population statistics filled on training batches, capped at the declared decades, none
    minus bn, where none's gradient vanishes.
(c) Dropout curbs overfitting: a better test score AND a smaller train - test gap (intersection-union),
    where none overfits.
(d) BN and dropout complement each other: `both` beats `bn` AND beats `dropout` on the test score.
(e) BN improves the test score.
(f) BN stabilises training: the width in decades of the learning rates whose validation score reaches
    the declared fraction of the seed's best, on a log-spaced grid of at least 5 rates.
(g) Gated cells carry dependencies the tanh RNN cannot: lstm / gru vs rnn (reg none), test score.
(h) Dropout makes the test score steadier across seeds: spread ratio none / dropout
    (benchmark/analysis/varratio.py); needs the seeds that resolve the declared variance ratio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import pandas as pd

from benchmark.analysis import design as design_mod
from benchmark.analysis import estimates as est
from benchmark.analysis import gate, stats, varratio
from benchmark.analysis.comparisons import BASELINE, KEY, PRIMARY_MARGIN, Options, family, sort_rows
from benchmark.analysis.families import CLAIM_COLUMNS, NUMERIC, POINT, PRIMARY, SECONDARY, words
from benchmark.core import record

MIN_GAP = 0.02  # `none` overfits at a point when its mean train - test score gap exceeds this
GATED = ("lstm", "gru")


@dataclass(frozen=True)
class Endpoint:
    column: str
    higher_is_better: bool
    margin: float  # equivalence margin (TOST) in the test's units: log units where `log`
    label: str
    log: bool = False  # tested as a log ratio; the report shows the ratio


TEST = Endpoint("test_score", True, PRIMARY_MARGIN, "test score")
GAP = Endpoint("score_gap", False, 0.02, "train - test score gap")
TTT = Endpoint("rmst_ratio", True, math.log(1.25), "restricted mean steps to target, none / bn", log=True)
TTT_CELLS = Endpoint("rmst_ratio", True, math.log(1.25), "restricted mean steps to target, rnn / gated", log=True)
BALANCE = Endpoint("grad_balance_init", False, 0.5, "|log10 gradient ratio| at init, BN population filled (capped)")
WIDTH = Endpoint("lr_width", True, 0.25, "width (decades) of the rates within the fraction of the best")
STEADIER = Endpoint("spread_ratio", True, 0.5 * math.log(2.0), "spread of the test score, none / dropout", log=True)
INTERACTION = Endpoint("interaction", True, 0.02, "both - bn - dropout + none (test score)")
WIDENING = Endpoint("widening", True, 0.02, "gated - rnn test score, longest minus shortest length")
DIVERGED = Endpoint("diverged_at_top_lr", True, 0.2, "share of seeds diverged at the largest rate, none - bn")


@dataclass(frozen=True)
class Claim:
    key: str
    title: str
    primary: Endpoint
    test: str  # the confirmatory test, as the report states it
    rule: str = gate.BOTH  # which arms must have learned
    score: str = "test_score"  # the score the learned gate reads
    pinnable: bool = True  # the endpoint is pinned where runs stop at the target
    condition_text: str = ""


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "a",
        "BN speeds up training",
        TTT,
        "ratio of restricted mean steps to the validation target, none / bn (Kaplan-Meier, misses censored at "
        "the budget), Welch t on the log ratio",
        rule=gate.REACHED,
        pinnable=False,
        condition_text="runs trained to a target",
    ),
    Claim(
        "b",
        "BN eases vanishing gradients",
        BALANCE,
        "|log10 gradient ratio| at initialisation (BN population filled), capped, none - bn, paired t over seeds",
        rule=gate.NONE,
        pinnable=False,
        condition_text="none's gradient vanishes at initialisation (median log10 ratio < 0)",
    ),
    Claim(
        "c",
        "Dropout curbs overfitting",
        TEST,
        "test score at the best checkpoint, dropout - none, paired t over seeds (the train - test gap is "
        "descriptive: with early stopping each arm is scored at its own best checkpoint, where a regulariser that "
        "lets training go on longer may fit more and still generalise better)",
        condition_text=f"none overfits (mean train - test score gap > {MIN_GAP})",
    ),
    Claim(
        "d",
        "BN and dropout complement each other",
        TEST,
        "test score, both vs bn and vs dropout, both must improve (intersection-union of paired t-tests)",
    ),
    Claim("e", "BN improves the test score", TEST, "test score, bn - none, paired t over seeds"),
    Claim(
        "f",
        "BN stabilises training",
        WIDTH,
        "width in decades of the learning rates within the declared fraction of the best validation score, "
        "bn - none, paired t over seeds",
        score="best_val_over_grid",
        pinnable=False,  # the validation score only sorts each rate into good or not: reaching the target is good
        condition_text=f"a log-spaced grid of at least {est.MIN_GRID} rates",
    ),
    Claim(
        "g",
        "Gated cells carry dependencies the tanh RNN cannot",
        TTT_CELLS,
        "ratio of restricted mean steps to the validation target, tanh RNN / gated cell (reg none, equal "
        "budgets; misses censored at the budget), Welch t on the log ratio",
        rule=gate.REACHED_EITHER,
        pinnable=False,
        condition_text="runs trained to a target",
    ),
    Claim(
        "h",
        "Dropout makes the test score steadier across seeds",
        STEADIER,
        "spread of the test score over seeds (mean |score - median|), ratio none / dropout, Welch t on the log ratio",
        condition_text="enough seeds to resolve the declared variance ratio",
    ),
)
BY_KEY = {c.key: c for c in CLAIMS}
DEFAULTS: dict[str, dict[str, float]] = {  # a claim's parameters where its design declares none
    "a": {"margin": 1.25},
    "g": {"margin": 1.25},
    "b": {"margin": 0.5, "cap_decades": 8.0},
    "f": {"margin": 0.25, "fraction": 0.9},
    "h": {"ratio": 2.0},
}


def params(key: str, spec: Optional[design_mod.ClaimSpec]) -> dict[str, float]:
    """The claim's parameters: the design's, else the defaults."""
    return {**DEFAULTS.get(key, {"margin": BY_KEY[key].primary.margin}), **(spec.params if spec else {})}


def test_margin(key: str, p: dict[str, float]) -> float:
    """The TOST margin in the test's units: a ratio's log (h: the spread ratio sqrt(variance ratio))."""
    if key in ("a", "g"):
        return math.log(p["margin"])
    if key == "h":
        return 0.5 * math.log(p.get("margin", p["ratio"]))
    return p["margin"]


# ----------------------------------------------------------------------------- endpoints per run


def endpoints(selected: pd.DataFrame, cap: float = DEFAULTS["b"]["cap_decades"]) -> pd.DataFrame:
    """The derived endpoints the claims use, as columns of the run table; a missing source column is no
    data (NaN), never an error."""
    d = selected.copy()
    d["score_gap"] = est.column(d, "train_score") - est.column(d, "test_score")
    d["family"] = d["variant"].map(family)
    sources = {"init": "hidden_grad_ratio_init_filled"}
    sources.update({f"init_gain_{g:g}": f"hidden_grad_ratio_init_filled_gain_{g:g}" for g in record.INIT_GAINS})
    for name, col in sources.items():
        r = est.column(d, col)
        d[f"log10_grad_ratio_{name}"] = np.log10(r.where(r > 0))
        d[f"grad_balance_{name}"] = d[f"log10_grad_ratio_{name}"].abs().clip(upper=cap)
    return d


# ----------------------------------------------------------------------------- where a claim compares


@dataclass
class Point:
    """One comparison: where, the labels, and each arm's runs (for (f): each arm's per-seed widths)."""

    keys: tuple  # (task, seq_len, cell)
    variant: str
    baseline: str
    arms: dict[str, pd.DataFrame]
    parts: list[tuple[str, str]] = field(default_factory=list)  # (treatment arm, baseline arm) compared
    grid: tuple[float, ...] = ()  # (f): the learning rates both arms ran

    @property
    def pair(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        t, b = self.parts[0]
        return self.arms[t], self.arms[b]


def _variants(g: pd.DataFrame, fam: str) -> list[str]:
    return sorted(g.loc[g["family"] == fam, "variant"].unique())


def _vs_none(d: pd.DataFrame, fam: str) -> list[Point]:
    out = []
    for keys, g in d.groupby(KEY, sort=True):
        base = g[g["variant"] == BASELINE]
        for v in _variants(g, fam) if len(base) else []:
            out.append(Point(keys, v, BASELINE, {v: g[g["variant"] == v], BASELINE: base}, [(v, BASELINE)]))
    return out


def _points_d(d: pd.DataFrame) -> list[Point]:
    out = []
    for keys, g in d.groupby(KEY, sort=True):
        arms = {f: _variants(g, f) for f in ("both", "bn", "dropout")}
        if not all(arms.values()):
            continue
        names = {f: v[0] for f, v in arms.items()}
        runs = {names[f]: g[g["variant"] == names[f]] for f in names}
        if (g["variant"] == BASELINE).any():
            runs[BASELINE] = g[g["variant"] == BASELINE]
        parts = [(names["both"], names["bn"]), (names["both"], names["dropout"])]
        out.append(Point(keys, names["both"], f"{names['bn']} & {names['dropout']}", runs, parts))
    return out


def _points_g(d: pd.DataFrame) -> list[Point]:
    none = d[d["variant"] == BASELINE]
    out = []
    for (task, T), g in none.groupby(["task", "seq_len"], sort=True):
        base = g[g["cell"] == "rnn"]
        for cell in [c for c in GATED if c in set(g["cell"])] if len(base) else []:
            out.append(
                Point((task, T, cell), BASELINE, "rnn", {cell: g[g["cell"] == cell], "rnn": base}, [(cell, "rnn")])
            )
    return out


def _points_f(done: pd.DataFrame, fraction: float) -> list[Point]:
    d = done.assign(family=done["variant"].map(family))
    out = []
    for keys, g in d.groupby(KEY, sort=True):
        lrs = sorted(est.column(g, "lr").dropna().unique())
        base = g[g["variant"] == BASELINE]
        for v in _variants(g, "bn") if len(base) and len(lrs) >= 2 else []:
            t = est.rate_widths(g[g["variant"] == v], lrs, fraction)
            b = est.rate_widths(base, lrs, fraction)
            if len(t) or len(b):  # a point where each arm ran only its chosen rate has no grid
                out.append(Point(keys, v, BASELINE, {v: t, BASELINE: b}, [(v, BASELINE)], tuple(lrs)))
    return out


def points(claim: Claim, d: pd.DataFrame, done: pd.DataFrame, p: dict[str, float]) -> list[Point]:
    """Every point where the sweep has the claim's arms."""
    if claim.key == "d":
        return _points_d(d)
    if claim.key == "g":
        return _points_g(d)
    if claim.key == "f":
        return _points_f(done, p["fraction"])
    return _vs_none(d, "dropout" if claim.key in ("c", "h") else "bn")


# ----------------------------------------------------------------------------- gate, estimate, rows


@dataclass(frozen=True)
class Ctx:
    """What a claim's rows need besides the runs."""

    opts: Options
    learned_margin: float
    params: dict[str, float]
    # the level (h) counts its seeds at: alpha / the declared claims (a confirmatory test), alpha (a point)
    alpha_design: float


def condition(claim: Claim, pts: list[Point], ctx: Ctx) -> str:
    """The claim's own reason a comparison (one point, or the points of a stratified test) cannot inform."""
    if claim.key in ("a", "g"):
        runs = pd.concat([a for pt in pts for a in pt.arms.values()])
        trained = runs.get("stop_at_target", pd.Series(False, index=runs.index)).fillna(False).astype(bool)
        return "" if trained.all() else "not trained to a target (stop_at_target off)"
    if claim.key == "b":
        return _b_condition(pts, ctx.params["cap_decades"])
    if claim.key == "c":
        gaps = [pt.arms[BASELINE]["score_gap"].mean() for pt in pts]
        bad = [g for g in gaps if not (np.isfinite(g) and g > MIN_GAP)]
        return f"none does not overfit (mean train - test gap {bad[0]:+.3f} <= {MIN_GAP})" if bad else ""
    if claim.key == "f":
        small = [pt.grid for pt in pts if len(pt.grid) < est.MIN_GRID or not np.isfinite(est.grid_spacing(pt.grid))]
        return (
            f"a grid of {len(small[0])} rates ({', '.join(f'{x:g}' for x in small[0])}); the width needs at "
            f"least {est.MIN_GRID} log-spaced"
            if small
            else ""
        )
    return ""


def _b_condition(pts: list[Point], cap: float) -> str:
    for pt in pts:
        base, treat = pt.arms[BASELINE], pt.arms[pt.variant]
        r = base["log10_grad_ratio_init"].median()
        if not np.isfinite(r) or not treat["log10_grad_ratio_init"].notna().any():
            return "no probe at initialisation with BN's population filled (hidden_grad_ratio_init_filled)"
        if not r < 0:
            return f"none's gradient does not vanish at initialisation (median log10 ratio {r:+.2f})"
        if (pd.concat([base, treat])["grad_balance_init"].dropna() >= cap).all():
            return f"pinned: every run of both arms at the cap of {cap:g} decades"
    return ""


def _h_condition(pts: list[Point], ctx: Ctx) -> str:
    ratio, alpha = ctx.params["ratio"], ctx.alpha_design
    need = _seeds_needed(ratio, len(pts), alpha)
    have = min(int(est.column(a, "test_score").notna().sum()) for pt in pts for a in pt.arms.values())
    if have >= need:
        return ""
    where = f" at each of {len(pts)} points" if len(pts) > 1 else ""
    return (
        f"not testable at this budget: needs n ≈ {need if need <= varratio.MAX_SEEDS else f'> {varratio.MAX_SEEDS}'}"
        f" seeds per arm{where} (has {have}) to resolve a variance ratio of {ratio:g} with 80 % power at "
        f"alpha = {alpha:.3g}"
    )


_NEEDED: dict[tuple[float, int, float], int] = {}


def _seeds_needed(ratio: float, k: int, alpha: float) -> int:
    key = (ratio, k, round(alpha, 12))
    if key not in _NEEDED:
        _NEEDED[key] = varratio.seeds_needed(ratio, k, alpha)
    return _NEEDED[key]


def check(claim: Claim, pts: list[Point], ctx: Ctx, whole: bool = True) -> str:
    """'' where the comparison can inform, else why not: the gate's reasons, the claim's own at each point,
    and (`whole`) those of the comparison as a whole ((h): enough seeds for a test over these points)."""
    reasons = [
        gate.check(
            pt.arms,
            rule=claim.rule,
            score=claim.score,
            pinnable=claim.pinnable,
            margin=ctx.learned_margin,
            level=ctx.opts.level,
        )
        for pt in pts
    ]
    found = [f"{_where(pt.keys)}: {r}" if len(pts) > 1 else r for pt, r in zip(pts, reasons) if r]
    own = [condition(claim, pts, ctx), _h_condition(pts, ctx) if whole and claim.key == "h" else ""]
    return "; ".join(found + [r for r in own if r])


def estimate(claim: Claim, pts: list[Point], ctx: Ctx, key: str) -> dict[str, Any]:
    """The claim's effect over the points (one, or the stratified test's several)."""
    o, pairs = ctx.opts, [pt.pair for pt in pts]
    if claim.key in ("a", "g"):
        return est.time_ratio(pairs, o.level)
    if claim.key == "h":
        return est.spread_ratio(pairs, "test_score", o.level)
    if claim.key == "d":
        return _iut(claim, pts, ctx, key)
    col = {"b": "grad_balance_init", "f": "lr_width"}.get(claim.key, "test_score")
    return est.paired(pairs, col, claim.primary.higher_is_better, o, key)


def _iut(claim: Claim, pts: list[Point], ctx: Ctx, key: str) -> dict[str, Any]:
    """(d): `both` must beat `bn` and `dropout` (intersection-union: the row is the weaker component)."""
    parts = []
    for i in range(2):
        pairs = [(pt.arms[pt.parts[i][0]], pt.arms[pt.parts[i][1]]) for pt in pts]
        parts.append((TEST, est.paired(pairs, "test_score", True, ctx.opts, f"{key}|{i}")))
    named = [(f"{ep.column} vs {pts[0].parts[min(i, len(pts[0].parts) - 1)][1]}", r) for i, (ep, r) in enumerate(parts)]
    name, row = est.intersection_union(named)
    ep = dict(zip([n for n, _ in named], [e for e, _ in parts]))[name]
    others = "; ".join(
        f"{n} {r['mean_diff']:+.3g} [{r['ci_low']:+.3g}, {r['ci_high']:+.3g}] p={r['p_value']:.3g}"
        for n, r in named
        if n != name
    )
    return {
        **row,
        "endpoint": ep.column,
        "margin": ctx.params["margin"] if ep is TEST else ep.margin,
        "note": f"intersection-union: the row is the component {name}; the other: {others} (+ = the claim's way)",
    }


def _where(keys: tuple) -> str:
    return " ".join(str(k) if i != 1 else f"T={k}" for i, k in enumerate(keys))


def _label(claim: Claim, role: str, keys: Optional[tuple], variant: str, baseline: str, where: str) -> dict[str, Any]:
    keys = keys or (None, None, None)
    return {
        **dict(zip(KEY, keys)),
        "points": where,
        "variant": variant,
        "baseline": baseline,
        "claim": claim.key,
        "role": role,
        "endpoint": claim.primary.column,
        "higher_is_better": claim.primary.higher_is_better,
    }


def row(claim: Claim, pts: list[Point], ctx: Ctx, role: str) -> dict[str, Any]:
    """One comparison over `pts`: the gate's verdict, then the numbers (kept where it fails)."""
    key = f"{claim.key}|{role}|" + "|".join(_where(pt.keys) for pt in pts)
    keys = pts[0].keys if len(pts) == 1 else None
    out = {
        **_label(claim, role, keys, pts[0].variant, pts[0].baseline, "; ".join(_where(pt.keys) for pt in pts)),
        "margin": test_margin(claim.key, ctx.params),
        "gate": check(claim, pts, ctx),
        **estimate(claim, pts, ctx, key),
    }
    if claim.key in ("a", "g") and len(pts) == 1:
        lr = est.logrank_note(*pts[0].pair, ctx.opts, key)
        out["note"] = "; ".join(x for x in (out.get("note", ""), lr) if x)
    return out


def secondaries(claim: Claim, pt: Point, ctx: Ctx) -> list[dict[str, Any]]:
    """Descriptive rows at one point: other endpoints, numbers only."""
    o, key = ctx.opts, f"{claim.key}|{_where(pt.keys)}|secondary"
    t, b = pt.pair
    found: list[tuple[Endpoint, dict[str, Any]]] = []
    if claim.key in ("c", "e"):
        found.append((GAP, est.paired([(t, b)], GAP.column, False, o, key)))
    if claim.key == "f":
        found.append((DIVERGED, est.divergences(t, b)))
    if claim.key == "d" and BASELINE in pt.arms:
        found.append((INTERACTION, _interaction(pt, o, key)))
    if claim.key == "b":
        for g in record.INIT_GAINS:
            at_g = t.assign(grad_balance_init=t[f"grad_balance_init_gain_{g:g}"])
            r = est.paired([(at_g, b)], "grad_balance_init", False, o, f"{key}|{g:g}")
            found.append((Endpoint(f"grad_balance_init_gain_{g:g}", False, BALANCE.margin, f"at BN gain γ = {g:g}"), r))
    return [
        {
            **_label(claim, SECONDARY, pt.keys, pt.variant, pt.baseline, _where(pt.keys)),
            "endpoint": ep.column,
            "higher_is_better": ep.higher_is_better,
            "margin": ep.margin,
            "gate": "",
            **r,
        }
        for ep, r in found
        if r["n"] > 0  # an endpoint the runs do not record (a probe per gain where none ran) makes no row
    ]


def _interaction(pt: Point, o: Options, key: str) -> dict[str, Any]:
    both, bn, dr = (pt.arms[n] for n in (pt.parts[0][0], pt.parts[0][1], pt.parts[1][1]))
    per_seed = (
        est.by_seed(both, "test_score")
        - est.by_seed(bn, "test_score")
        - est.by_seed(dr, "test_score")
        + est.by_seed(pt.arms[BASELINE], "test_score")
    ).dropna()
    c = stats.compare(
        per_seed, pd.Series(0.0, index=per_seed.index), ci=o.ci, test=o.test, level=o.level, seed=o.seed, key=key
    )
    return {**c.as_dict(), "variant_mean": float(per_seed.mean()), "baseline_mean": 0.0}


def widening(claim: Claim, pts: list[Point], ctx: Ctx) -> list[dict[str, Any]]:
    """(g), descriptive: per task and gated cell, the gap at the longest minus at the shortest length."""
    out = []
    by: dict[tuple[str, str], dict[int, Point]] = {}
    for pt in pts:
        by.setdefault((pt.keys[0], pt.keys[2]), {})[int(pt.keys[1])] = pt
    for (task, cell), at in sorted(by.items()):
        if len(at) < 2:
            continue
        lo, hi = at[min(at)], at[max(at)]
        gap = lambda pt: est.by_seed(pt.pair[0], "test_score") - est.by_seed(pt.pair[1], "test_score")  # noqa: E731
        w = (gap(hi) - gap(lo)).dropna()
        o = ctx.opts
        c = stats.compare(
            w, pd.Series(0.0, index=w.index), ci=o.ci, test=o.test, level=o.level, seed=o.seed, key=f"g|{task}|{cell}|w"
        )
        out.append(
            {
                **_label(claim, SECONDARY, hi.keys, BASELINE, "rnn", f"{task} {cell} T={min(at)} -> T={max(at)}"),
                "endpoint": WIDENING.column,
                "higher_is_better": True,
                "margin": WIDENING.margin,
                "gate": "",
                **c.as_dict(),
                "variant_mean": float(w.mean()),
                "baseline_mean": 0.0,
            }
        )
    return out


# ----------------------------------------------------------------------------- the confirmatory test


def _matches(pt: Point, where: dict[str, Any]) -> bool:
    have = {**dict(zip(KEY, pt.keys)), "variant": pt.variant}
    return all(str(have[k]) == str(v) if k != "seq_len" else int(have[k]) == int(v) for k, v in where.items())


def locate(claim: Claim, spec: design_mod.ClaimSpec, pts: list[Point]) -> tuple[list[Point], list[str]]:
    """The declared points of the claim's test among the sweep's, and why any cannot be found."""
    found, why = [], []
    for where in spec.points:
        name = design_mod.describe(where)
        unknown = sorted(set(where) - {*KEY, "variant"})
        m = [pt for pt in pts if _matches(pt, where)] if not unknown else []
        if unknown:
            why.append(f"{name}: `{unknown[0]}` is not a key points are located by (task, seq_len, cell, variant)")
        elif not m:
            why.append(f"{name}: the sweep has no runs of the claim's arms there")
        elif len(m) > 1:
            why.append(f"{name}: several variants ({', '.join(pt.variant for pt in m)}); the point must name one")
        else:
            found.append(m[0])
    return found, why


def primary(
    claim: Claim, spec: design_mod.ClaimSpec, pts: list[Point], ctx: Ctx
) -> tuple[Optional[dict[str, Any]], str]:
    """The claim's confirmatory test over its declared points that pass the gate (None and why, where the
    sweep has none of them). Points that fail are left out and named; where all fail the row keeps the
    numbers over all of them and reads not testable."""
    found, missing = locate(claim, spec, pts)
    if not found:
        return None, "; ".join(missing)
    failed = {id(pt): check(claim, [pt], ctx, whole=False) for pt in found}
    passing = [pt for pt in found if not failed[id(pt)]]
    left_out = [f"{_where(pt.keys)}: {failed[id(pt)]}" for pt in found if failed[id(pt)]] + missing
    r = row(claim, passing or found, ctx, PRIMARY)
    if not passing:
        r["gate"] = "no declared point passes the gate: " + "; ".join(left_out)
    elif left_out:
        r["note"] = "; ".join(x for x in (r.get("note", ""), "left out: " + "; ".join(left_out)) if x)
    return r, ""


# ----------------------------------------------------------------------------- every claim


EXPLORATORY = "exploratory: no declared test (the sweep has no plan/design.json)"


@dataclass
class ClaimResult:
    claim: Claim
    rows: pd.DataFrame  # its confirmatory row (if any), per-point rows and descriptive rows
    status: str = ""  # why it has no confirmatory row
    spec: Optional[design_mod.ClaimSpec] = None
    params: dict[str, float] = field(default_factory=dict)

    @property
    def primary(self) -> Optional[pd.Series]:
        p = self.rows[self.rows["role"] == PRIMARY]
        return p.iloc[0] if len(p) else None


def _status(claim: Claim, spec: Optional[design_mod.ClaimSpec], design: Optional[design_mod.Design]) -> str:
    if design is None:
        return EXPLORATORY
    if spec is None:
        return "not declared in the design: no confirmatory test"
    if spec.needs:
        return f"needs the GPU regime ({spec.needs})" + (f": {spec.why}" if spec.why else "")
    return ""


def _claim_rows(
    claim: Claim, d: pd.DataFrame, done: pd.DataFrame, opts: Options, design: Optional[design_mod.Design]
) -> ClaimResult:
    spec = design.claims.get(claim.key) if design is not None else None
    p = params(claim.key, spec)
    margin = design.learned_margin if design is not None else design_mod.LEARNED_MARGIN
    declared = sum(1 for c in design.claims.values() if c.points) if design is not None else 0
    ctx_point = Ctx(opts, margin, p, opts.alpha)
    pts = points(claim, d, done, p)
    rows = [row(claim, [pt], ctx_point, POINT) for pt in pts]
    rows += [r for pt in pts for r in secondaries(claim, pt, ctx_point)] + (
        widening(claim, pts, ctx_point) if claim.key == "g" else []
    )
    status = _status(claim, spec, design)
    if not status and spec is not None:
        r, status = primary(claim, spec, pts, Ctx(opts, margin, p, opts.alpha / max(1, declared)))
        rows = ([r] if r is not None else []) + rows
    return ClaimResult(claim, pd.DataFrame(rows), status, spec, p)


def run_claims(
    selected: pd.DataFrame,
    opts: Options,
    done: Optional[pd.DataFrame] = None,
    design: Optional[design_mod.Design] = None,
) -> list[ClaimResult]:
    """Every claim's rows, each family worded; one result per claim. `done` (every finished run, all
    settings) feeds claim (f), which needs the whole learning-rate grid; `design` declares the tests."""
    cap = params("b", design.claims.get("b") if design is not None else None)["cap_decades"]
    d = endpoints(selected, cap)
    found = [_claim_rows(c, d, done if done is not None else selected, opts, design) for c in CLAIMS]
    table = (
        pd.concat([r.rows.assign(_claim=r.claim.key) for r in found if len(r.rows)], ignore_index=True)
        if any(len(r.rows) for r in found)
        else pd.DataFrame()
    )
    if len(table):
        table = words(table, opts, exploratory=design is None)
    for r in found:
        mine = table[table["_claim"] == r.claim.key] if len(table) else pd.DataFrame()
        r.rows = _ordered(mine)
        if not r.status and r.primary is None and not len(r.rows):
            r.status = "the sweep lacks the arms this claim compares"
    return found


def _ordered(rows: pd.DataFrame) -> pd.DataFrame:
    """The confirmatory row first, then the per-point rows, then the descriptive ones, each in reading order."""
    cols = [*CLAIM_COLUMNS, "gate", "se", "df", "sizes"]
    if not len(rows):
        return pd.DataFrame({c: pd.Series(dtype=float if c in NUMERIC else object) for c in cols})
    rank = {PRIMARY: 0, POINT: 1, SECONDARY: 2}
    out = rows.reindex(columns=cols).copy()
    numbers = [c for c in cols if c in NUMERIC]
    out[numbers] = out[numbers].apply(pd.to_numeric, errors="coerce").astype(float)
    out = sort_rows(out)
    return out.sort_values("role", key=lambda r: r.map(rank), kind="stable").reset_index(drop=True)


def claims_table(results: list[ClaimResult]) -> pd.DataFrame:
    """All claims' rows in one table (claims.csv)."""
    tabs = [r.rows for r in results if len(r.rows)]
    return pd.concat(tabs, ignore_index=True)[CLAIM_COLUMNS] if tabs else pd.DataFrame(columns=CLAIM_COLUMNS)

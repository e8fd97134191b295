"""The seeds' claims, each with one primary endpoint declared here, tested as the literature means it.

Every claim is tested at each (task, seq_len, cell) where the sweep has its arms, on the confirmation
seeds at the settings the tuning seeds chose (comparisons.select). The primary rows of all claims form
one family, corrected with Holm; a secondary endpoint is tested only where its primary was rejected
(fixed sequence: its adjusted p is the larger of its own p and its primary's adjusted p), otherwise it is
shown as descriptive. "no effect" needs an equivalence test (TOST) within the endpoint's declared margin.

(a) BN speeds up training: time to the validation target as survival data, `bn` vs `none` (runs trained
    to a target only): difference of restricted mean time to target (Kaplan-Meier, misses censored at
    the budget), log-rank p.
(b) BN eases vanishing gradients: distance from balance |log10 ‖∂L/∂h_1‖/‖∂L/∂h_T‖| of the eval-mode probe
    after training, BN with its estimated population (secondary: at the start, where BN's population
    statistics are still their initial values), where `none`'s gradient vanishes; exploding is not help.
(c) Dropout curbs overfitting: test score primary; supported only with a better test score AND a smaller
    train - test gap (intersection-union test: p = the larger one-sided p), where `none` overfits.
(d) BN and dropout complement each other: `both` beats `bn` and beats `dropout` on the test score
    (min-test: the smaller improvement, p = the larger p), paired by seed; secondary: the 2x2
    interaction contrast both - bn - dropout + none.
(e) BN improves the test score: `bn` vs `none`; secondary: the train - test gap.
(f) BN stabilises training: spread (sd over the learning-rate grid) of the validation score per seed,
    on the seeds that ran the whole grid (the tuning seeds, and the confirmation seeds where the protocol
    names `none` and `bn` in `rate_grid_arms`: no choice is made on this statistic);
    secondary: divergences at the largest rate (Fisher's exact test).
(g) Gated cells carry dependencies the tanh RNN cannot: `lstm`/`gru` vs `rnn` (reg none) on the test
    score at each length, paired by seed; secondary: the gap widening from the shortest to the longest.
(h) Dropout makes the test score steadier across seeds: log variance ratio none / dropout,
    Brown-Forsythe (median-centred Levene) p.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd
from scipy import stats as ss

from benchmark.analysis import stats, survival
from benchmark.analysis.comparisons import BASELINE, COLUMNS, KEY, PRIMARY_MARGIN, Options, family, sort_rows

MIN_GAP = 0.02  # `none` overfits at a point when its mean train-test score gap exceeds this
DESCRIPTIVE = "descriptive"  # a secondary endpoint whose primary was not rejected
# The comparison table's columns (comparisons.COLUMNS), less the learning rates, with the claim, its role
# and a note in front of the verdict.
CLAIM_COLUMNS = [
    "claim",
    "role",
    *[c for c in COLUMNS if c not in ("lr", "baseline_lr", "verdict")],
    "note",
    "verdict",
]


@dataclass(frozen=True)
class Endpoint:
    column: str
    higher_is_better: bool
    margin: float  # equivalence margin (TOST), in the endpoint's units: "no effect" means |effect| < margin
    label: str


TEST = Endpoint("test_score", True, PRIMARY_MARGIN, "test score")
GAP = Endpoint("score_gap", False, 0.02, "train - test score gap")
TTT = Endpoint("rmst_to_target", False, 100.0, "restricted mean steps to the validation target")
BAL_START = Endpoint("grad_balance_start", False, 0.5, "|log10 gradient ratio| at start (eval mode)")
BAL_END = Endpoint("grad_balance_end", False, 0.5, "|log10 gradient ratio| at end (eval mode)")
INTERACTION = Endpoint("interaction", True, 0.02, "both - bn - dropout + none (test score)")
SPREAD = Endpoint("val_spread_over_lr", False, 0.02, "sd of validation score over the learning-rate grid")
DIVERGED = Endpoint("diverged_at_top_lr", False, 0.2, "share of runs diverged at the largest rate")
WIDENING = Endpoint("widening", True, 0.02, "gated - rnn test score, longest minus shortest length")
STEADIER = Endpoint("log_var_ratio", True, math.log(2), "log(var none / var dropout) of the test score")


@dataclass(frozen=True)
class Claim:
    key: str
    title: str
    primary: Endpoint
    secondary: tuple[Endpoint, ...] = ()
    condition_text: str = ""


CLAIMS: tuple[Claim, ...] = (
    Claim("a", "BN speeds up training", TTT),
    Claim(
        "b",
        "BN eases vanishing gradients",
        BAL_END,
        (BAL_START,),
        "none's gradient vanishes (median log10 ratio at start < 0)",
    ),
    Claim("c", "Dropout curbs overfitting", TEST, (), f"none overfits (mean train - test score gap > {MIN_GAP})"),
    Claim("d", "BN and dropout complement each other", TEST, (INTERACTION,)),
    Claim("e", "BN improves the test score (curbs overfitting)", TEST, (GAP,)),
    Claim("f", "BN stabilises training", SPREAD, (DIVERGED,)),
    Claim("g", "Gated cells carry dependencies the tanh RNN cannot", TEST, (WIDENING,)),
    Claim("h", "Dropout makes the test score steadier across seeds", STEADIER),
)


def endpoints(selected: pd.DataFrame) -> pd.DataFrame:
    """The derived endpoints the claims use, as columns of the run table."""
    d = selected.copy()
    for w in ("start", "end"):
        r = pd.to_numeric(d.get(f"hidden_grad_ratio_{w}"), errors="coerce")
        d[f"log10_grad_ratio_{w}"] = np.log10(r.where(r > 0))
        d[f"grad_balance_{w}"] = d[f"log10_grad_ratio_{w}"].abs()
    d["score_gap"] = pd.to_numeric(d.get("train_score"), errors="coerce") - pd.to_numeric(
        d.get("test_score"), errors="coerce"
    )
    d["family"] = d["variant"].map(family)
    return d


# ----------------------------------------------------------------------------- one row per comparison


def _by_seed(g: pd.DataFrame, col: str, sign: float = 1.0) -> pd.Series:
    v = pd.Series(pd.to_numeric(g[col], errors="coerce").to_numpy(float), index=g["seed"].to_numpy())
    return sign * (v.groupby(level=0).mean() if v.index.has_duplicates else v)


def paired_row(treat: pd.DataFrame, base: pd.DataFrame, ep: Endpoint, opts: Options, key: str) -> dict[str, Any]:
    """Treatment vs baseline on one endpoint, paired by seed, oriented so that + = the claim's direction."""
    sign = 1.0 if ep.higher_is_better else -1.0
    c = stats.compare(
        _by_seed(treat, ep.column, sign),
        _by_seed(base, ep.column, sign),
        ci=opts.ci,
        test=opts.test,
        level=opts.level,
        seed=opts.seed,
        key=key,
    )
    return {**c.as_dict(), "variant_mean": treat[ep.column].mean(), "baseline_mean": base[ep.column].mean()}


def survival_row(treat: pd.DataFrame, base: pd.DataFrame, opts: Options) -> Optional[dict[str, Any]]:
    """(a): restricted mean time to target, misses censored at the budget; None where no run reached it."""
    both = pd.concat([treat, base])
    if not both.get("stop_at_target", pd.Series(False, index=both.index)).fillna(False).astype(bool).all():
        return None
    arms = []
    for g in (treat, base):
        reached = pd.to_numeric(g["steps_to_target"], errors="coerce")
        arms += [reached.fillna(pd.to_numeric(g["steps"], errors="coerce")).to_numpy(float), reached.notna().to_numpy()]
    if not (arms[1].any() or arms[3].any()):
        return None
    tau = float(pd.to_numeric(both["steps"], errors="coerce").min())
    c = survival.compare(*arms, tau=tau, level=opts.level)
    return {
        "n": min(c.n_treat, c.n_base),
        "n_treat": c.n_treat,
        "n_base": c.n_base,
        "paired": False,
        "mean_diff": c.mean_diff,
        "ci_low": c.ci_low,
        "ci_high": c.ci_high,
        "p_value": c.p_value,
        "se": c.se,
        "df": math.inf,
        "prob_improvement": math.nan,
        "variant_mean": c.rmst_treat,
        "baseline_mean": c.rmst_base,
        "note": f"reached {c.reached_treat}/{c.n_treat} vs {c.reached_base}/{c.n_base}; misses censored at "
        f"{tau:g} steps; log-rank p",
    }


def intersection_union(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Every component must improve: effect = the smallest improvement, p = the largest one-sided p
    (Berger 1982); where one component is worse, the row reports that component (two-sided)."""
    worst = min(parts, key=lambda r: r["mean_diff"] if np.isfinite(r["mean_diff"]) else -np.inf)
    if not all(np.isfinite(r["mean_diff"]) and r["mean_diff"] > 0 for r in parts):
        return dict(worst)
    return {**worst, "p_value": max(r["p_value"] / 2 for r in parts)}


def variance_row(treat: pd.DataFrame, base: pd.DataFrame, ep_col: str, level: float) -> dict[str, Any]:
    """(h): log(var base / var treat); Brown-Forsythe p; normal-theory interval of the log ratio."""
    t = pd.to_numeric(treat[ep_col], errors="coerce").dropna().to_numpy(float)
    b = pd.to_numeric(base[ep_col], errors="coerce").dropna().to_numpy(float)
    out = {
        "n": min(t.size, b.size),
        "n_treat": t.size,
        "n_base": b.size,
        "paired": False,
        "df": math.inf,
        "prob_improvement": math.nan,
        "variant_mean": float(np.std(t, ddof=1)) if t.size > 1 else math.nan,
        "baseline_mean": float(np.std(b, ddof=1)) if b.size > 1 else math.nan,
        "note": "means are the sds",
    }
    if t.size < 3 or b.size < 3 or t.var() == 0 or b.var() == 0:
        return {
            **out,
            "mean_diff": math.nan,
            "ci_low": math.nan,
            "ci_high": math.nan,
            "p_value": math.nan,
            "se": math.nan,
        }
    diff = math.log(b.var(ddof=1) / t.var(ddof=1))
    se = math.sqrt(2 / (t.size - 1) + 2 / (b.size - 1))
    z = float(ss.norm.ppf(0.5 + level / 2))
    return {
        **out,
        "mean_diff": diff,
        "ci_low": diff - z * se,
        "ci_high": diff + z * se,
        "se": se,
        "p_value": float(ss.levene(t, b, center="median").pvalue),
    }


# ----------------------------------------------------------------------------- the claims' comparisons


def _one(g: pd.DataFrame, fam: str) -> list[str]:
    return sorted(g.loc[g["family"] == fam, "variant"].unique())


def _label(keys: tuple, variant: str, baseline: str, claim: Claim, ep: Endpoint, role: str) -> dict[str, Any]:
    return {
        **dict(zip(KEY, keys)),
        "variant": variant,
        "baseline": baseline,
        "claim": claim.key,
        "role": role,
        "endpoint": ep.column,
        "higher_is_better": ep.higher_is_better,
        "margin": ep.margin,
    }


def _where(keys: tuple) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(KEY, keys))


def _vs_none(
    claim: Claim,
    d: pd.DataFrame,
    fam: str,
    opts: Options,
    skipped: list[str],
    condition: Optional[Callable[[pd.DataFrame], tuple[bool, str]]] = None,
) -> list[dict[str, Any]]:
    """Claims (b), (e): each `fam` variant vs `none`, primary then secondaries, paired by seed."""
    rows = []
    for keys, g in d.groupby(KEY, sort=True):
        base = g[g["variant"] == BASELINE]
        if base.empty or not _one(g, fam):
            continue
        if condition is not None:
            ok, why = condition(base)
            if not ok:
                skipped.append(f"{_where(keys)}: {why}")
                continue
        for v in _one(g, fam):
            treat = g[g["variant"] == v]
            for role, ep in (("primary", claim.primary), *(("secondary", e) for e in claim.secondary)):
                key = f"{claim.key}|{keys}|{v}|{ep.column}"
                rows.append({**_label(keys, v, BASELINE, claim, ep, role), **paired_row(treat, base, ep, opts, key)})
    return rows


def _vanishes(base: pd.DataFrame) -> tuple[bool, str]:
    r = base["log10_grad_ratio_start"].median()
    return bool(np.isfinite(r) and r < 0), f"none's median log10 ratio at start {r:+.2f}"


def _overfits(base: pd.DataFrame) -> tuple[bool, str]:
    g = base["score_gap"].mean()
    return bool(np.isfinite(g) and g > MIN_GAP), f"none's mean gap {g:+.3f}"


def claim_a(claim: Claim, d: pd.DataFrame, opts: Options, skipped: list[str]) -> list[dict[str, Any]]:
    rows = []
    for keys, g in d.groupby(KEY, sort=True):
        base = g[g["variant"] == BASELINE]
        for v in _one(g, "bn") if len(base) else []:
            r = survival_row(g[g["variant"] == v], base, opts)
            if r is None:
                skipped.append(f"{_where(keys)} ({v}): not trained to a target, or no run of either arm reached it")
                continue
            rows.append({**_label(keys, v, BASELINE, claim, claim.primary, "primary"), **r})
    return rows


def claim_c(claim: Claim, d: pd.DataFrame, opts: Options, skipped: list[str]) -> list[dict[str, Any]]:
    rows = []
    for keys, g in d.groupby(KEY, sort=True):
        base = g[g["variant"] == BASELINE]
        if base.empty or not _one(g, "dropout"):
            continue
        ok, why = _overfits(base)
        if not ok:
            skipped.append(f"{_where(keys)}: {why}")
            continue
        for v in _one(g, "dropout"):
            treat = g[g["variant"] == v]
            test, gap = (paired_row(treat, base, ep, opts, f"c|{keys}|{v}|{ep.column}") for ep in (TEST, GAP))
            r = intersection_union([test, gap])
            note = f"gap {gap['mean_diff']:+.3f} [{gap['ci_low']:+.3f}, {gap['ci_high']:+.3f}] (+ = smaller)"
            rows.append(
                {
                    **_label(keys, v, BASELINE, claim, TEST, "primary"),
                    **r,
                    "note": note,
                    "variant_mean": test["variant_mean"],
                    "baseline_mean": test["baseline_mean"],
                }
            )
    return rows


def claim_d(claim: Claim, d: pd.DataFrame, opts: Options, skipped: list[str]) -> list[dict[str, Any]]:
    rows = []
    for keys, g in d.groupby(KEY, sort=True):
        arms = {f: _one(g, f) for f in ("both", "bn", "dropout", BASELINE)}
        if not (arms["both"] and arms["bn"] and arms["dropout"]):
            if arms["both"]:
                skipped.append(f"{_where(keys)}: `both` without `bn` and `dropout` to compare with")
            continue
        both, bn, dr = (g[g["variant"] == arms[f][0]] for f in ("both", "bn", "dropout"))
        parts = [
            paired_row(both, other, TEST, opts, f"d|{keys}|{arms['both'][0]}|{name}")
            for name, other in (("bn", bn), ("dropout", dr))
        ]
        r = intersection_union(parts)
        note = f"vs bn {parts[0]['mean_diff']:+.3f}, vs dropout {parts[1]['mean_diff']:+.3f}"
        rows.append(
            {
                **_label(keys, arms["both"][0], f"{arms['bn'][0]} & {arms['dropout'][0]}", claim, TEST, "primary"),
                **r,
                "note": note,
            }
        )
        if arms[BASELINE]:
            none = g[g["variant"] == BASELINE]
            inter = (
                _by_seed(both, "test_score")
                - _by_seed(bn, "test_score")
                - _by_seed(dr, "test_score")
                + _by_seed(none, "test_score")
            ).dropna()
            c = stats.compare(
                inter,
                pd.Series(0.0, index=inter.index),
                ci=opts.ci,
                test=opts.test,
                level=opts.level,
                seed=opts.seed,
                key=f"d|{keys}|interaction",
            )
            rows.append(
                {
                    **_label(keys, arms["both"][0], "2x2", claim, INTERACTION, "secondary"),
                    **c.as_dict(),
                    "variant_mean": inter.mean(),
                    "baseline_mean": 0.0,
                }
            )
    return rows


def claim_f(claim: Claim, done: pd.DataFrame, opts: Options, skipped: list[str]) -> list[dict[str, Any]]:
    """Spread over the learning-rate grid per seed, on the seeds that ran every rate of the grid."""
    rows = []
    d = done.assign(family=done["variant"].map(family), val=pd.to_numeric(done["val_score"], errors="coerce"))
    for keys, g in d.groupby(KEY, sort=True):
        lrs = sorted(g["lr"].astype(float).unique())
        if len(lrs) < 2 or not _one(g, "bn") or g[g["variant"] == BASELINE].empty:
            continue
        d_lr = g.assign(lr=g["lr"].astype(float))
        spread = {v: _grid_seeds(d_lr[d_lr["variant"] == v], lrs) for v in [BASELINE, *_one(g, "bn")]}
        for v in _one(g, "bn"):
            t, b = spread[v], spread[BASELINE]
            if t.empty and b.empty:  # the two rates here are the two arms' chosen ones: no seed ran the grid
                continue
            rows.append(
                {
                    **_label(keys, v, BASELINE, claim, SPREAD, "primary"),
                    **paired_row(t, b, SPREAD, opts, f"f|{keys}|{v}"),
                    "note": "lr grid " + ", ".join(f"{float(lr):g}" for lr in lrs),
                }
            )
            rows.append({**_label(keys, v, BASELINE, claim, DIVERGED, "secondary"), **_fisher(t, b)})
    return rows


def _grid_seeds(gv: pd.DataFrame, lrs: list[float]) -> pd.DataFrame:
    """Per seed that ran every rate: sd of the validation score over the rates, diverged at the largest."""
    full = gv.groupby("seed")["lr"].nunique() == len(lrs)
    gv = gv[gv["seed"].isin(full[full].index)]
    spread = gv.groupby("seed")["val"].std(ddof=1).rename("val_spread_over_lr")
    top = gv[gv["lr"] == lrs[-1]]
    div = top.groupby("seed")["status"].agg(lambda s: float((s == "diverged").any())).astype(float)  # float if none
    return pd.DataFrame({"val_spread_over_lr": spread, "diverged": div}).rename_axis("seed").reset_index()


def _fisher(t: pd.DataFrame, b: pd.DataFrame) -> dict[str, Any]:
    """Share of runs diverged at the largest rate, none minus bn (+ = fewer divergences), Fisher's exact p."""
    kt, kb, nt, nb = int(t["diverged"].sum()), int(b["diverged"].sum()), len(t), len(b)
    p = float(ss.fisher_exact([[kt, nt - kt], [kb, nb - kb]]).pvalue) if nt and nb else math.nan
    pt, pb = (kt / nt if nt else math.nan), (kb / nb if nb else math.nan)
    se = math.sqrt(pt * (1 - pt) / nt + pb * (1 - pb) / nb) if nt and nb else math.nan
    return {
        "n": min(nt, nb),
        "n_treat": nt,
        "n_base": nb,
        "paired": False,
        "mean_diff": pb - pt,
        "se": se,
        "df": math.inf,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "p_value": p,
        "prob_improvement": math.nan,
        "variant_mean": pt,
        "baseline_mean": pb,
        "note": f"{kt}/{nt} vs {kb}/{nb} diverged",
    }


def claim_g(claim: Claim, d: pd.DataFrame, opts: Options, skipped: list[str]) -> list[dict[str, Any]]:
    rows = []
    none = d[d["variant"] == BASELINE]
    for task, gt in none.groupby("task", sort=True):
        lens = sorted(gt["seq_len"].unique())
        for cell in [c for c in ("lstm", "gru") if c in set(gt["cell"])]:
            diffs = {}
            for T in lens:
                at = gt[gt["seq_len"] == T]
                treat, base = at[at["cell"] == cell], at[at["cell"] == "rnn"]
                if treat.empty or base.empty:
                    continue
                keys = (task, T, cell)
                rows.append(
                    {
                        **_label(keys, BASELINE, "rnn", claim, TEST, "primary"),
                        **paired_row(treat, base, TEST, opts, f"g|{keys}"),
                    }
                )
                diffs[T] = _by_seed(treat, "test_score") - _by_seed(base, "test_score")
            if len(diffs) >= 2:
                w = (diffs[max(diffs)] - diffs[min(diffs)]).dropna()
                c = stats.compare(
                    w,
                    pd.Series(0.0, index=w.index),
                    ci=opts.ci,
                    test=opts.test,
                    level=opts.level,
                    seed=opts.seed,
                    key=f"g|{task}|{cell}|widening",
                )
                rows.append(
                    {
                        **_label((task, max(diffs), cell), BASELINE, "rnn", claim, WIDENING, "secondary"),
                        **c.as_dict(),
                        "variant_mean": w.mean(),
                        "baseline_mean": 0.0,
                        "note": f"T={min(diffs)} -> T={max(diffs)}",
                    }
                )
    return rows


def claim_h(claim: Claim, d: pd.DataFrame, opts: Options, skipped: list[str]) -> list[dict[str, Any]]:
    rows = []
    for keys, g in d.groupby(KEY, sort=True):
        base = g[g["variant"] == BASELINE]
        for v in _one(g, "dropout") if len(base) else []:
            rows.append(
                {
                    **_label(keys, v, BASELINE, claim, STEADIER, "primary"),
                    **variance_row(g[g["variant"] == v], base, "test_score", opts.level),
                }
            )
    return rows


# ----------------------------------------------------------------------------- the family and its words


@dataclass
class ClaimResult:
    claim: Claim
    rows: pd.DataFrame  # this claim's comparisons (after the family-wide correction)
    not_testable: str = ""  # why, when the sweep cannot test it at all
    skipped: list[str] = field(default_factory=list)  # points left out, with the reason

    @property
    def summary(self) -> str:
        if self.not_testable:
            return f"not testable in this sweep: {self.not_testable}"
        prim = self.rows[self.rows["role"] == "primary"]
        counts = prim["verdict"].value_counts()
        parts = [
            f"{int(counts[w])} {w}"
            for w in (stats.HELPS, stats.HURTS, stats.NO_EFFECT, stats.UNCLEAR, stats.TOO_FEW)
            if w in counts
        ]
        return (
            f"primary endpoint ({self.claim.primary.label}): supported at {int(counts.get(stats.HELPS, 0))} of "
            f"{len(prim)} points (" + ", ".join(parts) + ")"
        )


def _testers(opts: Options, done: pd.DataFrame) -> dict[str, Callable[..., list[dict[str, Any]]]]:
    return {
        "a": claim_a,
        "b": lambda c, d, o, s: _vs_none(c, d, "bn", o, s, _vanishes),
        "c": claim_c,
        "d": claim_d,
        "e": lambda c, d, o, s: _vs_none(c, d, "bn", o, s),
        "f": lambda c, d, o, s: claim_f(c, done, o, s),
        "g": claim_g,
        "h": claim_h,
    }


def words(t: pd.DataFrame, opts: Options) -> pd.DataFrame:
    """Holm over every claim's primary rows; each secondary row behind its primary (fixed sequence)."""
    prim = stats.add_words(
        t[t["role"] == "primary"],
        adjust_method=stats.Adjust.holm,
        min_seeds=opts.min_seeds,
        alpha=opts.alpha,
        test=opts.test,
    )
    m = max(1, int(prim["p_adjusted"].notna().sum()))
    gate = {(r.claim, r.task, r.seq_len, r.cell, r.variant): r.p_adjusted for r in prim.itertuples()}
    sec = t[t["role"] == "secondary"].copy()
    opened = np.array(
        [
            gate.get(tuple(k), np.nan) < opts.alpha
            for k in sec[["claim", "task", "seq_len", "cell", "variant"]].itertuples(index=False)
        ],
        dtype=bool,
    )
    sec["p_adjusted"] = [
        max(p, gate.get(tuple(k), np.nan)) if o else np.nan
        for o, (p, *k) in zip(
            opened, sec[["p_value", "claim", "task", "seq_len", "cell", "variant"]].itertuples(index=False)
        )
    ]
    sec["p_equivalent"] = [stats.tost_p(*r) for r in sec[["mean_diff", "se", "df", "margin"]].to_numpy(float)]
    sec["mde"] = [stats.mde(se, df, opts.alpha / m) for se, df in sec[["se", "df"]].to_numpy(float)]
    sec["verdict"] = [
        stats.verdict(md, pa, int(n), min_seeds=opts.min_seeds, alpha=opts.alpha, p_equivalent=pe) if o else DESCRIPTIVE
        for o, md, pa, n, pe in zip(opened, sec["mean_diff"], sec["p_adjusted"], sec["n"], sec["p_equivalent"])
    ]
    return pd.concat([prim, sec], ignore_index=True)


def run_claims(selected: pd.DataFrame, opts: Options, done: Optional[pd.DataFrame] = None) -> list[ClaimResult]:
    """Every claim's comparisons, corrected together; one result per claim. `done` (every finished run,
    all settings) feeds claim (f), which needs the whole learning-rate grid."""
    d = endpoints(selected)
    testers = _testers(opts, done if done is not None else selected)
    found: dict[str, tuple[list[dict[str, Any]], list[str]]] = {}
    for claim in CLAIMS:
        skipped: list[str] = []
        found[claim.key] = (testers[claim.key](claim, d, opts, skipped), skipped)
    rows = [r for rs, _ in found.values() for r in rs]
    table = pd.DataFrame(rows).reindex(
        columns=[c for c in CLAIM_COLUMNS if c not in ("p_adjusted", "verdict")] + ["se", "df"]
    )
    table = words(table, opts) if len(table) else table.assign(p_adjusted=np.nan, verdict=None)
    results = []
    for claim in CLAIMS:
        mine = sort_rows(table[table["claim"] == claim.key]).reindex(columns=CLAIM_COLUMNS)
        skipped = found[claim.key][1]
        why = (
            ""
            if len(mine)
            else (
                ("nothing to compare: " + "; ".join(skipped))  # every point, once (the report shows no other list)
                if skipped
                else "the sweep lacks the arms this claim compares"
            )
        )
        if len(mine) and (mine["n"] < opts.min_seeds).all():
            why = (
                f"at most {int(mine['n'].max())} seeds per comparison, fewer than --min-seeds {opts.min_seeds} "
                "(the numbers are shown, without a word)"
            )
        results.append(ClaimResult(claim, mine, why, skipped))
    return results


def claims_table(results: list[ClaimResult]) -> pd.DataFrame:
    """All claims' comparisons in one table (claims.csv)."""
    tabs = [r.rows for r in results if len(r.rows)]
    return pd.concat(tabs, ignore_index=True)[CLAIM_COLUMNS] if tabs else pd.DataFrame(columns=CLAIM_COLUMNS)

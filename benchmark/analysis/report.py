"""One self-contained HTML report per sweep, with its tables as CSV, Markdown and LaTeX:
`python -m benchmark.analysis.report results/<sweep> [--out reports/<sweep>]`.

It leads with the answer: the seeds' claims as pre-declared tests, then per task, length and
cell the effect of each variant on the test score versus `none` (each variant at the learning
rate its validation score selected), with honest intervals, a p-value adjusted over the table,
and a word only where earned; aggregates across tasks rliable-style. Then learning-rate
sensitivity, scores vs length, gradients, cost, learning curves, failed points, environment.

One small function per section returns that section's data (pandas tables rendered to HTML,
figures as PNG data URIs); the prose lives in `templates/report.html.j2`. No scripts, no
external resources: the page reads offline. Imports no torch.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import jinja2
import numpy as np
import pandas as pd
import yaml

from benchmark.analysis import aggregate as agg_mod
from benchmark.analysis import claims as claims_mod
from benchmark.analysis import claims_view, export, plots, stats, tables
from benchmark.analysis import comparisons as cmp
from benchmark.analysis import controls as controls_mod
from benchmark.analysis import design as design_mod
from benchmark.analysis.html import TEMPLATES, fmt, fmt_p, html_table
from benchmark.analysis.html import present as _present
from benchmark.arms import variants
from benchmark.arms.blocks import BNConfig, DropoutConfig
from benchmark.core import record
from benchmark.core.config import ConfigError
from benchmark.core.io import atomic_write_text
from benchmark.sweep import status

DONE = record.MEASURED  # runs that produced measurements (diverged: up to the step it stopped)
WORD_CLASS = {stats.HELPS: "v-helps", stats.HURTS: "v-hurts", stats.UNCLEAR: "v-unclear", stats.TOO_FEW: "v-few"}


# ----------------------------------------------------------------------------- formatting


def figure(fig: Any, caption: str) -> dict[str, str]:
    return {"uri": plots.to_data_uri(fig), "caption": caption}


def effect_cell(r: pd.Series) -> dict[str, Any]:
    """One comparison as the template shows it."""
    return {
        "verdict": r["verdict"],
        "cls": WORD_CLASS.get(r["verdict"], "v-nodata"),
        "diff": fmt(r["mean_diff"], sign=True),
        "lo": fmt(r["ci_low"], sign=True),
        "hi": fmt(r["ci_high"], sign=True),
        "p": fmt_p(r["p_value"]),
        "p_adj": fmt_p(r["p_adjusted"]),
        "poi": fmt(r["prob_improvement"], 2),
        "n": int(r["n"]),
        "paired": bool(r["paired"]),
    }


# ----------------------------------------------------------------------------- the sweep's data


@dataclass
class Sweep:
    """Everything the sections read: runs by status, the comparison runs (one impl, selected lr)."""

    name: str
    dir: Path
    summary: pd.DataFrame  # every run folder, with `variant`
    done: pd.DataFrame  # ok or diverged
    selected: pd.DataFrame  # the comparison runs: one impl, each point's selected learning rate
    profiles: pd.DataFrame  # hidden-gradient profiles of the selected runs at each task's longest length
    curves: pd.DataFrame  # history rows of the same runs
    impl: Optional[str]  # the impl comparisons use when the sweep has several
    tuning: Optional[list[int]] = None  # the protocol's tuning seeds (None: selection and test on the same seeds)
    comp: Optional[pd.DataFrame] = None  # every finished run of the comparison impl, all settings
    all_profiles: Optional[pd.DataFrame] = None  # every run's hidden-gradient profiles


CURVE_COLUMNS = ("run_id", "step", "grad_norm", "train_loss", "val_score")  # what the figures draw


def load_sweep(sweep_dir: Path) -> Sweep:
    a = _ensure_tables(sweep_dir)
    # Plain Python strings: the comparisons filter by labels thousands of times, and pandas' Arrow-backed
    # strings pay a conversion on every element access.
    strings = a.summary.select_dtypes(include=["string", "str"]).columns
    summary = cmp.add_variants(a.summary.astype({c: object for c in strings}))
    for c in ("lr", "test_score", "val_score", "train_score", "steps_to_target", "steps"):
        if c not in summary.columns:
            summary[c] = np.nan
    done = summary[summary["status"].isin(DONE)].copy()
    for c in ("seq_len", "seed"):
        done[c] = done[c].astype(int)
    impl = cmp.verdict_impl(done)
    comp = done if impl is None else done[done["impl"] == impl]
    name = (
        str(summary["sweep"].dropna().iloc[0])
        if "sweep" in summary and summary["sweep"].notna().any()
        else sweep_dir.name
    )
    tuning = tuning_seeds(summary)
    selected = cmp.select(comp, tuning)
    longest = selected["seq_len"] == selected.groupby("task")["seq_len"].transform("max")
    ident = selected.loc[longest, ["run_id", "task", "seq_len", "cell", "variant"]].astype(
        {"task": "category", "cell": "category", "variant": "category"}
    )
    keep = lambda t: t[t["run_id"].isin(ident["run_id"])]  # noqa: E731  (a cheap filter before the join)
    trained = a.profiles[a.profiles["which"].isin(["start", "end"])]  # not the probes at other BN gain inits
    profiles = keep(trained).merge(ident, on="run_id", how="inner")
    curves = (
        keep(a.curves.drop(columns=[c for c in ("task", "seq_len", "cell", "variant") if c in a.curves])).merge(
            ident, on="run_id", how="inner"
        )
        if len(a.curves)
        else pd.DataFrame(columns=[*ident.columns, "step"])
    )
    return Sweep(name, sweep_dir, summary, done, selected, profiles, curves, impl, tuning, comp, a.profiles)


def config_block(summary: pd.DataFrame, key: str) -> Any:
    """A block of the sweep's run config.yaml that no run reads (`literature`, `protocol`), or None."""
    for path in summary.get("path", pd.Series(dtype=object)).dropna():
        block = (agg_mod.read_config(Path(str(path)), only_with=key) or {}).get(key)  # unreadable: says nothing
        if block:
            return block
    return None


def tuning_seeds(summary: pd.DataFrame) -> Optional[list[int]]:
    """The tuning seeds the experiment's `protocol` block declares (None when it declares none)."""
    block = config_block(summary, "protocol")
    seeds = block.get("tuning_seeds") if isinstance(block, dict) else None
    return [int(x) for x in seeds] if seeds else None


def _ensure_tables(sweep_dir: Path) -> agg_mod.Aggregate:
    """The aggregated tables: read when `aggregate` wrote them after the newest run, else aggregated
    in memory (the report writes only into its own folder; `make report` aggregates first)."""
    summary = sweep_dir / agg_mod.SUMMARY_PARQUET
    newest = max((p.stat().st_mtime for p in (sweep_dir / "runs").glob("*/metrics.json")), default=0.0)
    fresh = all(
        (sweep_dir / n).exists() for n in (agg_mod.SUMMARY_PARQUET, agg_mod.PROFILES_PARQUET, agg_mod.CURVES_PARQUET)
    )
    if fresh and summary.stat().st_mtime >= newest:
        return agg_mod.load(sweep_dir, curve_columns=CURVE_COLUMNS)
    return agg_mod.aggregate(sweep_dir)


def _tasks(s: Sweep) -> list[str]:
    return sorted(s.done["task"].dropna().unique())


def _longest(df: pd.DataFrame, task: str) -> int:
    return int(df.loc[df["task"] == task, "seq_len"].max())


# ----------------------------------------------------------------------------- sections


def claims_section(
    results: list[claims_mod.ClaimResult],
    s: Optional["Sweep"],
    design: Optional[design_mod.Design],
    design_error: str,
    alpha: float,
) -> dict[str, Any]:
    """Section 1: claims at a glance, the instrument check (a failed control above every word), the
    design's hash and seeds, then each claim's per-point and descriptive rows with its figures."""
    detail = claims_view.details(results)
    for d in detail:
        d["figures"] = claim_figures(d["key"], s) if s is not None else []
    return {
        "glance": claims_view.glance(results),
        "instrument": claims_view.instrument(controls_mod.check(results, design, alpha)),
        "design": claims_view.design_view(design, design_error),
        "details": detail,
    }


def load_design(sweep_dir: Path) -> tuple[Optional[design_mod.Design], str]:
    """The sweep's declared design, or None and why (no file: exploratory; a malformed one: its error)."""
    try:
        return design_mod.load(sweep_dir), ""
    except ConfigError as e:
        return None, str(e)


def claim_figures(key: str, s: "Sweep") -> list[dict[str, str]]:
    """(a): Kaplan-Meier curves of time to target per arm; (b): profiles per BN gain init where swept."""
    if key == "a":
        d = s.selected[
            s.selected.get("stop_at_target", pd.Series(False, index=s.selected.index)).fillna(False).astype(bool)
            & s.selected["variant"].map(cmp.family).isin(["none", "bn"])
        ]
        caption = (
            "time to the validation target: Kaplan–Meier estimate of P(not yet reached) per arm; a run "
            "that never reached it is censored (+) at its budget"
        )
        return [figure(plots.km_curves(d), caption)] if len(d) else []
    comp = s.comp if s.comp is not None else s.done
    if key == "b":
        return gain_figures(s, comp)
    return []


def gain_figures(s: "Sweep", comp: pd.DataFrame) -> list[dict[str, str]]:
    """(b): the start profiles at each BN gain init that BN runs probe, and, where a sweep varies the gain
    it trains with, the start and end profiles per trained gain."""
    out = []
    init = s.all_profiles[s.all_profiles["which"].str.startswith("init")]
    init = init.merge(comp[["run_id", "task", "seq_len", "cell"]], on="run_id", how="inner")
    if len(init):
        caption = (
            "‖∂L/∂h_t‖ (eval mode) at initialisation with every BN gain set to γ, BN arms (one run per job); "
            "line = mean over runs, band = min–max"
        )
        out.append(figure(plots.init_gain_profiles(init), caption))
    if "bn_gain_init" in comp.columns and comp["bn_gain_init"].dropna().nunique() > 1:
        bn = comp.loc[comp["bn_gain_init"].notna(), ["run_id", "cell", "bn_gain_init"]]
        trained = s.all_profiles[s.all_profiles["which"].isin(["start", "end"])]
        prof = trained.merge(bn, on="run_id", how="inner")
        if len(prof):
            caption = "‖∂L/∂h_t‖ (eval mode) per BN gain init γ trained with; line = mean over runs, band = min–max"
            out.append(figure(plots.gain_profiles(prof), caption))
    return out


def seeds_section(s: "Sweep") -> dict[str, Any]:
    """Which seeds tuned and which confirmed (also seeds.csv)."""
    roles = cmp.seed_roles(s.comp if s.comp is not None else s.done, s.tuning)
    return {"confirmed": s.tuning is not None, "rows": roles.to_dict("records"), "table": roles}


def registered_variant(row: pd.Series) -> Optional[variants.Variant]:
    """The registry entry a run's variant is (benchmark/arms/variants.py), or None for a user variant."""
    name = str(row["variant"]).split("@")[0]
    if name in variants.names():
        return variants.get(name)
    if row["reg"] == "both" and "both" in variants.names():  # `both` is registered at its default placements
        defaults = (BNConfig().placement.value, DropoutConfig().placement.value)
        return variants.get("both") if (row["bn_placement"], row["dropout_placement"]) == defaults else None
    return None


def user_variant(r: pd.Series) -> str:
    """A variant the registry does not hold (a user's arm): the arm's own words (`reg_about`) and settings."""
    about = r.get("reg_about")
    settings = r.get("reg_params")
    text = f"user variant: reg={r['reg']}" + (f": {about}" if _present(about) else "")
    return text + (f"; {settings}" if _present(settings) else "")


def describe_variants(done: pd.DataFrame) -> list[dict[str, str]]:
    """What each verdict column is, from the variant registry: description, paper, dropout p, the impl that ran."""
    out = []
    for v in cmp.ordered(done["variant"].unique(), cmp.REG_ORDER):
        g = done[done["variant"] == v]
        r = g.iloc[0]
        entry = registered_variant(r)
        what = (
            (f"{entry.description}" + (f" ({entry.paper})" if entry.paper else ""))
            if entry is not None
            else user_variant(r)
        )
        if _present(r.get("dropout_p")):
            what += f"; dropout p={r['dropout_p']:g}"
        impls = ", ".join(
            sorted(f"{a}→{b}" for a, b in g[["impl", "impl_used"]].dropna().drop_duplicates().itertuples(index=False))
        )
        out.append({"variant": v, "what": what, "impl": impls or "—"})
    return out


def verdicts_section(s: Sweep, vt: pd.DataFrame, agg: pd.DataFrame) -> dict[str, Any]:
    """Section 2: one row per task x length x cell, one column per variant; aggregates on top."""
    variants = [v for v in cmp.ordered(s.selected["variant"].unique(), cmp.REG_ORDER) if v != cmp.BASELINE]
    rows = []
    groups = dict(list(s.selected.groupby(cmp.KEY, sort=False)))
    for keys in cmp.sort_rows(s.selected[cmp.KEY].drop_duplicates()).itertuples(index=False):
        g = groups[tuple(keys)]
        base = g[g["variant"] == cmp.BASELINE]
        mine = vt[(vt["task"] == keys[0]) & (vt["seq_len"] == keys[1]) & (vt["cell"] == keys[2])].set_index("variant")
        rows.append(
            {
                "task": keys[0],
                "seq_len": int(keys[1]),
                "cell": keys[2],
                "n_seeds": int(g["seed"].nunique()),
                "base_score": fmt(base["test_score"].mean()),
                "base_acc": fmt(base["test_accuracy"].mean()),
                "effects": {v: effect_cell(mine.loc[v]) for v in variants if v in mine.index},
            }
        )
    summary = [
        {
            "cell": r["cell"],
            "variant": r["variant"],
            "tasks": int(r["tasks"]),
            "runs": int(r["runs"]),
            "iqm_v": fmt(r["iqm_variant"]),
            "iqm_b": fmt(r["iqm_baseline"]),
            "diff": fmt(r["iqm_diff"], sign=True),
            "diff_lo": fmt(r["iqm_diff_low"], sign=True),
            "diff_hi": fmt(r["iqm_diff_high"], sign=True),
            "poi": fmt(r["prob_improvement"], 2),
            "poi_lo": fmt(r["poi_low"], 2),
            "poi_hi": fmt(r["poi_high"], 2),
            "level": f"{100 * r['level']:.1f}",
            "verdict": r["verdict"],
            "cls": WORD_CLASS.get(r["verdict"], "v-nodata"),
        }
        for _, r in agg.iterrows()
    ]
    seeds = int(s.selected.groupby([*cmp.KEY, "variant"])["seed"].nunique().min()) if len(s.selected) else 0
    return {
        "rows": rows,
        "variants": variants,
        "aggregate": summary,
        "described": describe_variants(s.selected),
        "fewest_seeds": seeds,
        "impl": s.impl,
    }


def lr_section(s: Sweep) -> dict[str, Any]:
    """Section 3: the learning rate selected per point and variant, and score vs learning rate."""
    comp = s.done if s.impl is None else s.done[s.done["impl"] == s.impl]
    lrs = sorted(comp["lr"].dropna().unique())
    out: dict[str, Any] = {"lrs": [f"{x:g}" for x in lrs], "table": None, "figures": []}
    if len(lrs) <= 1:
        return out
    lt = cmp.lr_table(comp)
    chosen = lt[lt["selected"]].pivot(index=cmp.KEY, columns="variant", values="lr").reset_index()
    out["table"] = html_table(
        cmp.sort_rows(chosen.assign(variant="")).drop(columns="variant"), digits=4, table_id="lr-table"
    )
    for task in _tasks(s):
        d = comp[comp["task"] == task].assign(time_to_target=cmp.time_to_target)
        ys = [("val_score", "validation score (selects)"), ("test_score", "test score (never selects)")]
        if d["time_to_target"].notna().any():  # trained to a target: the steps to it select first
            ys.insert(0, ("time_to_target", "steps to the validation target (selects first)"))
        for y, what in ys:
            out["figures"].append(
                figure(
                    plots.facet(
                        d,
                        plots.curves,
                        y=y,
                        x="lr",
                        hue="variant",
                        logx=True,
                        ylabel=what,
                        title=f"{task}: {what} vs learning rate",
                    ),
                    f"{task}: {what} vs learning rate, every length (line = mean over seeds "
                    f"and lengths, band = min–max)",
                )
            )
    return out


def scores_section(s: Sweep) -> dict[str, Any]:
    """Section 4: test score, accuracy and the task's metric vs sequence length."""
    figs = []
    for task in _tasks(s):
        d = s.selected[s.selected["task"] == task]
        figs.append(
            figure(
                plots.facet(
                    d,
                    plots.vs_length,
                    y="test_score",
                    hue="variant",
                    ylabel="test score",
                    title=f"{task}: test score (0 = trivial predictor, 1 = perfect)",
                ),
                f"{task}: test score vs sequence length per cell; line = mean over seeds, band = min–max, "
                f"dots = single seeds",
            )
        )
        higher = d["metric_higher_is_better"].dropna()
        name = d["metric_name"].dropna()
        if len(name):
            direction = "higher" if len(higher) and bool(higher.iloc[0]) else "lower"
            figs.append(
                figure(
                    plots.facet(
                        d,
                        plots.vs_length,
                        y="test_metric",
                        hue="variant",
                        ylabel=f"test {name.iloc[0]}",
                        logy=bool((d["test_metric"] > 0).all()),
                        title=f"{task}: test {name.iloc[0]} ({direction} is better)",
                    ),
                    f"{task}: test {name.iloc[0]} ({direction} is better, as the task declares) vs sequence length",
                )
            )
    return {
        "figures": figs,
        "score_table": html_table(tables.spread_table(s.selected, "test_score"), table_id="score-table"),
        "accuracy_table": html_table(tables.spread_table(s.selected, "test_accuracy"), table_id="accuracy-table"),
    }


def literature_block(s: Sweep) -> Optional[dict[str, Any]]:
    """The `literature:` block of the sweep's config (published values it reproduces), or None."""
    return config_block(s.summary, "literature")


def literature_table(s: Sweep, block: dict[str, Any]) -> pd.DataFrame:
    """Each published value beside the measured mean ± sd over seeds of the runs with the same task,
    length, cell and reg (every run that finished, at the sweep's learning rates)."""
    metric, rows = block.get("metric", "test_accuracy"), []
    for ref in block.get("values", []):
        m = s.done
        for k in ("task", "seq_len", "cell", "reg"):
            m = m[m[k].astype(str) == str(ref[k])]
        vals = m[metric].dropna() if metric in m else pd.Series(dtype=float)
        rows.append(
            {
                **{k: ref[k] for k in ("task", "seq_len", "cell", "reg")},
                f"published {metric}": ref["value"],
                f"measured {metric}": f"{vals.mean():.4f} ± {vals.std(ddof=1):.4f}"
                if len(vals) > 1
                else (f"{vals.iloc[0]:.4f}" if len(vals) else "— (no finished run)"),
                "seeds": len(vals),
            }
        )
    return pd.DataFrame(rows)


def literature_section(s: Sweep) -> Optional[dict[str, Any]]:
    """Published results beside the measured ones, where the experiment declares them."""
    block = literature_block(s)
    if block is None:
        return None
    return {
        "source": block.get("source", ""),
        "table": html_table(literature_table(s, block), digits=4, table_id="literature-table"),
    }


def _bands(frame: pd.DataFrame, x: str, y: str, by: Sequence[str], positive: bool = False) -> pd.DataFrame:
    """Mean and min-max of `y` per (by..., x) over seeds: one vectorised groupby for all panels."""
    if y not in frame:
        return pd.DataFrame(columns=[*by, x, "mean", "min", "max"])
    d = frame[frame[y] > 0] if positive else frame
    return plots.summarise(d, x, y, by)


def _curve_figures(
    s: Sweep, frame: pd.DataFrame, x: str, y: str, what: str, logy: bool, caption: str, row: Optional[str] = None
) -> list[dict[str, str]]:
    figs = []
    bands = _bands(frame, x, y, ["task", "cell", "variant"] + ([row] if row else []), positive=logy)
    for task, b in bands.groupby("task", observed=True, sort=True):
        if b.empty:
            continue
        T = _longest(s.selected, task)
        figs.append(
            figure(
                plots.facet(
                    b,
                    plots.lines,
                    x=x,
                    hue="variant",
                    logy=logy,
                    ylabel=what,
                    row=row,
                    row_order=["start", "end"],
                    title=f"{task}, T={T}: {what}",
                ),
                f"{task}, T={T}: {caption}",
            )
        )
    return figs


def gradients_section(s: Sweep) -> dict[str, Any]:
    """Section 5: gradient norms during training and the hidden-state gradient profile."""
    figs = _curve_figures(
        s,
        s.curves,
        "step",
        "grad_norm",
        "global grad norm (before clipping)",
        True,
        "global gradient norm per logged step (mean over seeds, band = min–max)",
    )
    figs += _curve_figures(
        s,
        s.profiles,
        "t",
        "grad_norm",
        "‖∂L/∂h_t‖ over t",
        True,
        "‖∂L/∂h_t‖ on a fixed probe batch at the start and end of training; falling towards "
        "t=1 = vanishing, rising = exploding",
        row="which",
    )
    return {
        "figures": figs,
        "table": html_table(tables.gradient_table(s.selected), pct=("clipped_fraction",), table_id="gradient-table"),
    }


def cost_section(s: Sweep) -> dict[str, Any]:
    """Section 6: throughput, and the overhead of each regulariser apart from leaving the fused kernel."""
    cost, over = tables.cost_tables(s.done)
    data = s.done.assign(impl_used=s.done["impl_used"].fillna("?"))
    figs = []
    for task in _tasks(s):
        dt = data[data["task"] == task]
        for y, what, short in (("fwd_bwd_tokens_per_s", "forward+backward tokens/s (dedicated timing)", "tokens/s"),):
            figs.append(
                figure(
                    plots.facet(
                        dt,
                        plots.vs_length,
                        y=y,
                        hue="variant",
                        style="impl_used",
                        sharey=False,
                        ylabel=short,
                        title=f"{task}: {what}",
                    ),
                    f"{task}: {what}; line style = the impl that ran",
                )
            )
    ov = over.dropna(subset=["reg_overhead"])
    if len(ov):
        figs.append(
            figure(
                plots.facet(
                    ov.assign(overhead_pct=100 * ov["reg_overhead"]),
                    plots.bars,
                    y="overhead_pct",
                    x="variant",
                    ylabel="fwd+bwd time vs none, same impl (%)",
                    title="Overhead of each regulariser vs none on the same impl",
                ),
                "Overhead of each regulariser relative to none on the same impl (all tasks and lengths; "
                "bar = mean, whisker = min–max)",
            )
        )
    return {
        "figures": figs,
        "overhead": html_table(over, pct=("reg_overhead", "kernel_cost", "total_vs_fused"), table_id="overhead-table"),
        "cost": html_table(cost, digits=2, table_id="cost-table"),
    }


def learning_section(s: Sweep) -> dict[str, Any]:
    """Section 7: validation-score curves, training loss, generalisation and steps to target."""
    figs = []
    for y, what, logy in (("val_score", "validation score", False), ("train_loss", "training loss", True)):
        figs += _curve_figures(
            s, s.curves, "step", y, what, logy, f"{what} during training (mean over seeds, band = min–max)"
        )
    return {
        "figures": figs,
        "table": html_table(
            tables.generalisation_table(s.selected) if len(s.selected) else None, table_id="generalisation-table"
        ),
    }


def failures_section(s: Sweep) -> dict[str, Any]:
    """Section 8: every run that is not ok, with its error, and every ok run without a test score (it counts
    in no comparison); tracebacks folded."""
    summary = s.summary
    unscored = (summary["status"] == "ok") & pd.to_numeric(summary["test_score"], errors="coerce").isna()
    bad = summary[(summary["status"] != "ok") | unscored].copy()
    if len(bad) == 0:
        return {"table": None, "tracebacks": []}
    for c in ("error", "problem", "traceback"):
        bad[c] = [v if isinstance(v, str) else "" for v in bad.get(c, pd.Series([None] * len(bad), index=bad.index))]
    bad.loc[unscored[unscored].index, "problem"] = "status ok without a test score: left out of every comparison"
    cols = [
        c
        for c in [
            "status",
            "run_id",
            "task",
            "seq_len",
            "cell",
            "variant",
            "lr",
            "seed",
            "impl",
            "impl_used",
            "diverged_at_step",
            "steps_done",
            "error",
            "problem",
            "path",
        ]
        if c in bad.columns
    ]
    tbs = [{"run_id": r.run_id, "text": r.traceback} for r in bad.itertuples() if r.status == "failed" and r.traceback]
    return {"table": html_table(bad[cols], digits=4, table_id="failures-table"), "tracebacks": tbs}


def missing_section(s: Sweep) -> dict[str, Any]:
    """Grid points of the sweep's multirun.yaml that never started (no run folder) or whose cluster job was lost
    (benchmark/sweep/history.py): listed, never dropped."""
    try:
        miss = status.missing_points(s.dir)
    except status.SweepError as e:  # no multirun.yaml (single runs), or configs changed since the sweep
        return {"n": None, "table": None, "note": f"The grid could not be read, so missing points are not listed: {e}"}
    lost = int((miss["lost"] != "").sum()) if "lost" in miss else 0  # points whose cluster job was lost
    table = html_table(miss, table_id="missing-table") if len(miss) else None
    return {"n": len(miss), "lost": lost, "note": None, "table": table}


# Overrides of one invocation, not of the sweep: the folder its skip marks went to (a temporary path), `force`.
INVOCATION_KEYS = ("skip_marks", "force")
# env_* columns that time a run rather than describe where it ran (one value per run: not an environment).
ENV_TIMINGS = ("env_start_time", "env_wall_s", "env_cohort_wall_s")
ENV_VALUES_SHOWN = 8  # distinct values listed per environment key; the rest counted


def reproduce(sweep_dir: Path) -> dict[str, Any]:
    """The sweep's command line and configs, from Hydra's multirun.yaml where present."""
    mr = sweep_dir / "hydra" / "multirun.yaml"
    out: dict[str, Any] = {"multirun_path": str(mr), "multirun_yaml": None, "command": None, "params": None}
    if not mr.exists():
        return out
    text = mr.read_text(encoding="utf-8")
    out["multirun_yaml"] = text
    try:
        cfg = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        out["command"] = f"(multirun.yaml unreadable: {e})"
        return out
    h = cfg.get("hydra", {}) or {}
    ov = h.get("overrides", {}) or {}
    hydra_ov = [o for o in ov.get("hydra", []) or [] if o != "hydra.mode=MULTIRUN"]
    task = [o for o in ov.get("task") or [] if str(o).split("=", 1)[0] not in INVOCATION_KEYS]
    out["command"] = " ".join(["python -m benchmark.run --multirun", *map(shlex.quote, hydra_ov + task)])
    params = ((h.get("sweeper") or {}).get("params")) or {}
    out["params"] = yaml.safe_dump(params, sort_keys=False).strip() if params else None
    return out


def point_command(r: pd.Series, sweep: str) -> str:
    """One grid point on its own (the experiment's other settings come from its config.yaml)."""
    parts = [
        f"cell={r['cell']}",
        f"reg={r['reg']}",
        f"task={r['task']}",
        f"task.seq_len={int(r['seq_len'])}",
        f"seed={int(r['seed'])}",
        f"impl={r['impl']}",
    ]
    if _present(r.get("lr")):
        parts.append(f"train.lr={r['lr']:g}")
    if sweep:
        parts.append(f"+experiment={sweep}")
    return "python -m benchmark.run " + " ".join(p for p in parts if "=None" not in p and "=nan" not in p)


def env_values(column: pd.Series) -> str:
    """Each value of an environment key with its run count, commonest first; past `ENV_VALUES_SHOWN`, a count."""
    counts = column.astype(str).value_counts()
    shown = "; ".join(f"{v} ({n} runs)" for v, n in counts.iloc[:ENV_VALUES_SHOWN].items())
    rest = len(counts) - ENV_VALUES_SHOWN
    return shown + (f"; and {rest} other values ({int(counts.iloc[ENV_VALUES_SHOWN:].sum())} runs)" if rest > 0 else "")


def environment_section(s: Sweep, out_dir: Path) -> dict[str, Any]:
    """Section 9: every env value with its run count, and the commands that reproduce the report."""
    summary = s.summary
    cols = [c for c in summary.columns if c.startswith("env_") and c not in ENV_TIMINGS]
    cols += [
        c for c in ("device", "precision", "hidden_size", "num_layers", "batch_size", "steps", "lr") if c in summary
    ]
    env = [{"key": c, "values": env_values(summary[c])} for c in cols]
    point = None
    if len(s.done):
        r0 = s.done.iloc[0]
        cfg0 = Path(str(r0["path"])) / "config.yaml"
        point = {
            "command": point_command(r0, s.name),
            "config_path": str(cfg0),
            "config": cfg0.read_text(encoding="utf-8") if cfg0.exists() else None,
        }
    return {
        "table": html_table(pd.DataFrame(env), table_id="env-table"),
        "rep": reproduce(s.dir),
        "point": point,
        "rebuild": f"python -m benchmark.analysis.aggregate {s.dir}\n"
        f"python -m benchmark.analysis.report {s.dir} --out {out_dir}",
    }


# ----------------------------------------------------------------------------- the report


def render(context: dict[str, Any]) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html.j2").render(**context)


def build(sweep_dir: str | Path, out_dir: str | Path | None = None, opts: cmp.Options = cmp.Options()) -> Path:
    """Write `<out_dir>/index.html` (default reports/<sweep>/) with verdicts and claims as CSV,
    Markdown and LaTeX beside it; returns the HTML's path.

    Raises `aggregate.ResultsError` for a missing or empty results folder (nothing written).
    """
    sweep_dir = Path(sweep_dir)
    agg_mod.run_folders(sweep_dir)  # fails loud before anything is written
    s = load_sweep(sweep_dir)
    out_dir = Path(out_dir) if out_dir is not None else Path("reports") / sweep_dir.name
    design, design_error = load_design(sweep_dir)
    margin = design.learned_margin if design is not None else design_mod.LEARNED_MARGIN
    vt = cmp.verdicts(s.selected, opts, margin) if len(s.selected) else pd.DataFrame(columns=cmp.COLUMNS)
    agg = cmp.aggregates(s.selected, opts) if len(s.selected) else pd.DataFrame(columns=cmp.AGG_COLUMNS)
    results = claims_mod.run_claims(s.selected, opts, s.comp, design) if len(s.selected) else []
    out_dir.mkdir(parents=True, exist_ok=True)
    level = f"{100 * opts.level:g} %"
    scores = export.score_table(s.selected, opts.level)
    caption = f"{s.name}: mean test score (0 = trivial, 1 = perfect) [{level} t interval over seeds]"
    export.write_table(vt, out_dir, "verdicts", paper=scores, caption=caption)
    claims = claims_mod.claims_table(results)
    caption = f"{s.name}: each claim's primary endpoint, effect in the claim's direction [{level} interval]"
    export.write_table(claims, out_dir, "claims", paper=export.claims_paper(claims), caption=caption)
    export.write_table(agg, out_dir, "aggregates")
    seeds = seeds_section(s)
    export.write_table(seeds["table"], out_dir, "seeds")
    context = {
        "sweep": s.name,
        "sweep_dir": str(sweep_dir),
        "n_runs": len(s.summary),
        "tasks": _tasks(s),
        "counts": agg_mod.status_counts(s.summary),
        "opts": opts,
        "adjust_name": stats.ADJUST_NAMES[opts.adjust],
        "level": f"{100 * opts.level:g}",
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "claims": claims_section(results, s, design, design_error, opts.alpha),
        "seeds": seeds,
        "verdicts": verdicts_section(s, vt, agg) if len(s.selected) else None,
        "lr": lr_section(s),
        "scores": scores_section(s),
        "literature": literature_section(s),
        "gradients": gradients_section(s),
        "cost": cost_section(s),
        "learning": learning_section(s),
        "failures": failures_section(s),
        "missing": missing_section(s),
        "environment": environment_section(s, out_dir),
    }
    path = out_dir / "index.html"
    atomic_write_text(path, render(context))
    return path


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmark.analysis.report", description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", help="results/<sweep> (read; aggregated in memory if its tables are stale)")
    ap.add_argument("--out", default=None, help="output folder (default reports/<sweep>)")
    ap.add_argument(
        "--ci",
        choices=[c.value for c in stats.CI],
        default="t",
        help="interval of a mean difference: t = Student-t (paired) / Welch (default); bca = BCa bootstrap "
        "(under-covers below ~30 seeds)",
    )
    ap.add_argument(
        "--test",
        choices=[t.value for t in stats.Test],
        default="t",
        help="p-value: t = paired t-test / Welch (default); signflip = exact sign-flip permutation test",
    )
    ap.add_argument(
        "--adjust",
        choices=[a.value for a in stats.Adjust],
        default="bh",
        help="multiplicity correction over each table: bh = Benjamini-Hochberg (default), holm = Holm",
    )
    ap.add_argument(
        "--min-seeds",
        type=int,
        default=stats.DEFAULT_MIN_SEEDS,
        help="seeds a comparison needs before it may say helps or hurts (default 5)",
    )
    ap.add_argument("--level", type=float, default=0.95, help="interval level; alpha = 1 - level (default 0.95)")
    ap.add_argument(
        "--n-boot", type=int, default=2000, help="resamples of the aggregates' stratified bootstrap (default 2000)"
    )
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed: the same seed gives the same intervals")
    ap.add_argument(
        "--aggregate",
        action="store_true",
        help="aggregate the run folders first (`make report`): the report is written even where aggregate names "
        "corrupt folders, and the exit status is aggregate's",
    )
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    if args.min_seeds < 2:
        ap.error(f"--min-seeds={args.min_seeds}: allowed: an integer >= 2 (one seed has no spread to test)")
    if not 0.5 < args.level < 1:
        ap.error(f"--level={args.level}: allowed: a number in (0.5, 1)")
    opts = cmp.Options(
        ci=stats.CI(args.ci),
        test=stats.Test(args.test),
        adjust=stats.Adjust(args.adjust),
        min_seeds=args.min_seeds,
        level=args.level,
        seed=args.seed,
        n_boot=args.n_boot,
    )
    status = agg_mod.main([args.sweep_dir]) if args.aggregate else 0
    if status == 2:  # no results to report on: aggregate said so, once
        return 2
    try:
        path = build(args.sweep_dir, args.out, opts)
    except agg_mod.ResultsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # an unwritable or full reports folder: the results are untouched
        where = e.filename or args.out or Path("reports") / Path(args.sweep_dir).name
        print(f"error: cannot write the report to {where}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"report: {path.resolve()}")
    return status


if __name__ == "__main__":
    sys.exit(main())

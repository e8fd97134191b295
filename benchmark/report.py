"""One self-contained HTML report per sweep: `python -m benchmark.report results/<sweep> [--out reports/<sweep>]`.

It leads with the answer (section 1: per task x length x cell, the effect of each regulariser
on test accuracy versus `none`, with a seedable bootstrap interval over seeds, the probability
of improvement and the word the interval supports), then: accuracy vs length, gradients,
cost, learning curves and generalisation, failed/diverged points, environment and the
commands to reproduce. Tables are pandas, figures seaborn (embedded as base64 PNG), the page
is a Jinja2 template with inline CSS and no scripts or external resources, so it reads offline.

The tables come from `benchmark.aggregate` (re-aggregated here when missing or older than the
newest run).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import jinja2
import numpy as np
import pandas as pd
import yaml
from markupsafe import Markup, escape

from benchmark import aggregate as agg_mod
from benchmark import plots, stats

TEMPLATES = Path(__file__).resolve().parent / "templates"
DONE = ("ok", "diverged")  # runs that produced measurements (diverged: up to the step it stopped)
KEY = ["task", "seq_len", "cell"]
REFS = {
    ("bn", "recurrent"): "Cooijmans et al. 2016: per-step BN of W_x·x and W_h·h (+ LSTM cell state)",
    ("bn", "input"): "Laurent et al. 2016: BN of W_x·x only, sequence-wise statistics",
    ("bn", "output"): "BN of each layer's output sequence (between layers, before the head)",
    ("dropout", "output"): "Zaremba et al. 2014: non-recurrent connections, fresh mask per step",
    ("dropout", "variational"): "Gal & Ghahramani 2016: one mask per sequence, inputs and recurrent state",
    ("dropout", "recurrent"): "Semeniuta et al. 2016: candidate update only",
}


# ----------------------------------------------------------------------------- tables


def _nonnull(x: Any) -> bool:
    return x is not None and not (isinstance(x, float) and np.isnan(x))


def add_variants(df: pd.DataFrame) -> pd.DataFrame:
    """Add `variant`: the reg name, plus its placement/p when the sweep holds several of that reg."""
    df = df.copy()
    for c in ("reg", "bn_placement", "dropout_placement", "dropout_p", "impl", "impl_used"):
        if c not in df.columns:
            df[c] = None
    bn_rows = df["bn_placement"].map(_nonnull)
    do_rows = df["dropout_placement"].map(_nonnull)
    multi_bn = df.loc[bn_rows, "bn_placement"].nunique() > 1
    multi_do = len(df.loc[do_rows, ["dropout_placement", "dropout_p"]].drop_duplicates()) > 1

    def label(r: pd.Series) -> str:
        parts = []
        if multi_bn and _nonnull(r["bn_placement"]):
            parts.append(str(r["bn_placement"]))
        if multi_do and _nonnull(r["dropout_placement"]):
            parts.append(f"{r['dropout_placement']} p={r['dropout_p']:g}")
        return f"{r['reg']}[{', '.join(parts)}]" if parts else str(r["reg"])

    df["variant"] = df.apply(label, axis=1) if len(df) else pd.Series(dtype=str)
    return df


def describe_variants(df: pd.DataFrame) -> list[dict[str, str]]:
    """What each verdict column is: placements (with the paper), dropout p, the impl that ran."""
    out = []
    for v in plots.ordered(df["variant"].unique(), plots.REG_ORDER):
        g = df[df["variant"] == v]
        r = g.iloc[0]
        parts = []
        if _nonnull(r["bn_placement"]):
            parts.append(f"BN placement {r['bn_placement']} ({REFS.get(('bn', r['bn_placement']), 'user variant')})")
        if _nonnull(r["dropout_placement"]):
            parts.append(f"dropout placement {r['dropout_placement']}, p={r['dropout_p']:g} "
                         f"({REFS.get(('dropout', r['dropout_placement']), 'user variant')})")
        if not parts:
            parts.append("no regularisation: the baseline" if r["reg"] == "none" else "see config")
        impls = ", ".join(sorted(f"{a}→{b}" for a, b in g[["impl", "impl_used"]].dropna().drop_duplicates()
                                 .itertuples(index=False)))
        out.append({"variant": v, "what": "; ".join(parts), "impl": impls or "—"})
    return out


def verdict_impl(df: pd.DataFrame) -> Optional[str]:
    """Accuracy does not depend on impl (same function); with several, verdicts use `auto` (or the commonest)."""
    impls = df["impl"].dropna()
    if impls.nunique() <= 1:
        return None
    return "auto" if (impls == "auto").any() else impls.value_counts().index[0]


@dataclass
class Verdicts:
    rows: list[dict[str, Any]]  # one per task x seq_len x cell, with one entry per variant
    variants: list[str]
    counts: pd.DataFrame  # cell x variant: "2 helps · 1 hurts · 3 no clear effect"
    acc: pd.DataFrame  # the effects table of test_accuracy
    metric: pd.DataFrame  # the effects table of test_metric (tasks whose metric is not 1 - accuracy)
    impl_note: str = ""


def _fmt(x: Any, digits: int = 3, sign: bool = False) -> str:
    if not _nonnull(x):
        return "—"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _fmt_metric(x: Any) -> str:
    return "—" if not _nonnull(x) else f"{x:+.3g}"


def verdicts(done: pd.DataFrame, *, n_boot: int, seed: int, level: float) -> Verdicts:
    """Section 1: effects on test accuracy (and the task metric) vs `none`, per task x T x cell."""
    impl = verdict_impl(done)
    d = done if impl is None else done[done["impl"] == impl]
    note = "" if impl is None else f"Verdicts use the runs with impl={impl} (the impl changes speed, not the function)."
    n_seeds = d.groupby(KEY + ["variant"])["seed"].nunique()
    if len(n_seeds) and 2 <= n_seeds.min() < 5:
        note += (f" Only {n_seeds.min()} seed(s) per point here: a percentile bootstrap over so few seeds spans little "
                 f"more than the range of the per-seed differences, so two seeds that agree already read as helps or "
                 f"hurts; take these verdicts as indicative and use 5 or more seeds (the full experiment) to conclude.")
    acc = stats.effects_table(d.dropna(subset=["test_accuracy"]), value="test_accuracy", by=KEY,
                              treatment_col="variant", baseline="none", n_boot=n_boot, level=level, seed=seed)
    m = d[(d["metric_name"].notna()) & (d["metric_name"] != "error")].dropna(subset=["test_metric"])
    met = stats.effects_table(m, value="test_metric", by=KEY, treatment_col="variant", baseline="none",
                              lower_better="metric_name", n_boot=n_boot, level=level, seed=seed)
    variants = [v for v in plots.ordered(d["variant"].unique(), plots.REG_ORDER) if v != "none"]
    rows = []
    for (task, T, cell), g in d.groupby(KEY, sort=True):
        base = g[g["variant"] == "none"]
        mname = g["metric_name"].dropna().iloc[0] if g["metric_name"].notna().any() else None
        row = {"task": task, "seq_len": int(T), "cell": cell, "metric_name": mname,
               "n_seeds": int(g["seed"].nunique()),
               "base_acc": _fmt(base["test_accuracy"].mean()) if len(base) else "—",
               "base_metric": _fmt_metric(base["test_metric"].mean()).lstrip("+") if len(base) and mname != "error"
               else "", "effects": {}}
        for v in variants:
            a = acc[(acc["task"] == task) & (acc["seq_len"] == T) & (acc["cell"] == cell) & (acc["variant"] == v)]
            mm = met[(met["task"] == task) & (met["seq_len"] == T) & (met["cell"] == cell) & (met["variant"] == v)]
            e: dict[str, Any] = {"verdict": stats.NO_DATA if len(base) == 0 or len(a) == 0 else a.iloc[0]["verdict"]}
            if len(a):
                r = a.iloc[0]
                e.update(diff=_fmt(r.mean_diff, sign=True), lo=_fmt(r.ci_low, sign=True), hi=_fmt(r.ci_high, sign=True),
                         poi=_fmt(r.prob_improvement, 2), n=int(r.n_pairs if r.paired else min(r.n_treat, r.n_base)),
                         paired=bool(r.paired))
            if len(mm):
                r = mm.iloc[0]
                # oriented as an improvement; show the raw change of the metric (lower is better)
                sign = -1.0 if stats.lower_is_better(mname) else 1.0
                e.update(m_diff=_fmt_metric(sign * r.mean_diff), m_lo=_fmt_metric(sign * r.ci_high),
                         m_hi=_fmt_metric(sign * r.ci_low), m_verdict=r.verdict)
            row["effects"][v] = e
        rows.append(row)
    cell_rank = {c: i for i, c in enumerate(plots.ordered(d["cell"].unique(), plots.CELL_ORDER))}
    rows.sort(key=lambda r: (r["task"], r["seq_len"], cell_rank[r["cell"]]))
    counts = {}
    for v in variants:
        for cell in plots.ordered(d["cell"].unique(), plots.CELL_ORDER):
            words = [r["effects"][v]["verdict"] for r in rows if r["cell"] == cell and v in r["effects"]]
            tally = pd.Series(words).value_counts()
            order = [stats.HELPS, stats.HURTS, stats.UNCLEAR, stats.TOO_FEW, stats.NO_DATA]
            counts.setdefault(v, {})[cell] = " · ".join(f"{tally[w]} {w}" for w in order if w in tally) or "—"
    return Verdicts(rows=rows, variants=variants, counts=pd.DataFrame(counts), acc=acc, metric=met, impl_note=note)


def sort_tidy(df: pd.DataFrame) -> pd.DataFrame:
    """Rows in reading order: task, length, cell (rnn, lstm, gru), variant (none, bn, dropout, both)."""
    if len(df) == 0:
        return df
    keys, rank = [], {}
    for c, order in (("task", ()), ("seq_len", ()), ("cell", plots.CELL_ORDER), ("variant", plots.REG_ORDER),
                     ("impl_used", ("native", "custom"))):
        if c in df.columns:
            levels = plots.ordered(df[c].unique(), order) if c != "seq_len" else sorted(df[c].dropna().unique())
            rank[c] = {v: i for i, v in enumerate(levels)}
            keys.append(c)
    return df.sort_values(keys, key=lambda s: s.map(rank[s.name])).reset_index(drop=True)


def spread_table(done: pd.DataFrame, value: str, digits: int = 3) -> pd.DataFrame:
    """mean ± sd over seeds, rows task x cell x variant, columns seq_len."""
    g = done.dropna(subset=[value]).groupby(["task", "cell", "variant", "seq_len"])[value]
    t = g.agg(["mean", "std", "count"]).reset_index()
    t["v"] = [f"{m:.{digits}f} ± {s:.{digits}f} (n={n})" if n > 1 else f"{m:.{digits}f} (n=1)"
              for m, s, n in zip(t["mean"], t["std"].fillna(0), t["count"])]
    t = t.pivot(index=["task", "cell", "variant"], columns="seq_len", values="v")
    t.columns = [f"T={c}" for c in t.columns]
    return sort_tidy(t.reset_index())


def cost_tables(done: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cost per task x T x cell x variant x impl_used, overheads). Medians over seeds.

    Overheads, from the dedicated forward+backward time: `reg_overhead` = variant vs none on
    the same impl_used (the regulariser's own cost); `kernel_cost` = custom-none vs native-none
    (the cost of leaving the fused kernel); `total_vs_fused` = variant as run vs native-none.
    """
    cols = ["fwd_ms", "fwd_bwd_ms", "train_tokens_per_s", "fwd_bwd_tokens_per_s", "peak_memory_mb"]
    cols = [c for c in cols if c in done.columns]
    by = ["task", "seq_len", "cell", "variant", "impl_used"]
    cost = done.groupby(by)[cols].median().reset_index() if len(done) else pd.DataFrame(columns=by + cols)
    ms = cost.set_index(by)["fwd_bwd_ms"] if "fwd_bwd_ms" in cost else pd.Series(dtype=float)
    rows = []
    for (task, T, cell), g in cost.groupby(["task", "seq_len", "cell"]):
        def t(variant: str, impl: str) -> float:
            return float(ms.get((task, T, cell, variant, impl), np.nan))
        native_none, custom_none = t("none", "native"), t("none", "custom")
        for r in g.itertuples(index=False):
            same = t("none", r.impl_used)
            rows.append({"task": task, "seq_len": T, "cell": cell, "variant": r.variant, "impl_used": r.impl_used,
                         "fwd_bwd_ms": r.fwd_bwd_ms,
                         "reg_overhead": r.fwd_bwd_ms / same - 1 if r.variant != "none" else np.nan,
                         "kernel_cost": custom_none / native_none - 1 if r.variant == "none" and r.impl_used == "custom"
                         else np.nan,
                         "total_vs_fused": r.fwd_bwd_ms / native_none - 1})
    over = pd.DataFrame(rows, columns=["task", "seq_len", "cell", "variant", "impl_used", "fwd_bwd_ms",
                                       "reg_overhead", "kernel_cost", "total_vs_fused"])
    return sort_tidy(cost), sort_tidy(over)


def gradient_table(done: pd.DataFrame) -> pd.DataFrame:
    """Median over seeds of log10(‖∂L/∂h_1‖/‖∂L/∂h_T‖) at start and end, and global-norm stats."""
    d = done.copy()
    for w in ("start", "end"):
        r = pd.to_numeric(d.get(f"hidden_grad_ratio_{w}"), errors="coerce")
        d[f"log10_ratio_{w}"] = np.log10(r.where(r > 0))
    cols = ["log10_ratio_start", "log10_ratio_end", "grad_norm_mean", "grad_norm_max", "clipped_fraction"]
    return sort_tidy(d.groupby(["task", "seq_len", "cell", "variant"])[cols].median().reset_index())


def generalisation_table(done: pd.DataFrame, *, n_boot: int, seed: int, level: float) -> pd.DataFrame:
    """Gap (train - test accuracy) per variant, its change vs none with an interval, and steps to target."""
    g = done.groupby(KEY + ["variant"])
    t = g.agg(train_acc=("train_accuracy", "mean"), test_acc=("test_accuracy", "mean"),
              gap=("generalization_gap", "mean"), steps_to_target=("steps_to_target", "median"),
              reached=("steps_to_target", lambda s: int(s.notna().sum())), runs=("run_id", "count")).reset_index()
    eff = stats.effects_table(done.dropna(subset=["generalization_gap"]), value="generalization_gap", by=KEY,
                              treatment_col="variant", baseline="none", lower_better=True, n_boot=n_boot,
                              level=level, seed=seed)
    eff = eff.assign(gap_change=-eff["mean_diff"], gap_ci=[f"[{-h:+.3f}, {-lo:+.3f}]" for lo, h in
                                                           zip(eff["ci_low"], eff["ci_high"])],
                     gap_verdict=eff["verdict"].replace({stats.HELPS: "smaller gap", stats.HURTS: "larger gap"}))
    t = t.merge(eff[KEY + ["variant", "gap_change", "gap_ci", "gap_verdict"]], on=KEY + ["variant"], how="left")
    t["reached"] = [f"{a}/{b}" for a, b in zip(t["reached"], t["runs"])]
    return sort_tidy(t.drop(columns="runs"))


# ----------------------------------------------------------------------------- HTML pieces


def html_table(df: pd.DataFrame, *, pct: Sequence[str] = (), digits: int = 3, table_id: str = "",
               classes: str = "data") -> Markup:
    """A pandas table as escaped HTML, numbers formatted, NaN as an em dash."""
    if df is None or len(df) == 0:
        return Markup('<p class="empty">(no rows)</p>')
    out = df.copy()
    for c in out.columns:
        if c in pct:
            out[c] = [f"{v:+.0%}" if _nonnull(v) else "—" for v in out[c]]
        elif pd.api.types.is_float_dtype(out[c]):
            out[c] = [("—" if not _nonnull(v) else f"{v:,.0f}" if abs(v) >= 1000
                       else f"{v:.{digits}g}" if 0 < abs(v) < 1e-3 else f"{v:.{digits}f}") for v in out[c]]
    html = out.to_html(index=False, escape=True, na_rep="—", border=0, classes=classes,
                       table_id=table_id or None)
    return Markup(html)


def figure(fig: Any, alt: str) -> Markup:
    return Markup(f'<figure><img src="{plots.to_data_uri(fig)}" alt="{escape(alt)}"><figcaption>{escape(alt)}'
                  f'</figcaption></figure>')


def _longest(done: pd.DataFrame, task: str) -> int:
    return int(done.loc[done["task"] == task, "seq_len"].max())


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
    task_ov = ov.get("task", []) or []
    out["command"] = " ".join(["python -m benchmark.run --multirun", *map(shlex.quote, hydra_ov + task_ov)])
    params = ((h.get("sweeper") or {}).get("params")) or {}
    out["params"] = yaml.safe_dump(params, sort_keys=False).strip() if params else None
    return out


def point_command(r: pd.Series, sweep: str) -> str:
    """One grid point on its own (the experiment's other settings come from its config.yaml)."""
    parts = [f"cell={r['cell']}", f"reg={r['reg']}", f"task={r['task']}", f"task.seq_len={int(r['seq_len'])}",
             f"seed={int(r['seed'])}", f"impl={r['impl']}"]
    if sweep:
        parts.append(f"+experiment={sweep}")
    return "python -m benchmark.run " + " ".join(p for p in parts if "=None" not in p and "=nan" not in p)


# ----------------------------------------------------------------------------- the report


@dataclass
class Section:
    title: str
    anchor: str
    body: list[Markup] = field(default_factory=list)


def _ensure_tables(sweep_dir: Path) -> agg_mod.Aggregate:
    """The aggregated tables, re-aggregating when missing or older than the newest run."""
    summary = sweep_dir / agg_mod.SUMMARY_PARQUET
    newest = max((p.stat().st_mtime for p in (sweep_dir / "runs").glob("*/metrics.json")), default=0.0)
    fresh = all((sweep_dir / n).exists() for n in (agg_mod.SUMMARY_PARQUET, agg_mod.PROFILES_PARQUET,
                                                   agg_mod.CURVES_PARQUET))
    if fresh and summary.stat().st_mtime >= newest:
        return agg_mod.load(sweep_dir)
    a = agg_mod.aggregate(sweep_dir)
    agg_mod.write(a, sweep_dir)
    return a


def build(sweep_dir: str | Path, out_dir: str | Path | None = None, *, n_boot: int = 2000, seed: int = 0,
          level: float = 0.95) -> Path:
    """Write `<out_dir>/index.html` (default reports/<sweep>/) and return its path.

    Raises `aggregate.ResultsError` for a missing or empty results folder (nothing written).
    """
    sweep_dir = Path(sweep_dir)
    agg_mod.run_folders(sweep_dir)  # fails loud before anything is written
    a = _ensure_tables(sweep_dir)
    summary = add_variants(a.summary)
    sweep = str(summary["sweep"].dropna().iloc[0]) if summary.get("sweep") is not None and \
        summary["sweep"].notna().any() else sweep_dir.name
    out_dir = Path(out_dir) if out_dir is not None else Path("reports") / sweep_dir.name
    done = summary[summary["status"].isin(DONE)].copy()
    for c in ("seq_len", "seed"):
        done[c] = done[c].astype(int)
    tasks = plots.ordered(done["task"].unique(), ["adding", "copy", "digits"])
    variants = describe_variants(done) if len(done) else []
    ident = done[["run_id", "task", "seq_len", "cell", "variant", "seed", "impl_used"]]
    sections: list[Section] = []

    # 1. Verdicts
    v = verdicts(done, n_boot=n_boot, seed=seed, level=level) if len(done) else None

    # 2. Accuracy vs sequence length
    s2 = Section("Accuracy vs sequence length", "accuracy")
    for task in tasks:
        dt = done[done["task"] == task]
        s2.body.append(figure(plots.facet(dt, plots.vs_length, y="test_accuracy", hue="variant",
                                          ylabel="test accuracy", title=f"{task}: test accuracy"),
                              f"{task}: test accuracy vs sequence length per cell; line = mean over seeds, "
                              f"band = min–max, dots = single seeds"))
        mname = dt["metric_name"].dropna().iloc[0] if dt["metric_name"].notna().any() else None
        if mname and mname != "error":
            s2.body.append(figure(plots.facet(dt, plots.vs_length, y="test_metric", hue="variant", ylabel=f"test {mname}",
                                              logy=bool((dt["test_metric"] > 0).all()),
                                              title=f"{task}: test {mname} (lower is better)"),
                                  f"{task}: test {mname} vs sequence length (baseline of the trivial predictor "
                                  f"{_fmt(dt['metric_baseline'].dropna().iloc[0]) if dt['metric_baseline'].notna().any() else '—'})"))
    s2.body.append(Markup("<h3>Test accuracy, mean ± sd over seeds</h3>"))
    s2.body.append(html_table(spread_table(done, "test_accuracy"), table_id="accuracy-table"))
    sections.append(s2)

    # 3. Gradients
    s3 = Section("Gradients: vanishing or exploding?", "gradients")
    prof = a.profiles.merge(ident, on="run_id", how="inner")
    curves = a.curves.merge(ident[["run_id", "variant"]], on="run_id", how="inner") if len(a.curves) else a.curves
    for task in tasks:
        T = _longest(done, task)
        if len(curves) and "grad_norm" in curves:
            c = curves[(curves["task"] == task) & (curves["seq_len"] == T)]
            s3.body.append(figure(plots.facet(c, plots.curves, y="grad_norm", hue="variant", logy=True,
                                              ylabel="global grad norm (before clipping)",
                                              title=f"{task}, T={T}: global gradient norm during training"),
                                  f"{task}, T={T}: global gradient norm per logged step (mean over seeds, band = min–max)"))
        p = prof[(prof["task"] == task) & (prof["seq_len"] == T)]
        s3.body.append(figure(plots.facet(p, plots.profile, hue="variant", row="which", row_order=["start", "end"],
                                          title=f"{task}, T={T}: hidden-state gradient ‖∂L/∂h_t‖ over t"),
                              f"{task}, T={T}: ‖∂L/∂h_t‖ on a fixed probe batch at the start and end of training; "
                              f"falling towards t=1 = vanishing, rising = exploding"))
    s3.body.append(Markup("<h3>log10(‖∂L/∂h_1‖ / ‖∂L/∂h_T‖) and global norms (medians over seeds)</h3>"
                          "<p>Below 0: gradients vanish towards the start of the sequence; above 0: they explode. "
                          "Compare each variant with <code>none</code> of the same cell and length.</p>"))
    s3.body.append(html_table(gradient_table(done), pct=("clipped_fraction",), table_id="gradient-table"))
    sections.append(s3)

    # 4. Cost
    s4 = Section("Cost: throughput and the price of each regulariser", "cost")
    cost, over = cost_tables(done)
    cost_plot = done.assign(impl_used=done["impl_used"].fillna("?"))
    for task in tasks:
        dt = cost_plot[cost_plot["task"] == task]
        s4.body.append(figure(plots.facet(dt, plots.vs_length, y="fwd_bwd_tokens_per_s", hue="variant",
                                          style="impl_used", sharey=False, ylabel="fwd+bwd tokens/s",
                                          title=f"{task}: forward+backward throughput"),
                              f"{task}: dedicated forward+backward timing, tokens/s (line style = impl that ran)"))
        s4.body.append(figure(plots.facet(dt, plots.vs_length, y="train_tokens_per_s", hue="variant",
                                          style="impl_used", sharey=False, ylabel="training tokens/s",
                                          title=f"{task}: training throughput (in the loop)"),
                              f"{task}: training tokens/s measured in the loop"))
    ov_plot = over.dropna(subset=["reg_overhead"])
    if len(ov_plot):
        s4.body.append(figure(plots.facet(ov_plot.assign(overhead_pct=100 * ov_plot["reg_overhead"]), plots.bars,
                                          y="overhead_pct", x="variant", ylabel="fwd+bwd time vs none, same impl (%)",
                                          title="Overhead of each regulariser vs none on the same impl"),
                              "Overhead of each regulariser relative to none on the same impl (all tasks and "
                              "lengths; bar = mean, whisker = min–max)"))
    s4.body.append(Markup("<h3>Overheads (forward+backward time, medians over seeds)</h3><p><b>reg_overhead</b>: "
                          "the variant vs <code>none</code> on the same impl (the regulariser's own cost); "
                          "<b>kernel_cost</b>: <code>custom</code>-none vs <code>native</code>-none (the cost of "
                          "leaving the fused kernel); <b>total_vs_fused</b>: the variant as it ran vs "
                          "<code>native</code>-none. A dash means the sweep has no <code>none</code> run on that "
                          "impl: add <code>impl=auto,custom</code> to the sweep to separate the two costs.</p>"))
    s4.body.append(html_table(over, pct=("reg_overhead", "kernel_cost", "total_vs_fused"), table_id="overhead-table"))
    s4.body.append(Markup("<h3>Cost per point (medians over seeds)</h3>"))
    s4.body.append(html_table(cost, digits=2, table_id="cost-table"))
    sections.append(s4)

    # 5. Learning curves and generalisation
    s5 = Section("Learning curves and generalisation", "learning")
    for task in tasks:
        T = _longest(done, task)
        c = curves[(curves["task"] == task) & (curves["seq_len"] == T)] if len(curves) else curves
        if len(c) and "val_accuracy" in c and c["val_accuracy"].notna().any():
            s5.body.append(figure(plots.facet(c, plots.curves, y="val_accuracy", hue="variant",
                                              ylabel="validation accuracy",
                                              title=f"{task}, T={T}: validation accuracy during training"),
                                  f"{task}, T={T}: validation accuracy at each evaluation (mean over seeds, "
                                  f"band = min–max): does BN converge faster?"))
        if len(c) and "train_loss" in c:
            s5.body.append(figure(plots.facet(c, plots.curves, y="train_loss", hue="variant", logy=True,
                                              ylabel="training loss", title=f"{task}, T={T}: training loss"),
                                  f"{task}, T={T}: training loss per logged step"))
    s5.body.append(Markup("<h3>Generalisation gap (train − test accuracy) and steps to target</h3><p><b>gap_change</b>: "
                          "the variant's gap minus <code>none</code>'s, with its bootstrap interval (negative = dropout "
                          "or BN reduced overfitting); <b>steps_to_target</b>: median over the seeds that reached the "
                          "task's target validation accuracy; <b>reached</b>: how many did.</p>"))
    s5.body.append(html_table(generalisation_table(done, n_boot=n_boot, seed=seed, level=level) if len(done)
                              else pd.DataFrame(), table_id="generalisation-table"))
    sections.append(s5)

    # 6. Failed, diverged and incomplete points
    s6 = Section("Failed, diverged and incomplete points", "failures")
    bad = summary[summary["status"] != "ok"].copy()
    if len(bad):
        bad["error"] = [(e if isinstance(e, str) else "") for e in bad.get("error", pd.Series([None] * len(bad)))]
        bad["problem"] = [(p if isinstance(p, str) else "") for p in bad["problem"]]
        cols = [c for c in ["status", "run_id", "task", "seq_len", "cell", "variant", "seed", "impl", "impl_used",
                            "diverged_at_step", "steps_done", "error", "problem", "path"] if c in bad.columns]
        s6.body.append(html_table(bad[cols], digits=0, table_id="failures-table"))
        for r in bad[bad["status"] == "failed"].itertuples():
            tb = getattr(r, "traceback", None)
            if isinstance(tb, str) and tb:
                s6.body.append(Markup(f"<details><summary>traceback of {escape(r.run_id)}</summary>"
                                      f"<pre>{escape(tb)}</pre></details>"))
    else:
        s6.body.append(Markup('<p id="failures-none">None: every grid point finished with status ok.</p>'))
    sections.append(s6)

    # 7. Environment and reproduction
    s7 = Section("Environment and how to reproduce", "environment")
    env_cols = [c for c in summary.columns if c.startswith("env_") and c not in ("env_start_time", "env_wall_s")]
    env_cols += [c for c in ("device", "precision", "hidden_size", "num_layers", "batch_size", "steps") if c in summary]
    env = [{"key": c, "values": "; ".join(f"{val} ({n} runs)" for val, n in
                                          summary[c].astype(str).value_counts().items())} for c in env_cols]
    s7.body.append(html_table(pd.DataFrame(env), table_id="env-table"))
    rep = reproduce(sweep_dir)
    s7.body.append(Markup("<h3>The sweep</h3>"))
    if rep["command"]:
        s7.body.append(Markup(f"<pre class=cmd>{escape(rep['command'])}</pre>"))
        if rep["params"]:
            s7.body.append(Markup(f"<p>Grid (<code>hydra.sweeper.params</code>):</p><pre>{escape(rep['params'])}</pre>"))
        s7.body.append(Markup(f"<details><summary>{escape(rep['multirun_path'])}</summary>"
                              f"<pre>{escape(rep['multirun_yaml'])}</pre></details>"))
    else:
        s7.body.append(Markup(f"<p>No <code>{escape(rep['multirun_path'])}</code>: these runs were not made by a "
                              f"Hydra multirun here. Each run's resolved config is in its folder.</p>"))
    s7.body.append(Markup(f"<pre class=cmd>python -m benchmark.aggregate {escape(str(sweep_dir))}\n"
                          f"python -m benchmark.report {escape(str(sweep_dir))} --out {escape(str(out_dir))}</pre>"))
    if len(done):
        r0 = done.iloc[0]
        cfg0 = Path(str(r0["path"])) / "config.yaml"
        s7.body.append(Markup(f"<p>One grid point on its own (its resolved config is "
                              f"<code>{escape(str(cfg0))}</code>):</p><pre class=cmd>"
                              f"{escape(point_command(r0, sweep))}</pre>"))
        if cfg0.exists():
            s7.body.append(Markup(f"<details><summary>{escape(str(cfg0))}</summary>"
                                  f"<pre>{escape(cfg0.read_text(encoding='utf-8'))}</pre></details>"))
    sections.append(s7)

    env_tmpl = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                  undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    counts = agg_mod.status_counts(summary)
    html = env_tmpl.get_template("report.html.j2").render(
        sweep=sweep, sweep_dir=str(sweep_dir), generated=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        n_runs=len(summary), counts=counts, tasks=tasks, verdicts=v, variants=variants, sections=sections,
        level=int(round(level * 100)), n_boot=n_boot, seed=seed,
        verdict_counts=html_table(v.counts.reset_index(names="cell"), table_id="verdict-counts") if v else None)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "index.html"
    agg_mod._atomic(path, lambda p: p.write_text(html, encoding="utf-8"))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmark.report", description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", help="results/<sweep> (aggregated here if needed)")
    ap.add_argument("--out", default=None, help="output folder (default reports/<sweep>)")
    ap.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed: the same seed gives the same intervals")
    ap.add_argument("--level", type=float, default=0.95, help="interval level (default 0.95)")
    args = ap.parse_args(argv)
    try:
        path = build(args.sweep_dir, args.out, n_boot=args.n_boot, seed=args.seed, level=args.level)
    except agg_mod.ResultsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"report: {path.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

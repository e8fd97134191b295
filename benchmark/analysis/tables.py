"""Descriptive tables of the report (no tests, no words): spreads over seeds, cost and overheads,
gradient summaries, generalisation. Pure functions over the summary table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.analysis.comparisons import KEY, sort_rows


def spread_table(done: pd.DataFrame, value: str, digits: int = 3) -> pd.DataFrame:
    """mean ± sd over seeds, rows task x cell x variant, columns seq_len."""
    g = done.dropna(subset=[value]).groupby(["task", "cell", "variant", "seq_len"])[value]
    t = g.agg(["mean", "std", "count"]).reset_index()
    if len(t) == 0:
        return pd.DataFrame(columns=["task", "cell", "variant"])
    t["v"] = [
        f"{m:.{digits}f} ± {s:.{digits}f} (n={n})" if n > 1 else f"{m:.{digits}f} (n=1)"
        for m, s, n in zip(t["mean"], t["std"].fillna(0), t["count"])
    ]
    t = t.pivot(index=["task", "cell", "variant"], columns="seq_len", values="v")
    t.columns = [f"T={c}" for c in t.columns]
    return sort_rows(t.reset_index())


def cost_tables(done: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cost per task x T x cell x variant x impl_used, overheads). Medians over seeds.

    Overheads, from the dedicated forward+backward time: `reg_overhead` = variant vs none on
    the same impl_used (the regulariser's own cost); `kernel_cost` = custom-none vs native-none
    (the cost of leaving the fused kernel); `total_vs_fused` = variant as run vs native-none.
    """
    cols = [
        c
        for c in ("fwd_ms", "fwd_bwd_ms", "train_tokens_per_s", "fwd_bwd_tokens_per_s", "peak_memory_mb")
        if c in done.columns
    ]
    by = [*KEY, "variant", "impl_used"]
    cost = done.groupby(by)[cols].median().reset_index() if len(done) else pd.DataFrame(columns=by + cols)
    over = cost[by + ["fwd_bwd_ms"]].copy() if "fwd_bwd_ms" in cost else pd.DataFrame(columns=by + ["fwd_bwd_ms"])
    none = over.loc[over["variant"] == "none", [*KEY, "impl_used", "fwd_bwd_ms"]]
    ref = lambda impl, name: none.loc[none["impl_used"] == impl, [*KEY, "fwd_bwd_ms"]].rename(  # noqa: E731
        columns={"fwd_bwd_ms": name}
    )
    over = (
        over.merge(none.rename(columns={"fwd_bwd_ms": "same_ms"}), on=[*KEY, "impl_used"], how="left")
        .merge(ref("native", "native_ms"), on=KEY, how="left")
        .merge(ref("custom", "custom_ms"), on=KEY, how="left")
    )
    is_none = over["variant"] == "none"
    over["reg_overhead"] = (over["fwd_bwd_ms"] / over["same_ms"] - 1).where(~is_none)
    over["kernel_cost"] = (over["custom_ms"] / over["native_ms"] - 1).where(is_none & (over["impl_used"] == "custom"))
    over["total_vs_fused"] = over["fwd_bwd_ms"] / over["native_ms"] - 1
    over = over.drop(columns=["same_ms", "native_ms", "custom_ms"])
    return sort_rows(cost), sort_rows(over)


def gradient_table(done: pd.DataFrame) -> pd.DataFrame:
    """Median over seeds of log10(‖∂L/∂h_1‖/‖∂L/∂h_T‖) at start and end, and global-norm stats."""
    d = done.copy()
    for w in ("start", "end"):
        r = pd.to_numeric(d.get(f"hidden_grad_ratio_{w}"), errors="coerce")
        d[f"log10_ratio_{w}"] = np.log10(r.where(r > 0))
    cols = ["log10_ratio_start", "log10_ratio_end", "grad_norm_mean", "grad_norm_max", "clipped_fraction"]
    return sort_rows(d.groupby([*KEY, "variant"])[cols].median().reset_index())


def generalisation_table(done: pd.DataFrame) -> pd.DataFrame:
    """Per point and variant: train and test score, their gap, accuracy gap, steps to target."""
    d = done.assign(score_gap=done["train_score"] - done["test_score"])
    t = (
        d.groupby([*KEY, "variant"])
        .agg(
            train_score=("train_score", "mean"),
            test_score=("test_score", "mean"),
            score_gap=("score_gap", "mean"),
            accuracy_gap=("generalization_gap", "mean"),
            steps_to_target=("steps_to_target", "median"),
            reached=("steps_to_target", lambda s: int(s.notna().sum())),
            runs=("run_id", "count"),
        )
        .reset_index()
    )
    t["reached"] = [f"{a}/{b}" for a, b in zip(t["reached"], t["runs"])]
    return sort_rows(t.drop(columns="runs"))

"""The report's tables as files beside index.html: CSV (every column, full precision, for programs),
Markdown (for READMEs and issues; pandas + tabulate) and LaTeX (for papers; pandas' Styler, booktabs rules).

A paper has no room for 25 columns: where the report gives one (`score_table`, `claims_paper`), the .tex
is that shaped table — mean [interval] per cell x variant and length, or one line per claim comparison —
and the CSV keeps everything."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from benchmark.analysis import comparisons as cmp
from benchmark.analysis import stats
from benchmark.core.io import atomic_write_text

DIGITS = 4  # significant digits in Markdown and LaTeX


def _rounded(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for c in out.columns:
        if pd.api.types.is_float_dtype(out[c]):
            out[c] = [np.nan if pd.isna(v) else float(f"{v:.{DIGITS}g}") for v in out[c]]
    return out


def to_markdown(df: pd.DataFrame) -> str:
    return _rounded(df).to_markdown(index=False, missingval="—") + "\n"


def to_latex(df: pd.DataFrame, caption: str = "") -> str:
    """A LaTeX tabular with booktabs rules (\\toprule, \\midrule, \\bottomrule; escaped names and values),
    preceded by `caption` as a comment."""
    if len(df) == 0:
        return "% (no rows)\n"
    sty = _rounded(df).style.hide(axis="index")
    sty = sty.format(na_rep="--", escape="latex", precision=DIGITS).format_index(escape="latex", axis=1)
    head = "".join(f"% {line}\n" for line in caption.splitlines())
    return head + "% needs \\usepackage{booktabs}\n" + sty.to_latex(hrules=True, column_format="l" * df.shape[1])


def mean_ci(values: np.ndarray, level: float) -> str:
    """'0.812 [0.790, 0.834]': the mean and its Student-t interval over seeds; the mean alone below two."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return "--"
    if v.size < 2:
        return f"{v.mean():.3f}"
    lo, hi = stats.t_interval(v, level)
    return f"{v.mean():.3f} [{lo:.3f}, {hi:.3f}]"


def _blank_repeats(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """A value of `cols` shown only where it changes (a paper's grouped rows)."""
    out = df.copy()
    for i, c in enumerate(cols):
        same = (df[cols[: i + 1]] == df[cols[: i + 1]].shift()).all(axis=1)
        out[c] = out[c].astype(object).where(~same, "")
    return out


def score_table(selected: pd.DataFrame, level: float = 0.95, value: str = cmp.PRIMARY) -> pd.DataFrame:
    """The paper's table of a sweep: per task, cell and variant (rows) and length (columns), the mean test score
    over seeds and its interval (`mean_ci`), the runs every comparison uses (each at its selected setting)."""
    if len(selected) == 0:
        return pd.DataFrame(columns=["task", "cell", "variant"])
    d = cmp.sort_rows(selected.assign(seq_len=selected["seq_len"].astype(int)))
    lengths = sorted(d["seq_len"].unique())
    rows = []
    for (task, cell, variant), g in d.groupby(["task", "cell", "variant"], sort=False):
        by_len = {T: g.loc[g["seq_len"] == T, value].to_numpy(float) for T in lengths}
        cells = {f"T={T}": (mean_ci(v, level) if v.size else "") for T, v in by_len.items()}
        rows.append({"task": task, "cell": cell, "variant": variant, **cells})
    return _blank_repeats(pd.DataFrame(rows), ["task", "cell"])


def _where(task: Any, seq_len: Any, cell: Any, points: Any) -> str:
    """Where a row was tested: its point, or (a confirmatory row pooling several) its points as listed."""
    if pd.isna(seq_len) or pd.isna(task) or pd.isna(cell):
        return "--" if pd.isna(points) else str(points)
    return f"{task} T={int(seq_len)} {cell}"


def claims_paper(claims: pd.DataFrame) -> pd.DataFrame:
    """One line per claim: its confirmatory test (role primary) where the sweep froze a design, else its
    per-point rows (an exploratory sweep): where, what against what, the effect in the claim's direction with
    its interval, the Holm-adjusted p and the word (claims.csv: every row, every column)."""
    if len(claims) == 0:
        return pd.DataFrame(columns=["claim", "where", "comparison", "endpoint", "effect [CI]", "p (Holm)", "word"])
    prim = claims[claims["role"] == "primary"]
    if len(prim) == 0:
        prim = claims[claims["role"] == "point"]
    effect = [
        "--" if pd.isna(m) else f"{m:+.3g} [{lo:+.3g}, {hi:+.3g}]" if np.isfinite(lo) else f"{m:+.3g}"
        for m, lo, hi in prim[["mean_diff", "ci_low", "ci_high"]].to_numpy(float)
    ]
    out = pd.DataFrame(
        {
            "claim": "(" + prim["claim"].astype(str) + ")",
            "where": [_where(t, T, c, pts) for t, T, c, pts in prim[["task", "seq_len", "cell", "points"]].to_numpy()],
            "comparison": prim["variant"].astype(str) + " vs " + prim["baseline"].astype(str),
            "endpoint": prim["endpoint"].astype(str),
            "effect [CI]": effect,
            "p (Holm)": ["--" if pd.isna(p) else f"{p:.3g}" for p in prim["p_adjusted"]],
            "word": prim["verdict"].fillna("--").astype(str),
        }
    )
    return _blank_repeats(out, ["claim"])


def write_table(
    df: pd.DataFrame, out_dir: Path, name: str, paper: Optional[pd.DataFrame] = None, caption: str = ""
) -> list[Path]:
    """`<name>.csv`, `<name>.md`, `<name>.tex` in `out_dir`, each written atomically; the .tex is `paper` where
    given (a table shaped for a paper), else `df`."""
    paths = [out_dir / f"{name}.{ext}" for ext in ("csv", "md", "tex")]
    tex = to_latex(df if paper is None else paper, caption)
    for path, text in zip(paths, (df.to_csv(index=False), to_markdown(df), tex)):
        atomic_write_text(path, text)
    return paths

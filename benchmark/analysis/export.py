"""The report's tables as files beside index.html: CSV (full precision, for programs), Markdown
(for READMEs and issues; pandas + tabulate) and LaTeX (for papers; pandas' Styler)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

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


def to_latex(df: pd.DataFrame) -> str:
    """A booktabs-free LaTeX tabular (escaped names and values)."""
    if len(df) == 0:
        return "% (no rows)\n"
    sty = _rounded(df).style.hide(axis="index")
    sty = sty.format(na_rep="--", escape="latex", precision=DIGITS).format_index(escape="latex", axis=1)
    return sty.to_latex(hrules=True)


def write_table(df: pd.DataFrame, out_dir: Path, name: str) -> list[Path]:
    """`<name>.csv`, `<name>.md`, `<name>.tex` in `out_dir`, each written atomically."""
    paths = [out_dir / f"{name}.{ext}" for ext in ("csv", "md", "tex")]
    for path, text in zip(paths, (df.to_csv(index=False), to_markdown(df), to_latex(df))):
        atomic_write_text(path, text)
    return paths

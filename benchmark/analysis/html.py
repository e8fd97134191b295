"""The HTML pieces the report and the sweep comparison share: number formats and escaped tables.

Both pages are rendered from `templates/` by Jinja2 with autoescape on; a table goes in as
`Markup` built here, so numbers read the same on both pages. Imports no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd
from markupsafe import Markup

TEMPLATES = Path(__file__).resolve().parent / "templates"


def present(x: Any) -> bool:
    return x is not None and not (isinstance(x, float) and np.isnan(x))


def fmt(x: Any, digits: int = 3, sign: bool = False) -> str:
    if not present(x):
        return "—"
    if isinstance(x, (int, np.integer)) and not sign:
        return str(x)
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def fmt_p(p: Any) -> str:
    return "—" if not present(p) else ("<0.001" if p < 1e-3 else f"{p:.3f}")


def html_table(
    df: Optional[pd.DataFrame], *, pct: Sequence[str] = (), digits: int = 3, table_id: str = "", classes: str = "data"
) -> Markup:
    """A pandas table as escaped HTML, numbers formatted, NaN as an em dash."""
    if df is None or len(df) == 0:
        return Markup('<p class="empty">(no rows)</p>')
    out = df.copy()
    for c in out.columns:
        if c in pct:
            out[c] = [f"{v:+.0%}" if present(v) else "—" for v in out[c]]
        elif pd.api.types.is_float_dtype(out[c]):
            out[c] = [
                (
                    "—"
                    if not present(v)
                    else f"{v:,.0f}"
                    if abs(v) >= 1000
                    else f"{v:.{digits}g}"
                    if 0 < abs(v) < 1e-3
                    else f"{v:.{digits}f}"
                )
                for v in out[c]
            ]
    return Markup(
        out.to_html(index=False, escape=True, na_rep="—", border=0, classes=classes, table_id=table_id or None)
    )

"""Seaborn figures of the report: pure functions over the aggregated tables.

Single-panel functions take `ax=` and return the figure they drew on; `facet` lays a panel
function out over the levels of a column (one panel per cell, say) and returns a new
`matplotlib.figure.Figure`. No pyplot state is used (figures are built directly, so nothing
leaks between calls and no display backend is needed). Colours: seaborn's colour-blind
palette with a fixed colour per regulariser across every figure (`none` is grey).
"""
from __future__ import annotations

import base64
import io
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure  # used directly: no pyplot, no display backend, nothing global

from benchmark.analysis.comparisons import CELL_ORDER, REG_ORDER, ordered

IMPL_ORDER = ["native", "custom"]
_DASHES = {"native": "", "custom": (4, 2)}  # solid = fused kernel, dashed = the custom loop
_CB = sns.color_palette("colorblind")  # 10 colours
_REG_COLOURS = {"none": _CB[7], "bn": _CB[0], "dropout": _CB[1], "both": _CB[2]}
_SPARE = [_CB[i] for i in (3, 4, 5, 6, 8, 9)]


def reg_palette(levels: Sequence[str]) -> dict[str, Any]:
    """Colour per regulariser (or variant label starting with one): stable across figures."""
    pal: dict[str, Any] = {}
    spare = iter(_SPARE * 4)
    for lv in ordered(levels, REG_ORDER):
        base = str(lv).split(".")[0].split("@")[0]
        pal[lv] = _REG_COLOURS.get(base) if base in _REG_COLOURS and _REG_COLOURS[base] not in pal.values() \
            else next(spare)
    return pal


def _new_ax(ax: Optional[Axes]) -> Axes:
    if ax is not None:
        return ax
    fig = Figure(figsize=(4.5, 3.2), layout="constrained")
    return fig.add_subplot()


def summarise(data: pd.DataFrame, x: str, y: str, by: Sequence[str]) -> pd.DataFrame:
    """Mean, min and max of `y` per (`by`..., `x`) in one vectorised groupby: the bands of every
    line figure (seaborn's own error bands estimate per point and cost minutes on large sweeps)."""
    d = data.dropna(subset=[y])
    if len(d) == 0:
        return pd.DataFrame(columns=[*by, x, "mean", "min", "max"])
    return d.groupby([*by, x], sort=True, observed=True)[y].agg(["mean", "min", "max"]).reset_index()


def band_lines(s: pd.DataFrame, x: str, *, ax: Axes, hue: str, style: Optional[str] = None,
               marker: Optional[str] = None) -> None:
    """Lines of the summarised mean per hue (and style) level, with the min-max band shaded."""
    levels = ordered(s[hue].unique(), REG_ORDER)
    pal = reg_palette(levels)
    style_kw: dict[str, Any] = {}
    if style is not None:  # fixed dashes per level, so every panel and figure reads the same
        order = ordered(s[style].unique(), IMPL_ORDER)
        style_kw = dict(style=style, style_order=order, dashes={lv: _DASHES.get(lv, (1, 1)) for lv in order})
    sns.lineplot(data=s, x=x, y="mean", hue=hue, hue_order=levels, palette=pal, estimator=None, errorbar=None,
                 marker=marker, ax=ax, legend="brief", sort=True, **style_kw)
    for keys, g in s.groupby([hue] + ([style] if style else []), sort=False, observed=True):
        level = keys[0] if isinstance(keys, tuple) else keys
        ax.fill_between(g[x].to_numpy(float), g["min"].to_numpy(float), g["max"].to_numpy(float),
                        color=pal[level], alpha=0.18, linewidth=0)


def vs_length(data: pd.DataFrame, y: str, *, ax: Optional[Axes] = None, hue: str = "reg",
              style: Optional[str] = None, logy: bool = False, ylabel: Optional[str] = None) -> Figure:
    """Mean of `y` over seeds against seq_len (one line per hue level); band = min-max over seeds,
    dots = single seeds."""
    ax = _new_ax(ax)
    d = data.dropna(subset=[y])
    if len(d):
        s = summarise(d, "seq_len", y, [hue] + ([style] if style else []))
        band_lines(s, "seq_len", ax=ax, hue=hue, style=style, marker="o")
        pal = reg_palette(ordered(d[hue].unique(), REG_ORDER))
        ax.scatter(d["seq_len"], d[y], s=9, c=[pal[v] for v in d[hue]], alpha=0.5, linewidths=0)
        if d["seq_len"].nunique() > 1 and d["seq_len"].max() / max(d["seq_len"].min(), 1) >= 8:
            ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("sequence length")
    ax.set_ylabel(ylabel or y)
    return ax.figure


def curves(data: pd.DataFrame, y: str, *, x: str = "step", ax: Optional[Axes] = None, hue: str = "reg",
           logy: bool = False, ylabel: Optional[str] = None, logx: bool = False) -> Figure:
    """A series (grad_norm over steps, a score over learning rates, ...) per hue level: mean over
    seeds, band = min-max over seeds."""
    ax = _new_ax(ax)
    d = data.dropna(subset=[y])
    if logy:
        d = d[d[y] > 0]
    if len(d):
        band_lines(summarise(d, x, y, [hue]), x, ax=ax, hue=hue, marker="o" if logx else None)
    if logy:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel or y)
    return ax.figure


def profile(data: pd.DataFrame, *, ax: Optional[Axes] = None, hue: str = "reg") -> Figure:
    """‖∂L/∂h_t‖ over t (log scale): a falling curve towards t=1 is vanishing gradient,
    a rising one exploding. Mean over seeds, band = min-max."""
    return curves(data, "grad_norm", x="t", ax=ax, hue=hue, logy=True, ylabel="‖∂L/∂h_t‖")


def bars(data: pd.DataFrame, y: str, *, x: str = "reg", ax: Optional[Axes] = None, hue: Optional[str] = None,
         ylabel: Optional[str] = None, zero_line: bool = True) -> Figure:
    """Bars of `y` per `x` (mean over rows, error bar = min-max), e.g. overhead per regulariser."""
    ax = _new_ax(ax)
    d = data.dropna(subset=[y])
    if len(d):
        order = ordered(d[x].unique(), REG_ORDER)
        if hue is None:
            sns.barplot(data=d, x=x, y=y, order=order, hue=x, hue_order=order, palette=reg_palette(order),
                        errorbar=("pi", 100), ax=ax, legend=False)
        else:
            sns.barplot(data=d, x=x, y=y, order=order, hue=hue, palette="colorblind", errorbar=("pi", 100), ax=ax)
    if zero_line:
        ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel or y)
    return ax.figure


def facet(data: pd.DataFrame, panel: Callable[..., Figure], *, col: str = "cell", row: Optional[str] = None,
          col_order: Sequence[Any] = CELL_ORDER, row_order: Sequence[Any] = (), title: str = "",
          sharey: bool | str = True, panel_size: tuple[float, float] = (4.2, 3.0), **kw: Any) -> Figure:
    """One `panel(sub, ax=..., **kw)` per level of `col` (and `row`); one legend for the figure."""
    cols = ordered(data[col].unique(), col_order) if len(data) else ["(no data)"]
    rows = ordered(data[row].unique(), row_order) if row and len(data) else [None]
    fig = Figure(figsize=(panel_size[0] * len(cols) + 1.2, panel_size[1] * len(rows) + 0.5), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(rows), len(cols), sharey=sharey, squeeze=False))  # (rows, cols)
    handles: dict[str, Any] = {}
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            ax = axes[i, j]
            sub = data[(data[col] == c) & ((data[row] == r) if row else True)] if len(data) else data
            panel(sub, ax=ax, **kw)
            ax.set_title(f"{col}={c}" + (f", {row}={r}" if row else ""), fontsize=10)
            leg = ax.get_legend()
            if leg is not None:
                for h, t in zip(leg.legend_handles, [t.get_text() for t in leg.get_texts()]):
                    handles.setdefault(t, h)
                leg.remove()
            if len(sub) == 0:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="0.4")
    if handles:
        fig.legend(list(handles.values()), list(handles.keys()), loc="outside right upper", frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def to_data_uri(fig: Figure, dpi: int = 90) -> str:
    """The figure as a `data:image/png;base64,...` URI (embedded in the HTML; no files, no network)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")

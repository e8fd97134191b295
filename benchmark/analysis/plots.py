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
from matplotlib.lines import Line2D
from matplotlib.ticker import EngFormatter, LogLocator, NullLocator

from benchmark.analysis.comparisons import CELL_ORDER, REG_ORDER, family, ordered

IMPL_ORDER = ["native", "custom"]
_DASHES = {"native": "", "custom": (4, 2)}  # solid = fused kernel, dashed = the custom loop
_CB = sns.color_palette("colorblind")  # 10 colours
_REG_COLOURS = {"none": _CB[7], "bn": _CB[0], "dropout": _CB[1], "both": _CB[2]}
_SPARE = [_CB[i] for i in (3, 4, 5, 6, 8, 9)]
LEGEND_W = 2.0  # inches on the right of a faceted figure for its legend
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]  # one per level of a line figure's hue, in its order
DODGE = 0.025  # each level's points shifted by this share of the x range (log range on a log axis)


def reg_palette(levels: Sequence[str]) -> dict[str, Any]:
    """Colour per regulariser (or variant label starting with one): stable across figures."""
    pal: dict[str, Any] = {}
    spare = iter(_SPARE * 4)
    for lv in ordered(levels, REG_ORDER):
        base = family(str(lv))
        pal[lv] = (
            _REG_COLOURS.get(base) if base in _REG_COLOURS and _REG_COLOURS[base] not in pal.values() else next(spare)
        )
    return pal


def _new_ax(ax: Optional[Axes]) -> Axes:
    if ax is not None:
        return ax
    fig = Figure(figsize=(4.5, 3.2))
    fig.subplots_adjust(left=0.17, right=0.97, bottom=0.15, top=0.93)
    return fig.add_subplot()


def summarise(data: pd.DataFrame, x: str, y: str, by: Sequence[str]) -> pd.DataFrame:
    """Mean, min and max of `y` per (`by`..., `x`) in one vectorised groupby: the bands of every
    line figure (seaborn's own error bands estimate per point and cost minutes on large sweeps)."""
    d = data.dropna(subset=[y])
    if len(d) == 0:
        return pd.DataFrame(columns=[*by, x, "mean", "min", "max"])
    return d.groupby([*by, x], sort=True, observed=True)[y].agg(["mean", "min", "max"]).reset_index()


def band_lines(
    s: pd.DataFrame, x: str, *, ax: Axes, hue: str, style: Optional[str] = None, marker: Optional[str] = None
) -> None:
    """Lines of the summarised mean per hue (and style) level, with the min-max band shaded; a legend
    with one entry per hue level (and per style level, in grey)."""
    levels = ordered(s[hue].unique(), REG_ORDER)
    pal = reg_palette(levels)
    rank = {v: i for i, v in enumerate(levels)}
    groups = sorted(
        s.groupby([hue] + ([style] if style else []), sort=False, observed=True), key=lambda kg: rank[kg[0][0]]
    )
    handles: dict[str, Any] = {}
    for keys, g in groups:
        level, st = keys[0], (keys[1] if style else None)
        mk = MARKERS[rank[level] % len(MARKERS)] if marker else None  # a shape per level: equal lines stay told apart
        xs = g[x].to_numpy(float)
        ax.plot(xs, g["mean"].to_numpy(float), color=pal[level], marker=mk, markersize=5, lw=1.6, dashes=_dashes(st))
        ax.fill_between(
            xs, g["min"].to_numpy(float), g["max"].to_numpy(float), color=pal[level], alpha=0.18, linewidth=0
        )
        handles.setdefault(str(level), Line2D([], [], color=pal[level], lw=2, marker=mk))
    for st in ordered(s[style].unique(), IMPL_ORDER) if style else []:
        handles[f"{style}={st}"] = Line2D([], [], color="0.35", lw=1.6, dashes=_dashes(st))
    ax.legend(list(handles.values()), list(handles.keys()), fontsize=8)


def _dashes(level: Any) -> tuple:
    """Solid for the fused kernel (and for lines without a style), dashed for the custom loop."""
    d = _DASHES.get(level, (1, 1)) if level is not None else ""
    return d or (None, None)


def log_axis(ax: Axes, which: str = "y") -> None:
    """A log axis with a handful of major ticks and no minor ones: vanishing gradients span hundreds
    of decades, and matplotlib's default minor ticks dominated the report's drawing time."""
    axis = ax.yaxis if which == "y" else ax.xaxis
    (ax.set_yscale if which == "y" else ax.set_xscale)("log")
    axis.set_major_locator(LogLocator(numticks=6))
    axis.set_minor_locator(NullLocator())


def vs_length(
    data: pd.DataFrame,
    y: str,
    *,
    ax: Optional[Axes] = None,
    hue: str = "reg",
    style: Optional[str] = None,
    logy: bool = False,
    ylabel: Optional[str] = None,
) -> Figure:
    """Mean of `y` over seeds against seq_len (one line per hue level); band = min-max over seeds,
    dots = single seeds."""
    ax = _new_ax(ax)
    d = data.dropna(subset=[y])
    if len(d):
        logx = d["seq_len"].nunique() > 1 and d["seq_len"].max() / max(d["seq_len"].min(), 1) >= 8
        d = d.assign(x=dodged(d, hue, logx))  # levels with equal values side by side, not one under another
        s = summarise(d, "x", y, [hue] + ([style] if style else []))
        band_lines(s, "x", ax=ax, hue=hue, style=style, marker="o")
        pal = reg_palette(ordered(d[hue].unique(), REG_ORDER))
        ax.scatter(d["x"], d[y], s=9, c=[pal[v] for v in d[hue]], alpha=0.5, linewidths=0)
        if logx:
            log_axis(ax, "x")
        lengths = sorted(d["seq_len"].unique())  # the true lengths as ticks, whatever the dodge
        ax.set_xticks(lengths, [f"{t:g}" for t in lengths])
    if logy:
        log_axis(ax, "y")
    elif len(d) and d[y].abs().max() >= 1e4:  # throughputs: 200 k, not 200000 (whose width clips the label)
        ax.yaxis.set_major_formatter(EngFormatter(sep=" "))
    ax.set_xlabel("sequence length")
    ax.set_ylabel(ylabel or y)
    return ax.figure


def dodged(d: pd.DataFrame, hue: str, logx: bool) -> np.ndarray:
    """seq_len with each hue level shifted by its own small step around the true length (`DODGE`)."""
    levels = ordered(d[hue].unique(), REG_ORDER)
    k = {v: i - (len(levels) - 1) / 2 for i, v in enumerate(levels)}
    x = d["seq_len"].to_numpy(float)
    lo, hi = float(x.min()), float(x.max())
    shift = d[hue].map(k).to_numpy(float)
    if logx:
        return x * (hi / lo) ** (DODGE * shift)
    return x + (hi - lo if hi > lo else 1.0) * DODGE * shift


def lines(
    summary: pd.DataFrame,
    *,
    x: str = "step",
    ax: Optional[Axes] = None,
    hue: str = "reg",
    logy: bool = False,
    logx: bool = False,
    ylabel: Optional[str] = None,
) -> Figure:
    """A panel from an already summarised frame (columns hue, x, mean, min, max; see `summarise`)."""
    ax = _new_ax(ax)
    if len(summary):
        band_lines(summary, x, ax=ax, hue=hue, marker="o" if logx else None)
    if logy:
        log_axis(ax, "y")
    if logx:
        log_axis(ax, "x")
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel or "")
    return ax.figure


def curves(
    data: pd.DataFrame,
    y: str,
    *,
    x: str = "step",
    ax: Optional[Axes] = None,
    hue: str = "reg",
    logy: bool = False,
    ylabel: Optional[str] = None,
    logx: bool = False,
) -> Figure:
    """A series (grad_norm over steps, a score over learning rates, ...) per hue level: mean over
    seeds, band = min-max over seeds (one groupby, then `lines`)."""
    d = data.dropna(subset=[y])
    if logy:
        d = d[d[y] > 0]
    return lines(summarise(d, x, y, [hue]), x=x, ax=ax, hue=hue, logy=logy, logx=logx, ylabel=ylabel or y)


def profile(data: pd.DataFrame, *, ax: Optional[Axes] = None, hue: str = "reg") -> Figure:
    """‖∂L/∂h_t‖ over t (log scale): a falling curve towards t=1 is vanishing gradient,
    a rising one exploding. Mean over seeds, band = min-max."""
    return curves(data, "grad_norm", x="t", ax=ax, hue=hue, logy=True, ylabel="‖∂L/∂h_t‖")


def bars(
    data: pd.DataFrame,
    y: str,
    *,
    x: str = "reg",
    ax: Optional[Axes] = None,
    hue: Optional[str] = None,
    ylabel: Optional[str] = None,
    zero_line: bool = True,
) -> Figure:
    """Bars of `y` per `x` (mean over rows, error bar = min-max), e.g. overhead per regulariser."""
    ax = _new_ax(ax)
    d = data.dropna(subset=[y])
    if len(d):
        order = ordered(d[x].unique(), REG_ORDER)
        if hue is None:
            sns.barplot(
                data=d,
                x=x,
                y=y,
                order=order,
                hue=x,
                hue_order=order,
                palette=reg_palette(order),
                errorbar=("pi", 100),
                ax=ax,
                legend=False,
            )
        else:
            sns.barplot(data=d, x=x, y=y, order=order, hue=hue, palette="colorblind", errorbar=("pi", 100), ax=ax)
    if zero_line:
        ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel or y)
    return ax.figure


def collect_legend(ax: Any, handles: dict[str, Any]) -> None:
    """Move a panel's legend entries into `handles` (one figure legend instead of one per panel)."""
    leg = ax.get_legend()
    if leg is not None:
        for h, t in zip(leg.legend_handles, [t.get_text() for t in leg.get_texts()]):
            handles.setdefault(t, h)
        leg.remove()


def facet(
    data: pd.DataFrame,
    panel: Callable[..., Figure],
    *,
    col: str = "cell",
    row: Optional[str] = None,
    col_order: Sequence[Any] = CELL_ORDER,
    row_order: Sequence[Any] = (),
    title: str = "",
    sharey: bool | str = True,
    panel_size: tuple[float, float] = (4.2, 3.0),
    **kw: Any,
) -> Figure:
    """One `panel(sub, ax=..., **kw)` per level of `col` (and `row`); one legend for the figure."""
    cols = ordered(data[col].unique(), col_order) if len(data) else ["(no data)"]
    rows = ordered(data[row].unique(), row_order) if row and len(data) else [None]
    # Fixed margins in inches instead of a layout engine (constrained layout measured at 40 % of the
    # report's drawing time on a 1800-run sweep); the legend takes a fixed column on the right.
    fig_w, fig_h = panel_size[0] * len(cols) + LEGEND_W + 0.7, panel_size[1] * len(rows) + 0.9
    fig = Figure(figsize=(fig_w, fig_h))
    fig.subplots_adjust(
        left=0.75 / fig_w,
        right=1 - (LEGEND_W + 0.1) / fig_w,
        bottom=0.5 / fig_h,
        top=1 - 0.55 / fig_h,
        wspace=0.3,
        hspace=0.45,
    )
    axes = np.atleast_2d(fig.subplots(len(rows), len(cols), sharey=sharey, squeeze=False))  # (rows, cols)
    handles: dict[str, Any] = {}
    keys = [col] + ([row] if row else [])
    parts = (
        {(k if isinstance(k, tuple) else (k,)): g for k, g in data.groupby(keys, observed=True, sort=False)}
        if len(data)
        else {}
    )
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            ax = axes[i, j]
            sub = parts.get((c, r) if row else (c,), data.iloc[:0])
            panel(sub, ax=ax, **kw)
            ax.set_title(f"{col}={c}" + (f", {row}={r}" if row else ""), fontsize=10)
            collect_legend(ax, handles)
            if len(sub) == 0:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="0.4")
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles.keys()),
            loc="upper right",
            bbox_to_anchor=(1, 1 - 0.5 / fig_h),
            frameon=False,
            fontsize=9,
        )
    if title:
        fig.suptitle(title, fontsize=11, y=1 - 0.12 / fig_h)
    return fig


def to_data_uri(fig: Figure, dpi: int = 90) -> str:
    """The figure as a `data:image/png;base64,...` URI (embedded in the HTML; no files, no network)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def km_curves(data: pd.DataFrame) -> Figure:
    """Kaplan-Meier curves of steps to the validation target, one panel per task x length x cell, one line
    per variant; censored runs (never reached it within the budget) marked + at their budget."""
    from benchmark.analysis.survival import kaplan_meier  # the survival module imports no plotting

    panels = list(data.groupby(["task", "seq_len", "cell"], sort=True))
    fig = Figure(figsize=(3.2 * max(1, len(panels)) + LEGEND_W, 3.0))
    axes = fig.subplots(1, max(1, len(panels)), squeeze=False)[0]
    pal = reg_palette(data["variant"].unique())
    for ax, ((task, T, cell), g) in zip(axes, panels):
        for v, gv in g.groupby("variant", sort=False):
            reached = pd.to_numeric(gv["steps_to_target"], errors="coerce")
            t = reached.fillna(pd.to_numeric(gv["steps"], errors="coerce")).to_numpy(float)
            km = kaplan_meier(t, reached.notna().to_numpy())
            xs = np.concatenate([[0.0], km.times, [t.max()]])
            ys = np.concatenate([[1.0], km.survival, [km.survival[-1] if km.survival.size else 1.0]])
            ax.step(xs, ys, where="post", color=pal[v], label=f"{v} (n={len(gv)})")
            cens = t[reached.isna().to_numpy()]
            if cens.size:
                ax.plot(cens, np.full(cens.size, ys[-1]), "+", color=pal[v], ms=9)
        ax.set(title=f"{task}, T={T}, {cell}", xlabel="steps", ylabel="P(target not yet reached)", ylim=(-0.02, 1.02))
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def profile_lines(ax: Axes, s: pd.DataFrame, hue: str, title: str) -> None:
    """Summarised ‖∂L/∂h_t‖ profiles on a log axis, one line (mean) and band (min–max) per `hue` level."""
    for level, g in s.groupby(hue):
        ax.plot(g["t"], g["mean"], label=str(level))
        ax.fill_between(g["t"], g["min"], g["max"], alpha=0.2)
    ax.set_yscale("log")
    ax.set(title=title, xlabel="t", ylabel="‖∂L/∂h_t‖")
    ax.legend(fontsize=7)


def gain_profiles(profiles: pd.DataFrame) -> Figure:
    """‖∂L/∂h_t‖ over t per BN gain init (column `bn_gain_init`), start and end, one panel per cell:
    Cooijmans et al. 2016 show the gain's initial value decides between vanishing and exploding."""
    s = summarise(
        profiles.assign(gain=profiles["bn_gain_init"].map(lambda g: f"γ={g:g}")),
        "t",
        "grad_norm",
        ["cell", "which", "gain"],
    )
    cells = ordered(s["cell"].unique(), CELL_ORDER)
    fig = Figure(figsize=(3.4 * max(1, len(cells)) + LEGEND_W, 5.6))
    axes = fig.subplots(2, max(1, len(cells)), squeeze=False)
    for j, cell in enumerate(cells):
        for i, which in enumerate(("start", "end")):
            ax = axes[i][j]
            profile_lines(ax, s[(s["cell"] == cell) & (s["which"] == which)], "gain", f"{cell}, {which}")
    fig.tight_layout()
    return fig


def init_gain_profiles(profiles: pd.DataFrame) -> Figure:
    """‖∂L/∂h_t‖ over t at initialisation per BN gain init (`which` = "init γ=…"), one panel per task and
    length (rows) and cell (columns): the start of training, where the gain alone sets the BN cell's
    gradient flow (Cooijmans et al. 2016)."""
    d = profiles.assign(setting=profiles["task"].astype(str) + ", T=" + profiles["seq_len"].astype(str))
    s = summarise(d, "t", "grad_norm", ["setting", "cell", "which"])
    settings = sorted(s["setting"].unique())
    cells = ordered(s["cell"].unique(), CELL_ORDER)
    fig = Figure(figsize=(3.4 * max(1, len(cells)) + LEGEND_W, 2.6 * max(1, len(settings))))
    axes = fig.subplots(max(1, len(settings)), max(1, len(cells)), squeeze=False)
    for i, setting in enumerate(settings):
        for j, cell in enumerate(cells):
            ax = axes[i][j]
            sel = s[(s["setting"] == setting) & (s["cell"] == cell)]
            profile_lines(ax, sel.assign(which=sel["which"].str.removeprefix("init ")), "which", f"{setting}, {cell}")
    fig.tight_layout()
    return fig

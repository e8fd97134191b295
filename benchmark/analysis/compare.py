"""What changed between two sweeps: `python -m benchmark.analysis.compare A B` (`make compare A=... B=...`).

A and B are sweeps (results/<name>) or paths to sweep folders: two commits, two machines, CPU
and GPU, two learning rates. For every grid point the two share, and for each measure —
score, accuracy, the task's metric, gradient measures, forward+backward time — it compares B
with A with the verdicts' rules (benchmark/analysis/stats.py): paired by seed where at least
two seeds are shared (else Welch), Student-t interval of the mean difference, p-values adjusted
across the points of each measure (Benjamini-Hochberg by default), a word only with enough
seeds. Words: `better` / `worse` where the measure has a direction (score, accuracy and
metric from the records' declared direction, time lower is better), `higher` / `lower` for
gradient measures, else `no clear change` or `too few seeds`.

A grid point is (task, seq_len, cell, variant) plus every identity key that varies inside
either sweep (e.g. impl, lr when both sweep it). Keys that are constant in each sweep but
differ between them (e.g. lr 0.01 -> 0.001, device cpu -> cuda) are "what changed" and are
stated at the top. Points in only one of the sweeps are listed, never silently dropped.

Writes `compare.csv` (one row per point and measure) and `index.html` to `--out`.
`--fail-on worse` exits 1 when any comparison of a gated measure (by default score,
accuracy and the task's metric: a science-regression gate) is significantly worse.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from benchmark.analysis import aggregate as agg_mod
from benchmark.analysis import comparisons as cmp
from benchmark.analysis import stats
from benchmark.core import record
from benchmark.core.io import atomic_write_text

DONE = record.MEASURED
BETTER, WORSE, HIGHER, LOWER, UNCLEAR = "better", "worse", "higher", "lower", "no clear change"
BASE_KEY = ["task", "seq_len", "cell", "variant"]
# Identity keys that may be an axis of a sweep (in the key when they vary inside a sweep) or the
# deliberate change between two sweeps (when constant in each but different).
AXES = ["impl", "lr", "hidden_size", "num_layers", "batch_size", "steps", "precision", "device", "accel", "dropout_p"]
ENV_KEYS = ["env_device_name", "env_torch", "env_git_rev", "env_threads", "env_hostname"]


@dataclass(frozen=True)
class Measure:
    """A column of the run record compared between sweeps.

    direction: +1 higher is better, -1 lower is better, 0 none (gradients), None: from the
    records' `metric_higher_is_better`.
    """

    column: str
    label: str
    direction: Optional[int]
    log10: bool = False  # compare log10 of the value (ratios spanning orders of magnitude)


MEASURES = (
    Measure("test_score", "test score", +1),
    Measure("test_accuracy", "test accuracy", +1),
    Measure("test_metric", "test metric", None),
    Measure("grad_norm_mean", "mean gradient norm", 0),
    Measure("hidden_grad_ratio_end", "log10 ‖∂L/∂h_1‖/‖∂L/∂h_T‖ (end)", 0, log10=True),
    Measure("fwd_bwd_ms", "forward+backward ms", -1),
)
GATED = ("test_score", "test_accuracy", "test_metric")


def resolve(name: str, results_dir: Path) -> Path:
    """A sweep name (results/<name>) or a path to a sweep folder."""
    p = Path(name)
    for cand in (p, results_dir / name):
        if (cand / "runs").is_dir():
            return cand
    raise FileNotFoundError(f"{name!r}: neither {p} nor {results_dir / name} is a sweep folder (no runs/ inside)")


def load_done(sweep_dir: Path) -> pd.DataFrame:
    """The sweep's finished runs (ok or diverged) with their `variant`, read fresh from the run folders."""
    summary = agg_mod.aggregate(sweep_dir, warn=lambda msg: None).summary
    done = summary[summary["status"].isin(DONE)] if "status" in summary else summary.iloc[0:0]
    return cmp.add_variants(done)


def _constant(df: pd.DataFrame, col: str) -> Optional[Any]:
    vals = df[col].dropna().unique() if col in df else []
    return vals[0] if len(vals) == 1 else None


def split_keys(a: pd.DataFrame, b: pd.DataFrame) -> tuple[list[str], dict[str, tuple[Any, Any]]]:
    """(grid-point key, {key: (value in A, value in B)} for what changed between the sweeps)."""
    key, changed = list(BASE_KEY), {}
    for col in AXES:
        if col not in a or col not in b:
            continue
        va, vb = _constant(a, col), _constant(b, col)
        if va is not None and vb is not None:
            if va != vb:
                changed[col] = (va, vb)
        elif a[col].notna().any() or b[col].notna().any():
            key.append(col)
    return key, changed


def _direction(m: Measure, a: pd.DataFrame, b: pd.DataFrame) -> int:
    if m.direction is not None:
        return m.direction
    hib = (
        pd.concat(
            [
                a.get("metric_higher_is_better", pd.Series(dtype=object)),
                b.get("metric_higher_is_better", pd.Series(dtype=object)),
            ]
        )
        .dropna()
        .unique()
    )
    return (1 if bool(hib[0]) else -1) if len(hib) == 1 else 0


def _values(g: pd.DataFrame, m: Measure) -> pd.Series:
    v = g.groupby("seed")[m.column].mean().astype(float)
    if m.log10:
        v = np.log10(v.where(v > 0))
    return v


def _word(verdict: str, direction: int) -> str:
    if verdict == stats.HELPS:
        return BETTER if direction else HIGHER
    if verdict == stats.HURTS:
        return WORSE if direction else LOWER
    return UNCLEAR if verdict == stats.UNCLEAR else verdict


def compare_sweeps(
    a: pd.DataFrame, b: pd.DataFrame, opts: cmp.Options = cmp.Options(), measures: Sequence[Measure] = MEASURES
) -> tuple[pd.DataFrame, list[str], dict[str, Any]]:
    """(one row per shared point and measure, key columns, {what changed, points only in A / B})."""
    key, changed = split_keys(a, b)
    for col in key:
        a, b = a.assign(**{col: a[col].astype(object)}), b.assign(**{col: b[col].astype(object)})
    ga, gb = dict(list(a.groupby(key, dropna=False))), dict(list(b.groupby(key, dropna=False)))
    shared = [k for k in ga if k in gb]
    rows = []
    for m in measures:
        if m.column not in a or m.column not in b:
            continue
        d = _direction(m, a, b)
        sign = d if d else 1
        part = []
        for k in shared:
            va, vb = _values(ga[k], m), _values(gb[k], m)
            c = stats.compare(
                sign * vb,
                sign * va,
                ci=opts.ci,
                test=opts.test,
                level=opts.level,
                seed=opts.seed,
                key=f"{k}|{m.column}",
            )
            row = dict(zip(key, k if isinstance(k, tuple) else (k,)))
            diff = sign * c.mean_diff  # back in the measure's own units: B - A
            lo, hi = sorted((sign * c.ci_low, sign * c.ci_high))
            row.update(
                measure=m.column,
                label=m.label,
                direction=d,
                mean_a=float(va.mean()),
                mean_b=float(vb.mean()),
                **{k2: v for k2, v in c.as_dict().items()},
                diff=diff,
                diff_low=lo,
                diff_high=hi,
            )
            part.append(row)
        if part:  # one family per measure: its p-values are adjusted together
            t = stats.add_words(
                pd.DataFrame(part), adjust_method=opts.adjust, min_seeds=opts.min_seeds, alpha=opts.alpha
            )
            t["change"] = [_word(v, d) for v in t["verdict"]]
            rows.append(t)
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=key + ["measure", "change"])
    fmt = lambda ks: [" ".join(f"{c}={v}" for c, v in zip(key, k if isinstance(k, tuple) else (k,))) for k in ks]  # noqa: E731
    info = {
        "changed": changed,
        "only_a": fmt(k for k in ga if k not in gb),
        "only_b": fmt(k for k in gb if k not in ga),
        "shared": len(shared),
    }
    return table, key, info


def worse(table: pd.DataFrame, gated: Sequence[str] = GATED) -> pd.DataFrame:
    """The significantly worse comparisons of the gated measures."""
    if len(table) == 0:
        return table
    return table[(table["change"] == WORSE) & table["measure"].isin(list(gated))]


# ----------------------------------------------------------------------------- output

CSV_COLUMNS = [
    "measure",
    "direction",
    "mean_a",
    "mean_b",
    "diff",
    "diff_low",
    "diff_high",
    "n",
    "paired",
    "n_treat",
    "n_base",
    "p_value",
    "p_adjusted",
    "prob_improvement",
    "change",
]


def environments(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Where each sweep ran (distinct values of a few env keys)."""
    rows = []
    for col in ENV_KEYS:
        if col in a or col in b:
            show = lambda df: ", ".join(map(str, df[col].dropna().unique()[:3])) if col in df else "—"  # noqa: E731
            rows.append({"key": col.removeprefix("env_"), "A": show(a), "B": show(b)})
    return pd.DataFrame(rows)


def render_html(
    path_a: Path,
    path_b: Path,
    table: pd.DataFrame,
    key: list[str],
    info: dict[str, Any],
    env: pd.DataFrame,
    opts: cmp.Options,
) -> str:
    import jinja2

    from benchmark.analysis.html import TEMPLATES, html_table

    show = key + ["label", "mean_a", "mean_b", "diff", "diff_low", "diff_high", "n", "paired", "p_adjusted", "change"]
    t = table.reindex(columns=show).rename(
        columns={
            "label": "measure",
            "mean_a": "A",
            "mean_b": "B",
            "diff": "B − A",
            "diff_low": "low",
            "diff_high": "high",
            "p_adjusted": "p (adj.)",
        }
    )
    counts = (
        table.groupby(["label", "change"])
        .size()
        .unstack(fill_value=0)
        .reset_index()
        .rename(columns={"label": "measure"})
        if len(table)
        else None
    )
    significant = t[table["change"].isin([BETTER, WORSE, HIGHER, LOWER]).to_numpy()] if len(table) else None
    env_ = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    return env_.get_template("compare.html.j2").render(
        a=str(path_a),
        b=str(path_b),
        info=info,
        key=key,
        level=f"{opts.level:.0%}",
        adjust=stats.ADJUST_NAMES[opts.adjust],
        min_seeds=opts.min_seeds,
        counts=html_table(counts),
        significant=html_table(significant),
        full=html_table(t),
        env=html_table(env),
        gated=", ".join(GATED),
    )


def write(out: Path, table: pd.DataFrame, key: list[str], html: str) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    csv_path, html_path = out / "compare.csv", out / "index.html"
    atomic_write_text(csv_path, table.reindex(columns=key + CSV_COLUMNS).to_csv(index=False))
    atomic_write_text(html_path, html)
    return csv_path, html_path


def print_moved(table: pd.DataFrame, key: list[str]) -> None:
    """One line per comparison that moved (better, worse, higher, lower)."""
    moved = table[table["change"].isin([BETTER, WORSE, HIGHER, LOWER])] if len(table) else table
    for r in moved.itertuples():
        point = " ".join(f"{c}={getattr(r, c)}" for c in key)
        print(f"  {r.change:>6}: {r.measure} {r.mean_a:.4g} -> {r.mean_b:.4g} at {point} (p adj. {r.p_adjusted:.3g})")


def parser() -> argparse.ArgumentParser:
    """The command line of `python -m benchmark.analysis.compare`."""
    ap = argparse.ArgumentParser(prog="python -m benchmark.analysis.compare", description=__doc__.splitlines()[0])
    ap.add_argument("a", help="sweep A (the reference): a name under --results-dir or a path")
    ap.add_argument("b", help="sweep B (the candidate)")
    ap.add_argument("--results-dir", type=Path, default=Path("results"))
    ap.add_argument("--out", type=Path, default=None, help="default: reports/compare-<A>-vs-<B>")
    ap.add_argument(
        "--fail-on",
        choices=("none", "worse"),
        default="none",
        help="worse: exit 1 when a gated measure is significantly worse in B",
    )
    ap.add_argument(
        "--gate",
        nargs="+",
        default=list(GATED),
        choices=[m.column for m in MEASURES],
        help=f"measures --fail-on looks at (default: {' '.join(GATED)})",
    )
    ap.add_argument(
        "--min-seeds",
        type=int,
        default=stats.DEFAULT_MIN_SEEDS,
        help=f"seeds a point needs for a word (default {stats.DEFAULT_MIN_SEEDS})",
    )
    ap.add_argument("--level", type=float, default=0.95)
    ap.add_argument("--adjust", choices=[x.value for x in stats.Adjust], default=stats.Adjust.bh.value)
    ap.add_argument("--ci", choices=[x.value for x in stats.CI], default=stats.CI.t.value)
    ap.add_argument("--test", choices=[x.value for x in stats.Test], default=stats.Test.t.value)
    ap.add_argument("--seed", type=int, default=0, help="random stream of the bca / signflip options")
    return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    if not 0 < args.level < 1 or args.min_seeds < 1:
        ap.error("--level must be in (0, 1) and --min-seeds >= 1")
    opts = cmp.Options(
        min_seeds=args.min_seeds,
        level=args.level,
        adjust=stats.Adjust(args.adjust),
        ci=stats.CI(args.ci),
        test=stats.Test(args.test),
        seed=args.seed,
    )
    try:
        pa, pb = resolve(args.a, args.results_dir), resolve(args.b, args.results_dir)
        a, b = load_done(pa), load_done(pb)
    except (FileNotFoundError, agg_mod.ResultsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    table, key, info = compare_sweeps(a, b, opts)
    out = args.out or Path("reports") / f"compare-{pa.name}-vs-{pb.name}"
    csv_path, html_path = write(out, table, key, render_html(pa, pb, table, key, info, environments(a, b), opts))
    changed = ", ".join(f"{k} {va} -> {vb}" for k, (va, vb) in info["changed"].items()) or "nothing constant"
    print(
        f"compare: {info['shared']} shared grid points ({len(info['only_a'])} only in A, "
        f"{len(info['only_b'])} only in B); A -> B changed: {changed}"
    )
    print_moved(table, key)
    print(f"wrote {csv_path}\nreport: {html_path.resolve()}")
    bad = worse(table, args.gate)
    if args.fail_on == "worse" and len(bad):
        print(
            f"FAIL: {len(bad)} comparison(s) significantly worse in B ({', '.join(sorted(set(bad['measure'])))})",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

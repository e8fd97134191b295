"""Every run of a sweep into tidy pandas tables: `python -m benchmark.analysis.aggregate results/<sweep>`.

Reads `results/<sweep>/runs/<run_id>/{config.yaml, history.csv, metrics.json}` (see the
run record, `benchmark/core/record.py`) and writes, next to `runs/`:

- `summary.parquet`, `summary.csv`: one row per run folder — every scalar key of
  metrics.json, `env` flattened as `env_*`, plus `path` and `problem`. Folders that are not
  complete runs are rows too, never silently skipped: `status` is `incomplete` (no
  metrics.json, or `complete` not true: a run in progress or killed) or `corrupt` (unreadable
  metrics.json or history.csv); their identity comes from config.yaml where it can be read.
- `profiles.parquet`: the hidden-state gradient profiles, long: run_id, which (start|end|init γ=<gain>), t
  (1..T), grad_norm.
- `curves.parquet`: history.csv of every run, long, with the run's identity columns.

Each problem folder is also reported by path on stderr. A missing or empty results folder
is an error (exit 2) that writes nothing. A corrupt run folder is an error too (exit 1), but
only after the tables are written with that folder as a `corrupt` row, so the report still
shows it and no other result is held back; the run folders themselves are never modified.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import yaml
from pyarrow import csv as pa_csv
from pyarrow import parquet as pq

from benchmark.core import record
from benchmark.core.io import atomic_write

SUMMARY_PARQUET, SUMMARY_CSV = "summary.parquet", "summary.csv"
PROFILES_PARQUET, CURVES_PARQUET = "profiles.parquet", "curves.parquet"
# `which` of each profile in profiles.parquet -> its record key: start and end of training, and (BN arms, once
# per job) the start at each BN gain init, "init γ=0.5".
PROFILE_KEYS = {
    "start": "hidden_grad_profile_start",
    "end": "hidden_grad_profile_end",
    **{f"init γ={g:g}": record.init_gain_key(g) for g in record.INIT_GAINS},
}
# Identity columns copied onto every curve row, so curves.parquet reads on its own: the record's.
IDENTITY = [*record.IDENTITY_KEYS, "status"]
# The run statuses, then the states of folders that hold no finished run (or a second record of one).
RUN_STATUSES = tuple(s.value for s in record.Status)
STATUS_ORDER = [*RUN_STATUSES, "incomplete", "corrupt", "duplicate"]
# Two folders are one training recorded twice (a copied run folder) when all of these are equal.
SAME_TRAINING = [k for k in record.IDENTITY_KEYS if k not in ("run_id", "sweep")] + ["env_start_time"]


class ResultsError(Exception):
    """The results folder cannot be aggregated at all (missing, or holds no run folders)."""


@dataclass
class Aggregate:
    """The tables of one sweep; `problems` lists (path, why) for every folder that is not a complete run."""

    summary: pd.DataFrame  # (n_runs, n_keys)
    profiles: pd.DataFrame  # long: run_id, which, t, grad_norm
    curves: pd.DataFrame  # long: identity columns + history.csv columns
    problems: list[tuple[str, str]] = field(default_factory=list)


def _expected(sweep_dir: Path) -> str:
    return (
        "expected a sweep folder such as results/<sweep>/ holding runs/<run_id>/metrics.json "
        "(run `make sweep` or `python -m benchmark.run --multirun +experiment=smoke` first)"
    )


def run_folders(sweep_dir: str | Path) -> list[Path]:
    """The run folders of a sweep, sorted; raises ResultsError if there are none."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ResultsError(f"results folder not found: {sweep_dir}; {_expected(sweep_dir)}")
    runs = sweep_dir / "runs"
    folders = sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []
    if not folders:
        raise ResultsError(f"no run folders in {runs}; {_expected(sweep_dir)}")
    return folders


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where installed: ~10x faster


def read_config(folder: Path, only_with: Optional[str] = None) -> Optional[dict[str, Any]]:
    """A run folder's config.yaml as a mapping, or None where it is missing, unreadable or not a mapping;
    `only_with`: None too, without parsing, unless the file has that top-level key."""
    try:
        text = (Path(folder) / "config.yaml").read_text(encoding="utf-8")
        if only_with is not None and not (text.startswith(f"{only_with}:") or f"\n{only_with}:" in text):
            return None
        cfg = yaml.load(text, Loader=_YAML_LOADER)
    except (OSError, ValueError, yaml.YAMLError):  # ValueError: bytes that are not UTF-8
        return None
    return cfg if isinstance(cfg, dict) else None


def _identity_from_config(folder: Path) -> dict[str, Any]:
    """What config.yaml says about the grid point (for rows of runs that never finished)."""
    cfg = read_config(folder)
    if cfg is None:
        return {}
    sub = lambda k: cfg.get(k) if isinstance(cfg.get(k), dict) else {}  # noqa: E731
    reg = sub("reg")
    return {
        "cell": sub("cell").get("name"),
        "reg": reg.get("name"),
        "task": sub("task").get("name"),
        "seq_len": sub("task").get("seq_len"),
        "seed": cfg.get("seed"),
        "impl": cfg.get("impl"),
        "sweep": cfg.get("sweep"),
        "hidden_size": cfg.get("hidden_size"),
        "lr": sub("train").get("lr"),
    }


def _flatten(metrics: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list]]:
    """Scalars (env flattened to env_*) and list-valued keys apart."""
    row: dict[str, Any] = {}
    lists: dict[str, list] = {}
    for k, v in metrics.items():
        if k == "env" and isinstance(v, dict):
            row.update({f"env_{ek}": ev for ek, ev in v.items() if not isinstance(ev, (dict, list))})
        elif isinstance(v, list):
            lists[k] = v
        elif isinstance(v, dict):
            row[k] = json.dumps(v, sort_keys=True)
        else:
            row[k] = v
    return row, lists


def load_run(folder: Path) -> tuple[dict[str, Any], dict[str, np.ndarray], Optional[pa.Table], Optional[str]]:
    """One run folder -> (summary row, {start|end: profile (T,)}, history frame or None, problem or None)."""
    row: dict[str, Any] = {"run_id": folder.name, "path": str(folder), "problem": None}
    mpath = folder / "metrics.json"
    if not mpath.exists():
        what = "config.yaml but no metrics.json" if (folder / "config.yaml").exists() else "no metrics.json"
        row.update(_identity_from_config(folder), status="incomplete", problem=f"{what} (killed or still running)")
        return row, {}, None, row["problem"]
    try:
        metrics = json.loads(mpath.read_text(encoding="utf-8"))
        if not isinstance(metrics, dict):
            raise ValueError(f"top level is {type(metrics).__name__}, not an object")
    except (OSError, ValueError) as e:
        row.update(_identity_from_config(folder), status="corrupt", problem=f"unreadable {mpath}: {e}")
        return row, {}, None, row["problem"]
    scalars, lists = _flatten(metrics)
    row.update(scalars)
    row["run_id"] = folder.name if metrics.get("run_id") in (None, folder.name) else metrics["run_id"]
    problem = None
    if metrics.get("run_id") not in (None, folder.name):
        problem = f"metrics.json run_id {metrics['run_id']!r} does not match its folder"
        row["status"] = "corrupt"
    elif metrics.get("complete") is not True:
        problem = f"metrics.json has complete={metrics.get('complete')!r}"
        row["status"] = "incomplete"
    profiles = {which: np.asarray(lists[key], dtype=float) for which, key in PROFILE_KEYS.items() if lists.get(key)}
    curves = None
    hpath = folder / "history.csv"
    if hpath.exists():
        try:
            curves = read_history(hpath)
        except (OSError, ValueError, pa.ArrowException) as e:
            curves = None
            problem = problem or f"unreadable {hpath}: {e}"
            row["status"] = "corrupt"
    elif row.get("status") in record.MEASURED:
        problem = problem or "metrics.json without history.csv"
        row["status"] = "corrupt"
    row["problem"] = problem
    return row, profiles, curves, problem


def mark_duplicates(rows: Sequence[dict[str, Any]]) -> None:
    """Mark every complete run that is a second record of an earlier folder's training (each identity key of
    the record and the start time equal: a copied folder) as `duplicate`, naming the first; in place.
    Two trainings never share a start time and their identity, so genuine runs are never merged."""
    first: dict[tuple, str] = {}
    for row in rows:
        if row.get("status") not in RUN_STATUSES or row.get("env_start_time") is None:
            continue
        key = tuple(_hashable(row.get(k)) for k in SAME_TRAINING)
        if key in first:
            row["status"] = "duplicate"
            row["problem"] = (
                f"a second record of the training in {first[key]} (every identity key and the start time equal); "
                "left out of every comparison"
            )
        else:
            first[key] = str(row["path"])


def _hashable(v: Any) -> Any:
    return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v


def read_history(path: Path) -> pa.Table:
    """history.csv as a table (pyarrow: about half of pandas' per-file cost); ValueError unless its header is
    the record's columns as text (a torn or foreign file can parse as CSV with any header)."""
    table = pa_csv.read_csv(path)
    names = table.schema.names  # decodes the header: invalid UTF-8 raises here, not in a later concat
    if "step" not in names:
        raise ValueError(f"no `step` column (header {names[:4]}; expected {list(record.HISTORY_COLUMNS[:4])} ...)")
    return table


def aggregate(sweep_dir: str | Path, warn: Callable[[str], None] | None = None) -> Aggregate:
    """Read every run folder of a sweep; `warn` gets one line per problem folder (default: stderr).

    Histories and profiles are concatenated once and labelled by index arrays (one vectorised
    take per identity column), not frame by frame: the cost stays linear in the rows.
    """
    warn = warn or (lambda msg: print(msg, file=sys.stderr))
    rows, problems = [], []
    hists, hist_run = [], []  # history frames and the summary row each belongs to
    prof_vals, prof_run, prof_which, prof_t = [], [], [], []
    folders = run_folders(sweep_dir)
    with ThreadPoolExecutor(max_workers=4) as pool:  # file reads and pyarrow's parser release the GIL
        loaded = list(pool.map(load_run, folders))
    mark_duplicates([row for row, *_ in loaded])
    for i, (folder, (row, prof, hist, _)) in enumerate(zip(folders, loaded)):
        rows.append(row)
        problem = row["problem"]
        if problem:
            problems.append((str(folder), problem))
            warn(f"aggregate: {row['status']} run folder {folder}: {problem}")
        if row.get("status") not in RUN_STATUSES:  # curves only of complete runs: a copy or a torn file adds none
            continue
        for which, v in prof.items():
            prof_vals.append(v)
            prof_run.append(np.full(v.size, i))
            prof_which.append(np.full(v.size, which, dtype=object))
            prof_t.append(np.arange(1, v.size + 1))
        if hist is not None and hist.num_rows:
            hists.append(hist)
            hist_run.append(np.full(hist.num_rows, i))
    summary = pd.DataFrame(rows)
    lead = dict.fromkeys(["run_id", "status", *IDENTITY[1:], "test_accuracy", "test_metric", "metric_name"])
    first = [c for c in lead if c in summary.columns]
    summary = summary[first + [c for c in summary.columns if c not in first]]
    ident = summary.reindex(columns=IDENTITY)
    if hists:
        h = pa.concat_tables(hists, promote_options="permissive").to_pandas()
        labels = ident.iloc[np.concatenate(hist_run)].reset_index(drop=True)
        curves_df = pd.concat([labels, h.drop(columns=[c for c in IDENTITY if c in h])], axis=1)
    else:
        curves_df = pd.DataFrame(columns=IDENTITY + ["step"])
    cat = lambda a: np.concatenate(a) if a else np.array([], dtype=float)  # noqa: E731
    run_idx = cat(prof_run).astype(int)
    profiles = pd.DataFrame(
        {
            "run_id": summary["run_id"].to_numpy()[run_idx],
            "which": cat(prof_which).astype(str) if prof_which else np.array([], dtype=str),
            "t": cat(prof_t).astype(int),
            "grad_norm": cat(prof_vals),
        }
    )
    return Aggregate(summary=summary, profiles=profiles, curves=curves_df, problems=problems)


def write(agg: Aggregate, sweep_dir: str | Path) -> dict[str, Path]:
    """Write the tables next to runs/ (each atomically); returns their paths."""
    d = Path(sweep_dir)
    out = {
        "summary": d / SUMMARY_PARQUET,
        "summary_csv": d / SUMMARY_CSV,
        "profiles": d / PROFILES_PARQUET,
        "curves": d / CURVES_PARQUET,
    }
    atomic_write(out["summary"], lambda p: agg.summary.to_parquet(p, index=False))
    atomic_write(out["summary_csv"], lambda p: agg.summary.to_csv(p, index=False))
    atomic_write(out["profiles"], lambda p: agg.profiles.to_parquet(p, index=False))
    atomic_write(out["curves"], lambda p: agg.curves.to_parquet(p, index=False))
    return out


def load(sweep_dir: str | Path, curve_columns: Optional[Sequence[str]] = None) -> Aggregate:
    """The written tables of a sweep (run `aggregate` first); `curve_columns` reads only those
    columns of curves.parquet (those present), the largest table."""
    d = Path(sweep_dir)
    summary = pd.read_parquet(d / SUMMARY_PARQUET)
    problems = [(r.path, r.problem) for r in summary.itertuples() if isinstance(r.problem, str)]
    cols = None
    if curve_columns is not None:
        present = set(pq.ParquetFile(d / CURVES_PARQUET).schema_arrow.names)
        cols = [c for c in curve_columns if c in present]
    return Aggregate(
        summary=summary,
        profiles=pd.read_parquet(d / PROFILES_PARQUET),
        curves=pd.read_parquet(d / CURVES_PARQUET, columns=cols),
        problems=problems,
    )


def status_counts(summary: pd.DataFrame) -> dict[str, int]:
    counts = summary["status"].fillna("incomplete").value_counts()
    return {s: int(counts.get(s, 0)) for s in STATUS_ORDER if counts.get(s, 0)} | {
        s: int(n) for s, n in counts.items() if s not in STATUS_ORDER
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmark.analysis.aggregate", description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", help="results/<sweep> (holds runs/<run_id>/)")
    args = ap.parse_args(argv)
    try:
        agg = aggregate(args.sweep_dir)
    except ResultsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        paths = write(agg, args.sweep_dir)
    except OSError as e:  # an unwritable or full results folder: the run folders are untouched
        print(f"error: cannot write the tables to {args.sweep_dir}: {e.strerror or e}", file=sys.stderr)
        return 1
    counts = ", ".join(f"{n} {s}" for s, n in status_counts(agg.summary).items())
    print(
        f"aggregate: {len(agg.summary)} run folders ({counts}) -> {paths['summary']}, {paths['summary_csv'].name}, "
        f"{paths['profiles'].name}, {paths['curves'].name}"
    )
    bad = agg.summary.loc[agg.summary["status"].isin(["corrupt", "duplicate"])]
    if len(bad):
        listing = "; ".join(f"{p}: {problem}" for p, problem in bad[["path", "problem"]].itertuples(index=False))
        print(
            f"error: {len(bad)} run folder(s) of {args.sweep_dir} hold a corrupt or duplicated record "
            f"({listing}). They are listed as status=corrupt or duplicate in {paths['summary'].name} and in the "
            "report, and were left as they are; every other run was aggregated. A run folder must hold a complete "
            "metrics.json (JSON object with complete=true and its own run_id) and a readable history.csv, once: "
            "delete the folder and re-run the sweep (or `make sweep FORCE=1`) to redo that grid point.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

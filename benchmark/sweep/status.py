"""Where a sweep stands: `python -m benchmark.sweep.status results/<sweep>` (`make status`).

It only reads files, so it works at any time: during a sweep, after an interrupted one,
and while a SLURM array is still running. The grid comes from the sweep's own record,
`results/<sweep>/hydra/multirun.yaml` (written by Hydra when the multirun starts): the
sweeper params and command-line overrides are expanded exactly as Hydra's basic sweeper
does (its own parser and `split_arguments`), each grid point is composed with Hydra's
compose API from the same config folder, and its run id is computed as `benchmark.run`
does (`benchmark.core.io.run_id` over the resolved config). So every grid point is matched to
its run folder `runs/<run_id>/` and falls in exactly one category:

    ok          metrics.json complete, status ok
    diverged    metrics.json complete, status diverged
    failed      metrics.json complete, status failed (a re-run of the sweep retries it)
    lost        no complete metrics.json, and the sweep's latest launch lost the cluster job that
                trains it (benchmark/sweep/history.py: its SLURM state, job id and log)
    incomplete  the folder exists but has no complete metrics.json: running now, or killed
    corrupt     its metrics.json cannot be read (a torn or foreign file), or history.csv is missing
    missing     in the grid, never started (no folder)

The first three are the run statuses of the record (`benchmark.core.record.Status`); the others
say why a grid point has none.

Run folders that belong to no grid point (an earlier grid, or configs changed since) are
counted apart as `not in this grid`. Composition is cached per combination of config-group
choices, so a grid of thousands of points takes seconds.
"""

from __future__ import annotations

import argparse
import copy
import enum
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from benchmark.core.io import GRID_POINT, METRICS, read_metrics, run_id
from benchmark.core.record import Status
from benchmark.sweep import history
from benchmark.sweep.cohort_sweep import AXES_KEY, SWEEPER_TARGET, job_numbers
from benchmark.sweep.history import point_key

if TYPE_CHECKING:
    import pandas

MULTIRUN = Path("hydra") / "multirun.yaml"


# A grid point's category: its run's status, or why it has none.
Category = enum.Enum(
    "Category",
    [
        *((s.name, s.value) for s in Status),
        ("lost", "lost"),
        ("incomplete", "incomplete or running"),
        ("corrupt", "corrupt"),
        ("missing", "missing"),
    ],
    type=str,
)


@dataclass(frozen=True)
class GridPoint:
    """One grid point of the multirun: the number of the job that trains it, its overrides, and the run id
    they compose to."""

    num: int  # several points share one job where the cohort sweeper grouped them
    overrides: tuple[str, ...]  # every task override of the job, as Hydra passes them
    axes: tuple[tuple[str, str], ...]  # the swept keys and this point's values, e.g. (("cell", "lstm"),)
    run_id: str = ""

    @property
    def label(self) -> str:
        """e.g. 'cell=lstm reg=bn task.seq_len=6 seed=1'."""
        return " ".join(f"{k}={v}" for k, v in self.axes)


@dataclass(frozen=True)
class PointStatus:
    point: GridPoint
    category: Category
    # the failed run's error line; a lost point's SLURM state, job id and log; a corrupt one's unreadable file
    error: Optional[str] = None


@dataclass
class SweepStatus:
    sweep_dir: Path
    points: list[PointStatus]
    not_in_grid: list[str] = field(default_factory=list)  # run folders no grid point maps to

    def counts(self) -> dict[Category, int]:
        return {c: sum(p.category is c for p in self.points) for c in Category}

    def of(self, category: Category) -> list[PointStatus]:
        return [p for p in self.points if p.category is category]


class SweepError(RuntimeError):
    """The folder is not a sweep this module can read; the message says why and what to do."""


# --- the grid ---------------------------------------------------------------------------------


def load_multirun(sweep_dir: Path) -> Any:
    """The sweep's Hydra record (unresolved), or SweepError naming the file."""
    import yaml
    from omegaconf import OmegaConf

    path = Path(sweep_dir) / MULTIRUN
    if not path.is_file():
        others = sweeps_in(Path(sweep_dir).parent)
        raise SweepError(
            f"{path} not found: not a sweep folder, or its multirun has not started yet "
            "(Hydra writes it when the sweep starts); "
            + (
                f"sweeps in {Path(sweep_dir).parent}/: {', '.join(others)} (make status SWEEP=<name>)"
                if others
                else f"{Path(sweep_dir).parent}/ holds no sweep"
            )
        )
    try:
        return OmegaConf.load(path)
    except (OSError, ValueError, yaml.YAMLError) as e:  # ValueError: not UTF-8
        raise SweepError(f"{path} is unreadable ({type(e).__name__}: {str(e).splitlines()[0]})") from None


def sweeps_in(results_dir: Path) -> list[str]:
    """The sweeps under a results folder: its subfolders holding a multirun record."""
    try:
        return sorted(d.name for d in Path(results_dir).iterdir() if (d / MULTIRUN).is_file())
    except OSError:
        return []


def expand(multirun: Any) -> list[GridPoint]:
    """The grid points of the multirun, in Hydra's job order, exactly as its basic sweeper builds them.

    Sweeper params first, then the command line's task overrides (a key given on both wins
    from the command line), the cartesian product of every swept key. The cohort sweeper
    (benchmark/sweep/cohort_sweep.py) launches the same grid with a cohort's points in one job, so
    its points are these too, one per member; `num` is then the number of the job that trains
    the point (its cohort's), as Hydra numbers the jobs it launches.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    h = multirun.hydra
    sweeper = OmegaConf.to_container(h.sweeper, resolve=False)
    target = str(sweeper.get("_target_", ""))
    if not (target.endswith("BasicSweeper") or target == SWEEPER_TARGET):
        raise SweepError(
            f"sweeper {target!r}: only Hydra's basic sweeper and the cohort sweeper (exhaustive grids) can be expanded"
        )
    params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    task = [str(o) for o in OmegaConf.to_container(h.overrides.task, resolve=False)]
    parser = OverridesParser.create()
    parsed = parser.parse_overrides(params + task)
    swept = [o.get_key_element() for o in parsed if o.is_sweep_override()]
    swept = list(dict.fromkeys(swept))  # a key swept twice is one axis (the later wins)
    jobs = BasicSweeper.split_arguments(parsed, None)[0]
    cohorts = target == SWEEPER_TARGET
    nums = job_numbers(jobs, OmegaConf.select(multirun, AXES_KEY, default=None) or []) if cohorts else range(len(jobs))
    out = []
    for num, job in zip(nums, jobs):
        values = dict(o.split("=", 1) for o in job)
        out.append(GridPoint(num, tuple(job), tuple((k, values[k]) for k in swept if k in values)))
    return out


def _config_dir(multirun: Any) -> str:
    for src in multirun.hydra.runtime.config_sources:
        if src.provider == "main":
            if src.schema != "file":
                raise SweepError(
                    f"the sweep's main config source is {src.schema}://{src.path}; "
                    "status reads file:// config folders only"
                )
            if not Path(src.path).is_dir():
                raise SweepError(
                    f"the sweep's config folder {src.path} no longer exists; run ids cannot be "
                    "recomputed (run `make status` where the sweep was started)"
                )
            return src.path
    raise SweepError("multirun.yaml names no main config source")


def recorded_run_ids(runs_dir: Path) -> dict[tuple[str, ...], str]:
    """The run id each grid point got, from the `grid_point.json` every run folder starts with; a point
    recorded by two folders (its configs changed between sweeps) is left out, to be composed."""
    ids: dict[tuple[str, ...], str] = {}
    seen_twice: set[tuple[str, ...]] = set()
    for f in sorted(Path(runs_dir).glob(f"*/{GRID_POINT}")):
        try:
            key = point_key(json.loads(f.read_text(encoding="utf-8"))["overrides"])
        except (OSError, ValueError, KeyError, TypeError):  # a folder without a readable record: composed instead
            continue
        if key in ids:
            seen_twice.add(key)
        ids[key] = f.parent.name
    return {k: v for k, v in ids.items() if k not in seen_twice}


def with_run_ids(
    multirun: Any, points: Sequence[GridPoint], recorded: Optional[dict[tuple[str, ...], str]] = None
) -> list[GridPoint]:
    """Each grid point with the run id `benchmark.run` gives it (`composed_run_ids`); or, for a point in
    `recorded` (`recorded_run_ids`), the id its run folder says it got."""
    recorded = recorded or {}
    todo = [p for p in points if point_key(p.overrides) not in recorded]
    composed = iter(composed_run_ids(multirun, todo))
    return [
        GridPoint(p.num, p.overrides, p.axes, recorded.get(point_key(p.overrides)) or next(composed)) for p in points
    ]


def composed_run_ids(multirun: Any, points: Sequence[GridPoint]) -> list[str]:
    """The run id of each grid point as `benchmark.run` computes it: compose, apply overrides, hash.

    Group overrides (`cell=lstm`, `+experiment=smoke`) go through Hydra's compose API, once per
    combination; value overrides (`task.seq_len=6`) are then applied by Hydra's own function,
    as Hydra does after composing the defaults.
    """
    if not points:
        return []
    from hydra import compose, initialize_config_dir
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from benchmark.arms.base import id_form
    from benchmark.core.config import ConfigError, register_configs

    register_configs()  # the run schema and the resolvers the configs use
    h = multirun.hydra
    groups = {k for k in h.runtime.choices if not str(k).startswith("hydra/")}
    searchpath = [str(o) for o in h.overrides.hydra if str(o).startswith("hydra.searchpath")]
    parser = OverridesParser.create()
    composed: dict[tuple[str, ...], Any] = {}
    out = []
    with initialize_config_dir(config_dir=_config_dir(multirun), version_base=str(h.runtime.version_base or "1.3")):
        for p in points:
            parsed = [o for o in parser.parse_overrides(list(p.overrides)) if not o.is_hydra_override()]
            group_ov = [o for o in parsed if o.key_or_group in groups and not isinstance(o.value(), dict)]
            value_ov = [o for o in parsed if o not in group_ov]
            key = tuple(o.input_line for o in group_ov)
            try:
                if key not in composed:
                    composed[key] = compose(config_name=str(h.job.config_name), overrides=searchpath + list(key))
                cfg = copy.deepcopy(composed[key])
                ConfigLoaderImpl._apply_overrides_to_config(value_ov, cfg)
                resolved = id_form(OmegaConf.to_container(cfg, resolve=True))  # as benchmark.run hashes it
            except (HydraException, OmegaConfBaseException, ConfigError) as e:
                raise SweepError(
                    f"grid point {p.num} ({' '.join(p.overrides)}) no longer composes from "
                    f"{_config_dir(multirun)}: {type(e).__name__}: {str(e).splitlines()[0]}"
                ) from None
            out.append(run_id(resolved))
    return out


def grid(sweep_dir: Path, recorded: bool = False) -> list[GridPoint]:
    """Every grid point of the sweep in `sweep_dir`, with its run id: composed from today's configs, or
    with `recorded` the id a run folder recorded for its point (composed only for points without one)."""
    mr = load_multirun(sweep_dir)
    return with_run_ids(mr, expand(mr), recorded_run_ids(Path(sweep_dir) / "runs") if recorded else None)


# --- the categories ---------------------------------------------------------------------------


def classify(folder: Path) -> tuple[Category, Optional[str]]:
    """The category of one grid point from its run folder (which may not exist)."""
    if not folder.is_dir():
        return Category.missing, None
    path = folder / METRICS
    if not path.exists():
        return Category.incomplete, None
    m = read_metrics(folder)
    if m is None:  # written atomically, so never half-written by a run: torn by something else
        return Category.corrupt, f"unreadable {path}"
    if m.get("complete") is not True:
        return Category.incomplete, None
    if not (folder / "history.csv").exists():
        return Category.corrupt, f"{path} without {folder / 'history.csv'}"
    status = m.get("status")
    if status in (Status.ok.value, Status.diverged.value):
        return Category(status), None
    return Category.failed, str(m.get("error") or f"status {status!r}")  # failed, or a status no run writes


def sweep_status(
    sweep_dir: str | Path, points: Optional[Sequence[GridPoint]] = None, recorded: bool = False
) -> SweepStatus:
    """Every grid point of the sweep with its category; `points` (with run ids) skips the composition,
    `recorded` takes a started point's run id from its folder (`grid`)."""
    sweep_dir = Path(sweep_dir)
    points = grid(sweep_dir, recorded) if points is None else points
    runs = sweep_dir / "runs"
    lost = history.lost_points(sweep_dir)
    statuses = [with_lost(PointStatus(p, *classify(runs / p.run_id)), lost) for p in points]
    ids = {p.run_id for p in points}
    extra = sorted(d.name for d in runs.iterdir() if d.is_dir() and d.name not in ids) if runs.is_dir() else []
    return SweepStatus(sweep_dir, statuses, extra)


def with_lost(s: PointStatus, lost: dict[tuple[str, ...], history.LostJob]) -> PointStatus:
    """A point without a result whose cluster job the latest launch lost is `lost`, with that job."""
    job = lost.get(point_key(s.point.overrides))
    if job is None or s.category not in (Category.incomplete, Category.missing):
        return s
    return PointStatus(s.point, Category.lost, job.describe())


def missing_points(sweep_dir: str | Path) -> "pandas.DataFrame":
    """The grid points never started or lost, one row each: `job`, `run_id`, `overrides`, one column per swept
    key and, where the cluster lost some, `lost` (the lost job's SLURM state, id and log; empty for the others).

    For the report's failures section: a missing point is shown, never dropped. A point whose run folder
    recorded it started (`grid_point.json`), so only the others are composed.
    """
    import pandas as pd

    st = sweep_status(sweep_dir, recorded=True)
    shown = [s for s in st.points if s.category in (Category.missing, Category.lost)]
    rows = [
        {"job": s.point.num, "run_id": s.point.run_id, "overrides": s.point.label, **dict(s.point.axes)}
        | ({"lost": s.error or ""} if st.of(Category.lost) else {})
        for s in shown
    ]
    axes = [k for k, _ in st.points[0].point.axes] if st.points else []
    lost = ["lost"] if st.of(Category.lost) else []
    return pd.DataFrame(rows, columns=["job", "run_id", "overrides", *axes, *lost])


# --- the table --------------------------------------------------------------------------------

_STYLE = {
    Category.ok: "green",
    Category.diverged: "yellow",
    Category.failed: "red",
    Category.lost: "red",
    Category.incomplete: "cyan",
    Category.corrupt: "bold red",
    Category.missing: "magenta",
}


def render(st: SweepStatus, limit: int = 20) -> list[Any]:
    """Rich renderables: the counts per category, then the points of every category but ok."""
    from rich.table import Table

    counts, total = st.counts(), len(st.points)
    summary = Table(title=f"sweep {st.sweep_dir.name}: {total} grid points ({st.sweep_dir})")
    summary.add_column("category")
    summary.add_column("points", justify="right")
    summary.add_column("share", justify="right")
    for c, n in counts.items():
        summary.add_row(f"[{_STYLE[c]}]{c.value}[/]", str(n), f"{n / total:.0%}" if total else "-")
    if st.not_in_grid:
        summary.add_row("not in this grid", str(len(st.not_in_grid)), "", end_section=True)
    out: list[Any] = [summary]
    why = {Category.failed: "error", Category.lost: "SLURM state, job, log", Category.corrupt: "problem"}
    for c in (
        Category.corrupt,
        Category.failed,
        Category.lost,
        Category.diverged,
        Category.incomplete,
        Category.missing,
    ):
        rows = st.of(c)
        if not rows:
            continue
        t = Table(title=f"{c.value}: {len(rows)}" + (f" (first {limit})" if len(rows) > limit else ""))
        for col in ("job", "run_id", "grid point") + ((why[c],) if c in why else ()):
            t.add_column(col, overflow="fold")
        for s in rows[:limit]:
            text = (s.error or "")[:100] if c is Category.failed else s.error or ""  # a lost job's log path whole
            t.add_row(str(s.point.num), s.point.run_id, s.point.label, *((text,) if c in why else ()))
        out.append(t)
    if st.not_in_grid:
        out.append(
            f"not in this grid ({len(st.not_in_grid)} run folders, e.g. an earlier grid or configs changed "
            f"since): {', '.join(st.not_in_grid[:limit])}{' …' if len(st.not_in_grid) > limit else ''}"
        )
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    from rich.console import Console

    ap = argparse.ArgumentParser(prog="python -m benchmark.sweep.status", description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", type=Path, help="results/<sweep>")
    ap.add_argument("--limit", type=int, default=20, help="points listed per category (default 20)")
    args = ap.parse_args(argv)
    console = Console(width=160)
    try:
        st = sweep_status(args.sweep_dir)
    except SweepError as e:
        print(f"error: {e}", file=sys.stderr)  # one line, unwrapped
        return 2
    for r in render(st, args.limit):
        console.print(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run folders: stable run ids, atomic writes, and the "is this grid point done?" check.

A sweep can be killed at any moment and re-run: every file is written to a temporary
file in the same folder and moved into place with `os.replace` (atomic on POSIX), and
`metrics.json` is written last, so its presence with `complete: true` means the run
finished. Runs with `status: failed` are not complete: a re-run tries them again.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from benchmark.core.record import MEASURED

# Keys that say where outputs go or how chatty a run is, not what it computes.
RUN_ID_EXCLUDE = (
    "results_dir",
    "sweep",
    "force",
    "skip_marks",
    "train.progress",
    "task.data_dir",
    "task.mirrors",  # where a data set is cached or fetched from
    "literature",  # published reference values, shown beside the results
    "protocol",
    "cohort",  # which points train together: a member is its solo run
)  # a claims experiment's seed roles and grids (the settings are in the config)
# Knobs added after runs were recorded, at their defaults: a config that leaves a knob at its default hashes as
# it did before the knob existed, so the ids of those runs stay valid (tests/test_run.py checks the defaults).
LATER_KNOBS: dict[str, Any] = {
    "accel": "none",
    "init": {"scheme": "torch", "scale": 0.1},
    "train.lr_decay": 0.5,
    "train.lr_decay_every": 1,
    "train.lr_decay_after": 0,
    "task.window_loss": "mean",
}
COMPLETE_STATUSES = MEASURED  # a failed run is not complete: a re-run tries it again
METRICS = "metrics.json"
GRID_POINT = "grid_point.json"  # the overrides of the grid point a run folder was made for (benchmark/job/execute.py)


def _drop(cfg: Mapping[str, Any], dotted: str, only_if: Any = ...) -> dict[str, Any]:
    """cfg without the key at `dotted` (only where it equals `only_if`, when given)."""
    head, _, rest = dotted.partition(".")
    out = dict(cfg)
    if rest:
        if isinstance(out.get(head), Mapping):
            out[head] = _drop(out[head], rest, only_if)
    elif only_if is ... or (head in out and out[head] == only_if):
        out.pop(head, None)
    return out


def run_id(resolved: Mapping[str, Any], exclude: Iterable[str] = RUN_ID_EXCLUDE) -> str:
    """12 hex digits of sha256 over the resolved config (sorted keys) minus output paths."""
    cfg: dict[str, Any] = dict(resolved)
    for key, default in LATER_KNOBS.items():
        cfg = _drop(cfg, key, default)
    for key in exclude:
        cfg = _drop(cfg, key)
    blob = json.dumps(cfg, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def run_dir(results_dir: str | Path, sweep: str, rid: str) -> Path:
    return Path(results_dir) / sweep / "runs" / rid


def mark_skipped(skip_marks: str | Path | None, rid: str) -> None:
    """Leave the file `make sweep` counts for a grid point skipped as complete (`skip_marks`; none: nothing)."""
    if skip_marks:
        Path(skip_marks).mkdir(parents=True, exist_ok=True)
        (Path(skip_marks) / rid).touch()


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` on a temp file next to `path`, fsync it, then rename it over `path`.

    Readers never see half a file, and a failed write leaves the old file and no temp file; its
    OSError names `path`. The file gets the usual permissions (mkstemp makes 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno is not None and e.filename is None:  # a full disk names no file
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def write_failure(e: OSError, where: str | Path = "the results folder") -> str:
    """One line for a write that failed (a full disk, a folder turned read-only) in the middle of a sweep:
    the file, the system's reason, and that nothing complete is lost."""
    return (
        f"cannot write {e.filename or where}: {e.strerror or e}; the complete grid points are kept: free space "
        "(or choose another RESULTS_DIR), then run the same command again to resume"
    )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda p: p.write_bytes(data))


def remove_leftovers(folder: str | Path) -> list[Path]:
    """Delete the temp files (`.<name>.*.tmp`) a killed earlier attempt left in a run folder.

    They are never read (only renamed-into-place files are), but a re-run should leave the
    folder exactly as an uninterrupted run would. Returns what it removed.
    """
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def json_safe(obj: Any) -> Any:
    """NaN/inf -> None (JSON has no such numbers); tuples -> lists; recurse into containers."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def atomic_write_json(path: str | Path, data: Mapping[str, Any]) -> None:
    atomic_write_text(path, json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n")


def atomic_write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    """One row per mapping; missing keys and None become empty cells."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    atomic_write_text(path, buf.getvalue())


def read_metrics(folder: str | Path) -> dict[str, Any] | None:
    """The run's metrics.json, or None when missing or unreadable (a torn or foreign file)."""
    p = Path(folder) / METRICS
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_complete(folder: str | Path) -> bool:
    """True when metrics.json says complete and the status is ok or diverged (failed re-runs)."""
    m = read_metrics(folder)
    return bool(m and m.get("complete") is True and m.get("status") in COMPLETE_STATUSES)

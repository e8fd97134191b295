"""The sweep's history: what the cluster did with the sweep's jobs, in `results/<sweep>/sweep_history.jsonl`.

A cluster loses jobs: a task is cancelled (by an administrator, or preempted without a requeue), its node
fails, the OOM killer or the time limit ends it. Such a job leaves no result, and its grid points no complete
`metrics.json`, so they would read as "incomplete or running" or "missing" for ever. The SLURM launcher
(hydra_plugins/slurm_launcher/) appends one JSON object per line here; `make status`, the report and
`make sweep` read them back:

    launch  a multirun's jobs were submitted: how many, as which array
    retry   a job ended without its result and was submitted again: its SLURM state, job id, log, new job id
    lost    a job ended without its result after its last retry: state, job id, log and its grid points
            (their overrides, as `point_key` gives them)
    end     every job of the multirun ended: how many were lost, and the one line that says so

A grid point is lost while the latest launch lost it: the `lost` events after the last `launch`. The next
`make sweep` launches again, and the point is running, missing or complete once more.

    python -m benchmark.sweep.history results/<sweep>   # the last multirun's line if it lost jobs (exit 3)
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from benchmark.core.io import RUN_ID_EXCLUDE
from benchmark.job.members import key_of

HISTORY = "sweep_history.jsonl"
LOST_EXIT = 3  # the exit status of a multirun (and of `make sweep`) that lost jobs; 2 stays bad input


def point_key(overrides: Sequence[str]) -> tuple[str, ...]:
    """A grid point's overrides without those that leave its run id as it is (where results go, the
    invocation's skip marks): the same point in every `make sweep` of a sweep."""
    return tuple(o for o in overrides if key_of(o).lstrip("+~") not in RUN_ID_EXCLUDE)


@dataclass(frozen=True)
class LostJob:
    """A job that ended without its result after its last retry."""

    job: str  # the SLURM job id, e.g. 47_3 (array 47, task 3)
    state: str  # SLURM's state (CANCELLED, FAILED, NODE_FAIL, OUT_OF_MEMORY, TIMEOUT, PREEMPTED, ...) or
    # "gone from the queue" where no accounting says more
    log: str  # the job's log file
    points: tuple[tuple[str, ...], ...] = ()  # its grid points (`point_key`)
    error: Optional[str] = None  # the last line of an exception that ended it, where there was one

    def describe(self) -> str:
        """e.g. 'CANCELLED, job 47_0, log results/s/hydra/.submitit/47_0/47_0_0_log.err'."""
        return f"{self.state}, job {self.job}, log {self.log}" + (f", {self.error}" if self.error else "")


def lost_line(sweep: str, n_jobs: int, lost: Sequence[LostJob], n_points: int) -> str:
    """The one line a multirun that lost jobs ends with."""
    more = f"; {len(lost) - 1} more: make status SWEEP={sweep} lists them" if len(lost) > 1 else ""
    return (
        f"sweep {sweep}: {len(lost)} of {n_jobs} jobs lost ({lost[0].describe()}{more}): {n_points} points; "
        "run the same command to resume them"
    )


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def append(sweep_dir: str | Path, event: Mapping[str, Any]) -> None:
    """Add one event (with its time) as one line, in one `write` call (appends of two writers never mix)."""
    path = Path(sweep_dir) / HISTORY
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"time": now_iso(), **event}) + "\n"
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":  # a line torn by a killed writer: end it first
            line = "\n" + line
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def read(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Every event, oldest first; [] without a history. A line that is not a JSON object (torn by a writer
    killed mid-write) is skipped: the events around it stay readable."""
    path = Path(sweep_dir) / HISTORY
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def since_last_launch(events: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The events of the latest launch (all of them where none was recorded)."""
    starts = [i for i, e in enumerate(events) if e.get("event") == "launch"]
    return list(events[starts[-1] :] if starts else events)


def lost_points(sweep_dir: str | Path) -> dict[tuple[str, ...], LostJob]:
    """The grid points (`point_key`) the latest launch lost, each with the job that lost it."""
    out: dict[tuple[str, ...], LostJob] = {}
    for e in since_last_launch(read(sweep_dir)):
        if e.get("event") != "lost":
            continue
        points = tuple(tuple(str(o) for o in p) for p in e.get("points", []))
        job = LostJob(str(e.get("job")), str(e.get("state")), str(e.get("log")), points, e.get("error"))
        out.update((p, job) for p in points)
    return out


def last_line(sweep_dir: str | Path) -> Optional[str]:
    """The line of the latest launch's `end` event if it lost jobs, else None."""
    ends = [e for e in since_last_launch(read(sweep_dir)) if e.get("event") == "end"]
    return str(ends[-1]["line"]) if ends and ends[-1].get("lost_jobs") else None


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m benchmark.sweep.history SWEEP_DIR", file=sys.stderr)
        return 2
    line = last_line(args[0])
    if line:
        print(line)
        return LOST_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main())

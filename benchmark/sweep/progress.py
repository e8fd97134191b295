"""A live progress display for a running sweep: `python -m benchmark.sweep.progress SWEEP_DIR -- CMD ...`.

`make sweep` runs the Hydra multirun through this wrapper. It starts the command, passes
every line the command (and every joblib or local worker it starts) prints through one
rich console, above a single progress bar — so parallel jobs cannot garble the display —
and reads the results folder (files only) for the counts:

    total     the jobs of the multirun (from results/<sweep>/hydra/multirun.yaml, once Hydra wrote it)
    done      run folders whose metrics.json was completed since the sweep started, plus skipped points
    failed    of those, status failed; diverged likewise
    skipped   points already complete (the files `benchmark.run` leaves in `--marks`, see benchmark/job/execute.py)
    ETA       from the pace of the points finished so far (rich's estimate)

The wrapper exits with the command's status. Ctrl-C reaches the command too (same process
group); the wrapper waits for it to stop, shows where the sweep got to and exits 130. SIGTERM
is passed on to the command. Where the output is not a terminal (CI logs, tests), the bar is
printed as a plain line every `--log-every` seconds and once at the end.
"""

from __future__ import annotations

import argparse
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Optional, Sequence

from benchmark.core.io import METRICS, read_metrics
from benchmark.core.record import Status
from benchmark.sweep.status import MULTIRUN, SweepError, expand, load_multirun

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress


@dataclass
class Counts:
    """What the results folder says about this sweep so far."""

    total: Optional[int] = None
    finished: dict[str, str] = field(default_factory=dict)  # run_id -> status, completed since the start
    skipped: int = 0

    @property
    def done(self) -> int:
        return len(self.finished) + self.skipped

    def n(self, status: str) -> int:
        return sum(s == status for s in self.finished.values())

    def line(self, name: str, elapsed: float) -> str:
        total = "?" if self.total is None else str(self.total)
        return (
            f"sweep {name}: {self.done}/{total} grid points done, {self.n(Status.failed)} failed, "
            f"{self.n(Status.diverged)} diverged, {self.skipped} skipped ({_hms(elapsed)} elapsed)"
        )


def _hms(s: float) -> str:
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Watcher:
    """Counts the sweep's progress from its folder; every call reads only what changed."""

    def __init__(self, sweep_dir: Path, marks: Optional[Path], start: float) -> None:
        self.sweep_dir, self.marks, self.start = sweep_dir, marks, start
        self.counts = Counts()

    def _total(self) -> Optional[int]:
        path = self.sweep_dir / MULTIRUN
        try:
            if path.stat().st_mtime < self.start:  # an earlier sweep's record: wait for this one's
                return None
            return len(expand(load_multirun(self.sweep_dir)))
        except (OSError, SweepError):
            return None

    def poll(self) -> Counts:
        c = self.counts
        if c.total is None:
            c.total = self._total()
        runs = self.sweep_dir / "runs"
        if runs.is_dir():
            for d in runs.iterdir():
                if d.name in c.finished:
                    continue
                try:
                    fresh = (d / METRICS).stat().st_mtime >= self.start
                except OSError:
                    continue
                m = read_metrics(d) if fresh else None
                if m and m.get("complete") is True:
                    c.finished[d.name] = str(m.get("status"))
        if self.marks is not None and self.marks.is_dir():
            c.skipped = sum(1 for _ in self.marks.iterdir())
        return c


def _pump(stream: IO[str], lines: "queue.Queue[Optional[str]]") -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def start_child(cmd: Sequence[str]) -> subprocess.Popen:
    """The sweep command, its output and errors on one unbuffered pipe."""
    return subprocess.Popen(
        list(cmd),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def progress_display(name: str, console: "Console") -> "Progress":
    """The live bar: points done of the grid, failed / diverged / skipped, elapsed and ETA."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn(f"sweep {name}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[extra]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        refresh_per_second=4,
    )


def print_lines(lines: "queue.Queue[Optional[str]]", console: "Console") -> bool:
    """Print what the command wrote (waiting up to 0.2 s for a first line); False once it closed its output."""
    try:
        line = lines.get(timeout=0.2)
        while line is not None:
            console.print(line, markup=False, highlight=False, soft_wrap=True)
            line = lines.get_nowait()
        return False  # None: the command closed its output
    except queue.Empty:
        return True


def run(
    cmd: Sequence[str],
    sweep_dir: Path,
    marks: Optional[Path],
    interval: float = 1.0,
    log_every: float = 30.0,
    console: Optional["Console"] = None,
) -> int:
    """Run `cmd` with the live display; returns its exit status (130 after Ctrl-C)."""
    from rich.console import Console

    console = console or Console()
    if not console.is_terminal:
        console.width = max(console.width, 120)  # a log line, not an 80-column terminal
    name = sweep_dir.name
    start = time.time()
    watcher = Watcher(sweep_dir, marks, start)
    child = start_child(cmd)
    previous = signal.signal(signal.SIGTERM, lambda *_: child.terminate())
    lines: "queue.Queue[Optional[str]]" = queue.Queue()
    threading.Thread(target=_pump, args=(child.stdout, lines), daemon=True).start()
    progress = progress_display(name, console)
    task = progress.add_task(name, total=None, extra="waiting for the multirun to start")
    interrupted, open_stream, next_poll, next_log = False, True, 0.0, time.monotonic() + log_every

    def update() -> Counts:
        c = watcher.poll()
        progress.update(
            task,
            total=c.total,
            completed=c.done,
            extra=f"failed {c.n(Status.failed)} · diverged {c.n(Status.diverged)} · skipped {c.skipped}",
        )
        return c

    try:
        with progress:
            while open_stream:
                try:
                    open_stream = print_lines(lines, progress.console)
                    now = time.monotonic()
                    if now >= next_poll:
                        c = update()
                        next_poll = now + interval
                        if not console.is_terminal and now >= next_log:
                            progress.console.print(c.line(name, time.time() - start), soft_wrap=True)
                            next_log = now + log_every
                except KeyboardInterrupt:
                    interrupted = True  # the command got the same SIGINT; keep showing its output until it stops
            rc = child.wait()
            c = update()
        console.print(("interrupted: " if interrupted else "") + c.line(name, time.time() - start), soft_wrap=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if child.poll() is None:
            child.terminate()
            child.wait()
    return 130 if interrupted else rc if rc >= 0 else 128 - rc


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        print("usage: python -m benchmark.sweep.progress SWEEP_DIR [--marks DIR] -- COMMAND ...", file=sys.stderr)
        return 2
    split = argv.index("--")
    ap = argparse.ArgumentParser(prog="python -m benchmark.sweep.progress", description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", type=Path, help="results/<sweep>, where the command writes its runs")
    ap.add_argument("--marks", type=Path, default=None, help="the skip_marks folder the command's jobs write to")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between reads of the results folder")
    ap.add_argument(
        "--log-every",
        type=float,
        default=30.0,
        help="seconds between plain progress lines when the output is not a terminal",
    )
    args = ap.parse_args(argv[:split])
    cmd = argv[split + 1 :]
    if not cmd:
        ap.error("no command after --")
    return run(cmd, args.sweep_dir, args.marks, args.interval, args.log_every)


if __name__ == "__main__":
    sys.exit(main())

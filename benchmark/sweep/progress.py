"""A live progress display for a running sweep: `python -m benchmark.sweep.progress SWEEP_DIR -- CMD ...`.

`make sweep` runs the Hydra multirun through this wrapper. It starts the command, passes
every line the command (and every joblib or local worker it starts) prints through one
rich console, above a single progress bar — so parallel jobs cannot garble the display —
and reads the results folder (files only) for the counts:

    total     the grid points of the multirun (from results/<sweep>/hydra/multirun.yaml, once Hydra wrote it)
    done      of those points, the ones whose metrics.json was completed since the multirun started, plus
              the ones it skipped: never more than the grid, whatever else the folder or `--marks` holds
              (an earlier stage's skips, another grid's runs)
    failed    of those, status failed; diverged likewise
    skipped   points already complete (the files `benchmark.run` leaves in `--marks`, see benchmark/job/execute.py)
    ETA       from the pace of the points finished so far (rich's estimate)

The grid's run ids are read as `make status` reads them (`status.grid`, composed in a thread of their
own so the display keeps going). The wrapper exits with the command's status. Ctrl-C reaches the
command too (same process group): from then on the command's output (its jobs' tracebacks) goes to
`results/<sweep>/hydra/interrupted.log`, the wrapper waits for it to stop, prints one line — where the
sweep got to, and that the same command resumes it — and exits 130. SIGTERM and SIGHUP are passed
on to the command. Where the output is not a terminal (CI logs, tests), the bar is printed as a
plain line every `--log-every` seconds and once at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Callable, Iterator, Optional, Sequence

from benchmark.core.io import METRICS, read_metrics
from benchmark.core.record import Status
from benchmark.sweep.status import MULTIRUN, SweepError, expand, grid, load_multirun

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress


@dataclass
class Counts:
    """What the results folder says about this multirun's grid points so far."""

    total: Optional[int] = None
    finished: dict[str, str] = field(default_factory=dict)  # run_id -> status, completed since the start
    skipped_ids: set[str] = field(default_factory=set)  # points found complete (skip marks), of this grid

    @property
    def skipped(self) -> int:
        return len(self.skipped_ids - self.finished.keys())

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


def grid_run_ids(sweep_dir: Path) -> set[str]:
    """The run ids of the multirun recorded in the sweep's multirun.yaml, as `make status` finds them."""
    return {p.run_id for p in grid(sweep_dir, recorded=True)}


class Watcher:
    """Counts the progress of the multirun that started at `start` from its folder; only this multirun's
    grid points count, each once."""

    def __init__(
        self,
        sweep_dir: Path,
        marks: Optional[Path],
        start: float,
        run_ids: Callable[[Path], set[str]] = grid_run_ids,
    ) -> None:
        self.sweep_dir, self.marks, self.start = sweep_dir, marks, start
        self.counts = Counts()
        self.run_ids = run_ids
        self.ids: Optional[set[str]] = None  # the grid's run ids, once read
        self._reading: Optional[threading.Thread] = None

    def _record(self) -> bool:
        """Whether this multirun's multirun.yaml is there (an earlier one's does not count)."""
        try:
            return (self.sweep_dir / MULTIRUN).stat().st_mtime >= self.start
        except OSError:
            return False

    def _read_grid(self) -> None:
        try:
            self.ids = self.run_ids(self.sweep_dir)
        except SweepError as e:  # the grid cannot be read (configs gone): progress stays unknown, said once
            print(f"progress: the grid's run ids cannot be read, so points are not counted: {e}", file=sys.stderr)
            self.ids = set()

    def poll(self, wait: bool = False) -> Counts:
        """Read what changed; `wait`: finish reading the grid first (the last count)."""
        c = self.counts
        if c.total is None and self._record():
            try:
                c.total = len(expand(load_multirun(self.sweep_dir)))
            except SweepError:
                return c
            self._reading = threading.Thread(target=self._read_grid, daemon=True)
            self._reading.start()
        if self._reading is not None and wait:
            self._reading.join()
        if self.ids is None:
            return c
        c.total = len(self.ids) if self.ids else c.total
        runs = self.sweep_dir / "runs"
        for rid in self.ids - c.finished.keys():
            try:
                fresh = (runs / rid / METRICS).stat().st_mtime >= self.start
            except OSError:
                continue
            m = read_metrics(runs / rid) if fresh else None
            if m and m.get("complete") is True:
                c.finished[rid] = str(m.get("status"))
        if self.marks is not None and self.marks.is_dir():
            c.skipped_ids = {f.name for f in self.marks.iterdir()} & self.ids
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
        transient=True,  # gone at the end: the summary line after it says the same, once
        disable=not console.is_terminal,  # a log gets plain lines (`--log-every`), not a bar's frames
    )


class Output:
    """Where the command's lines go: the console, above the bar; once `stop` is set (Ctrl-C), `log` — the jobs'
    tracebacks as they stop belong in a file, not on the terminal — or the console where it cannot be written."""

    def __init__(self, console: "Console", log: Path, stop: "Stop") -> None:
        self.console, self.log, self.stop = console, log, stop
        self.file: Optional[IO[str]] = None
        self.diverted = False

    def divert(self) -> None:
        self.diverted = True
        try:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            self.file = self.log.open("a", encoding="utf-8")
        except OSError:  # keep printing to the console: nothing is hidden
            self.file = None

    def print(self, line: str) -> None:
        if self.stop.at is not None and not self.diverted:  # checked per line: no traceback line slips through
            self.divert()
        if self.file is not None:
            self.file.write(line + "\n")
        else:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def print_lines(lines: "queue.Queue[Optional[str]]", out: Output) -> bool:
    """Pass on what the command wrote (waiting up to 0.2 s for a first line); False once it closed its output."""
    try:
        line = lines.get(timeout=0.2)
        while line is not None:
            out.print(line)
            line = lines.get_nowait()
        return False  # None: the command closed its output
    except queue.Empty:
        return True


class Stop:
    """Ctrl-C as the wrapper sees it: a time, set by its SIGINT handler (a flag, not an exception raised in
    the middle of a line it is printing)."""

    def __init__(self) -> None:
        self.at: Optional[float] = None

    def __call__(self, *_: object) -> None:
        self.at = self.at or time.monotonic()


@contextlib.contextmanager
def passed_on(child: subprocess.Popen, stop: Stop) -> Iterator[None]:
    """SIGTERM and SIGHUP (a closed terminal) to the wrapper stop the command too; SIGINT, which reaches the
    command by itself (one process group), sets `stop` (unless SIGINT is ignored here, as the command's is)."""
    end = lambda *_: child.poll() is None and child.terminate()  # noqa: E731
    previous = {sig: signal.signal(sig, end) for sig in (signal.SIGTERM, signal.SIGHUP)}
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, stop)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if child.poll() is None:
            child.terminate()
            child.wait()


def follow(
    child: subprocess.Popen,
    lines: "queue.Queue[Optional[str]]",
    out: Output,
    tick: Callable[[], None],
    stop: Stop,
    grace: float = 60.0,
) -> bool:
    """Pass the command's lines on and `tick` until it closed its output; True when Ctrl-C interrupted it (its
    later lines then go to the log; killed where it has not stopped `grace` s after)."""
    open_stream = True
    while open_stream:  # after Ctrl-C the command (which got the same SIGINT) stops, its lines off the screen
        open_stream = print_lines(lines, out)
        tick()
        if stop.at is not None and time.monotonic() - stop.at > grace and child.poll() is None:
            child.kill()
    return stop.at is not None


def run(
    cmd: Sequence[str],
    sweep_dir: Path,
    marks: Optional[Path],
    interval: float = 1.0,
    log_every: float = 30.0,
    console: Optional["Console"] = None,
    label: Optional[str] = None,
) -> int:
    """Run `cmd` with the live display (`label`: the sweep's name and stage); returns its exit status (130
    after Ctrl-C)."""
    from rich.console import Console

    console = console or Console()
    if not console.is_terminal:
        console.width = max(console.width, 120)  # a log line, not an 80-column terminal
    name, start = label or sweep_dir.name, time.time()
    watcher = Watcher(sweep_dir, marks, start)
    child = start_child(cmd)
    lines: "queue.Queue[Optional[str]]" = queue.Queue()
    threading.Thread(target=_pump, args=(child.stdout, lines), daemon=True).start()
    progress = progress_display(name, console)
    task = progress.add_task(name, total=None, extra="waiting for the multirun to start")
    stop = Stop()
    out = Output(progress.console, sweep_dir / "hydra" / "interrupted.log", stop)
    clock = {"poll": 0.0, "log": time.monotonic() + log_every}

    def update(wait: bool = False) -> Counts:
        c = watcher.poll(wait)
        extra = f"failed {c.n(Status.failed)} · diverged {c.n(Status.diverged)} · skipped {c.skipped}"
        progress.update(task, total=c.total, completed=c.done, extra=extra)
        return c

    def tick() -> None:
        now = time.monotonic()
        if now >= clock["poll"]:
            c, clock["poll"] = update(), now + interval
            if not console.is_terminal and now >= clock["log"]:
                progress.console.print(c.line(name, time.time() - start), soft_wrap=True)
                clock["log"] = now + log_every

    with passed_on(child, stop):
        try:
            with progress:
                interrupted = follow(child, lines, out, tick, stop)
                rc = child.wait()
                c = update(wait=True)
        finally:
            out.close()
    if interrupted:
        console.print(f"interrupted: {c.line(name, time.time() - start)}; {RESUME}", soft_wrap=True)
        return 130
    console.print(c.line(name, time.time() - start), soft_wrap=True)
    return rc if rc >= 0 else 128 - rc


RESUME = "run the same command again to resume (complete points are skipped)"


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

"""`make sweep`: an experiment's multirun(s) under the live progress display, then aggregate and report.

    python -m benchmark.sweep.driver EXPERIMENT [--sweep NAME] [--results-dir results] [--reports-dir reports]
        [--launcher joblib] [--jobs N] [--force] [--report-args="--min-seeds 5 ..."] [-- HYDRA OVERRIDES ...]

In order, each step one line when it cannot go on, with a non-zero exit, and nothing lost:

1. the experiment exists (`experiment/<name>.yaml` in the package's conf/ or a folder of the user's
   `hydra.searchpath=[...]` among the overrides; else the experiments of the whole search path, exit 2), the
   search path is one Hydra searches (`benchmark.core.confpath`; else which form and why, exit 2), and the
   results and reports folders can be written (else which folder and why, exit 2) — before anything runs;
2. the sweep's lock (`benchmark.sweep.lock`): a second `make sweep` of the same sweep exits 75 at once,
   naming the pid and host of the first;
3. the multirun(s), each through `benchmark.sweep.progress`: an experiment with a `protocol:` block
   (claims) runs its tuning multiruns, selects, then its confirmation multirun
   (benchmark/sweep/protocol.py, reading the experiment and its regimes from the same search path; each
   stage's design folder and the user's folders go to the runs as one `hydra.searchpath` list, since Hydra
   searches only the first); any other experiment its one multirun. A failed multirun ends the
   sweep with its exit status; Ctrl-C with 130 and one line saying that the same command resumes it;
   one whose cluster jobs stayed lost (`history.LOST_EXIT`) ends the stages, but the report is still
   written, and the line about the lost jobs comes last (exit 3);
4. aggregate and report (`benchmark.analysis.report --aggregate`), whose last line is the report's path.

A study kept in its own folder sweeps as

    make sweep EXPERIMENT=mine ARGS="hydra.searchpath=[file://$PWD/conf]"

Every grid point a multirun skips leaves a file named by its run id in a folder of this invocation
(`skip_marks`, beside the results, so SLURM jobs on other nodes reach it too); they are counted, then
the folder is removed. Imports no torch (the jobs do, in their own processes).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from benchmark.core import confpath
from benchmark.core.config import ConfigError, writable_dir_problem
from benchmark.job.launch import RUNNING, remove_stale
from benchmark.sweep import history
from benchmark.sweep.lock import SweepBusy, sweep_lock

BUSY = 75  # the exit status of a sweep that another process is running (EX_TEMPFAIL: try again later)


@dataclass(frozen=True)
class Plan:
    """One `make sweep`: what to run, where its results and report go, how jobs are launched."""

    experiment: str
    sweep: str
    results_dir: Path
    reports_dir: Path
    launcher: str = "basic"
    jobs: Optional[int] = None  # joblib's parallel jobs
    force: bool = False
    overrides: tuple[str, ...] = ()  # the user's Hydra overrides (ARGS), last: they win
    report_args: tuple[str, ...] = field(default_factory=tuple)

    @property
    def sweep_dir(self) -> Path:
        return self.results_dir / self.sweep

    @property
    def search(self) -> confpath.SearchPath:
        """Where the runs find configs: the package's conf/, then the user's `hydra.searchpath` (ConfigError)."""
        return confpath.from_overrides(self.overrides)

    def multirun(self, marks: Path, stage: Sequence[str]) -> list[str]:
        """The command line of one multirun of the sweep (a protocol stage's overrides before the user's)."""
        launcher = [f"hydra/launcher={self.launcher}"]
        if self.launcher == "joblib" and self.jobs:  # the user's hydra.launcher.n_jobs, later, still wins
            launcher.append(f"hydra.launcher.n_jobs={self.jobs}")
        return [
            sys.executable,
            # joblib's workers killed when a job fails leave semaphores that multiprocessing's tracker reports with
            # a warning per sweep: not the user's concern, and not the one line that says what went wrong
            "-W",
            "ignore::UserWarning:multiprocessing.resource_tracker",
            "-m",
            "benchmark.run",
            "--multirun",
            f"+experiment={self.experiment}",
            f"sweep={self.sweep}",
            f"results_dir={self.results_dir}",
            f"force={str(self.force).lower()}",
            f"skip_marks={marks.resolve()}",
            *launcher,
            *confpath.merged([*stage, *self.overrides]),  # one hydra.searchpath: Hydra searches only the first
        ]


def check_start(plan: Plan) -> None:
    """Before anything runs: the search path is sound, the experiment is on it, the folders can be written.
    ConfigError naming the setting."""
    from benchmark.sweep import protocol

    protocol.load(plan.experiment, plan.search)  # ConfigError listing the experiments, or naming a missing regime
    for key, folder in (("RESULTS_DIR", plan.sweep_dir), ("REPORTS_DIR", plan.reports_dir / plan.sweep)):
        problem = writable_dir_problem(folder)
        if problem:
            raise ConfigError(key, str(folder), "a folder this user can write", problem)


def stages(plan: Plan, design: object, confirm: bool) -> list[list[str]]:
    """The overrides of the sweep's multiruns: a frozen protocol's tuning stages (or, with `confirm`, its
    confirmation stages, selected from the tuning runs), or one stage without overrides."""
    from benchmark.sweep import protocol

    if design is None:
        return [] if confirm else [[]]
    lines = protocol.confirm(design, plan.sweep_dir) if confirm else protocol.tune(design, plan.sweep_dir)
    return [line.split() for line in lines]


def run_multiruns(plan: Plan, marks: Path) -> int:
    """Every multirun of the sweep, in order, through the progress display; the first non-zero status ends it."""
    from benchmark.sweep import progress, protocol

    search = plan.search
    proto = protocol.freeze(plan.experiment, search) if protocol.load(plan.experiment, search) is not None else None
    for confirm in (False, True):
        todo = stages(plan, proto, confirm)
        if proto is not None and todo:
            chosen = plan.sweep_dir / "plan" / "chosen.csv"
            print(f"sweep: {f'confirmation seeds at the chosen settings ({chosen})' if confirm else 'tuning seeds'}")
        for n, stage in enumerate(todo, 1):
            label = plan.sweep
            if proto is not None:
                label += f" ({'confirmation' if confirm else 'tuning'}{f' {n}/{len(todo)}' if len(todo) > 1 else ''})"
            sys.stdout.flush()
            rc = progress.run(plan.multirun(marks, stage), plan.sweep_dir, marks, label=label)
            if rc:
                return rc
    return 0


def report(plan: Plan) -> int:
    """Aggregate, then the report (written even when aggregate found corrupt folders); aggregate's status."""
    from benchmark.analysis import report as report_mod

    out = plan.reports_dir / plan.sweep
    return report_mod.main([str(plan.sweep_dir), "--aggregate", "--out", str(out), *plan.report_args])


def sweep(plan: Plan) -> int:
    """The whole `make sweep`; its exit status (see the module docstring)."""
    try:
        check_start(plan)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        with sweep_lock(plan.sweep_dir, say=lambda line: print(line, flush=True)):
            marks = plan.sweep_dir / f".skipped-{int(time.time())}-{os.getpid()}"
            try:
                remove_stale(plan.sweep_dir / RUNNING)  # no job of this sweep runs while we hold its lock
                rc = run_multiruns(plan, marks)
                skipped = sum(1 for _ in marks.iterdir()) if marks.is_dir() else 0
            finally:  # whatever stopped the multiruns (a full disk, Ctrl-C): no job of theirs is left running
                shutil.rmtree(marks, ignore_errors=True)
                remove_stale(plan.sweep_dir / RUNNING)
            if rc and rc != history.LOST_EXIT:
                return rc
            print(f"sweep: skipped {skipped} grid point(s) already complete (FORCE=1 reruns them)", flush=True)
            rc_report = report(plan)
            if rc == history.LOST_EXIT:  # the report shows the lost points as missing; the line about them comes last
                print(history.last_line(plan.sweep_dir) or "sweep: cluster jobs were lost", flush=True)
                return rc
            return rc_report
    except SweepBusy as e:
        print(f"error: {e}", file=sys.stderr)
        return BUSY
    except ConfigError as e:  # e.g. the confirmation stage while a tuning run is missing
        print(f"error: {e}", file=sys.stderr)
        return 2


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmark.sweep.driver", description=__doc__.splitlines()[0])
    ap.add_argument("experiment", help="a name under conf/experiment/ of the package or of a hydra.searchpath folder")
    ap.add_argument("--sweep", default=None, help="the sweep's name (default: the experiment's)")
    ap.add_argument("--results-dir", type=Path, default=Path("results"))
    ap.add_argument("--reports-dir", type=Path, default=Path("reports"))
    ap.add_argument("--launcher", default="basic", help="a Hydra launcher: basic, joblib, submitit_local, ...")
    ap.add_argument("--jobs", type=int, default=None, help="joblib's parallel jobs")
    ap.add_argument("--force", action="store_true", help="re-run complete points too")
    ap.add_argument("--report-args", default="", help="options of benchmark.analysis.report, one string")
    return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser().parse_args(argv[:split])
    plan = Plan(
        experiment=args.experiment,
        sweep=args.sweep or args.experiment,
        results_dir=args.results_dir,
        reports_dir=args.reports_dir,
        launcher=args.launcher,
        jobs=args.jobs,
        force=args.force,
        overrides=tuple(argv[split + 1 :]),
        report_args=tuple(args.report_args.split()),
    )
    try:
        return sweep(plan)
    except KeyboardInterrupt:  # outside a multirun (selection, the report): nothing half-written is kept
        print(f"interrupted: sweep {plan.sweep}; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""A sweep never loses or duplicates a result: SIGKILL inside grid points, other launchers, concurrent jobs."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest

import benchmark as bm  # noqa: F401
from benchmark.sweep import status

from helpers import ENV, ROOT, RUN_FILES, TINY, VOLATILE, complete_runs, run, started_runs, sweep_cmd, wait_for_runs

pytestmark = pytest.mark.sweep  # Hydra multiruns in subprocesses: `make test-sweeps`

# Four tiny grid points; threads=1 so every launcher computes bit-identical numbers.
GRID = ["cell=lstm,gru", "reg=none,dropout", *TINY, "sweep=ft"]


def run_sweep(results: Path, *extra: str) -> subprocess.CompletedProcess:
    return run(sweep_cmd(results, *GRID, *extra), check=True)


def start_sweep(results: Path, grid: list[str]) -> subprocess.Popen:
    """The sweep in a process group of its own (so a kill reaches every job), output discarded."""
    return subprocess.Popen(
        sweep_cmd(results, *grid),
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def summary(results: Path) -> pd.DataFrame:
    """The aggregated table without the volatile columns, one row per run, sorted."""
    from benchmark.analysis import aggregate

    assert aggregate.main([str(results / "ft")]) == 0
    df = pd.read_parquet(results / "ft" / "summary.parquet")
    keep = [c for c in df.columns if not any(v in c for v in VOLATILE)]
    return df[keep].sort_values("run_id").reset_index(drop=True)


def run_folders(results: Path) -> list[Path]:
    return started_runs(results / "ft")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> pd.DataFrame:
    """The uninterrupted sweep with Hydra's basic launcher."""
    results = tmp_path_factory.mktemp("reference")
    run_sweep(results)
    df = summary(results)
    assert len(df) == 4 and (df["status"] == "ok").all()
    return df


def test_sigkill_inside_grid_points_then_rerun_equals_an_uninterrupted_sweep(tmp_path, reference):
    """Kill the sweep (its whole process group) once 1, 2 and 3 of its 4 points are done and the next has
    begun: each kill interrupts a grid point, and each attempt finished one more point than the last."""
    results = tmp_path / "results"
    sweep = results / "ft"
    for target in (1, 2, 3):
        proc = start_sweep(results, GRID)
        try:
            wait_for_runs(sweep, target, proc, mid_point=True)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL  # killed, not finished
        done, started = complete_runs(sweep), started_runs(sweep)
        assert target <= len(done) < 4, (target, len(done))  # some, not all, points complete at the kill
        assert len(started) > len(done)  # and one was killed mid-run: a folder with no metrics.json
    done = run_sweep(results)
    df = summary(results)
    pd.testing.assert_frame_equal(df, reference)  # same runs, same numbers, no duplicates
    folders = run_folders(results)
    assert len(folders) == 4 and sorted(f.name for f in folders) == sorted(df["run_id"])
    for f in folders:
        assert sorted(p.name for p in f.iterdir()) == RUN_FILES  # no temp files
    assert (done.stdout + done.stderr).count("skipping complete run") == 3  # only the last point was left to do


def test_rerun_skips_complete_points_and_force_reruns(tmp_path, reference):
    results = tmp_path / "results"
    run_sweep(results)
    stamps = {f.name: (f / "metrics.json").stat().st_mtime_ns for f in run_folders(results)}
    again = run_sweep(results)
    assert (again.stdout + again.stderr).count("skipping complete run") == 4
    assert {f.name: (f / "metrics.json").stat().st_mtime_ns for f in run_folders(results)} == stamps
    run_sweep(results, "force=true")
    assert all((f / "metrics.json").stat().st_mtime_ns != stamps[f.name] for f in run_folders(results))


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_other_launchers_produce_the_same_table(tmp_path, reference, launcher):
    """joblib runs two jobs at once into one sweep folder; submitit_local runs the SLURM code path."""
    results = tmp_path / "results"
    run_sweep(results, f"hydra/launcher={launcher}")
    pd.testing.assert_frame_equal(summary(results), reference)
    assert len(run_folders(results)) == 4
    # Re-run: every point is skipped, and each skip is counted though the jobs log elsewhere (submitit).
    marks = tmp_path / "marks"
    run_sweep(results, f"hydra/launcher={launcher}", f"skip_marks={marks}")
    assert sorted(m.name for m in marks.iterdir()) == sorted(f.name for f in run_folders(results))


# A cohort sweep: two jobs (rnn, gru), each training its three seeds stacked as one model.
COHORT_GRID = ["cell=rnn,gru", "reg=bn", "seed=0,1,2", *TINY, "sweep=ftc"]


def cohort_summary(results: Path) -> pd.DataFrame:
    from benchmark.analysis import aggregate

    assert aggregate.main([str(results / "ftc")]) == 0
    df = pd.read_parquet(results / "ftc" / "summary.parquet")
    keep = [c for c in df.columns if not any(v in c for v in VOLATILE) and c != "cohort_id"]
    return df[keep].sort_values("run_id").reset_index(drop=True)


def test_sigkill_inside_a_cohort_then_rerun_completes_every_member_once(tmp_path):
    """Kill the sweep once the first cohort's members are complete and the second cohort has begun: the
    re-run trains only the second cohort, and ends with the same six members as an uninterrupted sweep."""
    reference = tmp_path / "reference"
    run(sweep_cmd(reference, *COHORT_GRID), check=True)
    ref = cohort_summary(reference)
    assert len(ref) == 6 and (ref["status"] == "ok").all() and (ref["cohort_mode"] == "stacked").all()
    results = tmp_path / "results"
    sweep = results / "ftc"
    proc = start_sweep(results, COHORT_GRID)
    try:
        wait_for_runs(sweep, 3, proc, mid_point=True)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    done, started = complete_runs(sweep), started_runs(sweep)
    assert len(done) == 3 and len(started) > 3  # the second cohort had begun: its members are lost, none complete
    again = run(sweep_cmd(results, *COHORT_GRID), check=True)
    assert (again.stdout + again.stderr).count("skipping complete run") == 3
    pd.testing.assert_frame_equal(cohort_summary(results), ref)  # same members, same numbers, none twice
    folders = started_runs(sweep)
    assert len(folders) == 6
    for f in folders:
        assert sorted(p.name for p in f.iterdir()) == RUN_FILES
    for s in (reference / "ftc", sweep):  # each member's folder names its grid point, across two invocations
        assert len(status.recorded_run_ids(s / "runs")) == 6
        assert status.grid(s, recorded=True) == status.grid(s)

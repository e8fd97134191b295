"""A sweep never loses or duplicates a result: SIGKILL at random moments, other launchers, concurrent jobs."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import benchmark as bm  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
# Four tiny grid points; threads=1 so every launcher computes bit-identical numbers.
GRID = ["cell=lstm,gru", "reg=none,dropout", "task.seq_len=8", "train.steps=12", "train.eval_interval=6",
        "hidden_size=8", "task.n_train=128", "task.n_val=32", "task.n_test=32", "timing.repeats=2",
        "timing.warmup=1", "train.progress=false", "threads=1", "sweep=ft"]
# Columns that measure time, memory or the environment, or name the folder: expected to differ.
VOLATILE = ("_ms", "per_s", "tokens", "wall", "env", "peak_memory", "time", "timing", "compile", "host", "path",
            "jobs_beside", "load_avg")


def sweep_cmd(results: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "benchmark.run", "--multirun", *GRID, f"results_dir={results}", *extra]


def run_sweep(results: Path, *extra: str) -> subprocess.CompletedProcess:
    p = subprocess.run(sweep_cmd(results, *extra), cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0, p.stderr[-3000:]
    return p


def summary(results: Path) -> pd.DataFrame:
    """The aggregated table without the volatile columns, one row per run, sorted."""
    p = subprocess.run([sys.executable, "-m", "benchmark.analysis.aggregate", str(results / "ft")], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    df = pd.read_parquet(results / "ft" / "summary.parquet")
    keep = [c for c in df.columns if not any(v in c for v in VOLATILE)]
    return df[keep].sort_values("run_id").reset_index(drop=True)


def run_folders(results: Path) -> list[Path]:
    return sorted(p for p in (results / "ft" / "runs").iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> pd.DataFrame:
    """The uninterrupted sweep with Hydra's basic launcher."""
    results = tmp_path_factory.mktemp("reference")
    run_sweep(results)
    df = summary(results)
    assert len(df) == 4 and (df["status"] == "ok").all()
    return df


def test_sigkill_at_random_moments_then_rerun_equals_an_uninterrupted_sweep(tmp_path, reference):
    results = tmp_path / "results"
    rng = random.Random(1234)
    kills = 0
    for _ in range(3):  # kill the sweep process (and its whole group) at a random moment, three times
        proc = subprocess.Popen(sweep_cmd(results), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
        time.sleep(rng.uniform(2.0, 9.0))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 1  # at least one kill landed mid-sweep
    done = run_sweep(results)
    df = summary(results)
    pd.testing.assert_frame_equal(df, reference)  # same runs, same numbers, no duplicates
    folders = run_folders(results)
    assert len(folders) == 4 and sorted(f.name for f in folders) == sorted(df["run_id"])
    for f in folders:
        assert sorted(p.name for p in f.iterdir()) == ["config.yaml", "history.csv", "metrics.json"]  # no temp files
    assert done.returncode == 0


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

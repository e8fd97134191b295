"""Cluster sweeps on a real SLURM (`make test-slurm`): a one-node cluster from the OS packages
(scripts/slurm_local.sh: munge, slurmctld, slurmd, slurmdbd on MariaDB), the smoke sweep through the
SLURM launcher (hydra_plugins/submitit_slurm_sweep/launcher.py) with one array task's Python killed mid-run
(`kill -9`, found with `scontrol listpids`, as the OOM killer or a dying node does), the same loss on a cluster
without accounting, and a GPU request on a CPU partition. Where the cluster cannot come up (not root, no
package manager), every test skips with the script's one line.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Optional

import pandas as pd
import pytest

import benchmark as bm  # noqa: F401  (pytest-benchmark owns the name `benchmark`)
from benchmark.sweep import history

from helpers import ENV, ROOT, VOLATILE, complete_runs, run

pytestmark = pytest.mark.slurm
SCRIPT = ROOT / "scripts" / "slurm_local.sh"
SKIPPED = 77  # the script's "cannot run here"
FAST = ["hydra.launcher.poll_s=1", "hydra.launcher.lost_grace_s=5"]  # look often; a lost task is declared soon
RUN_STARTED = re.compile(r"\] - run [0-9a-f]{12} -> ")  # benchmark.run's line when a run folder is begun
MAKE_ERROR = re.compile(r"make(\[\d+\])?: \*\*\* ")
RUN_DONE = re.compile(r"\] - run [0-9a-f]{12}: status=")  # and when its record is written
LINE = re.compile(
    r"sweep smoke: 1 of (\d+) jobs lost \((FAILED|CANCELLED), job (\d+(?:_\d+)?), log (\S+_log\.err)\): "
    r"(\d+) points; run the same command to resume them"
)


def cluster_up(accounting: bool) -> None:
    p = subprocess.run(
        [str(SCRIPT), "up"],
        env={**os.environ, "SLURM_ACCOUNTING": str(int(accounting))},
        capture_output=True,
        text=True,
    )
    if p.returncode == SKIPPED:
        pytest.skip(p.stdout.strip())
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.fixture(scope="module")
def cluster() -> None:
    cluster_up(accounting=True)


@pytest.fixture
def no_accounting(cluster):
    cluster_up(accounting=False)
    yield
    cluster_up(accounting=True)


def sweep_cmd(tmp_path: Path, launcher: str, *args: str, experiment: str = "smoke") -> list[str]:
    return [
        "make",
        "sweep",
        f"EXPERIMENT={experiment}",
        f"LAUNCHER={launcher}",
        f"RESULTS_DIR={tmp_path / 'results'}",
        f"REPORTS_DIR={tmp_path / 'reports'}",
        f"ARGS={' '.join(args)}",
    ]


def start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def python_pid(job: str) -> Optional[int]:
    """The pid of a SLURM task's Python (step 0, task 0), from `scontrol listpids`; None while it has none."""
    raw = sh("squeue", "--noheader", "--jobs", job, "--format=%A").strip()
    if not raw:
        return None
    for line in subprocess.run(["scontrol", "listpids", raw], capture_output=True, text=True).stdout.splitlines():
        f = line.split()
        if len(f) >= 4 and f[2] == "0" and f[3] == "0":
            return int(f[0])
    return None


def kill_mid_run(
    sweep: Path, jobs: Callable[[], list[str]], proc: subprocess.Popen, scancel: bool = False, timeout: float = 600
) -> str:
    """End the first of `jobs()` that has begun its runs and finished none (its log says so): `kill -9` its
    Python, or with `scancel` cancel the task; returns its job id."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        for job in jobs():
            log = sweep / "hydra" / ".submitit" / job / f"{job}_0_log.out"
            text = log.read_text(errors="replace") if log.exists() else ""
            pid = python_pid(job) if RUN_STARTED.search(text) and not RUN_DONE.search(text) else None
            if pid and scancel:
                sh("scancel", job)
                return job
            if pid:
                os.kill(pid, signal.SIGKILL)
                return job
        time.sleep(0.1)
    raise AssertionError(f"no task of the sweep could be ended mid-run (sweep ended: {proc.poll() is not None})")


def events(sweep: Path, kind: str) -> list[dict]:
    return [e for e in history.read(sweep) if e.get("event") == kind]


def running_tasks(sweep: Path, progress: bool = True) -> list[str]:
    """The sweep's array tasks SLURM runs now; with `progress`, only once some point is complete (real progress
    before a kill)."""
    launches = events(sweep, "launch")
    if not launches or (progress and not complete_runs(sweep)):
        return []
    return sh("squeue", "--noheader", "--array", "--states=R", f"--jobs={launches[-1]['array']}", "--format=%i").split()


def retry_job(sweep: Path) -> list[str]:
    return [e["new_job"] for e in events(sweep, "retry")]


def lines_of(out: str) -> list[str]:
    """The output's lines without make's own "make: *** [...] Error" trailer (make[1] under make test-slurm)."""
    return [ln for ln in out.splitlines() if ln.strip() and not MAKE_ERROR.match(ln)]


def results_table(sweep: Path) -> pd.DataFrame:
    df = pd.read_parquet(sweep / "summary.parquet")
    keep = [c for c in df.columns if not any(v in c for v in VOLATILE) and c != "cohort_id"]
    return df[keep].sort_values("run_id").reset_index(drop=True)


def test_a_killed_task_is_retried_then_reported_lost_and_the_rerun_equals_a_local_sweep(cluster, tmp_path):
    """Kill one task's Python mid-run, then its retry's: the sweep waits for every other task, writes its report
    with the lost points shown, and ends non-zero with one line; the same command resumes, and the claims equal
    a local joblib sweep's bit for bit."""
    sweep = tmp_path / "results" / "smoke"
    started = time.monotonic()
    proc = start(sweep_cmd(tmp_path, "slurm_cpu", *FAST))
    first = kill_mid_run(sweep, lambda: running_tasks(sweep), proc)
    second = kill_mid_run(sweep, lambda: retry_job(sweep), proc)
    out = proc.communicate(timeout=900)[0]
    wall = time.monotonic() - started
    assert proc.returncode != 0 and "Traceback" not in out, out[-3000:]
    last = lines_of(out)[-1]
    m = LINE.fullmatch(last)
    assert m and m.group(1) == "24" and m.group(3) == second and Path(m.group(4)).exists(), last
    assert 1 <= int(m.group(5)) <= 2 and out.count(last) == 2  # the multirun's own line, and make's last one
    (retry,) = events(sweep, "retry")
    assert retry["job"] == first and retry["new_job"] == second
    (lost,) = events(sweep, "lost")
    assert lost["job"] == second and len(lost["points"]) == 2
    html = (tmp_path / "reports" / "smoke" / "index.html").read_text()
    assert 'id="lost"' in html and f"job {second}" in html
    status = run(["make", "status", f"RESULTS_DIR={tmp_path / 'results'}", "SWEEP=smoke"], check=True).stdout
    assert re.search(rf"│ lost\s+│\s+{m.group(5)} │", status) and f"job {second}" in status
    print(f"\nslurm smoke with two kills: {wall:.0f} s wall; {last}")

    again = run(sweep_cmd(tmp_path, "slurm_cpu", *FAST), timeout=900, check=True)
    assert f"skipped {48 - int(m.group(5))} grid point(s)" in again.stdout, again.stdout[-2000:]
    assert events(sweep, "launch")[-1]["jobs"] == 1  # only the lost job had points left: the others were not queued
    local = tmp_path / "local"
    run(sweep_cmd(local, "joblib"), timeout=900, check=True)
    for name in ("claims.csv", "verdicts.csv"):
        slurm_csv = (tmp_path / "reports" / "smoke" / name).read_bytes()
        assert slurm_csv == (local / "reports" / "smoke" / name).read_bytes(), name
    pd.testing.assert_frame_equal(results_table(sweep), results_table(local / "results" / "smoke"))


def test_without_accounting_a_cancelled_task_is_lost_in_bounded_time(no_accounting, tmp_path):
    """sacct fails: the launcher follows the array with squeue and declares the cancelled task lost after the
    grace period, instead of reading its state as UNKNOWN (running) for ever."""
    sweep = tmp_path / "results" / "smoke"
    started = time.monotonic()
    longer = ["cell=lstm", "reg=bn", "train.steps=6000", "train.eval_interval=2000"]  # jobs outlast KillWait (5 s)
    proc = start(sweep_cmd(tmp_path, "slurm_cpu", *longer, "hydra.launcher.retries=0", *FAST))
    cancelled = kill_mid_run(sweep, lambda: running_tasks(sweep, progress=False), proc, scancel=True)
    cancelled_at = time.monotonic()
    out = proc.communicate(timeout=300)[0]  # a hang fails here
    wall = time.monotonic() - started
    assert proc.returncode != 0 and "Traceback" not in out, out[-3000:]
    assert "sacct failed" in out and "accounting storage is disabled" in out
    m = LINE.fullmatch(lines_of(out)[-1])
    assert m and m.group(1) == "2" and m.group(2) == "CANCELLED" and m.group(3) == cancelled, out[-2000:]
    assert (tmp_path / "reports" / "smoke" / "index.html").exists()
    after = time.monotonic() - cancelled_at
    print(f"\nslurm without accounting, one task cancelled: {wall:.0f} s wall, the line {after:.0f} s after the cancel")


def test_a_gpu_request_on_a_cpu_partition_is_one_line(cluster, tmp_path):
    p = run(sweep_cmd(tmp_path, "slurm_gpu"), timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode != 0 and "Traceback" not in out, out[-3000:]
    said = [ln for ln in lines_of(out) if "error" in ln.lower()]
    assert said == [
        "error: sbatch refused the sweep's jobs (Invalid generic resource (gres) specification): this partition "
        "has no GPUs: use LAUNCHER=slurm_cpu, or hydra.launcher.gpus_per_node=0 (docs/cluster.md)"
    ], out[-2000:]
    assert not (tmp_path / "reports").exists()  # nothing ran, nothing to report
    assert json.dumps(history.read(tmp_path / "results" / "smoke")) == "[]"

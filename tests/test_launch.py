"""Per-job resources: threads divide the cores; each concurrent job gets its own GPU."""

from __future__ import annotations

import threading
import time

import pytest

import benchmark as bm  # noqa: F401
from benchmark.job.launch import gpu_slot, launcher_kind, threads_for_job

JOBLIB = {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 4}
SLURM = {"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", "cpus_per_task": 6}


def test_launcher_kind():
    assert launcher_kind(JOBLIB) == "joblib"
    assert launcher_kind(SLURM) == "submitit"
    assert launcher_kind({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}) == "basic"
    assert launcher_kind(None) == "basic"


@pytest.mark.parametrize(
    "launcher,cores,requested,expected",
    [
        (JOBLIB, 16, None, 4),
        (JOBLIB, 2, None, 1),
        ({**JOBLIB, "n_jobs": -1}, 8, None, 1),
        (JOBLIB, 16, 3, 3),
        (SLURM, 64, None, 6),
        ({**SLURM, "cpus_per_task": None}, 64, None, 1),  # SLURM's default allocation: one CPU
        (None, 16, None, None),
        (None, 16, 2, 2),
    ],
)
def test_threads_divide_the_cores(launcher, cores, requested, expected):
    assert threads_for_job(launcher, cores, requested) == expected


def test_gpu_pool_gives_concurrent_jobs_distinct_devices_and_waits_when_full(tmp_path):
    held, order = [], []
    release = threading.Event()

    def job(num):
        with gpu_slot(tmp_path, n_gpus=2, job_num=num, poll_s=0.05) as idx:
            held.append(idx)
            order.append((num, "got", idx))
            if num < 2:
                release.wait(5)

    first = [threading.Thread(target=job, args=(n,)) for n in (0, 1)]
    for t in first:
        t.start()
    deadline = time.monotonic() + 5
    while len(held) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(held) == [0, 1]  # both devices in use, one each
    third = threading.Thread(target=job, args=(2,))
    third.start()
    time.sleep(0.3)
    assert len(held) == 2  # the third job waits: no free GPU
    release.set()
    for t in first + [third]:
        t.join(5)
    assert len(held) == 3 and held[2] in (0, 1)


def test_gpu_pool_times_out_with_a_clear_error(tmp_path):
    with gpu_slot(tmp_path, n_gpus=2, job_num=0) as a, gpu_slot(tmp_path, n_gpus=2, job_num=0) as b:
        assert {a, b} == {0, 1}
        with pytest.raises(TimeoutError, match="no free GPU"):
            with gpu_slot(tmp_path, n_gpus=2, poll_s=0.01, timeout_s=0.1):
                pass


def test_single_or_no_gpu_needs_no_lock(tmp_path):
    with gpu_slot(tmp_path / "x", n_gpus=1) as idx:
        assert idx == 0
    with gpu_slot(tmp_path / "y", n_gpus=0) as idx:
        assert idx is None
    assert not (tmp_path / "x").exists()


def test_running_jobs_count_the_others_and_not_the_dead(tmp_path):
    from benchmark.job.launch import running_jobs

    (tmp_path / "12345-deadbeef.lock").write_text("")  # left by a killed job: no one holds it
    with running_jobs(tmp_path) as a:
        assert a.beside() == 0
        with running_jobs(tmp_path) as b:
            assert a.beside() == 1 and b.beside() == 1
        assert a.beside() == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["12345-deadbeef.lock"]  # each removes its own

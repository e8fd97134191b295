"""The SLURM launcher's decisions without a cluster (hydra_plugins/submitit_slurm_sweep/launcher.py): when a job
is lost and in which state, which grid points a job trains, what an sbatch refusal tells the user, and the
presets' settings. tests/test_slurm.py runs it on a real SLURM."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException

import benchmark as bm  # noqa: F401  (pytest-benchmark owns the name `benchmark`)
from benchmark.sweep.cohort_sweep import group_jobs
from benchmark.sweep.history import point_key
from hydra_plugins.submitit_slurm_sweep.launcher import GONE, Tracker, job_points, refusal_line

from helpers import compose

GRACE = 30.0


def test_a_task_is_lost_only_once_out_of_the_queue_for_the_grace_period():
    t = Tracker(GRACE)
    assert t.lost_state("47_0", "RUNNING", "RUNNING", now=0) is None
    assert t.lost_state("47_0", None, "RUNNING", now=1) is None  # gone from squeue: the grace period starts
    assert t.lost_state("47_0", None, "CANCELLED by 0", now=1 + GRACE - 0.1) is None
    assert t.lost_state("47_0", None, "CANCELLED by 0", now=1 + GRACE) == "CANCELLED"  # accounting's word


def test_a_requeued_task_is_not_lost():
    """Preempted, then requeued by submitit's checkpoint: back in the queue before the grace period ends."""
    t = Tracker(GRACE)
    assert t.lost_state("47_0", "PREEMPTED", "PREEMPTED", now=0) is None
    assert t.lost_state("47_0", "PENDING", "REQUEUED", now=GRACE - 1) is None
    assert t.lost_state("47_0", "RUNNING", "RUNNING", now=2 * GRACE) is None  # the clock was reset


@pytest.mark.parametrize(
    "queue,acct,state",
    [
        ("CANCELLED", None, "CANCELLED"),  # no accounting: squeue still lists a task that ended recently
        ("FAILED", "OUT_OF_MEMORY", "OUT_OF_MEMORY"),  # accounting says more than the queue
        (None, "UNKNOWN", GONE),  # sacct knows nothing (submitit's UNKNOWN), the queue forgot it
        (None, None, GONE),
        ("TIMEOUT", "RUNNING", "TIMEOUT"),  # sacct lags behind the controller
        ("NODE_FAIL", None, "NODE_FAIL"),
    ],
)
def test_the_state_a_task_was_lost_in(queue, acct, state):
    t = Tracker(0.0)
    assert t.lost_state("47_0", queue, acct, now=0) == state


def test_a_cohort_jobs_points_are_its_members_grid_points():
    points = [
        ["cell=lstm", f"seed={s}", f"train.lr={lr}", "+experiment=smoke", "results_dir=/tmp/r", "skip_marks=/tmp/m"]
        for s in (0, 1)
        for lr in ("0.01", "0.1")
    ]
    (job,) = group_jobs(points, ["seed", "train.lr"])
    assert job_points(job) == tuple(point_key(p) for p in points)
    assert job[-1] == (
        "cohort.members=[{seed:0,train:{lr:0.01}},{seed:0,train:{lr:0.1}},{seed:1,train:{lr:0.01}},{seed:1,train:{lr:0.1}}]"
    )
    assert job_points(points[0]) == (point_key(points[0]),)  # a job of one point


@pytest.mark.parametrize(
    "stderr,fix",
    [  # what sbatch 22.05 says on a one-node CPU cluster (scripts/slurm_local.sh)
        ("sbatch: error: Invalid generic resource (gres) specification", "LAUNCHER=slurm_cpu"),
        (
            "sbatch: error: invalid partition specified: gpu\n"
            "sbatch: error: Batch job submission failed: Invalid partition name specified",
            "hydra.launcher.partition",
        ),
        (
            "sbatch: error: Memory specification can not be satisfied\n"
            "sbatch: error: Batch job submission failed: Requested node configuration is not available",
            "hydra.launcher.mem_gb",
        ),
        ("sbatch: error: Batch job submission failed: Invalid feature specification", "hydra.launcher.constraint"),
        ("sbatch: error: Invalid --time specification", "hydra.launcher.timeout_min"),
        ("sbatch: error: Batch job submission failed: Invalid account or account/partition", "hydra.launcher.account"),
        ("sbatch: error: something new", "check the hydra.launcher settings"),
    ],
)
def test_an_sbatch_refusal_is_one_line_naming_the_setting(stderr, fix):
    line = refusal_line(stderr)
    assert "\n" not in line and line.startswith("error: sbatch refused the sweep's jobs (")
    assert fix in line and "sbatch: error:" not in line and stderr.splitlines()[-1].split("error: ")[-1] in line


def test_the_cpu_preset_requests_no_gpu_and_the_experiments_threads():
    cpu = compose("+experiment=smoke", "hydra/launcher=slurm_cpu", hydra_config=True).hydra.launcher
    assert cpu.gpus_per_node is None and cpu.cpus_per_task == 1 and cpu.retries == 1
    assert cpu._target_.endswith("SlurmSweepLauncher")
    gpu = compose("hydra/launcher=slurm_gpu", hydra_config=True).hydra.launcher
    assert gpu.gpus_per_node == 1 and gpu.lost_grace_s == 60
    assert (
        compose("hydra/launcher=slurm_cpu", "hydra.launcher.retries=0", hydra_config=True).hydra.launcher.retries == 0
    )


def test_a_misspelt_or_mistyped_launcher_setting_is_refused():
    with pytest.raises(ConfigCompositionException):
        compose("hydra/launcher=slurm_cpu", "hydra.launcher.retriez=1", hydra_config=True)
    with pytest.raises(ConfigCompositionException):
        compose("hydra/launcher=slurm_cpu", "hydra.launcher.retries=often", hydra_config=True)

"""Per-job resources under Hydra's launchers: CPU threads and, with several GPUs, which one.

Hydra's launchers start grid points; they do not share out the machine. Without this,
two joblib workers each run torch with every core (oversubscription), and `job.num %
n_gpus` puts two long jobs on one GPU while another idles. So:

- threads: the cores divided by the jobs that run at once (`cores // n_jobs`), or
  `cpus_per_task` under submitit (one where it is unset, as SLURM allocates); an explicit
  `threads` in the config always wins;
- GPUs: a pool of lock files, one per visible device, in the sweep folder. A job holds
  the first free device for its whole run (starting its search at `job_num % n` so
  jobs spread out) and waits when all are taken.
- honest timings: every running job holds a lock on a file of its own in the sweep folder
  (`running_jobs`), so a job can count the grid points running beside it when it times
  itself; a killed job's lock dies with its process, so it is never counted.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

from filelock import FileLock, Timeout

RUNNING = ".running"  # the sweep's folder of running jobs' lock files (`running_jobs`)


def launcher_kind(launcher: Optional[Mapping[str, Any]]) -> str:
    """'joblib', 'submitit' or 'basic', from the launcher config's `_target_`."""
    target = str((launcher or {}).get("_target_", ""))
    if "joblib" in target:
        return "joblib"
    if "submitit" in target:
        return "submitit"
    return "basic"


def threads_for_job(launcher: Optional[Mapping[str, Any]], cores: int, requested: Optional[int]) -> Optional[int]:
    """torch intra-op threads for one job; None leaves torch's default (the basic launcher)."""
    if requested is not None:
        return requested
    kind = launcher_kind(launcher)
    if kind == "joblib":
        n_jobs = int(launcher.get("n_jobs", -1) or -1)
        n_jobs = cores if n_jobs < 0 else n_jobs  # joblib: -1 means one job per core
        return max(1, cores // max(1, n_jobs))
    if kind == "submitit":
        cpus = launcher.get("cpus_per_task")
        return int(cpus) if cpus else 1  # unset: SLURM allocates one CPU per task
    return None


@contextlib.contextmanager
def gpu_slot(
    lock_dir: Path, n_gpus: int, job_num: int = 0, poll_s: float = 0.5, timeout_s: Optional[float] = None
) -> Iterator[Optional[int]]:
    """Hold a free GPU index for the duration of the block; None when there is at most one GPU.

    Raises TimeoutError if no device frees up within `timeout_s` (None: wait indefinitely).
    """
    if n_gpus <= 1:
        yield 0 if n_gpus == 1 else None
        return
    lock_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    while True:
        for k in range(n_gpus):
            idx = (job_num + k) % n_gpus
            lock = FileLock(str(lock_dir / f"gpu{idx}.lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            try:
                yield idx
            finally:
                lock.release()
            return
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"no free GPU among {n_gpus} after {timeout_s:.0f}s (locks in {lock_dir})")
        time.sleep(poll_s)


class RunningJobs:
    """This job's entry in a folder of lock files, one per running job of the sweep."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.lock"
        self.lock = FileLock(str(self.path))

    def beside(self) -> int:
        """Jobs running now besides this one: lock files whose lock another process holds."""
        n = 0
        for f in self.folder.glob("*.lock"):
            if f == self.path:
                continue
            other = FileLock(str(f))
            try:
                other.acquire(timeout=0)
            except Timeout:
                n += 1  # held: that job is running
            else:
                other.release()  # a finished or killed job's file (never deleted here: racy)
        return n


@contextlib.contextmanager
def running_jobs(folder: Path) -> Iterator[RunningJobs]:
    """Register this job in `folder` for the duration of the block."""
    folder.mkdir(parents=True, exist_ok=True)
    me = RunningJobs(folder)
    me.lock.acquire(timeout=0)
    try:
        yield me
    finally:
        me.lock.release()
        me.path.unlink(missing_ok=True)


def remove_stale(folder: Path) -> list[Path]:
    """Delete the job files a killed job left in `folder` (its lock died with it; the file stays). Only while
    no job of the sweep runs — the sweep's lock held, before or after its multiruns — as deleting a file a
    starting job is about to lock would hide that job. Returns what it removed."""
    removed = sorted(Path(folder).glob("*.lock"))
    for f in removed:
        f.unlink(missing_ok=True)
    return removed

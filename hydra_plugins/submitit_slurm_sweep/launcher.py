"""hydra-submitit-launcher's SLURM launcher, made so that a lost job never costs the sweep its report.

The plugin submits a multirun as one SLURM array and returns `job.results()` task by task: the first task that
ends without a result raises submitit's `UncompletedJobError`, the multirun aborts with a long traceback, and the
array's other tasks run on unobserved. Where `sacct` fails (no accounting), submitit reads a dead task's state
as UNKNOWN, which it counts as running: the multirun waits for ever. Clusters lose tasks (scancel, preemption
without requeue, NODE_FAIL, OUT_OF_MEMORY, TIMEOUT, a killed process), so `SlurmSweepLauncher`:

- waits for every task, whatever one of them does. A task has returned when submitit's result file is there;
  it is lost when SLURM no longer runs it (`squeue`, and `sacct` through submitit's own watcher where there
  is accounting) and no result has appeared `lost_grace_s` later (results on a shared file system lag);
- submits a lost task's job again, up to `retries` times (the job skips its complete points, benchmark/job/execute.py),
  and never submits a job all of whose points are complete (a resumed sweep queues only what is left).
  Preemption and timeouts go through what submitit offers first: the plugin's `checkpoint` requeues a
  preempted job, and `max_num_timeout` a timed-out one, before a job counts as lost;
- appends every retry and loss to the sweep's history (benchmark/sweep/history.py), which `make status` and
  the report read, and when jobs stay lost ends the multirun with one line and exit status 3
  (`history.LOST_EXIT`); `make sweep` then aggregates, writes the report and repeats the line last;
- turns an `sbatch` refusal into one line naming the launcher setting to change (exit status 2).

Its schema, `slurm_schema`, is the plugin's `SlurmQueueConf` plus `retries`, `lost_grace_s` and `poll_s`;
the presets conf/hydra/launcher/slurm_{gpu,cpu}.yaml build on it. (The plugin's own `submitit_slurm` stays
installed: it is the bare launcher this module guards.)
"""

import contextlib
import io
import logging
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Optional, Sequence, Union

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf, SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import OmegaConf, open_dict, read_write

from benchmark.core.config import ConfigError
from benchmark.core.io import is_complete, mark_skipped, run_dir
from benchmark.job.members import member_points, written_members
from benchmark.sweep import history
from benchmark.sweep.history import LostJob, point_key

log = logging.getLogger(__name__)

# States in which SLURM may still run the task (or run it again); any other is an end.
ACTIVE = frozenset(
    "PENDING RUNNING REQUEUED REQUEUE_HOLD REQUEUE_FED COMPLETING CONFIGURING RESIZING SUSPENDED SIGNALING "
    "STAGE_OUT STOPPED READY".split()
)
GONE = "gone from the queue"  # the state of a task that left the queue where no accounting says more
REFUSED_EXIT = 2  # as bad input: nothing ran
# An sbatch refusal's words -> what to change (first match wins: memory before "node configuration", account
# before "partition").
REFUSALS = (
    (
        "generic resource",
        "this partition has no GPUs: use LAUNCHER=slurm_cpu, or hydra.launcher.gpus_per_node=0",
    ),
    ("memory", "lower hydra.launcher.mem_gb (or mem_per_cpu)"),
    ("account", "set hydra.launcher.account"),
    ("partition", "set hydra.launcher.partition to one of the cluster's partitions (`sinfo` lists them)"),
    ("node configuration", "lower hydra.launcher.cpus_per_task, mem_gb or gpus_per_node, or change constraint"),
    ("feature", "change hydra.launcher.constraint"),
    ("qos", "set hydra.launcher.qos"),
    ("time", "change hydra.launcher.timeout_min"),
)


@dataclass
class SlurmSweepConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.submitit_slurm_sweep.launcher.SlurmSweepLauncher"
    retries: int = 1  # submissions of a lost job after its first, before its points are reported lost
    lost_grace_s: float = 60.0  # how long a task that left the queue may take to show its result
    poll_s: float = 10.0  # seconds between looks at the queue (one squeue, one sacct for the whole array)


ConfigStore.instance().store(group="hydra/launcher", name="slurm_schema", node=SlurmSweepConf, provider="benchmark")


class Refused(RuntimeError):
    """sbatch refused a submission; the message is one line naming the setting to change."""


def refusal_line(sbatch_stderr: str) -> str:
    """sbatch's complaint and what to change, in one line."""
    said = [ln.strip().removeprefix("sbatch: error: ") for ln in sbatch_stderr.splitlines() if ln.strip()]
    text = "; ".join(said) or "no message"
    fix = next((f for words, f in REFUSALS if words in text.lower()), "check the hydra.launcher settings")
    return f"error: sbatch refused the sweep's jobs ({text}): {fix} (docs/cluster.md)"


def job_points(overrides: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    """The grid points (`point_key`) one launched job trains: its cohort's members, or itself."""
    members = written_members(overrides)
    if members is None:
        return (point_key(overrides),)
    return tuple(point_key(p) for p in member_points(overrides, members))


def queue_states() -> Optional[dict[str, str]]:
    """The state of each of this user's tasks SLURM still lists (those that ended recently too), by job id
    (e.g. 47_3); None where `squeue` fails, so that nothing is judged on a blind look."""
    cmd = ["squeue", "--noheader", "--array", "--states=all", "--me", "--format=%i|%T"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError) as e:
        log.warning("squeue failed (%s): the jobs' states are read again at the next look", e)
        return None
    return dict(ln.split("|", 1) for ln in out.splitlines() if "|" in ln)


def accounting_works(job_id: str) -> bool:
    """Whether `sacct` answers for this job; where it does not, the queue alone is followed (said once)."""
    cmd = ["sacct", "--noheader", "-X", "-j", job_id.split("_")[0]]
    try:
        subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
        return True
    except (OSError, subprocess.SubprocessError) as e:
        said = getattr(e, "stderr", None) or str(e)
        log.warning("sacct failed (%s): following the jobs with squeue alone", str(said).strip())
        return False


@dataclass
class Tracker:
    """When each task was first seen out of the queue's active states, to give its result `grace_s` to show."""

    grace_s: float
    ended_since: dict[str, float] = field(default_factory=dict)

    def lost_state(self, job_id: str, queue: Optional[str], acct: Optional[str], now: float) -> Optional[str]:
        """The state a task without its result was lost in, or None while it may still return: it is active in
        the queue, or ended less than `grace_s` ago. Accounting's state wins, then the queue's, else GONE."""
        if queue in ACTIVE:
            self.ended_since.pop(job_id, None)
            return None
        if now - self.ended_since.setdefault(job_id, now) < self.grace_s:
            return None
        for state in (acct, queue):
            word = (state or "").split(" ")[0]  # sacct: "CANCELLED by 0"
            if word and word not in ACTIVE and word != "UNKNOWN":
                return word
        return GONE


class SlurmSweepLauncher(SlurmLauncher):
    """hydra-submitit-launcher's SlurmLauncher that waits for every job, retries lost ones and records them."""

    def __init__(self, retries: int = 1, lost_grace_s: float = 60.0, poll_s: float = 10.0, **params: Any) -> None:
        super().__init__(**params)
        self.retries, self.lost_grace_s, self.poll_s = int(retries), float(lost_grace_s), float(poll_s)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None
        sweep_dir = Path(str(self.config.results_dir)) / str(self.config.sweep)
        started = (sweep_dir / "runs").is_dir()  # a first launch has nothing complete to look for
        todo = [i for i, ov in enumerate(job_overrides) if not (started and self._complete(ov))]
        if len(todo) < len(job_overrides):
            log.info(
                "%d of %d jobs hold only complete points: not submitted",
                len(job_overrides) - len(todo),
                len(job_overrides),
            )
        if not todo:
            history.append(sweep_dir, {"event": "launch", "jobs": 0, "array": None})
            self._record_end(sweep_dir, 0, [], 0)
            return []
        executor = self._executor()
        params = [self._job_params(job_overrides[i], initial_job_idx + i) for i in todo]
        try:
            jobs = self._submit(executor, params)
        except Refused as e:
            _end(str(e), REFUSED_EXIT)
        history.append(sweep_dir, {"event": "launch", "jobs": len(jobs), "array": jobs[0].job_id.split("_")[0]})
        log.info("SLURM array %s: %d job(s)", jobs[0].job_id.split("_")[0], len(jobs))
        try:
            outcomes = self._settle(executor, jobs, params, sweep_dir)
        except KeyboardInterrupt:
            ids = " ".join(sorted({j.job_id.split("_")[0] for j in jobs}))
            _end(
                f"interrupted: the sweep's jobs run on (scancel {ids} stops them); run the same command to resume", 130
            )
        lost = [o for o in outcomes if isinstance(o, LostJob)]
        n_points = sum(self._unfinished(p[0]) for p, o in zip(params, outcomes) if isinstance(o, LostJob))
        self._record_end(sweep_dir, len(jobs), lost, n_points)
        return [o for o in outcomes if isinstance(o, JobReturn)]

    def _run_ids(self, overrides: Sequence[str]) -> tuple[Any, Optional[list[str]]]:
        """The job's config as the job gets it, and the run id `benchmark.run` gives each of its points (None
        where its members do not compose: the job reports that itself)."""
        from benchmark.arms.base import id_form  # lazy: this process runs benchmark.run (torch) anyway
        from benchmark.core.io import run_id
        from benchmark.job.prepare import member_configs

        assert self.hydra_context is not None and self.config is not None
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with read_write(cfg), open_dict(cfg):
            del cfg["hydra"]  # as Hydra's run_job hands the config to the job
        try:
            return cfg, [run_id(id_form(OmegaConf.to_container(c, resolve=True))) for c in member_configs(cfg)]
        except ConfigError:
            return cfg, None

    def _complete(self, overrides: Sequence[str]) -> bool:
        """Whether every point of the job has a complete record (never with `force`): such a job would only skip
        its points, so it is not submitted, and its points are counted as skipped (`skip_marks`) as the job
        would count them."""
        cfg, ids = self._run_ids(overrides)
        if cfg.force or ids is None or not all(is_complete(run_dir(cfg.results_dir, cfg.sweep, i)) for i in ids):
            return False
        for rid in ids:
            mark_skipped(cfg.skip_marks, rid)
        return True

    def _unfinished(self, overrides: Sequence[str]) -> int:
        """How many of the job's points have no complete record (what a lost job leaves to do)."""
        cfg, ids = self._run_ids(overrides)
        if ids is None:
            return len(job_points(overrides))
        return sum(not is_complete(run_dir(cfg.results_dir, cfg.sweep, rid)) for rid in ids)

    def _executor(self) -> Any:
        """The submitit executor, built as the plugin's `launch` builds it."""
        import submitit

        assert self.config is not None
        init = {"folder": self.params["submitit_folder"], "slurm_max_num_timeout": self.params["max_num_timeout"]}
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init)
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        rest = {k: v for k, v in self.params.items() if k not in ("submitit_folder", "max_num_timeout")}
        executor.update_parameters(**{k if k in base else f"{self._EXECUTOR}_{k}": v for k, v in rest.items()})
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        return executor

    def _job_params(self, overrides: Sequence[str], idx: int) -> tuple[Any, ...]:
        """One job's arguments to `__call__`, as the plugin passes them."""
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        return (list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state())

    def _submit(self, executor: Any, params: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Submit jobs (an array where there are several); Refused with one line where sbatch says no."""
        from submitit.core.utils import FailedJobError

        with contextlib.redirect_stderr(
            io.StringIO()
        ):  # submitit prints sbatch's complaint itself: it goes in the line
            try:
                return executor.map_array(self, *zip(*params))
            except FailedJobError as e:
                raise Refused(refusal_line(str(e))) from None

    def _settle(self, executor: Any, jobs: list[Any], params: list[tuple[Any, ...]], sweep_dir: Path) -> list[Any]:
        """Wait for every job; each ends as its JobReturn or, after its retries, as a LostJob."""
        accounting = accounting_works(jobs[0].job_id)
        tracker, attempts = Tracker(self.lost_grace_s), [0] * len(jobs)
        pending, out = dict(enumerate(jobs)), {}
        while pending:
            time.sleep(self.poll_s)
            queue = queue_states()
            if queue is None:
                continue
            if accounting:
                jobs[0].watcher.update()  # one sacct for every job submitit follows
            for i, job in list(pending.items()):
                ended = self._ended(job, params[i], tracker, queue, accounting)
                if ended is None:
                    continue
                if isinstance(ended, LostJob) and attempts[i] < self.retries:
                    attempts[i] += 1
                    again = self._retry(executor, ended, params[i], attempts[i], sweep_dir)
                    if again is not None:
                        pending[i] = again
                        continue
                del pending[i]
                out[i] = ended
                if isinstance(ended, LostJob):
                    _record_lost(sweep_dir, ended)
        return [out[i] for i in range(len(jobs))]

    def _ended(
        self, job: Any, params: tuple[Any, ...], tracker: Tracker, queue: dict[str, str], accounting: bool
    ) -> Union[JobReturn, LostJob, None]:
        """The job's JobReturn, a LostJob, or None while it runs (or may still show its result)."""
        from submitit.core.utils import UncompletedJobError

        log_path = str(job.paths.stdout if self.params.get("stderr_to_stdout") else job.paths.stderr)
        points = job_points(params[0])
        if job.paths.result_pickle.exists():
            try:
                return job.results()[0]
            except UncompletedJobError as e:  # it raised outside the runs' own handling, or timed out for good
                lines = [ln for ln in str(e).splitlines() if ln.strip() and not ln.startswith("-")]
                return LostJob(job.job_id, "FAILED", log_path, points, lines[-1] if lines else None)
        acct = job.watcher.get_state(job.job_id, mode="cache") if accounting else None
        state = tracker.lost_state(job.job_id, queue.get(job.job_id), acct, time.time())
        return None if state is None else LostJob(job.job_id, state, log_path, points)

    def _retry(
        self, executor: Any, lost: LostJob, params: tuple[Any, ...], attempt: int, sweep_dir: Path
    ) -> Optional[Any]:
        """Submit a lost job again: the new job, or None where sbatch refuses it now (the job stays lost)."""
        try:
            new = self._submit(executor, [params])[0]
        except Refused as e:
            log.error("job %s could not be submitted again: %s", lost.job, e)
            return None
        history.append(sweep_dir, {"event": "retry", **_fields(lost), "attempt": attempt, "new_job": new.job_id})
        log.warning(
            "lost: %s; submitted again as job %s (retry %d of %d)", lost.describe(), new.job_id, attempt, self.retries
        )
        return new

    def _record_end(self, sweep_dir: Path, n_jobs: int, lost: list[LostJob], n_points: int) -> None:
        """The `end` event; with lost jobs (`n_points` left without a result), their line and exit status 3."""
        line = history.lost_line(str(sweep_dir.name), n_jobs, lost, n_points) if lost else None
        history.append(
            sweep_dir, {"event": "end", "jobs": n_jobs, "lost_jobs": len(lost), "lost_points": n_points, "line": line}
        )
        if line:
            _end(line, history.LOST_EXIT)


def _fields(lost: LostJob) -> dict[str, Any]:
    return {"job": lost.job, "state": lost.state, "log": lost.log, "error": lost.error}


def _record_lost(sweep_dir: Path, lost: LostJob) -> None:
    history.append(sweep_dir, {"event": "lost", **_fields(lost), "points": [list(p) for p in lost.points]})
    log.error("lost after its retries: %s (%d points)", lost.describe(), len(lost.points))


def _end(line: str, status: int) -> NoReturn:
    """End the multirun with one line (Hydra prints no traceback for SystemExit)."""
    print(line, file=sys.stderr, flush=True)
    sys.exit(status)

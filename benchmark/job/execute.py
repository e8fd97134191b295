"""The job executor: train E >= 1 prepared runs together (one run alone is a stack of one), measure them and
write each one's folder.

In `results/<sweep>/runs/<run_id>/`, per run: `config.yaml`, train, measure, `history.csv`, and
`metrics.json` last (its `complete: true` marks the point done). A grid point whose metrics.json
is complete with status ok or diverged is skipped (logged as "skipping complete run <run_id>")
unless `force=true`; a failed one is re-run. An exception in training is recorded as
`status: failed` with the error and traceback, for every run of the call. A non-finite loss is
`status: diverged`.

The runs train in one loop (benchmark/training/loop.py): their gradients through one stacked model, each
with its own optimiser, stopping and record. Their dedicated timing (`fwd_ms`, ...) is measured once, on the
first run's model, and recorded for each as the variant's timing; `train_tokens_per_s` is a run's share of
the stack's throughput and `wall_s` its share of the call's wall time (`env.cohort_wall_s` the whole).

Hydra's basic launcher runs every job in one process, so each job resets the RNGs, the
torch thread count, the TF32 flags and the CUDA peak-memory statistics.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import random
import time
import traceback
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch
from omegaconf import OmegaConf

from benchmark.core import record
from benchmark.core.config import Accel, RunConfig
from benchmark.core.io import (
    GRID_POINT,
    atomic_write_csv,
    atomic_write_json,
    atomic_write_text,
    is_complete,
    mark_skipped,
    remove_leftovers,
)
from benchmark.job import envinfo
from benchmark.job.launch import RUNNING, RunningJobs, gpu_slot, running_jobs
from benchmark.job.prepare import Prepared, identity
from benchmark.models import build_model, masks
from benchmark.models.norm import bn_modules
from benchmark.tasks import Task
from benchmark.training import accel as accel_mod
from benchmark.training.evaluate import final_metrics
from benchmark.training.gradients import filled_init_ratios, hidden_grad_profile, init_gain_profiles, profile_ratio
from benchmark.training.loop import build_members, train_members
from benchmark.training.precision import autocast_dtype, set_tf32
from benchmark.training.timing import MemoryMeter, time_model
from benchmark.training.train import HISTORY_COLUMNS, TrainResult, precise_batches

log = logging.getLogger(__name__)
PROBE_BATCH = 64  # examples in the fixed probe batch of the hidden-gradient profile
_DEFAULT_THREADS = torch.get_num_threads()  # restored for jobs that set none


def reset_job_state(cfg: RunConfig, threads: Optional[int]) -> None:
    """Per-job state that would otherwise leak between jobs of one process."""
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    torch.manual_seed(cfg.seed)  # CPU and every CUDA device
    torch.set_num_threads(threads or _DEFAULT_THREADS)
    set_tf32(cfg.precision)


def measure(
    ps: Sequence[Prepared], device: torch.device, jobs: RunningJobs
) -> tuple[list[dict[str, Any]], list[TrainResult]]:
    """Build, train and measure every run: each one's measured record part (merged once from each phase's
    part) and training result (its history rows).

    A phase that raises fails every run (`status: failed`, the error and traceback); the parts measured
    before it are kept. `jobs` counts the sweep's grid points running beside this job, at the start and end
    of training and of the dedicated timing: throughput measured beside other jobs says so.
    """
    parts: list[list[dict[str, Any]]] = [[] for _ in ps]
    results = [TrainResult() for _ in ps]
    try:
        models = [run_model(p, device) for p in ps]
        parts[0].append(compile_time(ps[0], models[0], device))
        probes = [probe_batch(p.task, device) for p in ps]
        for e, (part, p, m, probe) in enumerate(zip(parts, ps, models, probes)):
            part.append(gradient_profile(p, m, probe, "start", gains=e == 0))  # the gain inits: once per job
        meter = MemoryMeter(device)
        trained = training(ps, models, device, results, jobs)
        finals = final_metrics(models, [p.task for p in ps], device, ps[0].cfg.precision)
        for part, p, m, probe, res, final in zip(parts, ps, models, probes, results, finals):
            part += [trained, training_keys(res), gradient_profile(p, m, probe, "end"), final]
        shared = dedicated_timing(ps[0], models[0], device, jobs)  # the variant's timing, once per job
        shared |= {"peak_memory_mb": meter.peak_mb(), "peak_memory_kind": meter.kind}
        for part in parts:
            part.append(shared)
    except Exception as e:  # recorded, never silent: every run failed, with the error and traceback
        for part, p, res in zip(parts, ps, results):
            part.append(failure(p, e, res))
    return [{k: v for d in part for k, v in d.items()} for part in parts], results


def run_model(p: Prepared, device: torch.device) -> torch.nn.Module:
    """The run's model, a stack of one: initialised from its seed alone, drawing its masks from a stream of its
    own (`masks.generator`; a CUDA graph registers it and replays its draws), whatever it trains beside."""
    torch.manual_seed(p.cfg.seed)
    model = build_model(p.spec).to(device)
    model.mask_gens = [masks.generator(p.cfg.seed, device)]
    return accel_mod.apply(model, p.cfg.accel)


def failure(p: Prepared, e: Exception, res: TrainResult) -> dict[str, Any]:
    """The record's part of a run that raised: status failed, the error, its traceback, the steps done."""
    log.error("run %s failed: %s: %s", p.run_id, type(e).__name__, e)
    return {
        "status": record.Status.failed.value,
        "error": f"{type(e).__name__}: {e}",
        "traceback": traceback.format_exc(),
        "steps_done": res.steps_done,
    }


def compile_time(p: Prepared, model: torch.nn.Module, device: torch.device) -> dict[str, Any]:
    """accel=compile: the compile time, paid up front on a copy, apart from any throughput."""
    if p.cfg.accel is not Accel.compile:
        return {}
    x_tr, y_tr = p.task.splits()["train"]
    b = min(p.cfg.train.batch_size, len(x_tr))
    dtype = autocast_dtype(p.cfg.precision)
    return {"compile_s": accel_mod.prime(model, p.task.loss, x_tr[:b].to(device), y_tr[:b].to(device), dtype)}


def probe_batch(task: Task, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed batch the hidden-gradient profile is measured on: the first validation examples."""
    x_val, y_val = task.splits()["val"]
    n = min(PROBE_BATCH, len(x_val))
    return x_val[:n].to(device), y_val[:n].to(device)


def gradient_profile(
    p: Prepared, model: torch.nn.Module, probe: tuple[torch.Tensor, torch.Tensor], when: str, gains: bool = False
) -> dict[str, Any]:
    """`hidden_grad_profile_<when>` and its ratio (when: start | end); `gains`: also the start profiles at
    each BN gain init (`init_gain_profiles`, BN arms only)."""
    profile = hidden_grad_profile(model, p.task.probe_loss, *probe, seed=p.cfg.seed)
    out = {
        f"hidden_grad_profile_{when}": profile,
        f"hidden_grad_ratio_{when}": profile_ratio(profile, *p.task.probe_steps),
    }
    if gains:
        by_gain = init_gain_profiles(model, p.task.probe_loss, *probe, seed=p.cfg.seed)
        out |= {record.init_gain_key(g): prof for g, prof in by_gain.items()}
    if when == "start":
        out |= filled_start(p, model, probe, out["hidden_grad_ratio_start"])
    return out


def filled_start(
    p: Prepared, model: torch.nn.Module, probe: tuple[torch.Tensor, torch.Tensor], start_ratio: float
) -> dict[str, Any]:
    """The start ratio with BN's population filled first (`filled_init_ratios`; without BN there is nothing to
    fill: the start ratio itself): over the training batches precise BN uses, or 10 of them where the arm
    keeps a moving average."""
    if not bn_modules(model):
        return {"hidden_grad_ratio_init_filled": start_ratio}
    x_tr = p.task.splits()["train"][0]
    n = p.spec.reg.precise_batches() or 10
    batches = [b.to(probe[0].device) for b in precise_batches(x_tr, p.cfg.train.batch_size, n, p.cfg.seed)]
    return filled_init_ratios(model, p.task.probe_loss, *probe, batches, p.task.probe_steps, seed=p.cfg.seed)


def training(
    ps: Sequence[Prepared],
    models: Sequence[torch.nn.Module],
    device: torch.device,
    results: Sequence[TrainResult],
    jobs: RunningJobs,
) -> dict[str, Any]:
    """Train the runs together (filling `results`, so a failure keeps their steps and history); the training keys
    every run shares: the jobs beside, and with accel=graph the capture time of the steps' graphs."""
    c, beside = ps[0].cfg, jobs.beside()
    members = build_members(
        models,
        [p.task for p in ps],
        [p.cfg.train for p in ps],
        device,
        [p.cfg.seed for p in ps],
        c.precision,
        results,
        ps[0].spec.reg.precise_batches(),
        c.accel,
    )
    train_members(members, c.train.progress, graph=c.accel is Accel.graph)
    out = {"train_jobs_beside": max(beside, jobs.beside())}
    if results[0].capture_s is not None:
        out["compile_s"] = results[0].capture_s  # accel=graph: capture time of the training steps' graphs
    return out


def training_keys(res: TrainResult) -> dict[str, Any]:
    """What training measured, as record keys."""
    return {
        "status": res.status,
        "diverged_at_step": res.diverged_at_step,
        "steps_done": res.steps_done,
        "stopped_early": res.stopped_early,
        "test_checkpoint": res.test_checkpoint,
        "test_step": res.test_step if res.test_step is not None else res.steps_done,
        "best_val_accuracy": res.best_val_accuracy,
        "steps_to_target": res.steps_to_target,
        **res.summary(),
    }


def dedicated_timing(p: Prepared, model: torch.nn.Module, device: torch.device, jobs: RunningJobs) -> dict[str, Any]:
    """The timing of forward and forward+backward apart from training (when `timing.enabled`)."""
    cfg, task = p.cfg, p.task
    if not cfg.timing.enabled:
        return {}
    x_tr, y_tr = task.splits()["train"]
    b = min(cfg.timing.batch_size or cfg.train.batch_size, len(x_tr))
    xt, yt = x_tr[:b].to(device), y_tr[:b].to(device)
    dtype = autocast_dtype(cfg.precision)
    make_fns = (
        (lambda c: accel_mod.graph_step_fns(c, task.loss, xt, yt, dtype)[0]) if cfg.accel is Accel.graph else None
    )  # time the replays the training step uses
    beside, load = jobs.beside(), _load_avg()
    t = time_model(model, task.loss, xt, yt, cfg.timing.warmup, cfg.timing.repeats, dtype, make_fns)
    return {"timing_load_avg": load, **dataclasses.asdict(t), "timing_jobs_beside": max(beside, jobs.beside())}


def _load_avg() -> Optional[float]:
    """The machine's 1-minute load average (other users' work included), where the OS has one."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


@contextlib.contextmanager
def _device_for_job(p: Prepared, multirun: bool, job_num: int) -> Iterator[torch.device]:
    """With several GPUs in a multirun, hold a free one (a lock-file pool) for the whole job."""
    n = torch.cuda.device_count() if p.device.type == "cuda" else 0
    if not multirun or n <= 1:
        yield p.device
        return
    with gpu_slot(Path(p.cfg.results_dir) / p.cfg.sweep / ".gpu_locks", n, job_num) as idx:
        torch.cuda.set_device(idx)
        yield torch.device("cuda", idx)


SOLO = {"cohort_id": None, "cohort_size": 1, "cohort_mode": "solo"}  # the record's cohort keys of a run alone


def skip_complete(p: Prepared) -> bool:
    """True (logged, and marked in `skip_marks`) when the grid point is complete and not forced."""
    cfg = p.cfg
    if cfg.force or not is_complete(p.out):
        return False
    log.info("skipping complete run %s", p.run_id)
    mark_skipped(cfg.skip_marks, p.run_id)
    return True


def start_folder(p: Prepared) -> None:
    """The run folder before training: an interrupted attempt's leftovers removed, config.yaml written."""
    for tmp in remove_leftovers(p.out):
        log.info("removed %s, left by an interrupted attempt", tmp)
    atomic_write_text(p.out / "config.yaml", OmegaConf.to_yaml(p.resolved, resolve=True))
    if p.point:  # which grid point made this folder: the report finds a sweep's missing points without composing
        atomic_write_json(p.out / GRID_POINT, {"overrides": list(p.point)})
    log.info("run %s -> %s", p.run_id, p.out)


def write_record(
    p: Prepared, ident: dict[str, Any], measured: dict[str, Any], res: TrainResult, env: dict[str, Any]
) -> str:
    """history.csv, then metrics.json (last: it marks the run complete); returns the status."""
    # every key of the record (null until measured), then what each part measured
    m = {**dict.fromkeys(record.KEYS), **ident, **measured, "env": env, "wall_s": env["wall_s"], "complete": True}
    atomic_write_csv(p.out / "history.csv", res.history, HISTORY_COLUMNS)
    atomic_write_json(p.out / "metrics.json", m)
    log.info(
        "run %s: status=%s test_accuracy=%s test_%s=%s (%.1fs)",
        p.run_id,
        m["status"],
        m["test_accuracy"],
        p.task.metric_name,
        m["test_metric"],
        env["wall_s"],
    )
    return m["status"]


def execute(
    ps: Sequence[Prepared], threads: Optional[int], multirun: bool, job_num: int, cohort: dict[str, Any]
) -> list[str]:
    """Train the prepared runs `ps` together (one: a run alone) and write each one's record; their statuses.

    `cohort`: the record's cohort keys of these runs (`SOLO` for a run alone)."""
    first = ps[0]
    start, start_iso = time.perf_counter(), envinfo.now_iso()
    reset_job_state(first.cfg, threads)
    for p in ps:
        start_folder(p)
    running = Path(first.cfg.results_dir) / first.cfg.sweep / RUNNING
    with _device_for_job(first, multirun, job_num) as device, running_jobs(running) as jobs:
        idents = [identity(p) for p in ps]
        measured, results = measure(ps, device, jobs)
        if device.type == "cuda":
            torch.cuda.empty_cache()  # after an OOM, give the next job of the sweep the memory back
        env = envinfo.collect(device, first.cfg.precision.value, start_iso)
    wall = time.perf_counter() - start
    env["wall_s"] = wall / len(ps)
    if len(ps) > 1:
        env["cohort_wall_s"] = wall
    return [write_record(p, i, {**m, **cohort}, r, env) for p, i, m, r in zip(ps, idents, measured, results)]

"""One job of a cohort: the members of `cohort.members`, each recorded as its solo run would be.

The cohort sweeper (benchmark/sweep/cohort_sweep.py) launches one job per variant with the points of its
cohort axes (seeds, learning rates) as members; `benchmark.run.main` prepares every member
(`benchmark.job.prepare.prepare_job`) and calls `run_job`. Complete members are skipped (as solo runs
are), so a re-run after a kill trains only the missing ones. The others train

- **stacked** (`benchmark.training.train_cohort`): one model with a leading member dimension: a batched
  GEMM per step for every member, which `make bench-cohort` measures faster per member than
  the solo model for every variant but one;
- **sequential**: one after another through `benchmark.job.execute.execute`, where that one is: torch's
  fused LSTM on the CPU, or cuDNN on a GPU unless the stack is replayed as a CUDA graph
  (`fused_is_faster`); where the variant has no cohort form (a token embedding, output BN, a stream
  task, a user arm's module); or with `cohort.mode=sequential`.

Either way each member writes its own run folder under its solo run id, with `cohort_id`,
`cohort_size` and `cohort_mode` in its record. A stacked cohort's dedicated timing (`fwd_ms`,
...) is measured once, on the first member's model, and recorded for each member as the
variant's timing; `train_tokens_per_s` is the member's share of the cohort's throughput and
`wall_s` its share of the job's wall time (`env.cohort_wall_s` the whole).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from benchmark.core.config import Accel, CohortMode, ConfigError
from benchmark.job import envinfo
from benchmark.job.execute import (
    SOLO,
    _device_for_job,
    dedicated_timing,
    execute,
    failure,
    gradient_profile,
    probe_batch,
    reset_job_state,
    run_model,
    skip_complete,
    start_folder,
    training_keys,
    write_record,
)
from benchmark.job.launch import RunningJobs, running_jobs
from benchmark.job.prepare import Prepared, identity
from benchmark.models import build_model
from benchmark.models.cohort import CohortModel
from benchmark.models.model import resolve_impl
from benchmark.perf import costs as measured
from benchmark.training.cohort_eval import final_metrics_stacked
from benchmark.training.timing import MemoryMeter
from benchmark.training.train import TrainResult, final_metrics
from benchmark.training.train_cohort import train_cohort

log = logging.getLogger(__name__)


def cohort_keys(ps: Sequence[Prepared], mode: str) -> dict[str, Any]:
    """The record's cohort keys of runs trained together in one job."""
    if len(ps) == 1:
        return SOLO
    cid = hashlib.sha256(",".join(sorted(p.run_id for p in ps)).encode()).hexdigest()[:12]
    return {"cohort_id": cid, "cohort_size": len(ps), "cohort_mode": mode}


def why_not_stacked(ps: Sequence[Prepared]) -> Optional[str]:
    """Why these members cannot train stacked (None: they can): a variant without a cohort form, or members
    that differ in a setting one stack shares (a cohort axis such as reg.bn.eps; output dropout's p is not)."""
    p = ps[0]
    if p.cfg.accel is Accel.compile:
        return "accel=compile speeds up one model's loop"
    if p.task.carries_state:
        return "a stream task carries each model's state from one window to the next"
    try:
        CohortModel([build_model(q.spec) for q in ps])  # on the CPU, no accel: only the modules matter here
    except (NotImplementedError, ValueError) as e:  # the reason is logged and the members train one by one
        return str(e)
    return None


def choose_mode(ps: Sequence[Prepared]) -> CohortMode:
    """Stacked, unless the variant has no cohort form or its members alone are measured faster (`stack_loses`)."""
    p, asked = ps[0], ps[0].cfg.cohort.mode
    if len(ps) == 1 or asked is CohortMode.sequential:
        return CohortMode.sequential
    reason = why_not_stacked(ps)
    if asked is CohortMode.stacked:
        if reason:
            raise ConfigError("cohort.mode", "stacked", f"auto or sequential for reg={p.spec.reg.name}", reason)
        return CohortMode.stacked
    reason = reason or fused_is_faster(p, len(ps))
    if reason:
        log.info("cohort of %d runs one after another: %s", len(ps), reason)
        return CohortMode.sequential
    return CohortMode.stacked


def stack_loses(
    cell: str,
    impl_used: str,
    device: str,
    hidden: int,
    members: int,
    accel: str = "none",
    reg: str = "none",
    T: int = 100,
) -> bool:
    """Whether members alone beat the stack, as measured (`make bench-cohort`, `benchmark.perf.gpu_cohort`,
    docs/timing.md). Only members torch's fused kernels run can win alone: the custom loop (BN, ...) loses to
    any stack, by 5-70x. On the CPU only torch's fused LSTM wins: against the fused cohort LSTM
    (models/cohort_fused.py) the stack wins there only at H=32 with E >= 10 (per-member ratio 0.85-0.90 at
    E=10), not at E=5 (0.97-1.21) nor at H=128 (0.95-1.10 at E=10); torch's RNN and GRU kernels lose to the
    stack there (ratios 0.2-0.6). On a GPU the stack replayed as a CUDA graph always wins; the eager stack
    against cuDNN depends on T and E (`cuda_eager_stack_loses`)."""
    if impl_used != "native":
        return False
    if device == "cuda":
        return accel != "graph" and cuda_eager_stack_loses(cell, reg, T, members)
    return cell == "lstm" and device == "cpu" and not (hidden <= 32 and members >= 10)


@functools.cache
def _cuda_eager_costs() -> measured.Costs:
    return measured.load(128, 64, accel="none")


def cuda_eager_stack_loses(cell: str, reg: str, T: int, members: int) -> bool:
    """On a GPU an eager stacked step is launch-bound: it costs about the same for 1 or 20 members (H200,
    `make bench-cohort`), and grows with T, while one cuDNN member's step barely does. So the stack wins from
    a break-even member count that grows with T: measured at E=15, H=128, B=64 (benchmark/baselines/
    gpu_cohort_h200.json) it is 6-16 members at T=100 and 25-37 at T=1000. An arm the file lacks runs
    cuDNN as `none` does."""
    costs = _cuda_eager_costs()
    arm = reg if costs.has(cell, reg) else "none"
    return costs.at(cell, arm, T, "step_ms") > members * costs.at(cell, arm, T, "solo_ms")


def fused_is_faster(p: Prepared, members: int) -> Optional[str]:
    """The reason to run this variant's members one after another, if the measurements give one."""
    impl = resolve_impl(p.spec.cell, p.spec.reg, p.cfg.impl).value
    spec = p.spec
    args = (spec.cell.name, impl, p.device.type, spec.hidden_size, members, p.cfg.accel.value, spec.reg.name)
    if stack_loses(*args, T=spec.total_len or 1):
        kernel = "cuDNN" if p.device.type == "cuda" else "torch's fused LSTM"
        return f"{kernel} is faster per member than an eager stacked loop on {p.device.type} (accel=graph stacks)"
    return None


def run_job(ps: Sequence[Prepared], threads: Optional[int], multirun: bool = False, job_num: int = 0) -> list[str]:
    """Run a job's members (one for a solo job); their statuses ("skipped" for complete ones)."""
    pending = [p for p in ps if not skip_complete(p)]
    statuses = ["skipped"] * (len(ps) - len(pending))
    if not pending:
        return statuses
    mode = choose_mode(pending)
    if mode is CohortMode.sequential:
        keys = cohort_keys(pending, mode.value)
        return statuses + [execute(p, threads, multirun, job_num, keys) for p in pending]
    return statuses + execute_stacked(pending, threads, multirun, job_num)


def execute_stacked(ps: Sequence[Prepared], threads: Optional[int], multirun: bool, job_num: int) -> list[str]:
    """Train the members as one stacked cohort; each writes its own record. Their statuses."""
    first = ps[0]
    start, start_iso = time.perf_counter(), envinfo.now_iso()
    reset_job_state(first.cfg, threads)
    for p in ps:
        start_folder(p)
    running = Path(first.cfg.results_dir) / first.cfg.sweep / ".running"
    with _device_for_job(first, multirun, job_num) as device, running_jobs(running) as jobs:
        idents = [identity(p) for p in ps]
        measured, results = measure_stacked(ps, device, jobs)
        env = envinfo.collect(device, first.cfg.precision.value, start_iso)
    wall = time.perf_counter() - start
    env["cohort_wall_s"], env["wall_s"] = wall, wall / len(ps)
    keys = cohort_keys(ps, CohortMode.stacked.value)
    return [write_record(p, i, {**m, **keys}, r, env) for p, i, m, r in zip(ps, idents, measured, results)]


def measure_stacked(
    ps: Sequence[Prepared], device: torch.device, jobs: RunningJobs
) -> tuple[list[dict[str, Any]], list[TrainResult]]:
    """Build, train (stacked) and measure every member: each one's measured record part and training result.

    An exception fails every member (recorded with the error and traceback); parts measured before it are kept.
    """
    parts: list[list[dict[str, Any]]] = [[] for _ in ps]
    results = [TrainResult() for _ in ps]
    try:
        models = [run_model(p, device) for p in ps]
        probes = [probe_batch(p.task, device) for p in ps]
        for e, (part, p, m, probe) in enumerate(zip(parts, ps, models, probes)):
            part.append(gradient_profile(p, m, probe, "start", gains=e == 0))  # the gain inits: once per job
        meter, beside, c = MemoryMeter(device), jobs.beside(), ps[0].cfg
        tasks, cfgs, seeds = [p.task for p in ps], [p.cfg.train for p in ps], [p.cfg.seed for p in ps]
        n_precise = ps[0].spec.reg.precise_batches()
        train_cohort(models, tasks, cfgs, device, seeds, c.precision, c.train.progress, results, n_precise, c.accel)
        beside = {"train_jobs_beside": max(beside, jobs.beside())}
        if results[0].capture_s is not None:  # accel=graph: the capture of the cohort's stacks, once per job
            beside["compile_s"] = results[0].capture_s
        for part, p, m, probe, res in zip(parts, ps, models, probes, results):
            part += [beside, training_keys(res), gradient_profile(p, m, probe, "end")]
        finals = final_metrics_stacked(models, tasks, device, c.precision) or [
            final_metrics(m, p.task, device, c.precision) for p, m in zip(ps, models)
        ]
        for part, final in zip(parts, finals):
            part.append(final)
        shared = dedicated_timing(ps[0], models[0], device, jobs)  # the variant's timing, once per cohort
        shared |= {"peak_memory_mb": meter.peak_mb(), "peak_memory_kind": meter.kind}
        for part in parts:
            part.append(shared)
    except Exception as e:  # recorded, never silent: every member failed, with the error and traceback
        for part, p, res in zip(parts, ps, results):
            part.append(failure(p, e, res))
    return [{k: v for d in part for k, v in d.items()} for part in parts], results

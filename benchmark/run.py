"""One grid point end to end: `python -m benchmark.run [hydra overrides]`.

    python -m benchmark.run cell=gru reg=both task=adding task.seq_len=200 seed=1 impl=custom

This is the only module that touches Hydra (with `benchmark.launch` for per-job
resources). It works in two phases:

1. prepare — compose, type-check (`run_schema`), `validate`, build the task, look up the
   cell class and resolve `impl`. Any bad value raises `ConfigError`: the message is
   printed and the process exits 2 before anything is written (in a multirun too: bad
   input fails loud and leaves results untouched).
2. execute — in `results/<sweep>/runs/<run_id>/`: `config.yaml`, train, measure,
   `history.csv`, and `metrics.json` last (its `complete: true` marks the point done).
   A grid point whose metrics.json is complete with status ok or diverged is skipped
   (logged as "skipping complete run <run_id>") unless `force=true`; a failed one is
   re-run. An exception in training is recorded as `status: failed` with the error and
   traceback; a single run then exits 1, a job inside a multirun returns so the sweep
   goes on. A non-finite loss is `status: diverged` and exits 0.

Hydra's basic launcher runs every job in one process, so each job resets the RNGs, the
torch thread count, the TF32 flags and the CUDA peak-memory statistics.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
import random
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Iterator, Optional

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import OverrideType
from hydra.errors import InstantiationException, OverrideParseException
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from benchmark import accel as accel_mod
from benchmark import allocator, envinfo, record
from benchmark.arms import Arm, build_arm
from benchmark.arms.base import id_form
from benchmark.cohort_sweep import member_overrides, member_point
from benchmark.config import Accel, ConfigError, Device, InitScheme, RunConfig, register_configs, validate
from benchmark.gradients import hidden_grad_profile, init_gain_profiles, profile_ratio
from benchmark.io import (
    GRID_POINT,
    atomic_write_csv,
    atomic_write_json,
    atomic_write_text,
    is_complete,
    remove_leftovers,
    run_dir,
    run_id,
)
from benchmark.launch import RunningJobs, gpu_slot, running_jobs, threads_for_job
from benchmark.models import ModelSpec, build_model, check_cell_class, check_spec, masks, resolve_impl
from benchmark.precision import autocast_dtype, set_tf32
from benchmark.tasks import Task, check_task
from benchmark.timing import MemoryMeter, time_model
from benchmark.train import HISTORY_COLUMNS, TrainResult, final_metrics, train

log = logging.getLogger("benchmark.run")
PROBE_BATCH = 64  # examples in the fixed probe batch of the hidden-gradient profile
_DEFAULT_THREADS = torch.get_num_threads()  # restored for jobs that set none

register_configs()


@dataclasses.dataclass
class Prepared:
    """Everything a job needs, checked; nothing has been written yet."""

    cfg: RunConfig
    resolved: dict[str, Any]  # the resolved config, as written to config.yaml
    run_id: str
    out: Path
    task: Task
    spec: ModelSpec
    device: torch.device
    point: tuple[str, ...] = ()  # the grid point's overrides, as the sweep launched it (grid_point.json)


def _config_cause(e: BaseException) -> Optional[ConfigError]:
    while e is not None:
        if isinstance(e, ConfigError):
            return e
        e = e.__cause__ or e.__context__
    return None


def build_task_and_cell(cfg: DictConfig) -> tuple[Task, type]:
    """The task (instantiated and checked) and the cell class; raises ConfigError naming the key."""
    try:
        task = check_task(instantiate(cfg.task, _convert_="all"))
    except InstantiationException as e:
        cause = _config_cause(e)
        if cause is not None:
            raise cause from None
        raise ConfigError(
            "task", cfg.task.get("name"), "a task config whose keys match its class", str(e).splitlines()[0]
        ) from None
    try:
        cell = get_class(cfg.cell._target_)
    except (ImportError, ValueError) as e:
        raise ConfigError(
            "cell._target_", cfg.cell._target_, "an importable CellMath subclass", str(e).splitlines()[0]
        ) from None
    cell = check_cell_class(cell)
    return task, cell


def prepare(cfg: DictConfig) -> Prepared:
    """Validate and build everything cheap; raises ConfigError, writes nothing."""
    run_cfg: RunConfig = OmegaConf.to_object(cfg)
    validate(run_cfg)
    if run_cfg.device is Device.cuda and not torch.cuda.is_available():
        raise ConfigError("device", "cuda", "auto or cpu on this machine", "torch sees no CUDA device.")
    use_cuda = run_cfg.device is Device.cuda or (run_cfg.device is Device.auto and torch.cuda.is_available())
    for group in ("cell", "task", "reg"):
        if not isinstance(cfg.get(group), DictConfig) or "_target_" not in cfg[group]:
            raise ConfigError(group, cfg.get(group), f"a config from conf/{group}/ with a _target_")
    task, cell = build_task_and_cell(cfg)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    arm = build_arm(resolved["reg"])  # validates its own settings (ConfigError)
    b = run_cfg.train.batch_size
    if b < arm.min_batch_size():
        raise ConfigError(
            "train.batch_size",
            b,
            f"an integer >= {arm.min_batch_size()} with reg={arm.name}",
            "Batch statistics of a single example are undefined.",
        )
    if task.carries_state and run_cfg.accel is Accel.graph:  # a captured graph cannot carry a state across windows
        raise ConfigError("accel", "graph", "none or compile for a stream task (task.name=ptb)")
    spec = model_spec(run_cfg, task, cell, arm)
    check_spec(spec)  # e.g. reg.bn.max_stats_steps < task.total_len
    arm_identity(arm, task.total_len)  # an arm's record columns must be the record's
    resolve_impl(cell, arm, run_cfg.impl)  # impl=native with a variant that needs the loop
    rid = run_id(id_form(resolved))
    return Prepared(
        cfg=run_cfg,
        resolved=resolved,
        run_id=rid,
        out=run_dir(run_cfg.results_dir, run_cfg.sweep, rid),
        task=task,
        spec=spec,
        device=torch.device("cuda" if use_cuda else "cpu"),
    )


def model_spec(run_cfg: RunConfig, task: Task, cell: type, arm: Arm) -> ModelSpec:
    """The model a run trains. With tokens in (task.vocab_size), an input_size of 0 means an embedding
    as wide as the hidden size (Zaremba)."""
    return ModelSpec(
        cell=cell,
        input_size=task.input_size or run_cfg.hidden_size,
        hidden_size=run_cfg.hidden_size,
        num_layers=run_cfg.num_layers,
        output_size=task.output_size,
        per_step=task.per_step,
        reg=arm,
        impl=run_cfg.impl,
        total_len=task.total_len,
        vocab_size=task.vocab_size,
        init_scale=run_cfg.init.scale if run_cfg.init.scheme is InitScheme.uniform else None,
    )


def reset_job_state(cfg: RunConfig, threads: Optional[int]) -> None:
    """Per-job state that would otherwise leak between jobs of one process."""
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    torch.manual_seed(cfg.seed)  # CPU and every CUDA device
    torch.set_num_threads(threads or _DEFAULT_THREADS)
    set_tf32(cfg.precision)


def arm_identity(arm: Arm, total_len: Optional[int]) -> dict[str, Any]:
    """The arm's columns of the run record; ValueError when it names a key the record does not have."""
    own = arm.identity(total_len)
    unknown = sorted(set(own) - set(record.IDENTITY_KEYS))
    if unknown:
        raise ValueError(
            f"reg={arm.name}: identity() returns {unknown}, which are not identity keys of the run "
            "record (benchmark/record.py); an arm's own settings go to `reg_params`"
        )
    return own


def identity(p: Prepared) -> dict[str, Any]:
    """What the run is: every identity key of the record (benchmark/record.py) in its order, null where
    nothing sets it (e.g. another arm's columns); the arm contributes its own (`Arm.identity`)."""
    values = run_identity(p)
    unknown = sorted(set(values) - set(record.IDENTITY_KEYS))
    if unknown:
        raise ValueError(f"identity {unknown} are not identity keys of the run record (benchmark/record.py)")
    return {"schema_version": record.SCHEMA_VERSION, **{k: values.get(k) for k in record.IDENTITY_KEYS}}


def run_identity(p: Prepared) -> dict[str, Any]:
    """The values `identity` arranges: the config's, the task's and the arm's."""
    c, reg = p.cfg, p.spec.reg
    return {
        "run_id": p.run_id,
        "sweep": c.sweep,
        "cell": p.resolved["cell"].get("name", p.spec.cell.name),
        "reg": reg.name,
        "reg_params": reg.params(),
        **arm_identity(reg, p.task.total_len),
        "impl": c.impl.value,
        "impl_used": resolve_impl(p.spec.cell, reg, c.impl).value,
        "accel": c.accel.value,
        "task": p.task.label,
        "seq_len": p.task.seq_len,
        "total_len": p.task.total_len,
        "seed": c.seed,
        "hidden_size": c.hidden_size,
        "num_layers": c.num_layers,
        "batch_size": c.train.batch_size,
        "steps": c.train.steps,
        "lr": c.train.lr,
        "device": p.device.type,
        "precision": c.precision.value,
        "metric_name": p.task.metric_name,
        "metric_baseline": p.task.metric_baseline,
        "metric_perfect": p.task.metric_perfect,
        "metric_higher_is_better": bool(p.task.higher_is_better),
        "target_score": p.task.target_score,
        "stop_at_target": c.train.stop_at_target,
    }


def measure(p: Prepared, device: torch.device, progress: bool, jobs: RunningJobs) -> tuple[dict[str, Any], TrainResult]:
    """Build, train and measure: the measured part of the record, merged once from each phase's part,
    and the training result (its history rows).

    A phase that raises ends the run as `status: failed` with the error and traceback; the parts
    measured before it are kept. `jobs` counts the sweep's grid points running beside this one,
    at the start and end of training and of the dedicated timing: throughput measured beside
    other jobs says so.
    """
    parts: list[dict[str, Any]] = []
    res = TrainResult()
    try:
        model = run_model(p, device)
        parts.append(compile_time(p, model, device))
        probe = probe_batch(p.task, device)
        parts.append(gradient_profile(p, model, probe, "start", gains=True))
        meter = MemoryMeter(device)
        parts.append(training(p, model, device, res, progress, jobs))
        parts.append(gradient_profile(p, model, probe, "end"))
        parts.append(final_metrics(model, p.task, device, p.cfg.precision))
        parts.append(dedicated_timing(p, model, device, jobs))
        parts.append({"peak_memory_mb": meter.peak_mb(), "peak_memory_kind": meter.kind})
    except Exception as e:  # recorded, never silent: status failed + error + traceback
        parts.append(failure(p, e, res))
    return {k: v for part in parts for k, v in part.items()}, res


def run_model(p: Prepared, device: torch.device) -> torch.nn.Module:
    """The run's model: initialised from its seed alone, drawing its masks from a stream of its own
    (`masks.generator`; a CUDA graph registers it and replays its draws), so a cohort member gets the same."""
    torch.manual_seed(p.cfg.seed)
    model = build_model(p.spec).to(device)
    model.mask_gen = masks.generator(p.cfg.seed, device)
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
    return out


def training(
    p: Prepared, model: torch.nn.Module, device: torch.device, res: TrainResult, progress: bool, jobs: RunningJobs
) -> dict[str, Any]:
    """Train (filling `res`, so a failure keeps its steps and history); the training keys of the record."""
    cfg = p.cfg
    step = (
        accel_mod.GraphedForwardBackward(model, p.task.loss, autocast_dtype(cfg.precision))
        if cfg.accel is Accel.graph
        else None
    )  # None: the task's own step (eager)
    beside = jobs.beside()
    train(
        model,
        p.task,
        cfg.train,
        device,
        cfg.seed,
        cfg.precision,
        progress,
        result=res,
        precise_bn_batches=p.spec.reg.precise_batches(),
        step=step,
    )
    out = {"train_jobs_beside": max(beside, jobs.beside())}
    if res.capture_s is not None:
        out["compile_s"] = res.capture_s  # accel=graph: capture time of the training step's graph
    return out | training_keys(res)


def training_keys(res: TrainResult) -> dict[str, Any]:
    """What training measured, as record keys."""
    return {
        "status": res.status,
        "diverged_at_step": res.diverged_at_step,
        "steps_done": res.steps_done,
        "stopped_early": res.stopped_early,
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
    if cfg.skip_marks:
        Path(cfg.skip_marks).mkdir(parents=True, exist_ok=True)
        (Path(cfg.skip_marks) / p.run_id).touch()
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
    p: Prepared, threads: Optional[int], multirun: bool = False, job_num: int = 0, cohort: Optional[dict] = None
) -> str:
    """Run one prepared grid point; returns its status ("skipped" if already complete).

    `cohort`: the record's cohort keys when this run is one of a job's members run one after another.
    """
    if skip_complete(p):
        return "skipped"
    cfg = p.cfg
    start, start_iso = time.perf_counter(), envinfo.now_iso()
    reset_job_state(cfg, threads)
    start_folder(p)
    running = Path(cfg.results_dir) / cfg.sweep / ".running"
    with _device_for_job(p, multirun, job_num) as device, running_jobs(running) as jobs:
        ident = identity(p)
        measured, res = measure(p, device, cfg.train.progress, jobs)
        if device.type == "cuda":
            torch.cuda.empty_cache()  # after an OOM, give the next job of the sweep the memory back
        env = envinfo.collect(device, cfg.precision.value, start_iso)
    env["wall_s"] = time.perf_counter() - start
    return write_record(p, ident, {**measured, **(cohort or SOLO)}, res, env)


CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")  # absolute: works as __main__ and as an import


def member_configs(cfg: DictConfig) -> list[DictConfig]:
    """The job's runs: `cfg` with each of `cohort.members` applied, read as the cohort sweeper wrote them
    (`cohort_sweep.member_overrides`, values parsed by Hydra's override parser); [cfg] for a solo job.
    A member sets only cohort axes, each a plain config value (ConfigError otherwise)."""
    axes, parser = list(cfg.cohort.axes), OverridesParser.create()
    allowed = f"space-separated key=value overrides of cohort.axes {axes}"
    out = []
    for text in cfg.cohort.members:
        try:
            overrides = parser.parse_overrides(member_overrides(str(text)))
        except OverrideParseException as e:
            raise ConfigError("cohort.members", text, allowed, str(e).splitlines()[0]) from None
        if not overrides or any(
            o.key_or_group not in axes or o.type is not OverrideType.CHANGE or o.is_sweep_override() for o in overrides
        ):
            raise ConfigError("cohort.members", text, allowed)
        member = copy.deepcopy(cfg)
        for o in overrides:
            OmegaConf.update(member, o.key_or_group, o.value(), merge=False)
        member.cohort.members = []
        out.append(member)
    return out or [cfg]


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from benchmark.cohort_run import run_job  # it builds on this module

    allocator.keep_freed_memory()  # steady step times that scale with T (allocator.py)
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    task = [str(o) for o in hc.overrides.task]
    points = [member_point(task, str(m)) for m in cfg.cohort.members] or [task]
    try:
        ps = [dataclasses.replace(prepare(c), point=tuple(pt)) for c, pt in zip(member_configs(cfg), points)]
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    launcher = OmegaConf.to_container(hc.launcher, resolve=True) if multirun else None
    threads = threads_for_job(launcher, os.cpu_count() or 1, ps[0].cfg.threads)
    statuses = run_job(ps, threads, multirun, int(hc.job.get("num", 0) or 0))
    if "failed" in statuses and not multirun:
        sys.exit(1)


if __name__ == "__main__":
    # Call main through the importable module, not __main__: submitit and joblib pickle the
    # task function, and a function of __main__ is pickled by value (dragging torch along).
    from benchmark.run import main as _main

    _main()

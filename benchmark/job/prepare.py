"""Prepare one run: compose-time checks and everything cheap, before anything is written.

`prepare` type-checks the composed config (`run_schema`), runs `validate`, builds the task, looks up
the cell class and resolves `impl`. Any bad value raises `ConfigError` naming the key (the entry
point, benchmark/run.py, prints it and exits 2 before anything is written). `identity` is what
the run is: the identity keys of its record.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from benchmark.arms import Arm, build_arm
from benchmark.arms.base import id_form, package_arms
from benchmark.core import record
from benchmark.core.config import Accel, ConfigError, Device, InitScheme, RunConfig, register_configs, validate
from benchmark.core.io import run_dir, run_id
from benchmark.job.members import MEMBERS_KEY, flat, member_points, written_members
from benchmark.models import ModelSpec, check_cell_class, check_spec, resolve_impl
from benchmark.tasks import Task, check_task

# The run schema and Hydra's warning filter, wherever runs are prepared: a launcher's worker (joblib, submitit)
# unpickles the job's task function and composes the job's config without importing benchmark.run.
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


def prepare(cfg: DictConfig, point: Sequence[str] = ()) -> Prepared:
    """Validate and build everything cheap; raises ConfigError, writes nothing. `point`: the grid point's
    overrides as typed (checked too: `check_point`)."""
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
    check_point(point, arm)
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
        point=tuple(point),
    )


def check_point(point: Sequence[str], arm: Arm) -> None:
    """A grid point's overrides set only settings of its own arm. An experiment file may configure a block for
    the arms of its sweep that read it (runs of the others carry it unread, as their run ids always have); a
    setting typed for an arm that never reads it (`reg=none +reg.dropout.p=0.3`) would label a run it does not
    describe: ConfigError naming the arm's blocks and the arms that read it."""
    for text in point:
        key = text.split("=", 1)[0].lstrip("+~")
        parts = key.split(".")
        if len(parts) < 3 or parts[0] != "reg" or parts[1] in arm.blocks:
            continue
        readers = [o for o, c in package_arms().items() if parts[1] in c.blocks]
        raise ConfigError(
            key,
            text.split("=", 1)[-1],
            f"settings of reg={arm.name}'s blocks: " + (", ".join(f"reg.{b}.*" for b in arm.blocks) or "none"),
            f"reg={arm.name} never reads reg.{parts[1]}"
            + (f"; the arms that do: {', '.join(f'reg={o}' for o in readers)}." if readers else "."),
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


def arm_identity(arm: Arm, total_len: Optional[int]) -> dict[str, Any]:
    """The arm's columns of the run record; ValueError when it names a key the record does not have."""
    own = arm.identity(total_len)
    unknown = sorted(set(own) - set(record.IDENTITY_KEYS))
    if unknown:
        raise ValueError(
            f"reg={arm.name}: identity() returns {unknown}, which are not identity keys of the run "
            "record (benchmark/core/record.py); an arm's own settings go to `reg_params`"
        )
    return own


def arm_about(arm: Arm, own: dict[str, Any]) -> Optional[str]:
    """The arm's own words for the run's variant (`Arm.variants`): description (paper); among several, the one
    whose placement the run records (`own`: the arm's identity columns)."""
    declared = type(arm).variants(arm.name)
    placed = {str(v) for v in own.values() if v is not None}
    v = next((d for d in declared if d.placement in placed), declared[0] if declared else None)
    if v is None or not (v.description or v.paper):
        return None
    return v.description + (f" ({v.paper})" if v.paper else "")


def identity(p: Prepared) -> dict[str, Any]:
    """What the run is: every identity key of the record (benchmark/core/record.py) in its order, null where
    nothing sets it (e.g. another arm's columns); the arm contributes its own (`Arm.identity`)."""
    values = run_identity(p)
    unknown = sorted(set(values) - set(record.IDENTITY_KEYS))
    if unknown:
        raise ValueError(f"identity {unknown} are not identity keys of the run record (benchmark/core/record.py)")
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
        "reg_about": arm_about(reg, own := arm_identity(reg, p.task.total_len)),
        **own,
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


# Blocks of a run's config that no run reads (core/config.py: RunConfig): the analysis reads them from the
# runs' config.yaml (the literature's reference values) or the sweep's plan (the claims protocol).
RECORD_ONLY = ("protocol", "literature")


def member_configs(cfg: DictConfig) -> list[DictConfig]:
    """The job's runs: `cfg` with each mapping of `cohort.members` merged into it by OmegaConf, as Hydra merges
    a solo run's overrides; [cfg] for a solo job. A member sets only cohort axes, each to a plain value
    (ConfigError otherwise)."""
    axes = list(cfg.cohort.axes)
    allowed = f"mappings of cohort.axes {axes} to plain values, e.g. [{{seed:0,train:{{lr:0.01}}}},...]"
    out = []
    for member in OmegaConf.to_container(cfg.cohort.members, resolve=False):
        values = flat(member) if isinstance(member, dict) else {}
        if not values or any(k not in axes or isinstance(v, (dict, list)) for k, v in values.items()):
            raise ConfigError(MEMBERS_KEY, member, allowed)
        try:
            merged = OmegaConf.merge(cfg, member)
        except OmegaConfBaseException as e:
            raise ConfigError(MEMBERS_KEY, member, allowed, str(e).splitlines()[0]) from None
        merged.cohort.members = []
        out.append(merged)
    return out or [cfg]


def prepare_job(cfg: DictConfig, task_overrides: Sequence[str]) -> list[Prepared]:
    """Every run of a job (its members, or the one run of a solo job), prepared, each with its grid point
    (`task_overrides`: the job's overrides as Hydra launched it; a member's point is rebuilt from the values
    its `cohort.members` override wrote, or the config's where no override set them). Raises ConfigError,
    writes nothing. What benchmark/run.py checks before training, and what the cohort sweeper checks for every
    job of a multirun before it launches any (conf/hydra/sweeper/cohort.yaml), so one bad point ends the
    multirun before a sibling starts."""
    cfg, kept = set_aside(cfg)
    configs = member_configs(cfg)
    if not cfg.cohort.members:
        out = [prepare(configs[0], task_overrides)]
    else:
        written = written_members(task_overrides)
        members = OmegaConf.to_container(cfg.cohort.members, resolve=False) if written is None else written
        out = [prepare(c, pt) for c, pt in zip(configs, member_points(task_overrides, members), strict=True)]
    for p in out:
        p.resolved.update(kept)
    return out


def set_aside(cfg: DictConfig) -> tuple[DictConfig, dict[str, Any]]:
    """`cfg` with the blocks no run reads (`RECORD_ONLY`) emptied, and those blocks resolved: each run's
    config.yaml records them, but they are never merged, converted or validated per member (the claims
    protocol is most of a claims run's config: with it, checking a 20-member job took 14 times as long)."""
    kept = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in RECORD_ONLY if cfg.get(k) is not None}
    return (OmegaConf.merge(cfg, {k: None for k in kept}) if kept else cfg), kept

"""CohortSweeper: Hydra's basic sweeper, whose jobs are cohorts (conf/hydra/sweeper/cohort.yaml).

The grid, `params` and `max_batch_size` are the basic sweeper's; its jobs are grouped by
`benchmark.sweep.cohort_sweep.group_jobs` over `cohort.axes` of the composed config, then cut into
batches of at most `max_batch_size` jobs. Every job is composed and checked before the first
one is launched: its axes, and (`validate`, a function the config names: `benchmark.job.prepare.prepare_job`)
everything the job itself would check before training. So bad input — an axis no config has, one
bad value among many — ends the multirun before any job runs, as it ends `benchmark.run`:
"error: invalid config: ...", exit status 2, and no sibling job is killed mid-write.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, List, NoReturn, Optional, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.object_type import ObjectType
from hydra.core.override_parser.types import Override, OverrideType
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_method
from omegaconf import Container, DictConfig, OmegaConf, open_dict, read_write

from benchmark.core.config import ConfigError
from benchmark.core.io import write_failure
from benchmark.job.members import MEMBERS_KEY, key_of
from benchmark.sweep.cohort_sweep import AXES_KEY, group_jobs

ALLOWED = "plain config keys such as seed, train.lr (not a config group, not hydra.* or cohort.*), or []"
_ABSENT = object()


class CohortSweeper(BasicSweeper):
    """Every grid point of the basic sweeper, the points of one cohort in one job."""

    def __init__(
        self, max_batch_size: Optional[int] = None, params: Optional[dict[str, str]] = None, validate: Any = None
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.axes: list[str] = []
        self.groups: set[str] = set()
        self.validate: Optional[str] = validate  # "module.function"(job config, job overrides); raises ConfigError

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.groups = {str(k) for k in (config.hydra.runtime.choices or {})}
        try:  # an axis may be absent here (reg.dropout.p before a design picks reg=dropout), not from every option
            self.axes = check_axes(axes_of(config), config, self.groups, present=False)
            for axis in self.axes:
                self.check_axis_exists(axis)
        except ConfigError as e:
            fail(e)

    def check_axis_exists(self, axis: str) -> None:
        """ConfigError unless `axis` is a key of the primary config or of some option of its config group
        (`reg.dropout.p`: of conf/reg/dropout.yaml), swept or not: a misspelt axis would group nothing."""
        assert self.hydra_context is not None and self.config is not None
        if OmegaConf.select(self.config, axis, default=_ABSENT, throw_on_missing=False) is not _ABSENT:
            return
        loader = self.hydra_context.config_loader
        for group in sorted((g for g in self.groups if axis.startswith(g + ".")), key=len, reverse=True):
            for option in loader.get_group_options(group, results_filter=ObjectType.CONFIG):
                cfg = loader.load_sweep_config(master_config=self.config, sweep_overrides=[f"{group}={option}"])
                if OmegaConf.select(cfg, axis, default=_ABSENT, throw_on_missing=False) is not _ABSENT:
                    return
        raise ConfigError(AXES_KEY, axes_of(self.config), ALLOWED, f"{axis!r} is not a key of the config.")

    def sweep(self, arguments: List[str]) -> Any:
        try:
            return super().sweep(arguments)
        except ConfigError as e:
            fail(e)
        except OSError as e:  # a job could not write (Hydra's own files or the run record): a full disk, say
            assert self.config is not None
            sys.stderr.write(f"error: {write_failure(e, Path(str(self.config.hydra.sweep.dir)).parent)}\n")
            sys.exit(1)

    # BasicSweeper.sweep calls self.split_arguments once: the grid, grouped, checked, then batched.
    def split_arguments(self, overrides: List[Override], max_batch_size: Optional[int]) -> List[List[List[str]]]:
        check_overrides(overrides, self.axes, self.groups)
        jobs = group_jobs(BasicSweeper.split_arguments(overrides, None)[0], self.axes)
        self.check_jobs(jobs)
        return [jobs] if max_batch_size is None else list(BasicSweeper.split_overrides_to_chunks(jobs, max_batch_size))

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Nothing left to check: `check_jobs` composed and checked every job before the first batch."""

    def check_jobs(self, jobs: Sequence[Sequence[str]]) -> None:
        """Every job composes (as the basic sweeper checks), with the axes it was grouped by (a swept group,
        an experiment, that sets other axes would make these cohorts wrong), and passes `validate`."""
        assert self.hydra_context is not None and self.config is not None
        validate: Optional[Callable[[DictConfig, list[str]], Any]] = (
            get_method(self.validate) if self.validate else None
        )
        for overrides in jobs:
            cfg = self.hydra_context.config_loader.load_sweep_config(
                master_config=self.config, sweep_overrides=list(overrides)
            )
            if axes_of(cfg) != self.axes:
                raise ConfigError(
                    AXES_KEY,
                    axes_of(cfg),
                    f"one value for the whole multirun ({self.axes} here)",
                    f"The job {' '.join(overrides)} sets other axes: set cohort.axes outside the swept groups.",
                )
            swept = {key_of(o) for o in overrides}  # an axis this job sets must be a plain value of its config
            check_axes([a for a in self.axes if a in swept], cfg, self.groups)
            if validate is not None:
                validate(job_config(cfg), list(overrides))


def job_config(cfg: DictConfig) -> DictConfig:
    """The config a job's task function gets: the composed sweep config without its `hydra` node."""
    with read_write(cfg), open_dict(cfg):
        del cfg["hydra"]
    return cfg


def fail(e: ConfigError) -> NoReturn:
    """Bad input ends the multirun as it ends `benchmark.run`: the message, exit status 2."""
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


def axes_of(config: DictConfig) -> list[str]:
    """`cohort.axes` of a composed config; a config without a `cohort` node groups nothing."""
    axes = OmegaConf.select(config, AXES_KEY, default=None)
    if axes is None:
        return []
    if not OmegaConf.is_list(axes):
        raise ConfigError(AXES_KEY, axes, f"a list of {ALLOWED}")
    return [str(a) for a in axes]


def check_axes(axes: list[str], config: DictConfig, groups: set[str], present: bool = True) -> list[str]:
    """The axes, each a plain value of the config (with `present=False` an axis may be absent from it: the
    primary config, before a swept group sets it); ConfigError otherwise."""
    for axis in axes:
        node = OmegaConf.select(config, axis, default=_ABSENT, throw_on_missing=False)
        hint = ""
        if axis in groups or axis.split(".")[0] == "hydra" or axis.split(".")[0] == "cohort":
            hint = f"{axis!r} is a config group or not a setting of a grid point."
        elif node is _ABSENT and present:
            hint = f"{axis!r} is not a key of the config."
        elif isinstance(node, Container):
            hint = f"{axis!r} is a config node, not a plain value."
        if hint:
            raise ConfigError(AXES_KEY, axes, ALLOWED, hint)
    if len(set(axes)) != len(axes):
        raise ConfigError(AXES_KEY, axes, ALLOWED + ", each once")
    return axes


def check_overrides(overrides: Sequence[Override], axes: Sequence[str], groups: set[str]) -> None:
    """The sweep's overrides: `cohort.members` is the sweeper's, `cohort.axes` one list, an axis a plain change."""
    for o in overrides:
        key: Any = o.key_or_group
        if key == MEMBERS_KEY:
            raise ConfigError(
                MEMBERS_KEY,
                o.input_line.split("=", 1)[-1],
                "unset in a multirun (the cohort sweeper sets it)",
                "Sweep the cohort axes instead, e.g. seed=0,1,2 train.lr=0.01,0.03.",
            )
        if key == AXES_KEY and o.is_sweep_override():
            raise ConfigError(AXES_KEY, o.input_line.split("=", 1)[-1], "one list per multirun, e.g. [seed] or []")
        if key in axes and (o.type is not OverrideType.CHANGE or o.package is not None or key in groups):
            raise ConfigError(AXES_KEY, list(axes), ALLOWED, f"{o.input_line!r} is not a plain value override.")

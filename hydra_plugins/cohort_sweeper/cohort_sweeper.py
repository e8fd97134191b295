"""CohortSweeper: Hydra's basic sweeper, whose jobs are cohorts (conf/hydra/sweeper/cohort.yaml).

The grid, `params` and `max_batch_size` are the basic sweeper's; its jobs are grouped by
`benchmark.sweep.cohort_sweep.group_jobs` over `cohort.axes` of the composed config, then cut into
batches of at most `max_batch_size` jobs. Bad axes end the multirun before any job runs, as bad
input ends `benchmark.run`: "error: invalid config: cohort.axes=...", exit status 2.
"""

from __future__ import annotations

import sys
from typing import Any, List, NoReturn, Optional, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.types import Override, OverrideType
from hydra.types import HydraContext, TaskFunction
from omegaconf import Container, DictConfig, OmegaConf

from benchmark.core.config import ConfigError
from benchmark.job.members import MEMBERS_KEY, key_of
from benchmark.sweep.cohort_sweep import AXES_KEY, group_jobs

ALLOWED = "plain config keys such as seed, train.lr (not a config group, not hydra.* or cohort.*), or []"
_ABSENT = object()


class CohortSweeper(BasicSweeper):
    """Every grid point of the basic sweeper, the points of one cohort in one job."""

    def __init__(self, max_batch_size: Optional[int] = None, params: Optional[dict[str, str]] = None) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.axes: list[str] = []
        self.groups: set[str] = set()

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.groups = {str(k) for k in (config.hydra.runtime.choices or {})}
        try:  # an axis may be absent here (reg.dropout.p before a design picks reg=dropout): checked per job too
            self.axes = check_axes(axes_of(config), config, self.groups, present=False)
        except ConfigError as e:
            fail(e)

    def sweep(self, arguments: List[str]) -> Any:
        try:
            return super().sweep(arguments)
        except ConfigError as e:
            fail(e)

    # BasicSweeper.sweep calls self.split_arguments: the grid, grouped, then batched.
    def split_arguments(self, overrides: List[Override], max_batch_size: Optional[int]) -> List[List[List[str]]]:
        check_overrides(overrides, self.axes, self.groups)
        jobs = group_jobs(BasicSweeper.split_arguments(overrides, None)[0], self.axes)
        return [jobs] if max_batch_size is None else list(BasicSweeper.split_overrides_to_chunks(jobs, max_batch_size))

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Every job composes (as the basic sweeper checks), with the axes it was grouped by: a
        swept group (an experiment) that sets other axes would make these cohorts wrong."""
        assert self.hydra_context is not None and self.config is not None
        for overrides in batch:
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

"""Typed configuration: the schema Hydra validates against, and the start-up checks.

Hydra composes `conf/`; the resolved tree is merged onto these dataclasses (registered
in Hydra's ConfigStore as `run_schema`), so a wrong type or unknown key fails before any
work. Cross-field rules that a schema cannot express live in `validate()`, which raises
`ConfigError` naming the key, the value and what is allowed.

Enums, not `Literal`: OmegaConf 2.3 (required by hydra-core 1.3) accepts only Enums.
`cell`, `task` and `reg` stay open dicts with a `_target_`, because users add their own from
outside the package; their classes validate themselves when built (a regulariser's settings:
benchmark/arms/).
"""

from __future__ import annotations

import enum
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional


class ConfigError(ValueError):
    """A bad configuration value: the message names the key, the value and what is allowed."""

    def __init__(self, key: str, value: Any, allowed: str, hint: str = "") -> None:
        self.key, self.value, self.allowed = key, value, allowed
        msg = f"invalid config: {key}={value!r}; allowed: {allowed}."
        if hint:
            msg += f" {hint}"
        super().__init__(msg)


class Impl(str, enum.Enum):
    native = "native"  # torch's fused nn.RNN / nn.LSTM / nn.GRU (cuDNN, oneDNN)
    custom = "custom"  # the suite's own time loop: needed for anything inside the recurrence
    auto = "auto"  # native where the variant allows it, custom otherwise


class Device(str, enum.Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Precision(str, enum.Enum):
    fp32 = "fp32"
    tf32 = "tf32"  # fp32 storage, TF32 matmuls on Ampere+
    bf16 = "bf16"  # autocast to bfloat16


class Accel(str, enum.Enum):
    """Opt-in speed-ups of the custom loop (benchmark/training/accel.py); off until measured on a GPU."""

    none = "none"
    compile = "compile"  # torch.compile of the per-step function only (CPU and GPU)
    graph = "graph"  # CUDA-graph capture of forward+backward per fixed shape (CUDA only)


class Optimizer(str, enum.Enum):
    adam = "adam"
    adamw = "adamw"
    sgd = "sgd"
    rmsprop = "rmsprop"


class Scheduler(str, enum.Enum):
    none = "none"
    cosine = "cosine"
    step = "step"  # divide by 10 at 1/2 and again at 3/4 of the budget
    decay = "decay"  # multiply by lr_decay after every period of lr_decay_every steps past the first lr_decay_after


class InitScheme(str, enum.Enum):
    """How a model's weights start (benchmark/models/model.py `init_weights`)."""

    torch = "torch"  # each module's own: torch's uniform ±1/sqrt(H) for recurrent layers, N(0, 1) for an embedding
    uniform = "uniform"  # every weight and bias but the norms' uniform in ±init.scale (Zaremba et al. 2014)


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: Optimizer = Optimizer.adam
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd / rmsprop only
    scheduler: Scheduler = Scheduler.none
    warmup_steps: int = 0
    max_norm: Optional[float] = 1.0  # gradient clipping; null = off (norms are still measured)
    # scheduler=decay (Zaremba et al. 2014's schedule, their `decay` and `max_epoch`): at the end of every period
    # of lr_decay_every steps (an epoch) past the first lr_decay_after periods, the rate is multiplied by lr_decay.
    lr_decay: float = 0.5
    lr_decay_every: int = 1
    lr_decay_after: int = 0
    eval_interval: int = 100
    log_interval: int = 10
    eval_batches: int = 0  # 0 = the whole split
    early_stopping_patience: Optional[int] = None  # evaluations without a better validation score; null = off
    # Time to target (AlgoPerf's protocol): end training at the first evaluation whose validation
    # score reaches task.target_score; `steps` is then the budget. val_score_auc holds the final
    # score over the budget's remaining evaluations, so stopping at the target is not penalised.
    stop_at_target: bool = False
    progress: bool = True  # a progress bar, quiet when stderr is not a terminal


@dataclass
class InitConfig:
    scheme: InitScheme = InitScheme.torch
    scale: float = 0.1  # scheme=uniform: the half-width of the uniform range


@dataclass
class TimingConfig:
    enabled: bool = True
    warmup: int = 5
    repeats: int = 20
    batch_size: Optional[int] = None  # null = train.batch_size


class CohortMode(str, enum.Enum):
    """How a job trains its cohort's members (benchmark/job/cohort_run.py)."""

    auto = "auto"  # stacked where the variant needs the custom loop, one after another where a fused kernel runs it
    stacked = "stacked"  # every member in one stack (benchmark/models/stack.py)
    sequential = "sequential"  # each member alone, one after another in this process


@dataclass
class CohortConfig:
    """Which sweep axes train together in one job, as members of one vectorised model.

    `axes`: config keys (plain values, not config groups) whose swept values become members; the
    cohort sweeper (benchmark/sweep/cohort_sweep.py) groups the points Hydra's basic sweeper would launch by
    every other override. `members`: set by that sweeper, one mapping of the axes' values per member
    (`{seed: 0, train: {lr: 0.01}}`, benchmark/job/members.py); empty for a solo job. Neither is part of a
    run id: a member is its solo run.
    """

    axes: list[str] = field(default_factory=lambda: ["seed", "train.lr"])
    members: list[Any] = field(default_factory=list)  # mappings; checked by benchmark.job.prepare.member_configs
    mode: CohortMode = CohortMode.auto


@dataclass
class RunConfig:
    cell: Any = None  # {name, _target_}: conf/cell/
    task: Any = None  # {name, _target_, seq_len, ...}: conf/task/
    reg: Any = None  # {name, _target_, <the arm's blocks>}: conf/reg/ (benchmark/arms/)
    train: TrainConfig = field(default_factory=TrainConfig)
    timing: TimingConfig = field(default_factory=TimingConfig)
    init: InitConfig = field(default_factory=InitConfig)
    cohort: CohortConfig = field(default_factory=CohortConfig)
    seed: int = 0
    impl: Impl = Impl.auto
    device: Device = Device.auto
    precision: Precision = Precision.fp32
    accel: Accel = Accel.none
    hidden_size: int = 128
    num_layers: int = 1
    threads: Optional[int] = None  # torch intra-op threads per job; null = leave torch's default
    results_dir: str = "results"
    sweep: str = "single"
    force: bool = False  # re-run a grid point even if its metrics.json is complete
    # A folder where each skipped grid point leaves an empty file named by its run_id, so
    # `make sweep` counts skips under any launcher (submitit jobs log elsewhere). Not part of run_id.
    skip_marks: Optional[str] = None
    # Published values an experiment reproduces (conf/experiment/literature.yaml): never read by a run,
    # not part of run_id; the report shows them beside the measured ones.
    literature: Optional[Any] = None
    # Tuning and confirmation seeds, lengths and grids of a claims experiment (conf/experiment/claims.yaml):
    # read by benchmark.sweep.protocol and the report, never by a run; not part of run_id.
    protocol: Optional[Any] = None


def writable_dir_problem(path: str | Path) -> Optional[str]:
    """Why `path` cannot be a folder this process writes into, or None where it can: a file in its way, or
    the system's refusal (permissions, a read-only file system, a full inode table) to make a folder in it
    or, where it does not exist yet, in its nearest existing parent. Leaves nothing behind."""
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a directory"
    try:
        with tempfile.TemporaryDirectory(dir=probe, prefix=".write-probe-"):
            pass
    except OSError as e:
        return f"{probe}: {e.strerror or e}"
    return None


def hydra_output_root(results_dir: str) -> str:
    """`${hydra_output_root:${results_dir}}`: where Hydra keeps its own logs for this run.

    Hydra creates that folder before any job code runs. Where results_dir cannot be written (a file
    in its way, no permission), its bookkeeping goes to the temp folder instead, so `validate` can
    reject results_dir with a clear message (raising here would surface as a Hydra-internal stack trace).
    """
    if writable_dir_problem(results_dir):
        return str(Path(tempfile.gettempdir()) / "rnn-ablation-bench-rejected")
    return results_dir


def register_configs() -> None:
    """Register the schema so `defaults: [run_schema, ...]` in conf/config.yaml type-checks."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    ConfigStore.instance().store(name="run_schema", node=RunConfig)
    # conf/hydra/launcher/<name>.yaml are named like the launcher plugins' schemas on purpose:
    # Hydra 1.3 type-checks them against those schemas, and warns that this matching is deprecated.
    warnings.filterwarnings("ignore", message=r"(?s).*is validated against ConfigStore schema with the same name")
    if not OmegaConf.has_resolver("hydra_output_root"):
        OmegaConf.register_new_resolver("hydra_output_root", hydra_output_root)


def _check(cond: bool, key: str, value: Any, allowed: str, hint: str = "") -> None:
    if not cond:
        raise ConfigError(key, value, allowed, hint)


def validate(cfg: RunConfig) -> RunConfig:
    """Cross-field checks that a schema cannot express. Raises ConfigError; returns cfg."""
    _check(cfg.hidden_size > 0, "hidden_size", cfg.hidden_size, "an integer > 0")
    _check(cfg.num_layers >= 1, "num_layers", cfg.num_layers, "an integer >= 1")
    t = cfg.train
    _check(t.steps >= 1, "train.steps", t.steps, "an integer >= 1")
    _check(t.batch_size >= 1, "train.batch_size", t.batch_size, "an integer >= 1")
    _check(t.lr > 0, "train.lr", t.lr, "a number > 0")
    _check(t.max_norm is None or t.max_norm > 0, "train.max_norm", t.max_norm, "null (off) or a number > 0")
    if t.scheduler is Scheduler.decay:
        _check(0 < t.lr_decay <= 1, "train.lr_decay", t.lr_decay, "a number in (0, 1] with train.scheduler=decay")
        _check(t.lr_decay_every >= 1, "train.lr_decay_every", t.lr_decay_every, "an integer >= 1 (steps)")
        _check(t.lr_decay_after >= 0, "train.lr_decay_after", t.lr_decay_after, "an integer >= 0 (periods)")
    _check(
        cfg.init.scheme is not InitScheme.uniform or cfg.init.scale > 0,
        "init.scale",
        cfg.init.scale,
        "a number > 0 with init.scheme=uniform",
    )
    _check(t.eval_interval >= 1, "train.eval_interval", t.eval_interval, "an integer >= 1")
    _check(t.log_interval >= 1, "train.log_interval", t.log_interval, "an integer >= 1")
    _check(cfg.timing.repeats >= 1, "timing.repeats", cfg.timing.repeats, "an integer >= 1")
    _check(cfg.threads is None or cfg.threads >= 1, "threads", cfg.threads, "null or an integer >= 1")
    if cfg.accel is Accel.graph:
        import torch  # lazily: the schema itself needs no torch

        _check(
            cfg.device is not Device.cpu and torch.cuda.is_available(),
            "accel",
            "graph",
            "none or compile on this machine" if cfg.device is not Device.cpu else "none or compile with device=cpu",
            "CUDA-graph capture needs a CUDA device" + ("" if torch.cuda.is_available() else "; torch sees none") + ".",
        )
    problem = writable_dir_problem(cfg.results_dir)
    _check(problem is None, "results_dir", cfg.results_dir, "a directory this user can write (or can make)", problem)
    _check(bool(cfg.sweep) and "/" not in cfg.sweep, "sweep", cfg.sweep, "a non-empty name without '/'")
    return cfg

"""Typed configuration: the schema Hydra validates against, and the start-up checks.

Hydra composes `conf/`; the resolved tree is merged onto these dataclasses (registered
in Hydra's ConfigStore as `run_schema`), so a wrong type or unknown key fails before any
work. Cross-field rules that a schema cannot express live in `validate()`, which raises
`ConfigError` naming the key, the value and what is allowed.

Enums, not `Literal`: OmegaConf 2.3 (required by hydra-core 1.3) accepts only Enums.
`cell` and `task` stay open dicts with a `_target_`, because users add their own from
outside the package; their dataclasses validate themselves when built.
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
    """Opt-in speed-ups of the custom loop (benchmark/accel.py); off until measured on a GPU."""

    none = "none"
    compile = "compile"  # torch.compile of the per-step function only (CPU and GPU)
    graph = "graph"  # CUDA-graph capture of forward+backward per fixed shape (CUDA only)


class RegName(str, enum.Enum):
    none = "none"
    bn = "bn"
    dropout = "dropout"
    both = "both"  # the default bn placement plus the default dropout placement
    ln = "ln"  # layer normalisation per step (Ba et al. 2016): benchmark/models/layernorm.py
    zoneout = "zoneout"  # Krueger et al. 2017: benchmark/models/zoneout.py


class BNPlacement(str, enum.Enum):
    recurrent = "recurrent"  # Cooijmans et al. 2016
    input = "input"  # Laurent et al. 2016
    output = "output"  # BN over features of each layer's output sequence


class BNPopulation(str, enum.Enum):
    """How BN's population statistics (used at eval) are obtained."""

    precise = "precise"  # re-estimated over training batches, weights frozen, before every evaluation
    moving = "moving"  # torch's momentum average over the training steps' batches


class DropoutPlacement(str, enum.Enum):
    output = "output"  # Zaremba et al. 2014: non-recurrent connections, fresh mask per step
    variational = "variational"  # Gal & Ghahramani 2016: one mask per sequence, inputs + state
    recurrent = "recurrent"  # Semeniuta et al. 2016: candidate update only


class Optimizer(str, enum.Enum):
    adam = "adam"
    adamw = "adamw"
    sgd = "sgd"
    rmsprop = "rmsprop"


class Scheduler(str, enum.Enum):
    none = "none"
    cosine = "cosine"
    step = "step"


@dataclass
class BNConfig:
    placement: BNPlacement = BNPlacement.recurrent
    momentum: float = 0.1
    eps: float = 1e-5
    # None = the placement's literature default: 0.1 for recurrent (Cooijmans), 1.0 otherwise.
    gain_init: Optional[float] = None
    # Per-step (recurrent) BN keeps population statistics for this many steps; later steps reuse the
    # last. null = the task's total_len (every step has its own); a value below total_len is refused.
    max_stats_steps: Optional[int] = None
    population: BNPopulation = BNPopulation.precise
    precise_batches: int = 20  # training batches (of train.batch_size) per precise estimate


@dataclass
class DropoutConfig:
    placement: DropoutPlacement = DropoutPlacement.output
    p: float = 0.25
    # Dropout of the raw task input (often 1-2 features here): off unless asked. `p` acts on
    # hidden connections only (between layers, the head's input, the recurrent state).
    input_p: float = 0.0


@dataclass
class LNConfig:
    eps: float = 1e-5
    gain_init: float = 1.0  # Ba et al. 2016 initialise the gains to 1 and the biases to 0
    # Normalise W_ih·x too (Ba et al.'s LSTM). With one input feature LN(w·x) = sign(x)·LN(w): only the
    # sign of x reaches the cell, so tasks fed one value per step may want `false` (W_hh·h and c only).
    input: bool = True


@dataclass
class ZoneoutConfig:
    # Krueger et al. 2017 found z_c = 0.5 on LSTM cells and z_h = 0.05 on hidden states to work well
    # across their tasks; cells without a memory (rnn, gru) use p_h only.
    p_h: float = 0.05
    p_c: float = 0.5


@dataclass
class RegConfig:
    name: RegName = RegName.none
    bn: BNConfig = field(default_factory=BNConfig)
    dropout: DropoutConfig = field(default_factory=DropoutConfig)
    ln: LNConfig = field(default_factory=LNConfig)
    zoneout: ZoneoutConfig = field(default_factory=ZoneoutConfig)

    @property
    def uses_bn(self) -> bool:
        return self.name in (RegName.bn, RegName.both)

    @property
    def uses_dropout(self) -> bool:
        return self.name in (RegName.dropout, RegName.both)

    @property
    def uses_ln(self) -> bool:
        return self.name is RegName.ln

    @property
    def uses_zoneout(self) -> bool:
        return self.name is RegName.zoneout


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
class TimingConfig:
    enabled: bool = True
    warmup: int = 5
    repeats: int = 20
    batch_size: Optional[int] = None  # null = train.batch_size


@dataclass
class RunConfig:
    cell: Any = None  # {name, _target_}: conf/cell/
    task: Any = None  # {name, _target_, seq_len, ...}: conf/task/
    reg: RegConfig = field(default_factory=RegConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    timing: TimingConfig = field(default_factory=TimingConfig)
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
    # read by benchmark.analysis.protocol and the report, never by a run; not part of run_id.
    protocol: Optional[Any] = None


def hydra_output_root(results_dir: str) -> str:
    """`${hydra_output_root:${results_dir}}`: where Hydra keeps its own logs for this run.

    Hydra creates that folder before any job code runs. When results_dir names a file, its
    bookkeeping goes to the temp folder instead, so `validate` can reject results_dir with a
    clear message (raising here would surface as a Hydra-internal stack trace).
    """
    p = Path(results_dir)
    if p.exists() and not p.is_dir():
        return str(Path(tempfile.gettempdir()) / "rnn-ablation-bench-rejected")
    return results_dir


def check_stats_steps(bn: BNConfig, total_len: int) -> int:
    """Rows of per-step BN population statistics for sequences of `total_len` steps.

    null follows total_len, so every step has statistics of its own. An explicit value below
    total_len would make the last steps reuse another step's statistics (e.g. copy's delimiter
    reading a blank step's): refused, never silent.
    """
    if bn.max_stats_steps is None:
        return total_len
    _check(bn.max_stats_steps >= total_len, "reg.bn.max_stats_steps", bn.max_stats_steps,
           f"null (= the task's total_len) or an integer >= task.total_len = {total_len}",
           "Steps beyond it would reuse the last step's population statistics.")
    return bn.max_stats_steps


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
    d = cfg.reg.dropout
    _check(0.0 <= d.p < 1.0, "reg.dropout.p", d.p, "a probability in [0, 1)")
    _check(0.0 <= d.input_p < 1.0, "reg.dropout.input_p", d.input_p, "a probability in [0, 1) (0 = off)")
    bn = cfg.reg.bn
    _check(0.0 <= bn.momentum <= 1.0, "reg.bn.momentum", bn.momentum, "a number in [0, 1]")
    _check(bn.eps > 0, "reg.bn.eps", bn.eps, "a number > 0")
    _check(bn.max_stats_steps is None or bn.max_stats_steps >= 1, "reg.bn.max_stats_steps", bn.max_stats_steps,
           "null (= the task's total_len) or an integer >= 1")
    _check(bn.precise_batches >= 1, "reg.bn.precise_batches", bn.precise_batches, "an integer >= 1")
    _check(cfg.reg.ln.eps > 0, "reg.ln.eps", cfg.reg.ln.eps, "a number > 0")
    _check(cfg.reg.ln.gain_init > 0, "reg.ln.gain_init", cfg.reg.ln.gain_init, "a number > 0")
    for key in ("p_h", "p_c"):
        p = getattr(cfg.reg.zoneout, key)
        _check(0.0 <= p < 1.0, f"reg.zoneout.{key}", p, "a probability in [0, 1)")
    t = cfg.train
    _check(t.steps >= 1, "train.steps", t.steps, "an integer >= 1")
    _check(t.batch_size >= 1, "train.batch_size", t.batch_size, "an integer >= 1")
    if cfg.reg.uses_bn:
        _check(t.batch_size >= 2, "train.batch_size", t.batch_size, "an integer >= 2 when reg uses BN",
               "Batch statistics of a single example are undefined (reg=" + cfg.reg.name.value + ").")
    _check(t.lr > 0, "train.lr", t.lr, "a number > 0")
    _check(t.max_norm is None or t.max_norm > 0, "train.max_norm", t.max_norm, "null (off) or a number > 0")
    _check(t.eval_interval >= 1, "train.eval_interval", t.eval_interval, "an integer >= 1")
    _check(t.log_interval >= 1, "train.log_interval", t.log_interval, "an integer >= 1")
    _check(cfg.timing.repeats >= 1, "timing.repeats", cfg.timing.repeats, "an integer >= 1")
    _check(cfg.threads is None or cfg.threads >= 1, "threads", cfg.threads, "null or an integer >= 1")
    if cfg.accel is Accel.graph:
        import torch  # lazily: the schema itself needs no torch

        _check(cfg.device is not Device.cpu and torch.cuda.is_available(), "accel", "graph",
               "none or compile on this machine" if cfg.device is not Device.cpu else "none or compile with device=cpu",
               "CUDA-graph capture needs a CUDA device" + ("" if torch.cuda.is_available()
                                                          else "; torch sees none") + ".")
    res = Path(cfg.results_dir)
    _check(not res.exists() or res.is_dir(), "results_dir", cfg.results_dir,
           "a directory (or a path that does not exist yet)", "It names an existing file.")
    _check(bool(cfg.sweep) and "/" not in cfg.sweep, "sweep", cfg.sweep, "a non-empty name without '/'")
    return cfg

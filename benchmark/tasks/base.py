"""What every task shares: sizes, deterministic data, the split cache, validation.

A task is a small dataclass built from `conf/task/<name>.yaml` (by `hydra.utils.instantiate`
at the entry point only). It owns its data, its loss and its metrics, so the trainer never
branches on which task it holds. Data is a pure function of `(name, seq_len, data_seed,
split)`: each split draws from its own `torch.Generator`, seeded by a stable hash, so
changing `n_train` never changes the test set.

To add a task: subclass `Task`, set the class attributes, implement `_make_split`, `loss`
and `evaluate`, and point a `conf/task/<name>.yaml` `_target_` at the class. A task that
reads its training data in order or carries a hidden state across batches overrides
`train_batches` and `train_step`; the training loop stays as it is.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.core import record
from benchmark.core.config import ConfigError
from benchmark.training.step import BatchSource, EagerStep, RandomBatches, StepFn

SPLITS = ("train", "val", "test")
CONF_TASK = Path(__file__).resolve().parents[2] / "conf" / "task"  # the built-in tasks' configs
T = TypeVar("T", bound=type)


def split_seed(*parts: object) -> int:
    """A stable 63-bit seed from any labels (Python's hash() is salted per process)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def defaults_from(config: str) -> Callable[[T], T]:
    """Class decorator (placed under `@dataclass`): a built-in task's field defaults are the values
    of `conf/task/<config>.yaml`.

    They are written once, in the YAML that sweeps compose and run ids hash; the class declares
    only the fields' types. So `AddingTask()` and `task=adding` are the same task, and changing a
    default is one edit. A YAML key that is no field of the class is an error here, at import.
    """

    def apply(cls: T) -> T:
        from omegaconf import OmegaConf  # a config library, not Hydra

        values = OmegaConf.to_container(OmegaConf.load(CONF_TASK / f"{config}.yaml"), resolve=True)
        types: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            types.update(klass.__dict__.get("__annotations__", {}))
        own = dict(cls.__dict__.get("__annotations__", {}))
        for key, value in values.items():
            if key == "_target_":
                continue
            if key not in types:
                raise TypeError(f"conf/task/{config}.yaml sets {key!r}, which is not a field of {cls.__name__}")
            own.setdefault(key, types[key])  # re-declared here, so the dataclass takes the new default
            mutable = isinstance(value, (list, dict))
            setattr(cls, key, field(default_factory=lambda v=value: copy.deepcopy(v)) if mutable else value)
        cls.__annotations__ = own
        return cls

    return apply


@dataclass
class Task:
    """Base class. Subclasses set the ClassVars and implement `_make_split`, `loss`, `evaluate`.

    Attributes (config): name, seq_len (the length knob), data_seed, n_train / n_val / n_test
    (examples per split), target_score (the validation score that counts as solved: `steps_to_target`,
    and where training stops with `train.stop_at_target`). The defaults below serve user tasks; a
    built-in task takes its own from its YAML (`defaults_from`).
    """

    name: str = "task"
    seq_len: int = 50
    data_seed: int = 0
    n_train: Optional[int] = 10000
    n_val: int = 1000
    n_test: int = 1000
    target_score: float = 0.9

    input_size: ClassVar[int] = 1
    output_size: ClassVar[int] = 1
    per_step: ClassVar[bool] = False  # head on every step (B, T, O) or on the last one (B, O)
    metric_name: ClassVar[str] = "loss"
    higher_is_better: ClassVar[bool] = False  # for `metric`; accuracy is always higher-is-better
    min_seq_len: ClassVar[int] = 1
    # A stream task (language modelling, tasks/ptb.py): the trainer takes its windows in stream order
    # with the hidden state carried (its `train_batches` and `train_step`), and evaluates with `evaluate_stream`.
    carries_state: ClassVar[bool] = False

    _cache: Optional[dict[str, tuple[Tensor, Tensor]]] = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.seq_len, int) or self.seq_len < self.min_seq_len:
            raise ConfigError("task.seq_len", self.seq_len, f"an integer >= {self.min_seq_len} for task {self.name}")
        for key in ("n_val", "n_test"):
            v = getattr(self, key)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"task.{key}", v, "an integer >= 1")
        if self.n_train is not None and (not isinstance(self.n_train, int) or self.n_train < 1):
            raise ConfigError("task.n_train", self.n_train, "an integer >= 1 (or null where the task allows it)")
        if not 0.0 < self.target_score <= 1.0:
            raise ConfigError("task.target_score", self.target_score, "a number in (0, 1] (a normalised score)")

    # -- what subclasses provide -------------------------------------------------------------
    @property
    def total_len(self) -> int:
        """Time steps the model sees (copy adds its 20 symbol/recall steps to `seq_len`)."""
        return self.seq_len

    @property
    def vocab_size(self) -> Optional[int]:
        """Token ids in (B, T) through an embedding of this many rows; None: float features (B, T, input_size)."""
        return None

    @property
    def metric_baseline(self) -> Optional[float]:
        """The task metric of a trivial, memoryless predictor (None if not defined): score 0."""
        return None

    @property
    def metric_perfect(self) -> Optional[float]:
        """The task metric of a perfect predictor: score 1. Default 0 for a lower-is-better metric
        (a loss or an error); a higher-is-better metric must declare its own (None: no score)."""
        return None if self.higher_is_better else 0.0

    def score(self, metric: Optional[float]) -> Optional[float]:
        """The metric normalised to 0 = trivial predictor, 1 = perfect (higher is better); None if undefined."""
        return record.score(metric, self.metric_baseline, self.metric_perfect)

    def _make_split(self, split: str, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def loss(self, y_hat: Tensor, y: Tensor) -> Tensor:
        """Scalar training loss, mean over the batch."""
        raise NotImplementedError

    def evaluate(self, y_hat: Tensor, y: Tensor) -> dict[str, float]:
        """{'accuracy': ..., 'metric': ...} over one batch or a whole split."""
        raise NotImplementedError

    # -- stream tasks only (carries_state; tasks/ptb.py) -------------------------------------
    def evaluate_stream(
        self,
        model: Any,
        x: Tensor,
        y: Tensor,
        device: torch.device,
        dtype: Optional[torch.dtype] = None,
        max_windows: int = 0,
    ) -> dict[str, float]:
        """{'loss', 'accuracy', 'metric'} over a split's windows in order, the state carried from zeros."""
        raise NotImplementedError(f"task {self.name} is not a stream task (carries_state is False)")

    @property
    def label(self) -> str:
        """The task as results name it (metrics.json `task`): the name, plus any knob that picks other data."""
        return self.name

    @classmethod
    def allowed_seq_len(cls, want: int) -> int:
        """The admissible `seq_len` nearest to `want` (tests and sweeps that pick lengths generically)."""
        return max(int(want), cls.min_seq_len)

    # -- the hidden-gradient probe (benchmark.training.gradients); defaults suit a loss at the last step --
    def probe_loss(self, y_hat: Tensor, y: Tensor) -> Tensor:
        """The loss whose ∂/∂h_t the hidden-gradient profile shows: the part that needs memory.

        Default: the training loss. A task with a loss at every step overrides it with the steps
        that depend on the distant past, else each step's local term hides any decay.
        """
        return self.loss(y_hat, y)

    @property
    def probe_steps(self) -> tuple[int, int]:
        """(first, last) 0-based steps the profile ratio ‖∂L/∂h_first‖ / ‖∂L/∂h_last‖ compares:
        the first step that carries what the loss needs, and the last step the loss reads."""
        return 0, self.total_len - 1

    # -- how training reads the task (benchmark.training.train); override to read data in order or carry state --
    def train_batches(self, batch_size: int, seed: int, device: torch.device) -> BatchSource:
        """The training batches: by default random permutations of the train split, epoch by epoch."""
        x, y = self.splits()["train"]
        return RandomBatches(x, y, batch_size, seed, device)

    def train_step(self, model: nn.Module, autocast_dtype: Optional[torch.dtype] = None) -> StepFn:
        """Forward, loss, backward on one batch: by default the eager step on `self.loss`."""
        return EagerStep(model, self.loss, autocast_dtype)

    # -- shared ------------------------------------------------------------------------------
    def sizes(self) -> dict[str, int]:
        return {"train": int(self.n_train or 0), "val": self.n_val, "test": self.n_test}

    def splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        """{train, val, test} -> (x (N, T, I) float32, y); built once, deterministic."""
        if self._cache is None:
            out = {}
            for split, n in self.sizes().items():
                gen = torch.Generator().manual_seed(split_seed(self.name, self.seq_len, self.data_seed, split))
                out[split] = self._make_split(split, n, gen)
            self._cache = out
        return self._cache


@dataclass
class ClassificationTask(Task):
    """A class per sequence, read on the last step: cross-entropy loss, accuracy, and
    `metric` = error = 1 - accuracy, whose trivial predictor (guessing) errs 1 - 1/K."""

    per_step = False
    metric_name = "error"
    higher_is_better = False

    @property
    def metric_baseline(self) -> float:
        return 1.0 - 1.0 / self.output_size  # error of guessing among output_size classes

    def loss(self, y_hat: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(y_hat.float(), y)  # y_hat (B, K)

    def evaluate(self, y_hat: Tensor, y: Tensor) -> dict[str, float]:
        acc = (y_hat.argmax(-1) == y).float().mean().item()
        return {"accuracy": acc, "metric": 1.0 - acc}

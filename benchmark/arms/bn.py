"""`reg=bn`: batch normalisation in three placements (benchmark/models/norm.py holds the modules).

- `recurrent` (Cooijmans et al. 2016, Recurrent Batch Normalization): per-step BN of W_ih·x and
  W_hh·h (no beta: the cell's bias is shared) and of the LSTM cell state (with beta), population
  statistics per step, gains initialised to 0.1;
- `input` (Laurent et al. 2016, Batch Normalized Recurrent Neural Networks): BN of W_ih·x only,
  statistics over batch and time;
- `output`: BN over the features of each layer's output sequence, between layers and before the head
  (torch's fused modules can run it).
"""

from __future__ import annotations

from typing import Any, Optional

from benchmark.arms.base import ArmVariant, Site
from benchmark.arms.blocks import BNConfig, BNPlacement, BNPopulation
from benchmark.arms.legacy import BuiltinArm
from benchmark.core.config import ConfigError

DEFAULT_STATS_STEPS = 1000  # per-step BN rows of a model built without a sequence length


def _check(cond: bool, key: str, value: Any, allowed: str, hint: str = "") -> None:
    if not cond:
        raise ConfigError(key, value, allowed, hint)


def check_bn(bn: BNConfig) -> BNConfig:
    _check(0.0 <= bn.momentum <= 1.0, "reg.bn.momentum", bn.momentum, "a number in [0, 1]")
    _check(bn.eps > 0, "reg.bn.eps", bn.eps, "a number > 0")
    _check(bn.gain_init is None or bn.gain_init > 0, "reg.bn.gain_init", bn.gain_init, "null or a number > 0")
    _check(
        bn.max_stats_steps is None or bn.max_stats_steps >= 1,
        "reg.bn.max_stats_steps",
        bn.max_stats_steps,
        "null (= the task's total_len) or an integer >= 1",
    )
    _check(bn.precise_batches >= 1, "reg.bn.precise_batches", bn.precise_batches, "an integer >= 1")
    return bn


def check_stats_steps(bn: BNConfig, total_len: int) -> int:
    """Rows of per-step BN population statistics for sequences of `total_len` steps.

    null follows total_len, so every step has statistics of its own. An explicit value below
    total_len would make the last steps reuse another step's statistics (e.g. copy's delimiter
    reading a blank step's): refused, never silent.
    """
    if bn.max_stats_steps is None:
        return total_len
    _check(
        bn.max_stats_steps >= total_len,
        "reg.bn.max_stats_steps",
        bn.max_stats_steps,
        f"null (= the task's total_len) or an integer >= task.total_len = {total_len}",
        "Steps beyond it would reuse the last step's population statistics.",
    )
    return bn.max_stats_steps


class BatchNormArm(BuiltinArm):
    """BN at `reg.bn.placement` (module docstring)."""

    blocks = {"bn": BNConfig}
    order = 10

    def __init__(self, name: str = "bn", **blocks: Any) -> None:
        super().__init__(name, **blocks)
        self.bn: BNConfig = check_bn(self.config["bn"])

    @property
    def gain(self) -> float:
        """Cooijmans et al. initialise BN gains to 0.1; the other placements use 1.0."""
        if self.bn.gain_init is not None:
            return self.bn.gain_init
        return 0.1 if self.bn.placement is BNPlacement.recurrent else 1.0

    def needs_custom(self) -> list[str]:
        p = self.bn.placement
        return [] if p is BNPlacement.output else [f"reg.bn.placement={p.value}"]

    def _step_bn(self, site: Site, features: int, bias: bool = False) -> Any:
        from benchmark.models.norm import StepBatchNorm

        steps, bn = site.steps or DEFAULT_STATS_STEPS, self.bn
        return StepBatchNorm(features, steps, self.gain, bn.momentum, bn.eps, bias=bias, members=site.members)

    def norm_x(self, site: Site, features: int) -> Any:
        from benchmark.models.norm import SequenceBatchNorm

        bn = self.bn
        if bn.placement is BNPlacement.recurrent:
            return self._step_bn(site, features)
        if bn.placement is BNPlacement.input:
            return SequenceBatchNorm(features, self.gain, bn.momentum, bn.eps, members=site.members)
        return None

    def norm_h(self, site: Site, features: int) -> Any:
        return self._step_bn(site, features) if self.bn.placement is BNPlacement.recurrent else None

    def norm_c(self, site: Site, features: int) -> Any:
        """Cooijmans also normalise the LSTM cell state before its output tanh (with a beta)."""
        return self._step_bn(site, features, bias=True) if self.bn.placement is BNPlacement.recurrent else None

    def output_norm(self, site: Site, features: int) -> Any:
        """BN over the layer output's features, statistics over batch and time, with a beta (torch's BatchNorm1d)."""
        if self.bn.placement is not BNPlacement.output:
            return None
        from benchmark.models.norm import SequenceBatchNorm

        bn = self.bn
        return SequenceBatchNorm(features, self.gain, bn.momentum, bn.eps, bias=True, members=site.members)

    def stats_steps(self, total_len: Optional[int]) -> Optional[int]:
        if self.bn.placement is not BNPlacement.recurrent:
            return None
        if total_len is None:
            return self.bn.max_stats_steps or DEFAULT_STATS_STEPS
        return check_stats_steps(self.bn, total_len)

    def min_batch_size(self) -> int:
        return 2  # batch statistics of a single example are undefined

    def precise_batches(self) -> int:
        return self.bn.precise_batches if self.bn.population is BNPopulation.precise else 0

    def identity(self, total_len: Optional[int]) -> dict[str, Any]:
        return {
            "bn_placement": self.bn.placement.value,
            "bn_population": self.bn.population.value,
            "bn_precise_batches": self.precise_batches() or None,
            "bn_stats_steps": self.stats_steps(total_len),
            "bn_gain_init": self.gain,
        }

    @classmethod
    def variants(cls, option: str) -> list[ArmVariant]:
        def at(p: str, *rest: Any) -> ArmVariant:
            return ArmVariant(p, (f"reg.bn.placement={p}",), *rest)

        return [
            at(
                "recurrent",
                ("custom",),
                "Cooijmans et al. 2016, Recurrent Batch Normalization",
                "per-step BN of W_x·x and W_h·h (+ the LSTM cell state), population statistics per step",
                {("cpu", "custom"): 3.0, ("gpu", "custom"): 3.0},
            ),
            at(
                "input",
                ("custom",),
                "Laurent et al. 2016, Batch Normalized Recurrent Neural Networks",
                "BN of W_x·x only, sequence-wise statistics (over batch and time)",
            ),
            at(
                "output",
                ("native",),
                "",
                "BN over the features of each layer's output sequence, between layers and before the head",
            ),
        ]

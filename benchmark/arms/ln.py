"""`reg=ln`: layer normalisation per time step (Ba, Kiros & Hinton 2016), benchmark/models/layernorm.py.

As in the LayerNorm-LSTM: LN of W_ih·x and of W_hh·h (no beta: the cell's bias is shared) and,
in the LSTM, of the cell state before its output tanh (with beta). Statistics over the features
of each example and step: the same in training and evaluation.
"""

from __future__ import annotations

from typing import Any

from benchmark.arms.base import ArmVariant, Site
from benchmark.arms.blocks import LNConfig
from benchmark.arms.legacy import BuiltinArm
from benchmark.core.config import ConfigError


class LayerNormArm(BuiltinArm):
    """Per-step LN in the three norm slots of the layer."""

    blocks = {"ln": LNConfig}
    order = 40

    def __init__(self, name: str = "ln", **blocks: Any) -> None:
        super().__init__(name, **blocks)
        self.ln: LNConfig = self.config["ln"]
        if not self.ln.eps > 0:
            raise ConfigError("reg.ln.eps", self.ln.eps, "a number > 0")
        if not self.ln.gain_init > 0:
            raise ConfigError("reg.ln.gain_init", self.ln.gain_init, "a number > 0")

    def needs_custom(self) -> list[str]:
        return [f"reg={self.name}"]

    def _ln(self, site: Site, features: int, bias: bool = False) -> Any:
        from benchmark.models.layernorm import StepLayerNorm

        return StepLayerNorm(features, self.ln.gain_init, self.ln.eps, bias=bias, members=site.members)

    def norm_x(self, site: Site, features: int) -> Any:
        return self._ln(site, features) if self.ln.input else None

    def norm_h(self, site: Site, features: int) -> Any:
        return self._ln(site, features)

    def norm_c(self, site: Site, features: int) -> Any:
        return self._ln(site, features, bias=True)

    @classmethod
    def variants(cls, option: str) -> list[ArmVariant]:
        return [
            ArmVariant(
                None,
                (),
                ("custom",),
                "Ba, Kiros & Hinton 2016, Layer Normalization",
                "per-step layer norm of W_x·x and W_h·h (+ the LSTM cell state), the same in training and eval",
                {("cpu", "custom"): 3.0},
            )
        ]

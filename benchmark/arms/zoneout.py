"""`reg=zoneout` (Krueger et al. 2017), benchmark/models/zoneout.py.

In training each unit keeps its previous value with probability p (a fresh mask per step and
unit), at eval the expectation p·old + (1-p)·new. `p_h` on the hidden state, `p_c` on the LSTM
cell state; cells without a memory (rnn, gru) use p_h only.
"""

from __future__ import annotations

from typing import Any, Optional

from benchmark.arms.base import ArmVariant
from benchmark.arms.blocks import ZoneoutConfig
from benchmark.arms.legacy import BuiltinArm
from benchmark.core.config import ConfigError


class ZoneoutArm(BuiltinArm):
    """State mixing after each step: the layer's `zoneout` piece."""

    blocks = {"zoneout": ZoneoutConfig}
    order = 50

    def __init__(self, name: str = "zoneout", **blocks: Any) -> None:
        super().__init__(name, **blocks)
        self.zone: ZoneoutConfig = self.config["zoneout"]
        for key in ("p_h", "p_c"):
            p = getattr(self.zone, key)
            if not 0.0 <= p < 1.0:
                raise ConfigError(f"reg.zoneout.{key}", p, "a probability in [0, 1)")

    def needs_custom(self) -> list[str]:
        return [f"reg={self.name}"]

    def zoneout(self, has_cell_state: bool) -> Optional[tuple[float, ...]]:
        z = self.zone
        if not (z.p_h > 0 or (has_cell_state and z.p_c > 0)):
            return None
        return (z.p_h, z.p_c) if has_cell_state else (z.p_h,)

    def identity(self, total_len: Any) -> dict[str, Any]:
        return {"zoneout_p_h": self.zone.p_h, "zoneout_p_c": self.zone.p_c}

    @classmethod
    def variants(cls, option: str) -> list[ArmVariant]:
        return [
            ArmVariant(
                None,
                (),
                ("custom",),
                "Krueger et al. 2017, Zoneout: Regularizing RNNs by Randomly Preserving Hidden Activations",
                "each unit of h (p_h) and of the LSTM cell c (p_c) keeps its previous value with "
                "probability p; the expectation at eval",
                {("cpu", "custom"): 2.5},
            )
        ]

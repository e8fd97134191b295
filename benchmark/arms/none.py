"""`reg=none`: no regularisation, the baseline every effect is measured against."""

from __future__ import annotations

from benchmark.arms.base import ArmVariant
from benchmark.arms.legacy import BuiltinArm


class NoArm(BuiltinArm):
    """Every piece is the default (nothing); torch's fused modules can run it."""

    order = 0

    @classmethod
    def variants(cls, option: str) -> list[ArmVariant]:
        return [
            ArmVariant(
                None,
                (),
                ("native", "custom"),
                "",
                "no regularisation: the baseline every effect is measured against",
                targets={("cpu", "custom"): 2.0, ("gpu", "custom"): 2.0},
            )
        ]

"""`reg=both`: batch normalisation and dropout together, each at its own placement.

A composition of `bn` and `dropout` (benchmark/arms/bn.py, dropout.py): no logic of its own.
Registered as one variant at the default placements, Cooijmans' recurrent BN plus Zaremba's dropout.
"""

from __future__ import annotations

from typing import Any

from benchmark.arms.base import ArmVariant
from benchmark.arms.bn import BatchNormArm
from benchmark.arms.compose import Composite
from benchmark.arms.dropout import DropoutArm, stack_key_without_output_p
from benchmark.arms.legacy import BuiltinArm


class BothArm(Composite, BuiltinArm):
    """`reg.bn.*` and `reg.dropout.*` configure the two parts."""

    blocks = {**BatchNormArm.blocks, **DropoutArm.blocks}
    order = 30

    def __init__(self, name: str = "both", **blocks: Any) -> None:
        super().__init__(name, **blocks)
        self.parts = (BatchNormArm(name, bn=self.config["bn"]), DropoutArm(name, dropout=self.config["dropout"]))

    def stack_key(self) -> Any:
        return stack_key_without_output_p(self)

    @classmethod
    def variants(cls, option: str) -> list[ArmVariant]:
        return [
            ArmVariant(
                None,
                (),
                ("custom",),
                "Cooijmans et al. 2016 + Zaremba et al. 2014",
                "the default BN placement (recurrent) plus the default dropout placement (output)",
            )
        ]

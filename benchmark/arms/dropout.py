"""`reg=dropout`: dropout on hidden connections in three placements (benchmark/models/dropout.py).

- `output` (Zaremba et al. 2014): the non-recurrent connections (between layers, the head's input),
  a fresh mask per step; torch's fused modules can run it;
- `variational` (Gal & Ghahramani 2016): the same places with one mask per sequence, plus the
  recurrent state h_{t-1} inside the layer;
- `recurrent` (Semeniuta et al. 2016): the candidate update only (LSTM g, GRU n), fresh per step.

The raw task input (often 1-2 features here) is dropped only with `input_p > 0`, with the
placement's mask (per sequence for `variational`, per step otherwise): Zaremba and Gal drop word
embeddings of hundreds of units; on a 2-feature input the same p erases the task's signal.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from benchmark.arms.base import ArmVariant, Site
from benchmark.arms.blocks import DropoutConfig, DropoutPlacement
from benchmark.arms.legacy import BuiltinArm
from benchmark.core.config import ConfigError


def check_dropout(d: DropoutConfig) -> DropoutConfig:
    if not 0.0 <= d.p < 1.0:
        raise ConfigError("reg.dropout.p", d.p, "a probability in [0, 1)")
    if not 0.0 <= d.input_p < 1.0:
        raise ConfigError("reg.dropout.input_p", d.input_p, "a probability in [0, 1) (0 = off)")
    return d


def stack_key_without_output_p(arm: Any) -> Any:
    """`Arm.stack_key` of an arm with a `dropout` block: at the output placement p is read only by the
    dropout modules between layers and before the head, which a cohort keeps per member
    (benchmark/models/dropout.py's SequenceDropout, one p per member), so members may differ in it; elsewhere p
    acts inside the recurrence and must be shared."""
    d = arm.config["dropout"]
    if d.placement is not DropoutPlacement.output:
        return (type(arm), arm.name, arm.config)
    return (type(arm), arm.name, {**arm.config, "dropout": dataclasses.replace(d, p=None)})


class DropoutArm(BuiltinArm):
    """Dropout at `reg.dropout.placement` (module docstring)."""

    blocks = {"dropout": DropoutConfig}
    order = 20

    def __init__(self, name: str = "dropout", **blocks: Any) -> None:
        super().__init__(name, **blocks)
        self.dropout: DropoutConfig = check_dropout(self.config["dropout"])

    def _at(self, placement: DropoutPlacement) -> float:
        return self.dropout.p if self.dropout.placement is placement else 0.0

    def stack_key(self) -> Any:
        return stack_key_without_output_p(self)

    def needs_custom(self) -> list[str]:
        p = self.dropout.placement
        return [] if p is DropoutPlacement.output else [f"reg.dropout.placement={p.value}"]

    def state_dropout(self) -> float:
        return self._at(DropoutPlacement.variational)

    def candidate_dropout(self) -> float:
        return self._at(DropoutPlacement.recurrent)

    def _drop(self, ps: tuple[float, ...]) -> Any:
        """One module for the stack, each member with its own p (one mask per sequence where variational)."""
        from benchmark.models.dropout import SequenceDropout

        if all(p == 0.0 for p in ps):
            return None
        return SequenceDropout(ps, locked=self.dropout.placement is DropoutPlacement.variational)

    def input_dropout(self, site: Site, features: int) -> Any:
        return self._drop(site.each(lambda a: a.config["dropout"].input_p))

    def hidden_dropout(self, site: Site, features: int) -> Any:
        """Between layers and on the head's input: output and variational; recurrent acts inside only."""
        if self.dropout.placement is DropoutPlacement.recurrent:
            return None
        return self._drop(site.each(lambda a: a.config["dropout"].p))

    def embedding_dropout(self, site: Site, features: int) -> Any:
        """A word/character embedding's output (Zaremba, Gal): `input_p` if > 0, else the placement's `p`
        (recurrent, Semeniuta, leaves it undropped)."""
        if self.dropout.input_p > 0:
            return self.input_dropout(site, features)
        return self.hidden_dropout(site, features)

    def identity(self, total_len: Any) -> dict[str, Any]:
        d = self.dropout
        return {"dropout_placement": d.placement.value, "dropout_p": d.p, "dropout_input_p": d.input_p}

    @classmethod
    def variants(cls, option: str) -> list[ArmVariant]:
        def at(p: str, *rest: Any) -> ArmVariant:
            return ArmVariant(p, (f"reg.dropout.placement={p}",), *rest)

        return [
            at(
                "output",
                ("native", "custom"),
                "Zaremba et al. 2014, Recurrent Neural Network Regularization",
                "dropout on hidden non-recurrent connections (between layers, the head's input; with tokens in, "
                "the embedding's output), a fresh mask per step",
                {("cpu", "native"): 1.3},
            ),
            at(
                "variational",
                ("custom",),
                "Gal & Ghahramani 2016, A Theoretically Grounded Application of Dropout in RNNs",
                "one mask per sequence between layers, on the head's input (with tokens in, the embedding's output) "
                "and the recurrent state",
                {("gpu", "custom"): 2.5},
            ),
            at(
                "recurrent",
                ("custom",),
                "Semeniuta et al. 2016, Recurrent Dropout without Memory Loss",
                "dropout on the candidate update only (LSTM g, GRU n), a fresh mask per step; an embedding's "
                "output is not dropped",
            ),
        ]

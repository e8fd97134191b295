"""The sequence model every variant shares: [input dropout] → layer → [BN, dropout] → … → head.

Where each regulariser sits (docs/models.md, docs/design.md):
- bn `recurrent` / `input` and dropout `variational` (state mask) / `recurrent` act inside
  each `RecurrentLayer`;
- bn `output` normalises each layer's output features, between layers and before the head;
- dropout `output` (Zaremba) drops the hidden non-recurrent connections — between layers and
  the head's input — with a fresh mask per step; `variational` (Gal) drops the same places
  with one mask per sequence, plus the recurrent state inside the layer.
- the raw task input (1-2 features for adding/digits) is dropped only with an explicit
  `reg.dropout.input_p > 0`, with the placement's mask (per sequence for `variational`, per
  step otherwise). Zaremba and Gal drop word embeddings of hundreds of units; on a 2-feature
  input the same p erases the signal the task is about.
- with a token input (`ModelSpec.vocab_size`, language modelling: tasks/ptb.py) an embedding of
  `input_size` features comes first, and its output is the literature's input dropout: dropped
  with `input_p` if > 0, else with the placement's `p` (Zaremba: output; Gal: variational, one
  mask per sequence; recurrent (Semeniuta) leaves it undropped).

Every variant returns the same thing (one output contract), so the trainer and the
timer never branch on which variant they hold.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from torch import Tensor, nn

from benchmark.config import BNPlacement, ConfigError, DropoutPlacement, Impl, RegConfig, check_stats_steps
from benchmark.models.cells import CellMath
from benchmark.models.dropout import LockedDropout
from benchmark.models.layer import DEFAULT_STATS_STEPS, RecurrentLayer, default_gain
from benchmark.models.norm import output_batch_norm


@dataclass(frozen=True)
class ModelSpec:
    """Everything that defines a model; built from config at the entry point."""

    cell: type[CellMath]
    input_size: int
    hidden_size: int
    num_layers: int
    output_size: int
    per_step: bool = False  # head on every step (B, T, O) or on the last (B, O)
    reg: RegConfig = field(default_factory=RegConfig)
    impl: Impl = Impl.auto
    # Steps of the task's sequences (task.total_len): sizes per-step BN statistics when
    # reg.bn.max_stats_steps is null. None (a model built by hand): DEFAULT_STATS_STEPS rows.
    total_len: Optional[int] = None
    # Tokens in (language modelling, tasks/ptb.py): an nn.Embedding(vocab_size, input_size) before the
    # first layer; the input is then (B, T) token ids. None: float features (B, T, input_size).
    vocab_size: Optional[int] = None

    @property
    def stats_steps(self) -> int:
        """Rows of per-step BN population statistics (ConfigError when fewer than total_len)."""
        if self.total_len is None:
            return self.reg.bn.max_stats_steps or DEFAULT_STATS_STEPS
        return check_stats_steps(self.reg.bn, self.total_len)


def needs_custom(cell: type[CellMath], reg: RegConfig) -> list[str]:
    """Config keys of the variant that the fused kernel cannot run (empty: native is possible)."""
    why = []
    if cell.native is None:
        why.append(f"cell={cell.name} (no fused torch module)")
    if reg.uses_bn and reg.bn.placement is not BNPlacement.output:
        why.append(f"reg.bn.placement={reg.bn.placement.value}")
    if reg.uses_dropout and reg.dropout.placement is not DropoutPlacement.output:
        why.append(f"reg.dropout.placement={reg.dropout.placement.value}")
    if reg.uses_ln or reg.uses_zoneout:
        why.append(f"reg={reg.name.value}")
    return why


def resolve_impl(cell: type[CellMath], reg: RegConfig, impl: Impl) -> Impl:
    """auto → native where the variant allows it; native with a variant that needs the loop → error."""
    why = needs_custom(cell, reg)
    if impl is Impl.auto:
        return Impl.custom if why else Impl.native
    if impl is Impl.native and why:
        raise ConfigError("impl", "native", "custom or auto for this variant",
                          f"reg={reg.name.value} with {', '.join(why)} acts inside the recurrence, "
                          "which the fused kernel cannot do.")
    return impl


def _dropout(reg: RegConfig) -> nn.Module:
    """Dropout on hidden non-recurrent connections (between layers, the head's input), or Identity."""
    d = reg.dropout
    if not reg.uses_dropout or d.p == 0.0:
        return nn.Identity()
    if d.placement is DropoutPlacement.output:
        return nn.Dropout(d.p)
    if d.placement is DropoutPlacement.variational:
        return LockedDropout(d.p)
    return nn.Identity()  # recurrent (Semeniuta): only the candidate, inside the layer


def _input_dropout(reg: RegConfig) -> nn.Module:
    """Dropout of the raw task input: Identity unless reg.dropout.input_p > 0 (a per-sequence
    mask for the variational placement, a fresh mask per step otherwise)."""
    d = reg.dropout
    if not reg.uses_dropout or d.input_p == 0.0:
        return nn.Identity()
    return LockedDropout(d.input_p) if d.placement is DropoutPlacement.variational else nn.Dropout(d.input_p)


def _embedding_dropout(reg: RegConfig) -> nn.Module:
    """Dropout of a word/character embedding's output (Zaremba, Gal): `input_p` if > 0, else the placement's `p`."""
    if reg.uses_dropout and reg.dropout.input_p > 0.0:
        return _input_dropout(reg)
    return _dropout(reg)


class OutputBatchNorm(nn.BatchNorm1d):
    """BN over the features of a (T, B, H) layer output (statistics over batch and time)."""

    def forward(self, x: Tensor) -> Tensor:
        T, B, H = x.shape
        return output_batch_norm(self, x.reshape(T * B, H)).view(T, B, H)


class SequenceModel(nn.Module):
    """A stack of recurrent layers and a linear head. Input (B, T, I), batch first."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.impl_used = resolve_impl(spec.cell, spec.reg, spec.impl)
        reg, H = spec.reg, spec.hidden_size
        sizes = [spec.input_size] + [H] * spec.num_layers
        per_step_bn = reg.uses_bn and reg.bn.placement is BNPlacement.recurrent
        steps = spec.stats_steps if per_step_bn else None
        self.layers = nn.ModuleList(RecurrentLayer(spec.cell, sizes[k], H, reg, steps) for k in range(spec.num_layers))
        # drops[k] acts on layer k's input, drops[L] on the head's input; drops[0] is the raw task
        # input, dropped only with reg.dropout.input_p > 0.
        # With tokens in, drops[0] acts on the embedding's output (_embedding_dropout).
        self.embed = nn.Embedding(spec.vocab_size, spec.input_size) if spec.vocab_size else None
        first_drop = _embedding_dropout(reg) if self.embed is not None else _input_dropout(reg)
        self.drops = nn.ModuleList([first_drop] + [_dropout(reg) for _ in range(spec.num_layers)])
        out_bn = reg.uses_bn and reg.bn.placement is BNPlacement.output
        self.norms = nn.ModuleList(self._output_bn(reg, H) if out_bn else nn.Identity() for _ in range(spec.num_layers))
        self.head = nn.Linear(H, spec.output_size)

    @staticmethod
    def _output_bn(reg: RegConfig, H: int) -> nn.Module:
        bn = OutputBatchNorm(H, eps=reg.bn.eps, momentum=reg.bn.momentum)
        nn.init.constant_(bn.weight, default_gain(reg))
        return bn

    def forward(self, x: Tensor, return_hidden: bool = False):
        """x: (B, T, I) → (B, O) or (B, T, O); with return_hidden also the top layer's h_t list.

        With return_hidden the custom loop runs (same parameters, same function) and each
        h_t (B, H) has retain_grad(), so after backward `h_t.grad` is the total ∂L/∂h_t.
        """
        custom = self.impl_used is Impl.custom
        hiddens: Optional[list[Tensor]] = [] if return_hidden else None
        z = (self.embed(x) if self.embed is not None else x).transpose(0, 1)  # (T, B, I)
        last = len(self.layers) - 1
        for k, (layer, drop, norm) in enumerate(zip(self.layers, self.drops, self.norms)):
            z = norm(layer(drop(z), custom, hiddens if k == last else None))  # (T, B, H)
        if self.spec.per_step:
            return_y = self.head(self.drops[-1](z)).transpose(0, 1)  # (B, T, O)
        else:  # only the last step reaches the head: drop just that (same law, T× less work)
            return_y = self.head(self.drops[-1](z[-1:])[0])  # (B, O)
        y = return_y
        return (y, hiddens) if return_hidden else y

    def forward_carry(self, x: Tensor, state: Optional[list[tuple[Tensor, ...]]] = None
                      ) -> tuple[Tensor, list[tuple[Tensor, ...]]]:
        """Truncated BPTT over a stream (tasks/ptb.py): x (B, T[, I]) with the previous window's final
        states (one (h[, c]) per layer; None = zeros) -> (y (B, T, O), this window's final states).
        A per-step head only: a stream is scored at every step."""
        custom = self.impl_used is Impl.custom
        z = (self.embed(x) if self.embed is not None else x).transpose(0, 1)  # (T, B, I)
        finals: list[tuple[Tensor, ...]] = []
        for k, (layer, drop, norm) in enumerate(zip(self.layers, self.drops, self.norms)):
            out, last = layer.forward_carry(drop(z), custom, None if state is None else state[k])
            z = norm(out)
            finals.append(last)
        return self.head(self.drops[-1](z)).transpose(0, 1), finals

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """input: W_ih, b_ih (and a token embedding); recurrent: W_hh, b_hh; norm: BN gains/biases;
        head: the linear head."""
        groups: dict[str, list[nn.Parameter]] = {"input": [], "recurrent": [], "norm": [], "head": []}
        for name, p in self.named_parameters():
            if name.startswith("head."):
                groups["head"].append(p)
            elif name.startswith("embed."):  # a token embedding: the input projection of a one-hot input
                groups["input"].append(p)
            elif "weight_ih" in name or "bias_ih" in name:
                groups["input"].append(p)
            elif "weight_hh" in name or "bias_hh" in name:
                groups["recurrent"].append(p)
            else:
                groups["norm"].append(p)
        return groups


def build_model(spec: ModelSpec) -> SequenceModel:
    """Build a model; raises ConfigError when impl=native cannot run the variant."""
    check_spec(spec)
    return SequenceModel(spec)


def check_spec(spec: ModelSpec) -> None:
    """Sizes >= 1 and enough per-step BN statistics for the task's length; raises ConfigError."""
    for key, v in (("hidden_size", spec.hidden_size), ("num_layers", spec.num_layers),
                   ("task.input_size", spec.input_size), ("task.output_size", spec.output_size)):
        if v < 1:
            raise ConfigError(key, v, "an integer >= 1")
    if spec.reg.uses_bn and spec.reg.bn.placement is BNPlacement.recurrent:
        spec.stats_steps  # noqa: B018  (raises ConfigError when max_stats_steps < total_len)

"""The sequence model every variant shares: [input dropout] → layer → [norm, dropout] → … → head.

The regulariser (an arm, benchmark/arms/) provides what sits where: inside each
`RecurrentLayer` (norms, masks, state mixing, a transform of W_hh), after each layer
(`output_norm`, e.g. output BN), before each later layer and the head (`hidden_dropout`) and on
the raw task input (`input_dropout`); identity wherever it provides nothing.
With a token input (`ModelSpec.vocab_size`, language modelling: tasks/ptb.py) an embedding of
`input_size` features comes first, and the arm's `embedding_dropout` acts on its output (the
literature's input dropout: Zaremba, Gal).

Every variant returns the same thing (one output contract), so the trainer and the
timer never branch on which variant they hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import Tensor, nn

from benchmark.arms.base import Arm, check_arm
from benchmark.arms.none import NoArm
from benchmark.core.config import ConfigError, Impl
from benchmark.models import masks
from benchmark.models.cells import CellMath
from benchmark.models.layer import RecurrentLayer


@dataclass(frozen=True)
class ModelSpec:
    """Everything that defines a model; built from config at the entry point."""

    cell: type[CellMath]
    input_size: int
    hidden_size: int
    num_layers: int
    output_size: int
    per_step: bool = False  # head on every step (B, T, O) or on the last (B, O)
    reg: Arm = field(default_factory=lambda: NoArm("none"))  # the regulariser (benchmark/arms/)
    impl: Impl = Impl.auto
    # Steps of the task's sequences (task.total_len): sizes per-step population statistics (per-step BN).
    # None (a model built by hand): the arm's default.
    total_len: Optional[int] = None
    # Tokens in (language modelling, tasks/ptb.py): an nn.Embedding(vocab_size, input_size) before the
    # first layer; the input is then (B, T) token ids. None: float features (B, T, input_size).
    vocab_size: Optional[int] = None
    # None: each module's own initialisation (torch's); a number s: the embedding, every W_ih, W_hh, their biases
    # and the head uniform in ±s (Zaremba et al. 2014: ±0.1 small, ±0.05 medium); norms keep the arm's gains.
    init_scale: Optional[float] = None

    @property
    def stats_steps(self) -> Optional[int]:
        """Rows of per-step population statistics the arm keeps, or None (ConfigError when too few)."""
        return self.reg.stats_steps(self.total_len)


def needs_custom(cell: type[CellMath], reg: Arm) -> list[str]:
    """Config keys of the variant that the fused kernel cannot run (empty: native is possible)."""
    why = [] if cell.native is not None else [f"cell={cell.name} (no fused torch module)"]
    return why + reg.needs_custom()


def resolve_impl(cell: type[CellMath], reg: Arm, impl: Impl) -> Impl:
    """auto → native where the variant allows it; native with a variant that needs the loop → error."""
    why = needs_custom(cell, reg)
    if impl is Impl.auto:
        return Impl.custom if why else Impl.native
    if impl is Impl.native and why:
        raise ConfigError(
            "impl",
            "native",
            "custom or auto for this variant",
            f"reg={reg.name} with {', '.join(why)} acts inside the recurrence, which the fused kernel cannot do.",
        )
    return impl


def _or_identity(module: Any) -> nn.Module:
    return nn.Identity() if module is None else module


class SequenceModel(nn.Module):
    """A stack of recurrent layers and a linear head. Input (B, T, I), batch first."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.impl_used = resolve_impl(spec.cell, spec.reg, spec.impl)
        reg, H = spec.reg, spec.hidden_size
        sizes = [spec.input_size] + [H] * spec.num_layers
        steps = spec.stats_steps
        self.layers = nn.ModuleList(RecurrentLayer(spec.cell, sizes[k], H, reg, steps) for k in range(spec.num_layers))
        # drops[k] acts on layer k's input, drops[L] on the head's input; drops[0] is the raw task input,
        # or, with tokens in, the embedding's output.
        self.embed = nn.Embedding(spec.vocab_size, spec.input_size) if spec.vocab_size else None
        first_drop = (
            reg.embedding_dropout(spec.input_size) if self.embed is not None else reg.input_dropout(spec.input_size)
        )
        self.drops = nn.ModuleList(
            [_or_identity(first_drop)] + [_or_identity(reg.hidden_dropout(H)) for _ in range(spec.num_layers)]
        )
        self.norms = nn.ModuleList(_or_identity(reg.output_norm(H)) for _ in range(spec.num_layers))
        self.head = nn.Linear(H, spec.output_size)
        self.mask_gen: Optional[torch.Generator] = None  # the run's mask stream (masks.generator); None: global
        if spec.init_scale is not None:
            init_uniform(self, spec.init_scale)

    def forward(self, x: Tensor, return_hidden: bool = False):
        """x: (B, T, I) → (B, O) or (B, T, O); with return_hidden also the top layer's h_t list."""
        with masks.drawn_from(None if self.mask_gen is None else [self.mask_gen]):
            return self._forward(x, return_hidden)

    def _forward(self, x: Tensor, return_hidden: bool):
        """The forward of `forward`.

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

    def forward_carry(
        self, x: Tensor, state: Optional[list[tuple[Tensor, ...]]] = None
    ) -> tuple[Tensor, list[tuple[Tensor, ...]]]:
        """Truncated BPTT over a stream (tasks/ptb.py): x (B, T[, I]) with the previous window's final
        states (one (h[, c]) per layer; None = zeros) -> (y (B, T, O), this window's final states).
        A per-step head only: a stream is scored at every step."""
        with masks.drawn_from(None if self.mask_gen is None else [self.mask_gen]):
            return self._forward_carry(x, state)

    def _forward_carry(
        self, x: Tensor, state: Optional[list[tuple[Tensor, ...]]]
    ) -> tuple[Tensor, list[tuple[Tensor, ...]]]:
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


@torch.no_grad()
def init_uniform(model: SequenceModel, scale: float) -> None:
    """Every parameter of the input, recurrent and head groups uniform in ±scale, in the model's parameter order
    (Zaremba et al. 2014 draw all of theirs so: `getParameters():uniform(-w, w)`); the norm group keeps its own."""
    keep = {id(p) for p in model.param_groups()["norm"]}
    for p in model.parameters():
        if id(p) not in keep:
            p.uniform_(-scale, scale)


def build_model(spec: ModelSpec) -> SequenceModel:
    """Build a model; raises ConfigError when impl=native cannot run the variant."""
    check_spec(spec)
    return SequenceModel(spec)


def check_spec(spec: ModelSpec) -> None:
    """Sizes >= 1 and enough per-step statistics for the task's length; raises ConfigError."""
    check_arm(spec.reg, "reg")
    if spec.init_scale is not None and not spec.init_scale > 0:
        raise ConfigError("init.scale", spec.init_scale, "a number > 0 with init.scheme=uniform")
    for key, v in (
        ("hidden_size", spec.hidden_size),
        ("num_layers", spec.num_layers),
        ("task.input_size", spec.input_size),
        ("task.output_size", spec.output_size),
    ):
        if v < 1:
            raise ConfigError(key, v, "an integer >= 1")
    spec.stats_steps  # noqa: B018  (raises ConfigError when max_stats_steps < total_len)

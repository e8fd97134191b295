"""The sequence model every variant shares, as a stack of E >= 1 members: [input dropout] → layer → [norm, dropout]
→ … → head. A run alone is a stack of one; the members of a cohort are one stack (benchmark/models/stack.py).

Input (E, B, T, I) (or token ids (E, B, T)), member first; output (E, B, O) from the last step, or
(E, B, T, O) with a head on every step. Every parameter leads with the member dimension.
The regulariser (an arm, benchmark/arms/) provides what sits where, each piece built for the E members:
inside each `RecurrentLayer` (norms, masks, state mixing, a transform of W_hh), after each layer
(`output_norm`), before each later layer and the head (`hidden_dropout`), on the raw task input
(`input_dropout`) or a token embedding's output (`embedding_dropout`), and loss terms from each layer's
output (`penalty`, summed into `penalty` (E,) by a training forward); identity wherever it provides nothing.

Every variant returns the same thing (one output contract), so the trainer and the timer never branch on
which variant they hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.arms.base import Arm, Site, require_arm
from benchmark.arms.none import NoArm
from benchmark.core.config import ConfigError, Impl
from benchmark.models import masks
from benchmark.models.cells import CellMath
from benchmark.models.layer import RecurrentLayer


@dataclass(frozen=True)
class ModelSpec:
    """Everything that defines a member's model; built from config at the entry point."""

    cell: type[CellMath]
    input_size: int
    hidden_size: int
    num_layers: int
    output_size: int
    per_step: bool = False  # head on every step (E, B, T, O) or on the last (E, B, O)
    reg: Arm = field(default_factory=lambda: NoArm("none"))  # the regulariser (benchmark/arms/)
    impl: Impl = Impl.auto
    # Steps of the task's sequences (task.total_len): sizes per-step population statistics (per-step BN).
    # None (a model built by hand): the arm's default.
    total_len: Optional[int] = None
    # Tokens in (language modelling, tasks/ptb.py): an embedding of vocab_size rows of input_size before the
    # first layer; the input is then (E, B, T) token ids. None: float features (E, B, T, input_size).
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


class StackedLinear(nn.Module):
    """E linear heads: weight (E, O, H), bias (E, O); (E, N, H) -> (E, N, O) in one batched GEMM. Each member
    initialised as nn.Linear is (a stack of one draws what nn.Linear draws)."""

    def __init__(self, members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(members, out_features))
        bound = 1 / math.sqrt(in_features)
        with torch.no_grad():
            for e in range(members):
                nn.init.kaiming_uniform_(self.weight[e], a=math.sqrt(5))
                self.bias[e].uniform_(-bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))


class StackedEmbedding(nn.Module):
    """E token embeddings (E, V, D), N(0, 1) as nn.Embedding: ids (E, B, T) -> (E, B, T, D)."""

    def __init__(self, members: int, num_embeddings: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, num_embeddings, dim))
        with torch.no_grad():
            for e in range(members):
                self.weight[e].normal_()

    def forward(self, ids: Tensor) -> Tensor:
        E, V, _ = self.weight.shape
        offsets = torch.arange(E, device=ids.device).mul_(V).view(E, *(1,) * (ids.dim() - 1))
        return F.embedding(ids + offsets, self.weight.reshape(E * V, -1))


class SequenceModel(nn.Module):
    """A stack of E members' recurrent layers and linear heads. Input (E, B, T, I), batch first per member.

    `arms`: member e's arm (their `stack_key`s equal; settings it leaves out may differ); default: `members`
    copies of the spec's. `mask_gens`: the members' random streams (`benchmark.models.masks`), or None.
    """

    def __init__(self, spec: ModelSpec, members: int = 1, arms: Optional[Sequence[Arm]] = None) -> None:
        super().__init__()
        arms = tuple(arms) if arms is not None else (spec.reg,) * members
        self.spec, self.members, self.member_arms = spec, len(arms), arms
        self.impl_used = resolve_impl(spec.cell, spec.reg, spec.impl)
        reg, H, L, E = spec.reg, spec.hidden_size, spec.num_layers, self.members
        site = Site(arms, 0, spec.stats_steps)
        sizes = [spec.input_size] + [H] * L
        native = self.impl_used is Impl.native
        self.layers = nn.ModuleList(RecurrentLayer(spec.cell, sizes[k], H, reg, site.at(k), native) for k in range(L))
        # drops[k] acts on layer k's input, drops[L] on the head's input; drops[0] is the raw task input,
        # or, with tokens in, the embedding's output.
        self.embed = StackedEmbedding(E, spec.vocab_size, spec.input_size) if spec.vocab_size else None
        first = reg.embedding_dropout if self.embed is not None else reg.input_dropout
        self.drops = nn.ModuleList(
            [_or_identity(first(site, spec.input_size))]
            + [_or_identity(reg.hidden_dropout(site.at(k), H)) for k in range(1, L + 1)]
        )
        self.norms = nn.ModuleList(_or_identity(reg.output_norm(site.at(k), H)) for k in range(L))
        self.penalties = nn.ModuleList(_or_identity(reg.penalty(site.at(k), H)) for k in range(L))
        self.has_penalty = any(not isinstance(p, nn.Identity) for p in self.penalties)
        self.head = StackedLinear(E, H, spec.output_size)
        self.mask_gens: Optional[list[torch.Generator]] = None  # the members' random streams; None: global
        self.penalty: Optional[Tensor] = None  # (E,): the loss terms of the last training forward (None: none)
        if spec.init_scale is not None:
            init_uniform(self, spec.init_scale)

    def forward(self, x: Tensor, return_hidden: bool = False):
        """x: (E, B, T, I) → (E, B, O) or (E, B, T, O); with return_hidden also the top layer's h_t list.

        With return_hidden the autograd loop runs (same parameters, same function) and each h_t (E, B, H) has
        retain_grad(), so after backward `h_t.grad` is the total ∂L/∂h_t.
        """
        with masks.drawn_from(self.mask_gens):
            return self._forward(x, return_hidden)

    def _forward(self, x: Tensor, return_hidden: bool):
        hiddens: Optional[list[Tensor]] = [] if return_hidden else None
        z = self._inputs(x)
        last, penalty = len(self.layers) - 1, None
        for k, (layer, drop, norm) in enumerate(zip(self.layers, self.drops, self.norms)):
            out = layer(drop(z), hiddens if k == last else None)  # (T, E, B, H)
            penalty = self._add_penalty(penalty, k, out)
            z = norm(out)
        self.penalty = penalty
        y = self._head(z)
        return (y, hiddens) if return_hidden else y

    def _inputs(self, x: Tensor) -> Tensor:
        """(E, B, T[, I]) -> (T, E, B, I): time first, as the layers take it (tokens through the embedding)."""
        z = self.embed(x) if self.embed is not None else x
        return z.permute(2, 0, 1, 3)

    def _add_penalty(self, total: Optional[Tensor], k: int, out: Tensor) -> Optional[Tensor]:
        if not (self.has_penalty and self.training) or isinstance(self.penalties[k], nn.Identity):
            return total
        term = self.penalties[k](out)  # (E,)
        return term if total is None else total + term

    def _head(self, z: Tensor) -> Tensor:
        """(T, E, B, H) -> (E, B, O) from the last step, or (E, B, T, O) from every step."""
        T, E, B, H = z.shape
        if self.spec.per_step:
            z = self.drops[-1](z).permute(1, 0, 2, 3).reshape(E, T * B, H)
            return self.head(z).view(E, T, B, -1).transpose(1, 2)
        return self.head(self.drops[-1](z[-1:])[0])  # only the last step reaches the head: T× less dropout work

    def forward_carry(
        self, x: Tensor, state: Optional[list[tuple[Tensor, ...]]] = None
    ) -> tuple[Tensor, list[tuple[Tensor, ...]]]:
        """Truncated BPTT over a stream (tasks/ptb.py): x (E, B, T[, I]) with the previous window's final states
        (one (h[, c]) per layer, (E, B, H) each; None = zeros) -> (y (E, B, T, O), this window's final states).
        A per-step head only: a stream is scored at every step."""
        with masks.drawn_from(self.mask_gens):
            z, finals, penalty = self._inputs(x), [], None
            for k, (layer, drop, norm) in enumerate(zip(self.layers, self.drops, self.norms)):
                out, last = layer.forward_carry(drop(z), None if state is None else state[k])
                penalty = self._add_penalty(penalty, k, out)
                z = norm(out)
                finals.append(last)
            self.penalty = penalty
            T, E, B, H = z.shape
            y = self.head(self.drops[-1](z).permute(1, 0, 2, 3).reshape(E, T * B, H))
            return y.view(E, T, B, -1).transpose(1, 2), finals

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """input: W_ih, b_ih (and a token embedding); recurrent: W_hh, b_hh; norm: the arm's parameters;
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


def build_model(spec: ModelSpec, members: int = 1) -> SequenceModel:
    """A stack of `members` members of `spec` (one: a run alone); raises ConfigError for a bad spec, or when
    impl=native cannot run the variant."""
    check_spec(spec)
    return SequenceModel(spec, members)


def check_spec(spec: ModelSpec) -> None:
    """Sizes >= 1 and enough per-step statistics for the task's length; raises ConfigError."""
    require_arm(spec.reg, "reg")
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

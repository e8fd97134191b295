"""An example of a cell, a task and a regulariser added from OUTSIDE the package (docs/extending.md).

Put this module on PYTHONPATH and its conf/ on Hydra's search path:

    PYTHONPATH=tests/plugin_example python -m benchmark.run \
        hydra.searchpath=[file://$PWD/tests/plugin_example/conf] cell=leaky task=sign reg=noise

Three arms: Gaussian noise (a module between layers), spectral normalisation of W_hh (a transform of the
recurrent weights, with per-member state) and AR/TAR (a loss term); each piece is written for a stack of E
members, so the seeds of a sweep train stacked (`benchmark.models.check.check_arm` proves it).

The tests also use two deliberately broken tasks from here (`FailingTask`, `NaNTask`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.arms import Arm, ArmVariant, Site
from benchmark.core.config import ConfigError
from benchmark.models import masks
from benchmark.models.cells import CellMath
from benchmark.tasks.base import Task


class LeakyCell(CellMath):
    """A leaky tanh RNN: h' = (1 - a)·h + a·tanh(W_ih x + b_ih + W_hh h + b_hh), a = 0.5.

    No fused torch module has this math, so `native = None` and it runs on the custom loop
    (the layer creates torch-layout parameters for it).
    """

    name = "leaky"
    gates = 1
    native = None
    leak = 0.5

    def step(self, xw, hw, state, t, slots):
        (h,) = state
        pre = hw if xw is None else xw + hw
        h = torch.lerp(h, slots.candidate(torch.tanh(pre)), self.leak)
        return h, (h,)


@dataclass
class NoiseConfig:
    std: float = 0.1  # standard deviation of the added noise, in units of the hidden activations


class GaussianNoise(torch.nn.Module):
    """Adds N(0, std²) to every hidden activation in training; the identity at eval (zero-mean noise).

    Acts on (T, E, B, F): the member dimension E is the second, and the noise is drawn member first through
    `benchmark.models.masks` (row e from member e's stream), so member e of a stack draws what it draws alone."""

    def __init__(self, std: float) -> None:
        super().__init__()
        self.std = std

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return x
        T, E, B, F_ = x.shape
        return x + self.std * masks.normal(x, (E, T, B, F_)).transpose(0, 1)


class NoiseArm(Arm):
    """Gaussian noise on the hidden non-recurrent connections (before later layers and the head).

    Provides one piece, `hidden_dropout`; everything else stays the default, so torch's fused
    modules can run it (`needs_custom` is empty).
    """

    blocks = {"noise": NoiseConfig}

    def __init__(self, name: str = "noise", **blocks) -> None:
        super().__init__(name, **blocks)
        self.std = self.config["noise"].std
        if not self.std >= 0:
            raise ConfigError("reg.noise.std", self.std, "a number >= 0")

    def hidden_dropout(self, site: Site, features: int):
        return GaussianNoise(self.std) if self.std > 0 else None

    @classmethod
    def variants(cls, option: str) -> list[ArmVariant]:
        return [ArmVariant(None, (), ("native", "custom"), "", "Gaussian noise on hidden non-recurrent connections")]


@dataclass
class SpectralConfig:
    iterations: int = 1  # power iterations per training forward (Miyato et al. use one)


class SpectralNormHH(torch.nn.Module):
    """W_hh / σ(W_hh) for each member, σ its largest singular value, estimated by power iteration (Miyato et al.
    2018, as `torch.nn.utils.spectral_norm`): each member keeps its own left vector `u` (E, gH), updated in
    training; σ = uᵀ W v with u and v held constant in backward.

    Member-aware: W_hh comes in as (E, gH, H) and every operation is a batched one over E, so member e of a stack
    computes what it computes alone; `u` leads with the member dimension, so the stack keeps each member's."""

    def __init__(self, members: int, gates_hidden: int, iterations: int) -> None:
        super().__init__()
        self.iterations = iterations
        self.register_buffer("u", F.normalize(torch.ones(members, gates_hidden), dim=1))

    def forward(self, w: Tensor) -> Tensor:
        with torch.no_grad():
            u = self.u
            for _ in range(self.iterations if self.training else 0):
                v = F.normalize(torch.bmm(u.unsqueeze(1), w).squeeze(1), dim=1)  # (E, H)
                u = F.normalize(torch.bmm(w, v.unsqueeze(2)).squeeze(2), dim=1)  # (E, gH)
            if self.training:
                self.u.copy_(u)
            v = F.normalize(torch.bmm(u.unsqueeze(1), w).squeeze(1), dim=1)
        sigma = torch.einsum("eg,egh,eh->e", u, w, v)  # (E,)
        return w / sigma.view(-1, 1, 1)


class SpectralArm(Arm):
    """Spectral normalisation of the recurrent weights: one piece, `weight_hh`, written for E members."""

    blocks = {"spectral": SpectralConfig}

    def __init__(self, name: str = "spectral", **blocks) -> None:
        super().__init__(name, **blocks)
        self.iterations = self.config["spectral"].iterations
        if self.iterations < 1:
            raise ConfigError("reg.spectral.iterations", self.iterations, "an integer >= 1")

    def needs_custom(self) -> list[str]:
        return [f"reg={self.name} (W_hh is rescaled per forward; torch's fused module reads its own parameter)"]

    def weight_hh(self, site: Site, gates_hidden: int, hidden: int):
        return SpectralNormHH(site.members, gates_hidden, self.iterations)

    @classmethod
    def variants(cls, option: str) -> list[ArmVariant]:
        return [
            ArmVariant(
                None,
                (),
                ("custom",),
                "Miyato et al. 2018, Spectral Normalization for Generative Adversarial Networks",
                "W_hh divided by its largest singular value (power iteration) at every forward",
            )
        ]


@dataclass
class TARConfig:
    alpha: float = 0.0  # AR: alpha · mean h_t² over steps, examples and units
    beta: float = 1.0  # TAR: beta · mean (h_t - h_{t-1})²


class ActivationPenalty(torch.nn.Module):
    """AR and TAR (Merity et al. 2017) of a layer's output (T, E, B, H): one loss term per member, (E,)."""

    def __init__(self, alpha: float, beta: float) -> None:
        super().__init__()
        self.alpha, self.beta = alpha, beta

    def forward(self, out: Tensor) -> Tensor:
        ar = out.pow(2).mean(dim=(0, 2, 3))
        tar = (out[1:] - out[:-1]).pow(2).mean(dim=(0, 2, 3)) if len(out) > 1 else torch.zeros_like(ar)
        return self.alpha * ar + self.beta * tar


class TARArm(Arm):
    """Activation and temporal activation regularisation: a loss term on every layer's output (`penalty`).
    The run record keeps it apart from the task's loss (`train_penalty`, `train_penalty_mean`)."""

    blocks = {"tar": TARConfig}

    def __init__(self, name: str = "tar", **blocks) -> None:
        super().__init__(name, **blocks)
        self.alpha, self.beta = self.config["tar"].alpha, self.config["tar"].beta
        for key, v in (("alpha", self.alpha), ("beta", self.beta)):
            if not v >= 0:
                raise ConfigError(f"reg.tar.{key}", v, "a number >= 0")

    def penalty(self, site: Site, features: int):
        return ActivationPenalty(self.alpha, self.beta) if self.alpha or self.beta else None

    @classmethod
    def variants(cls, option: str) -> list[ArmVariant]:
        return [
            ArmVariant(
                None,
                (),
                ("native", "custom"),
                "Merity, McCann & Socher 2017, Revisiting Activation Regularization for Language RNNs",
                "AR and TAR: a loss term on the size and the step-to-step change of each layer's output",
            )
        ]


@dataclass
class SignTask(Task):
    """Is the mean of a noisy sequence positive? Two classes, read at the last step."""

    name: str = "sign"
    seq_len: int = 20
    n_train: int = 512
    n_val: int = 128
    n_test: int = 128
    target_score: float = 0.8

    input_size = 1
    output_size = 2
    per_step = False
    metric_name = "error"
    higher_is_better = False

    @property
    def metric_baseline(self) -> float:
        return 0.5

    def _make_split(self, split: str, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        x = torch.randn(n, self.seq_len, 1, generator=gen)  # (N, T, 1)
        return x, (x.mean(dim=(1, 2)) > 0).long()

    def loss(self, y_hat: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(y_hat.float(), y)

    def evaluate(self, y_hat: Tensor, y: Tensor) -> dict[str, float]:
        acc = (y_hat.argmax(-1) == y).float().mean().item()
        return {"accuracy": acc, "metric": 1.0 - acc}


@dataclass
class SignNLLTask(SignTask):
    """The same question scored by negative log-likelihood, a metric name no analysis list knows:
    lower is better because the task says so (`higher_is_better = False`), log 2 = guessing."""

    name: str = "sign_nll"
    metric_name = "nll"
    higher_is_better = False

    @property
    def metric_baseline(self) -> float:
        return math.log(2.0)

    def evaluate(self, y_hat: Tensor, y: Tensor) -> dict[str, float]:
        acc = (y_hat.argmax(-1) == y).float().mean().item()
        return {"accuracy": acc, "metric": F.cross_entropy(y_hat.float(), y).item()}


@dataclass
class FailingTask(SignTask):
    """Raises inside training after `fail_after` loss calls (to test status: failed)."""

    name: str = "failing"
    fail_after: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        self._calls = 0

    def loss(self, y_hat: Tensor, y: Tensor) -> Tensor:
        self._calls += 1
        if self._calls > self.fail_after:
            raise RuntimeError("boom: deliberate failure inside training")
        return super().loss(y_hat, y)


@dataclass
class NaNTask(SignTask):
    """Training loss turns NaN at training step `nan_at` (to test status: diverged)."""

    name: str = "nanloss"
    nan_at: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        self._calls = 0

    def loss(self, y_hat: Tensor, y: Tensor) -> Tensor:
        out = super().loss(y_hat, y)
        if y_hat.requires_grad:  # training and gradient probes, not evaluation
            self._calls += 1
            if self._calls == self.nan_at:
                return out * float("nan")
        return out

"""The adding problem (Hochreiter & Schmidhuber 1997).

Each step carries two features: a value drawn from U[0, 1] and a marker. Exactly two steps
are marked, one in each half of the sequence; the target is the sum of the two marked
values. Always predicting 1 (the mean of the sum) gives MSE = Var(U1 + U2) = 2/12 ≈ 0.167,
the baseline a model must beat to show it remembers anything. `accuracy` is the share of
predictions within 0.04 of the target.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.tasks.base import Task, defaults_from

TOLERANCE = 0.04  # a prediction within this distance of the target counts as correct


@dataclass
@defaults_from("adding")  # target_score 0.95: MSE <= 1/120, the sum is recalled, not guessed
class AddingTask(Task):
    input_size = 2  # (value, marker)
    output_size = 1
    per_step = False
    metric_name = "mse"
    higher_is_better = False
    min_seq_len = 2  # one marker per half

    @property
    def metric_baseline(self) -> float:
        return 1.0 / 6.0  # MSE of always predicting 1

    def _make_split(self, split: str, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        T, half = self.seq_len, self.seq_len // 2
        values = torch.rand(n, T, generator=gen)  # (N, T)
        first = torch.randint(0, half, (n,), generator=gen)  # (N,): one marker in [0, T/2)
        second = torch.randint(half, T, (n,), generator=gen)  # (N,): one in [T/2, T)
        marks = torch.zeros(n, T)
        rows = torch.arange(n)
        marks[rows, first] = 1.0
        marks[rows, second] = 1.0
        x = torch.stack([values, marks], dim=-1)  # (N, T, 2)
        y = values[rows, first] + values[rows, second]  # (N,)
        return x, y

    def loss(self, y_hat: Tensor, y: Tensor) -> Tensor:
        # y_hat (B, 1), in the targets' dtype: float32 (a bf16 output upcast), float64 in float64 tests (CUDA's
        # backward of a mixed-dtype MSE fails)
        return F.mse_loss(y_hat.squeeze(-1).to(y.dtype), y)

    def evaluate(self, y_hat: Tensor, y: Tensor) -> dict[str, float]:
        pred = y_hat.squeeze(-1).float()
        return {"accuracy": ((pred - y).abs() < TOLERANCE).float().mean().item(), "metric": F.mse_loss(pred, y).item()}

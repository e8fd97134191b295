"""Copy memory (Arjovsky, Shah & Bengio 2016, "Unitary Evolution RNNs").

Input: 10 symbols drawn from 8 categories (1..8), then `seq_len - 1` blanks (0), a
delimiter (9), and 10 more blanks: `T_total = seq_len + 20` steps, one-hot over 10 classes.
Output, at every step: blank for the first `seq_len + 10` steps, then the 10 symbols.
The loss is cross-entropy averaged over all steps (as in the paper); a memoryless model
that outputs blanks and then guesses uniformly scores 10·log(8) / (seq_len + 20), the
baseline of the task metric. `accuracy` is per-symbol accuracy on the 10 recall steps.

The hidden-gradient probe uses the recall-window loss only (`probe_loss`): with the loss of
every step, ∂L/∂h_t at any step is dominated by its own step's (blank-predicting) term, so
a memoryless model would read a ratio ≈ 1. Its ratio compares ‖∂L/∂h‖ at the first symbol
(step 0) with the last recall step (T - 1): ≈ 0 for a model that carries nothing across.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.tasks.base import Task, defaults_from

N_SYMBOLS = 10  # symbols to remember
N_CATEGORIES = 8  # symbol alphabet 1..8; 0 = blank, 9 = delimiter
BLANK, DELIM = 0, 9


@dataclass
@defaults_from("copy")  # seq_len: blanks between the symbols and the delimiter (+1); T_total = seq_len + 20
class CopyTask(Task):
    input_size = N_CATEGORIES + 2  # one-hot: blank, 8 symbols, delimiter
    output_size = N_CATEGORIES + 1  # blank or one of 8 symbols
    per_step = True
    metric_name = "cross_entropy"
    higher_is_better = False
    min_seq_len = 1

    @property
    def total_len(self) -> int:
        return self.seq_len + 2 * N_SYMBOLS

    @property
    def metric_baseline(self) -> float:
        return N_SYMBOLS * math.log(N_CATEGORIES) / self.total_len

    def _make_split(self, split: str, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        T = self.total_len
        symbols = torch.randint(1, N_CATEGORIES + 1, (n, N_SYMBOLS), generator=gen)  # (N, 10)
        tokens = torch.full((n, T), BLANK, dtype=torch.long)
        tokens[:, :N_SYMBOLS] = symbols
        tokens[:, T - N_SYMBOLS - 1] = DELIM  # after seq_len - 1 blanks
        y = torch.full((n, T), BLANK, dtype=torch.long)  # (N, T) class per step
        y[:, -N_SYMBOLS:] = symbols
        x = F.one_hot(tokens, self.input_size).float()  # (N, T, 10)
        return x, y

    def loss(self, y_hat: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(y_hat.float().reshape(-1, self.output_size), y.reshape(-1))  # y_hat (B, T, 9)

    def probe_loss(self, y_hat: Tensor, y: Tensor) -> Tensor:
        """Cross-entropy over the 10 recall steps only (mean over batch and steps)."""
        return F.cross_entropy(
            y_hat[:, -N_SYMBOLS:].float().reshape(-1, self.output_size), y[:, -N_SYMBOLS:].reshape(-1)
        )

    def evaluate(self, y_hat: Tensor, y: Tensor) -> dict[str, float]:
        recall = y_hat[:, -N_SYMBOLS:].argmax(-1)  # (B, 10)
        return {"accuracy": (recall == y[:, -N_SYMBOLS:]).float().mean().item(), "metric": self.loss(y_hat, y).item()}

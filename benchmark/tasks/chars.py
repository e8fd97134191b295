"""Penn Treebank characters in independent windows: a small language model that overfits (`task=chars`).

The overfitting regime of the claims about dropout and BN's effect on generalisation (Zaremba et al.
2014 show dropout's effect on Penn Treebank language models): a replicate trains on `n_train` windows of
`seq_len` characters drawn from the standard training text, and is scored on windows of the standard
validation and test texts (Mikolov's files, read through `benchmark.tasks.ptb`: the same 50 symbols).
With a few hundred windows a small LSTM fits its training text within a few hundred steps while its
validation score turns over: the regime where a regulariser that curbs overfitting can show it.

Unlike `task=ptb` (one continuous stream, the hidden state carried across windows) each window is read
from a zero state, so a replicate is an ordinary batch of sequences: its members stack (cohorts), and
the seed draws the data — `data_seed` picks which training windows, and which validation and test
windows, a replicate sees. The validation and test texts are disjoint files, so no window that selected
a setting on validation appears in any test set.

Input: one-hot characters (50 features); output: the next character at every step. Loss: mean
cross-entropy over every step. Metric: bits per character; score 0 = the unigram model of the replicate's
training windows (add-one smoothed) on its validation windows, 1 = perfect (0 bpc).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.core.config import ConfigError
from benchmark.tasks.base import Task, defaults_from, split_seed
from benchmark.tasks.ptb import bits_per_char, corpus_ids, unigram_nll


def draw_windows(ids: Tensor, seq_len: int, n: int, gen: torch.Generator, key: str = "task.n_train") -> Tensor:
    """`n` distinct non-overlapping windows of `seq_len + 1` ids (inputs and next-character targets) of a
    text, chosen at random: (n, seq_len + 1) int64."""
    k = (len(ids) - 1) // seq_len
    if n > k:
        raise ConfigError(key, n, f"at most {k} windows of {seq_len} characters in this text")
    starts = torch.randperm(k, generator=gen)[:n] * seq_len
    return torch.stack([ids[s : s + seq_len + 1] for s in starts.tolist()])


@dataclass
@defaults_from("chars")
class CharWindows(Task):
    """Character-level Penn Treebank in independent windows. Config: seq_len (the window), data_seed
    (which windows), n_train / n_val / n_test (windows per split)."""

    per_step = True
    metric_name = "bpc"
    higher_is_better = False
    min_seq_len = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_train is None:
            raise ConfigError("task.n_train", None, "an integer >= 1 (windows of training text)")
        self._vocab, self._ids = self._load()

    def _load(self) -> tuple[dict[str, int], dict[str, Tensor]]:
        """The character vocabulary and ids of the corpus (tests override this with a small text)."""
        return corpus_ids("char")

    @property
    def input_size(self) -> int:  # type: ignore[override]
        """One-hot characters: as many features as symbols (50 in Penn Treebank)."""
        return len(self._vocab)

    @property
    def output_size(self) -> int:  # type: ignore[override]
        return len(self._vocab)

    def windows(self) -> dict[str, Tensor]:
        """{train, val, test} -> (n, seq_len + 1) ids, drawn from (data_seed, split): the same windows at
        every run of a replicate, other windows for another seed."""
        out = {}
        for split, n in self.sizes().items():
            gen = torch.Generator().manual_seed(split_seed(self.name, self.seq_len, self.data_seed, split))
            out[split] = draw_windows(self._ids[split], self.seq_len, n, gen, f"task.n_{split}")
        return out

    def splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        """{split: (x (n, T, 50) one-hot float32, y (n, T) next-character ids)}; the unigram baseline of this
        replicate's own training windows is fixed here too."""
        if self._cache is None:
            w = self.windows()
            V = len(self._vocab)
            self._baseline_nll = unigram_nll(w["train"][:, :-1].reshape(-1), w["val"][:, 1:].reshape(-1), V)
            self._cache = {s: (F.one_hot(t[:, :-1], V).float(), t[:, 1:].contiguous()) for s, t in w.items()}
        return self._cache

    @property
    def metric_baseline(self) -> float:
        """The unigram model of the training windows on the validation windows (bits per character)."""
        self.splits()
        return bits_per_char(self._baseline_nll)

    def loss(self, y_hat: Tensor, y: Tensor) -> Tensor:
        """Mean cross-entropy over every step (nats); y_hat (B, T, 50), y (B, T)."""
        return F.cross_entropy(
            y_hat.reshape(-1, y_hat.shape[-1]).to(torch.promote_types(y_hat.dtype, torch.float32)), y.reshape(-1)
        )

    def evaluate(self, y_hat: Tensor, y: Tensor) -> dict[str, float]:
        """Next-character accuracy and bits per character over every step."""
        logits = y_hat.reshape(-1, y_hat.shape[-1]).to(torch.promote_types(y_hat.dtype, torch.float32))
        nll = F.cross_entropy(logits, y.reshape(-1)).item()
        acc = (logits.argmax(-1) == y.reshape(-1)).float().mean().item()
        return {"accuracy": acc, "metric": bits_per_char(nll) if math.isfinite(nll) else nll}


__all__ = ["CharWindows", "draw_windows"]

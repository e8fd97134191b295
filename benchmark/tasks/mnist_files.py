"""The four MNIST files (LeCun, Cortes & Burges 1998): found in a cache folder or downloaded once.

The files are read directly in their IDX format (a big-endian header, then uint8 data), gzip as
distributed or uncompressed, so no torchvision is needed. A download is kept only after its MD5
matches the official checksum (the values torchvision and the original site publish for the
`.gz` files), and is written atomically (temp file, then rename). A `.gz` file found in the
folder is checked against the same checksum; an uncompressed one (e.g. copied from torchvision's
`MNIST/raw/`) is checked for its IDX structure (magic number, 28×28 images, counts that match
the file's length and each other, labels 0-9).

Where nothing can be downloaded, `MNISTUnavailable` (a `ConfigError` on `task.data_dir`) says in
one paragraph which files to put where; nothing is written.
"""

from __future__ import annotations

import gzip
import hashlib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from benchmark.core.config import ConfigError
from benchmark.core.io import atomic_write_bytes

# role -> (file name without .gz, MD5 of the official .gz)
FILES: dict[str, tuple[str, str]] = {
    "train_images": ("train-images-idx3-ubyte", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train_labels": ("train-labels-idx1-ubyte", "d53e105ee54ea40749a09fcbcd1e9432"),
    "test_images": ("t10k-images-idx3-ubyte", "9fb629c4189551a2d022fa330f9573f3"),
    "test_labels": ("t10k-labels-idx1-ubyte", "ec29112dd5afa0611ce80d1b7f02629c"),
}
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
DEFAULT_DIR = "~/.cache/rnn-ablation-bench/mnist"
SIDE = 28  # images are 28 × 28
_IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}  # ndim -> magic (unsigned bytes)

Fetch = Callable[[str], bytes]


class MNISTUnavailable(ConfigError):
    """The MNIST files are neither in the folder nor downloadable: one paragraph saying where to put them."""

    def __init__(self, folder: Path, missing: list[str], reasons: list[str]) -> None:
        names = ", ".join(f"{FILES[r][0]}.gz" for r in FILES)
        msg = (
            f"MNIST is not available: {', '.join(missing)} not found in {folder}, and the download failed "
            f"({'; '.join(reasons) or 'no mirror given'}). On a machine without internet, copy the four files "
            f"{names} (gzip as distributed, or uncompressed without .gz) into {folder}, or point task.data_dir "
            f"at a folder that holds them, then run again."
        )
        self.key, self.value, self.allowed = "task.data_dir", str(folder), "a folder with the four MNIST files"
        ValueError.__init__(self, msg)


def fetch_url(url: str, timeout: float = 60.0) -> bytes:
    """The bytes at `url` (urllib; file:// URLs work too, which the tests use)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (fixed https mirrors or file://)
        return response.read()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 (integrity against the published checksum)


def find(folder: Path, role: str) -> Path | None:
    """The file for `role` in `folder`: `<name>.gz` first, then the uncompressed `<name>`."""
    name = FILES[role][0]
    for p in (folder / f"{name}.gz", folder / name):
        if p.is_file():
            return p
    return None


def _download(folder: Path, role: str, mirrors: Sequence[str], fetch: Fetch, reasons: dict[str, str]) -> Path | None:
    """Try each mirror for `role`'s .gz; keep the first download whose MD5 is the official one.

    `reasons` collects the last failure per mirror (one line each in the error, not one per file).
    """
    name, want = FILES[role]
    for mirror in mirrors:
        url = mirror.rstrip("/") + f"/{name}.gz"
        try:
            data = fetch(url)
        except (urllib.error.URLError, OSError, ValueError) as e:  # offline, HTTP error, bad URL
            reasons[mirror] = f"{url}: {getattr(e, 'reason', None) or e}"
            continue
        if md5(data) != want:
            reasons[mirror] = f"{url}: MD5 {md5(data)} is not the official {want}"
            continue
        atomic_write_bytes(folder / f"{name}.gz", data)
        return folder / f"{name}.gz"
    return None


def ensure_files(data_dir: str | Path, mirrors: Sequence[str] = MIRRORS, fetch: Fetch = fetch_url) -> dict[str, Path]:
    """role -> path of each of the four files, downloading what is missing; raises MNISTUnavailable."""
    folder = Path(data_dir).expanduser()
    paths: dict[str, Path] = {}
    missing: list[str] = []
    reasons: dict[str, str] = {}
    for role in FILES:
        p = find(folder, role)
        if p is None:
            p = _download(folder, role, mirrors, fetch, reasons)
        if p is None:
            missing.append(FILES[role][0])
        else:
            paths[role] = p
    if missing:
        raise MNISTUnavailable(folder, missing, list(reasons.values()))
    for role, p in paths.items():
        if p.suffix == ".gz" and md5(p.read_bytes()) != FILES[role][1]:
            raise ConfigError(
                "task.data_dir",
                str(folder),
                f"the official {p.name} (MD5 {FILES[role][1]})",
                f"{p} has MD5 {md5(p.read_bytes())}: a damaged or different file; delete it "
                "to download it again, or put the right one there.",
            )
    return paths


def _raw_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes with `ndim` dimensions -> uint8 array; ConfigError if malformed."""
    data = _raw_bytes(path)
    header = 4 + 4 * ndim

    def bad(why):
        return ConfigError(
            "task.data_dir",
            str(path.parent),
            "MNIST files in IDX format",
            f"{path.name}: {why}.",
        )

    if len(data) < header:
        raise bad("shorter than an IDX header")
    magic = int.from_bytes(data[:4], "big")
    if magic != _IDX_MAGIC[ndim]:
        raise bad(f"magic number {magic:#010x}, expected {_IDX_MAGIC[ndim]:#010x}")
    dims = tuple(int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    if len(data) != header + int(np.prod(dims)):
        raise bad(f"{len(data)} bytes, the header {dims} needs {header + int(np.prod(dims))}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def count(path: Path) -> int:
    """Items in an IDX file, from its header only (the first bytes of the stream)."""
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    with (gzip.open if gz else open)(path, "rb") as f:
        return int.from_bytes(f.read(8)[4:8], "big")


def load(paths: dict[str, Path]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{'train', 'test'} -> (images (N, 784) uint8, labels (N,) uint8), checked for shape and labels."""
    out = {}
    for split in ("train", "test"):
        images, labels = read_idx(paths[f"{split}_images"], 3), read_idx(paths[f"{split}_labels"], 1)
        img_path = paths[f"{split}_images"]
        if images.shape[1:] != (SIDE, SIDE) or len(images) != len(labels) or (labels > 9).any():
            raise ConfigError(
                "task.data_dir",
                str(img_path.parent),
                "MNIST files (28×28 images, labels 0-9)",
                f"{split}: images {images.shape}, {len(labels)} labels, max label {labels.max()}.",
            )
        out[split] = (images.reshape(len(images), SIDE * SIDE), labels)
    return out

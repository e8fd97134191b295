"""Pixel-by-pixel MNIST: sequential (`smnist`) and permuted (`pmnist`), the benchmark of Le et al. 2015
("A Simple Way to Initialize Recurrent Networks of Rectified Linear Units") on which Cooijmans
et al. 2016 measured recurrent batch normalisation.

Each 28×28 image (pixels / 255, in [0, 1]) is read row by row, `k = 784 / seq_len` pixels per
step: T = 784 is one pixel per step (the literature's setting); shorter sequences take rows of
k consecutive pixels per step (e.g. T = 28: one image row per step), so the information stays
the whole image and only the distance to carry it shrinks. `seq_len` must divide 784.
`pmnist` applies one fixed permutation of the 784 pixels (drawn from `data_seed`) to every
image before grouping them into steps.

Splits: validation = `n_val` images of the official 60000 training images, training = the next
`n_train` of the same seeded permutation (null = all the rest); test = the official 10000 test
images (or `n_test` of them, a seeded subset). Both tasks draw the same images for the same
`data_seed`, so smnist and pmnist compare on identical splits. Files: `mnist_files.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from benchmark.core.config import ConfigError
from benchmark.tasks import mnist_files
from benchmark.tasks.base import ClassificationTask, defaults_from, split_seed

N_PIXELS = 784
N_CLASSES = 10
SEQ_LENS = tuple(d for d in range(1, N_PIXELS + 1) if N_PIXELS % d == 0)  # 1, 2, 4, 7, …, 392, 784


@dataclass
@defaults_from("smnist")  # n_train null = every training image not in val (55000 with n_val=5000)
class SequentialMNIST(ClassificationTask):
    data_dir: str  # where the four files are looked for and downloaded to
    mirrors: list[str]

    output_size = N_CLASSES
    permute: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.seq_len not in SEQ_LENS:
            raise ConfigError(
                "task.seq_len",
                self.seq_len,
                "a divisor of 784 (784 / pixels per step): " + ", ".join(map(str, SEQ_LENS)),
            )
        super().__post_init__()
        self._paths = mnist_files.ensure_files(self.data_dir, self.mirrors)  # downloads once, or says where to put them
        n_train_file = mnist_files.count(self._paths["train_images"])
        n_test_file = mnist_files.count(self._paths["test_images"])
        if self.n_val + (self.n_train or 1) > n_train_file:  # null n_train: at least one image left
            raise ConfigError(
                "task.n_train",
                self.n_train,
                f"n_train + n_val <= {n_train_file} (training images in {self.data_dir}; n_val={self.n_val})",
            )
        if self.n_test > n_test_file:
            raise ConfigError(
                "task.n_test", self.n_test, f"an integer <= {n_test_file} (test images in {self.data_dir})"
            )

    @classmethod
    def allowed_seq_len(cls, want: int) -> int:
        return min(SEQ_LENS, key=lambda d: (abs(d - want), d))

    @property
    def input_size(self) -> int:  # pixels per step
        return N_PIXELS // self.seq_len

    def pixel_order(self) -> Tensor:
        """The order in which the 784 pixels are read: row-major, or pmnist's fixed permutation."""
        if not self.permute:
            return torch.arange(N_PIXELS)
        return torch.randperm(N_PIXELS, generator=torch.Generator().manual_seed(split_seed("pmnist", self.data_seed)))

    def splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        if self._cache is None:
            data = mnist_files.load(self._paths)
            order = self.pixel_order()

            def seq(images):
                return (
                    torch.from_numpy(images.copy())[:, order]
                    .float()
                    .div_(255)
                    .view(len(images), self.seq_len, self.input_size)
                )  # (N, T, k)

            x_tr, y_tr = data["train"]
            x_te, y_te = data["test"]
            perm = torch.randperm(
                len(y_tr), generator=torch.Generator().manual_seed(split_seed("mnist", self.data_seed))
            )
            n_train = self.n_train or len(y_tr) - self.n_val
            idx = {"val": perm[: self.n_val], "train": perm[self.n_val : self.n_val + n_train]}
            test_idx = (
                torch.arange(len(y_te))
                if self.n_test == len(y_te)
                else torch.randperm(
                    len(y_te), generator=torch.Generator().manual_seed(split_seed("mnist", self.data_seed, "test"))
                )[: self.n_test]
            )
            labels_tr, labels_te = torch.from_numpy(y_tr.astype("int64")), torch.from_numpy(y_te.astype("int64"))
            self._cache = {
                "train": (seq(x_tr[idx["train"].numpy()]), labels_tr[idx["train"]]),
                "val": (seq(x_tr[idx["val"].numpy()]), labels_tr[idx["val"]]),
                "test": (seq(x_te[test_idx.numpy()]), labels_te[test_idx]),
            }
        return self._cache


@dataclass
@defaults_from("pmnist")
class PermutedMNIST(SequentialMNIST):
    """pMNIST: the same images with one fixed permutation of the 784 pixels (from `data_seed`)."""

    permute: ClassVar[bool] = True

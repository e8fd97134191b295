"""Scikit-learn's bundled 8×8 digits, read pixel by pixel (Le et al. 2015's pixel MNIST, small).

1797 images ship with scikit-learn (no download). Each image is flattened row-major to 64
pixels scaled to [0, 1], one feature per step. A longer `seq_len` appends `seq_len - 64`
blank (0) steps after the image, so the model reads the same 64 pixels at every length and
only the distance it must carry them to the answer (read at the last step) grows: length is
not confounded with information. `seq_len < 64` is refused (it would drop pixels). The split
is a permutation drawn from `data_seed` (the same for every `seq_len`, so lengths compare on
identical images). `metric` is the classification error (1 - accuracy), for symmetry with
the other tasks' lower-is-better metrics.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.core.config import ConfigError
from benchmark.tasks.base import ClassificationTask, defaults_from, split_seed

N_PIXELS = 64
N_CLASSES = 10


@functools.cache
def load_pixels() -> tuple[Tensor, Tensor]:
    """All 1797 images: (N, 64) float in [0, 1] and labels (N,) long. Read once per process (every member of a
    cohort draws its split from them); callers index them, never write into them."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.tensor(d.data, dtype=torch.float32) / 16.0, torch.tensor(d.target, dtype=torch.long)


@functools.cache
def first_varying_pixel() -> int:
    """The first pixel whose value differs between the shipped images (pixel 0 is blank in all of them)."""
    pixels, _ = load_pixels()
    return int(torch.nonzero(pixels.std(0) > 0)[0])


def pad_blank(pixels: Tensor, seq_len: int) -> Tensor:
    """(N, 64) -> (N, seq_len): the pixels, then seq_len - 64 blank (0) steps."""
    return F.pad(pixels, (0, seq_len - pixels.shape[1]))


@dataclass
@defaults_from("digits")  # n_train null = every image not in val/test (1797 - 200 - 400 = 1197)
class DigitsTask(ClassificationTask):
    input_size = 1
    output_size = N_CLASSES
    min_seq_len = N_PIXELS  # every pixel is read; longer sequences add blank steps

    def __post_init__(self) -> None:
        super().__post_init__()
        total = 1797
        used = self.n_val + self.n_test + (self.n_train or 0)
        if used > total or self.n_val + self.n_test >= total:
            raise ConfigError(
                "task.n_train", self.n_train, f"n_train + n_val + n_test <= {total} (the images scikit-learn ships)"
            )

    @property
    def probe_steps(self) -> tuple[int, int]:
        """From the first pixel that varies between images to the last step: pixel 0 is blank in every image,
        so h_1 is the same for every example, BN's population variance at step 2 is 0 and, in eval mode,
        ∂L/∂h_1 is exactly 0 (an undefined ratio); the gradient that carries the image starts a step later."""
        return first_varying_pixel(), self.total_len - 1

    def splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        if self._cache is None:
            pixels, labels = load_pixels()
            x = pad_blank(pixels, self.seq_len)[..., None]  # (N, T, 1)
            perm = torch.randperm(
                len(labels), generator=torch.Generator().manual_seed(split_seed(self.name, self.data_seed))
            )  # independent of seq_len
            n_test, n_val = self.n_test, self.n_val
            n_train = self.n_train or len(labels) - n_val - n_test
            idx = {
                "test": perm[:n_test],
                "val": perm[n_test : n_test + n_val],
                "train": perm[n_test + n_val : n_test + n_val + n_train],
            }
            self._cache = {
                k: (x[i].contiguous(), labels[i]) for k, i in ((k, idx[k]) for k in ("train", "val", "test"))
            }
        return self._cache

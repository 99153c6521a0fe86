"""Loaders for the standard distribution files, read from a local directory.

- CIFAR-10: ``cifar-10-batches-py/{data_batch_1..5,test_batch}`` (python pickles)
- CIFAR-100: ``cifar-100-python/{train,test}`` (pickles with ``fine_labels``)
- MNIST / Fashion-MNIST: ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` in
  ``<root>/mnist`` or ``<root>/fashion_mnist`` (or directly in ``<root>``)

Nothing is downloaded unless the scenario says ``download: true``; then the official
archives are fetched once into ``root``.
"""

from __future__ import annotations

import gzip
import pickle
import struct
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import torch

from ecofed_sim.data.base import ImageSet, make_set

URLS = {
    "cifar10": ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"],
    "cifar100": ["https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"],
    "mnist": [f"https://ossci-datasets.s3.amazonaws.com/mnist/{f}.gz" for f in (
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")],
    "fashion_mnist": [
        f"http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/{f}.gz" for f in (
            "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")],
}


class DatasetFilesError(FileNotFoundError):
    """Raised with a one-line message naming the missing file."""


def _unpickle(path: Path) -> dict:
    if not path.exists():
        raise DatasetFilesError(f"{path}: file not found")
    with path.open("rb") as f:
        return pickle.load(f, encoding="bytes")


def _cifar(root: Path, folder: str, files: list[str], label_key: bytes) -> tuple:
    parts = [_unpickle(root / folder / name) for name in files]
    x = np.concatenate([p[b"data"] for p in parts]).reshape(-1, 3, 32, 32)
    y = np.concatenate([np.asarray(p[label_key]) for p in parts])
    return torch.from_numpy(x.astype(np.uint8)), torch.from_numpy(y.astype(np.int64))


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), optionally gzip-compressed."""
    if not path.exists() and Path(str(path) + ".gz").exists():
        path = Path(str(path) + ".gz")
    if not path.exists():
        raise DatasetFilesError(f"{path}: file not found")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DatasetFilesError(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _mnist_dir(root: Path, name: str) -> Path:
    sub = root / name
    return sub if sub.is_dir() else root


def _mnist(root: Path, prefix: str) -> tuple:
    x = read_idx(root / f"{prefix}-images-idx3-ubyte")
    y = read_idx(root / f"{prefix}-labels-idx1-ubyte")
    images = torch.from_numpy(x.copy()).view(-1, 1, x.shape[1], x.shape[2])
    return images, torch.from_numpy(y.astype(np.int64))


def fetch(name: str, root: Path) -> None:
    """Fetch the official archives into ``root`` (only on request, needs the internet)."""
    target = root / name if name in ("mnist", "fashion_mnist") else root
    target.mkdir(parents=True, exist_ok=True)
    for url in URLS[name]:
        dest = target / url.rsplit("/", 1)[1]
        if not dest.exists():
            urllib.request.urlretrieve(url, dest)  # noqa: S310 (fixed https/http URLs)
        if dest.name.endswith(".tar.gz"):
            with tarfile.open(dest) as tar:
                tar.extractall(target, filter="data")


def load_files(name: str, root: Path, download: bool = False) -> tuple[ImageSet, ImageSet]:
    """(train, test) for cifar10, cifar100, mnist or fashion_mnist under ``root``."""
    if download:
        fetch(name, root)
    if name == "cifar10":
        train = _cifar(root, "cifar-10-batches-py",
                       [f"data_batch_{i}" for i in range(1, 6)], b"labels")
        test = _cifar(root, "cifar-10-batches-py", ["test_batch"], b"labels")
        classes = 10
    elif name == "cifar100":
        train = _cifar(root, "cifar-100-python", ["train"], b"fine_labels")
        test = _cifar(root, "cifar-100-python", ["test"], b"fine_labels")
        classes = 100
    elif name in ("mnist", "fashion_mnist"):
        folder = _mnist_dir(root, name)
        train, test = _mnist(folder, "train"), _mnist(folder, "t10k")
        classes = 10
    else:
        raise ValueError(f"unknown dataset {name!r}")
    return (make_set(*train, classes),
            make_set(*test, classes, stats_from=train[0]))

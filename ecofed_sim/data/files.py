"""Loaders for the standard distribution files, read from a local directory.

- CIFAR-10: ``cifar-10-batches-py/{data_batch_1..5,test_batch}`` (python pickles)
- CIFAR-100: ``cifar-100-python/{train,test}`` (pickles with ``fine_labels``)
- MNIST / Fashion-MNIST: ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` in
  ``<root>/mnist`` or ``<root>/fashion_mnist`` (or directly in ``<root>``)

Data files from elsewhere are untrusted. The CIFAR pickles are read by an unpickler that
admits only what the format holds (dicts, lists, bytes, numbers and numpy arrays), so a
crafted file cannot run code; IDX headers are checked against the file's length; labels
are checked against the class count. Every failure is one line naming the file.

Nothing is downloaded unless the scenario says ``download: true``; then the official
archives are fetched once into ``root``, each to a temporary file that is checked against
its published MD5 before it is renamed into place.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import torch

from ecofed_sim.data.base import ImageSet, make_set
from ecofed_sim.data.layout import (  # noqa: F401 - re-exported
    FILE_DATASETS,
    DatasetFilesError,
    _mnist_dir,
    check_files,
    expected_files,
)

# (url, md5) of the official archives (the MD5s the publishers and torchvision list)
URLS = {
    "cifar10": [("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                 "c58f30108f718f92721af3b95e74349a")],
    "cifar100": [("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                  "eb9058c3a382ffc7106e4002c42a8d85")],
    "mnist": [(f"https://ossci-datasets.s3.amazonaws.com/mnist/{f}.gz", md5) for f, md5 in (
        ("train-images-idx3-ubyte", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte", "d53e105ee54ea40749a09fcbcd1e9432"),
        ("t10k-images-idx3-ubyte", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte", "ec29112dd5afa0611ce80d1b7f02629c"))],
    "fashion_mnist": [
        (f"http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/{f}.gz", md5)
        for f, md5 in (
            ("train-images-idx3-ubyte", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            ("train-labels-idx1-ubyte", "25c81989df183df01b3e8a0aad5dffbe"),
            ("t10k-images-idx3-ubyte", "bef4ecab320f06d8554ea6380940ec79"),
            ("t10k-labels-idx1-ubyte", "bb300cfdad3c16e7a12a480ee83cd310"))],
}
CIFAR_SAMPLE_BYTES = 3 * 32 * 32


def _numpy_globals() -> dict[tuple[str, str], object]:
    """The only globals a CIFAR pickle may name: how numpy rebuilds an array."""
    import _codecs

    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _codecs.encode}  # bytes in protocol-2 pickles
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer  # protocol 5
    return allowed


class _DataUnpickler(pickle.Unpickler):
    """Builds containers, numbers, strings and numpy arrays; refuses every other global
    (``os.system``, ``builtins.eval``...), so loading a file never runs its code."""

    _ALLOWED = _numpy_globals()

    def find_class(self, module: str, name: str) -> object:
        found = self._ALLOWED.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"refused global {module}.{name}")
        return found


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise DatasetFilesError(f"{path}: file not found")
    if not path.is_file():
        raise DatasetFilesError(f"{path}: not a regular file")
    try:
        return path.read_bytes()
    except OSError as err:
        raise DatasetFilesError(f"{path}: cannot read ({err.strerror})") from None


def _unpickle(path: Path) -> dict:
    try:
        batch = _DataUnpickler(io.BytesIO(_read_bytes(path)), encoding="bytes").load()
    except pickle.UnpicklingError as err:
        raise DatasetFilesError(f"{path}: not a CIFAR python batch ({err})") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, struct.error):
        raise DatasetFilesError(f"{path}: not a CIFAR python batch (truncated or "
                                "malformed pickle)") from None
    if not isinstance(batch, dict):
        raise DatasetFilesError(f"{path}: not a CIFAR python batch (no dict inside)")
    return batch


def _cifar_part(path: Path, label_key: bytes, classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    data, labels = batch.get(b"data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != CIFAR_SAMPLE_BYTES:
        raise DatasetFilesError(f"{path}: 'data' is not a uint8 array of N x "
                                f"{CIFAR_SAMPLE_BYTES}")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        y = np.zeros(0, dtype=np.int64) - 1
    if y.shape != (len(data),) or (len(y) and (y.min() < 0 or y.max() >= classes)):
        raise DatasetFilesError(f"{path}: {label_key.decode()!r} is not {len(data)} labels "
                                f"in 0..{classes - 1}")
    return data, y


def _cifar(root: Path, folder: str, files: list[str], label_key: bytes,
           classes: int) -> tuple:
    parts = [_cifar_part(root / folder / name, label_key, classes) for name in files]
    x = np.concatenate([p[0] for p in parts]).reshape(-1, 3, 32, 32)
    y = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(x), torch.from_numpy(y)


def read_idx(path: Path, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (the MNIST format) of unsigned bytes, optionally gzip-compressed;
    the header must match the file's length (and ``ndim`` when given)."""
    if not path.exists() and Path(str(path) + ".gz").exists():
        path = Path(str(path) + ".gz")
    raw = _read_bytes(path)
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error):
            raise DatasetFilesError(f"{path}: truncated or not gzip") from None
    if len(raw) < 4:
        raise DatasetFilesError(f"{path}: too short for an IDX header")
    zero, dtype_code, dims_n = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or dims_n == 0 or (ndim and dims_n != ndim):
        raise DatasetFilesError(f"{path}: not an unsigned-byte IDX file"
                                + (f" of {ndim} dimensions" if ndim else ""))
    header = 4 + 4 * dims_n
    if len(raw) < header:
        raise DatasetFilesError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{dims_n}I", raw[4:header])
    if int(np.prod(dims, dtype=np.int64)) != len(raw) - header:
        raise DatasetFilesError(f"{path}: header says {'x'.join(map(str, dims))} values, "
                                f"the file holds {len(raw) - header} (truncated?)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _mnist(root: Path, prefix: str) -> tuple:
    x = read_idx(root / f"{prefix}-images-idx3-ubyte", ndim=3)
    y = read_idx(root / f"{prefix}-labels-idx1-ubyte", ndim=1)
    if len(x) != len(y) or (len(y) and y.max() >= 10):
        raise DatasetFilesError(f"{root / prefix}-labels-idx1-ubyte: {len(y)} labels in "
                                f"0..9 expected for {len(x)} images")
    images = torch.from_numpy(x.copy()).view(-1, 1, x.shape[1], x.shape[2])
    return images, torch.from_numpy(y.astype(np.int64))


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, md5: str, dest: Path) -> None:
    """``url`` to ``dest``, through a temporary file checked against ``md5``: an
    interrupted or corrupt download never leaves a file later runs would take as done."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    try:
        try:
            urllib.request.urlretrieve(url, tmp)  # noqa: S310 (fixed https/http URLs)
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", None) or err.__class__.__name__
            raise DatasetFilesError(f"{dest}: cannot download {url} ({reason}); put the "
                                    "file there by hand and run again") from None
        if _md5(Path(tmp)) != md5:
            raise DatasetFilesError(f"{dest}: download from {url} does not match its "
                                    "published MD5 (corrupt or changed); not kept")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def extract(archive: Path, target: Path) -> None:
    """Unpack a tar archive with the "data" filter (no absolute paths, links out of the
    folder or device files): Python 3.10.12+ / 3.11.4+ have it, older ones are refused."""
    if not hasattr(tarfile, "data_filter"):
        raise DatasetFilesError(f"{archive}: this Python has no safe tar extraction "
                                "(needs 3.10.12+ or 3.11.4+); unpack it by hand")
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise DatasetFilesError(f"{archive}: cannot unpack ({err})") from None


def fetch(name: str, root: Path) -> None:
    """Fetch the official archives into ``root`` (only on request, needs the internet)."""
    target = root / name if name in ("mnist", "fashion_mnist") else root
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DatasetFilesError(f"{target}: cannot create ({err.strerror})") from None
    for url, md5 in URLS[name]:
        dest = target / url.rsplit("/", 1)[1]
        if not dest.exists():
            download(url, md5, dest)
        if dest.name.endswith(".tar.gz"):
            extract(dest, target)


def load_files(name: str, root: Path, download: bool = False) -> tuple[ImageSet, ImageSet]:
    """(train, test) for cifar10, cifar100, mnist or fashion_mnist under ``root``."""
    if download:
        fetch(name, root)
    if name == "cifar10":
        train = _cifar(root, "cifar-10-batches-py",
                       [f"data_batch_{i}" for i in range(1, 6)], b"labels", 10)
        test = _cifar(root, "cifar-10-batches-py", ["test_batch"], b"labels", 10)
        classes = 10
    elif name == "cifar100":
        train = _cifar(root, "cifar-100-python", ["train"], b"fine_labels", 100)
        test = _cifar(root, "cifar-100-python", ["test"], b"fine_labels", 100)
        classes = 100
    elif name in ("mnist", "fashion_mnist"):
        folder = _mnist_dir(root, name)
        train, test = _mnist(folder, "train"), _mnist(folder, "t10k")
        classes = 10
    else:
        raise ValueError(f"unknown dataset {name!r}")
    for split, (x, _) in (("train", train), ("test", test)):
        if len(x) == 0:
            raise DatasetFilesError(f"{root}: the {name} {split} files hold no samples")
    train_set = make_set(*train, classes)
    return train_set, make_set(*test, classes, stats_from=train_set)

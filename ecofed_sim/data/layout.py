"""Where each dataset's files live and whether they are there: what checking a scenario
needs, without reading an image (and without importing torch)."""

from __future__ import annotations

from pathlib import Path

DIGITS = 5000  # rows of the embedded mnist_5k.csv.gz

FILE_DATASETS = ("cifar10", "cifar100", "mnist", "fashion_mnist", "image_folder")


class DatasetFilesError(FileNotFoundError):
    """Raised with a one-line message naming the missing or malformed file."""


class FolderError(FileNotFoundError):
    """A missing folder or an unreadable image; the message is one line naming it."""


def class_names(root: Path) -> list[str]:
    """The classes: the folders under ``root/train``, sorted."""
    train = root / "train"
    if not train.is_dir():
        raise FolderError(f"{train} not found (the class-per-folder layout: "
                          f"{root}/train/<class>/<image> and {root}/test/<class>/<image>)")
    names = sorted(p.name for p in train.iterdir() if p.is_dir())
    if not names:
        raise FolderError(f"{train}: no class folders")
    return names


def _mnist_dir(root: Path, name: str) -> Path:
    sub = root / name
    return sub if sub.is_dir() else root


def expected_files(name: str, root: Path) -> list[Path]:
    """The files ``load_files`` reads for a dataset under ``root`` (none is opened)."""
    if name == "cifar10":
        folder = root / "cifar-10-batches-py"
        return [folder / f"data_batch_{i}" for i in range(1, 6)] + [folder / "test_batch"]
    if name == "cifar100":
        return [root / "cifar-100-python" / part for part in ("train", "test")]
    folder = _mnist_dir(root, name)
    return [folder / f"{prefix}-{kind}-idx{n}-ubyte" for prefix in ("train", "t10k")
            for kind, n in (("images", 3), ("labels", 1))]


def check_files(name: str, root: Path) -> None:
    """The dataset's files are all there (their content is checked when read)."""
    if name == "image_folder":
        class_names(root)  # FolderError (a FileNotFoundError) names what is missing
        return
    missing = [p for p in expected_files(name, root)
               if not (p.is_file() or p.with_name(p.name + ".gz").is_file())]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise DatasetFilesError(f"{missing[0]} not found{more} (the {name} files under "
                                f"{root}; or set download: true)")


def dataset_root(spec, base_dir: Path | None = None) -> Path:
    """``data.root`` (default ``data``), relative to the scenario file's folder."""
    root = Path(spec.root or "data")
    return base_dir / root if base_dir is not None and not root.is_absolute() else root

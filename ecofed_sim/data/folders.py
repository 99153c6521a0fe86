"""Images in the standard class-per-folder layout (torchvision's ``ImageFolder``, ImageNet's,
Tiny-ImageNet's), without torchvision: Pillow (which matplotlib already needs) decodes.

    <root>/train/<class>/<image>      training images, one folder per class
    <root>/test/<class>/<image>       test images (or <root>/val/<class>/<image>)

Tiny-ImageNet's validation split keeps its images in ``val/images`` with the classes in
``val/val_annotations.txt`` (file, class, box): that layout is read as it comes. Images
are converted to the scenario's ``data.image_shape`` (grey or RGB, resized with bilinear
filtering where their size differs) and held as uint8. Classes are the training folders,
sorted by name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ecofed_sim.data.base import ImageSet, make_set
from ecofed_sim.data.layout import FolderError, class_names  # noqa: F401 - re-exported

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".gif", ".tif", ".tiff", ".webp")


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS)


def _listing(root: Path, split: str, classes: list[str]) -> list[tuple[Path, int]]:
    """(image, label) of a split, in a fixed order."""
    index = {name: i for i, name in enumerate(classes)}
    if split == "train":
        return [(p, index[c]) for c in classes for p in _images(root / "train" / c)]
    folder = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
    if folder is None:
        raise FolderError(f"{root}: no test/ or val/ folder")
    notes = folder / "val_annotations.txt"
    if notes.is_file():  # Tiny-ImageNet: val/images + annotations
        out = []
        for n, line in enumerate(notes.read_text().splitlines(), 1):
            parts = line.split("\t")
            if len(parts) < 2 or parts[1] not in index:
                raise FolderError(f"{notes}: line {n}: expected 'file<TAB>class' with a "
                                  "class among the training folders")
            out.append((folder / "images" / parts[0], index[parts[1]]))
        return out
    unknown = sorted({p.name for p in folder.iterdir() if p.is_dir()} - set(index))
    if unknown:
        raise FolderError(f"{folder}: class folders not in train/: {unknown[:3]}")
    return [(p, index[c]) for c in classes if (folder / c).is_dir()
            for p in _images(folder / c)]


def _decode(path: Path, shape: tuple[int, int, int]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    c, h, w = shape
    try:
        with Image.open(path) as img:
            img = img.convert("L" if c == 1 else "RGB")
            if img.size != (w, h):
                img = img.resize((w, h), Image.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as err:
        raise FolderError(f"{path}: not a readable image ({err.__class__.__name__})") from None
    return array[None] if c == 1 else array.transpose(2, 0, 1)


def _read(listing: list[tuple[Path, int]], shape: tuple[int, int, int],
          where: Path) -> tuple[torch.Tensor, torch.Tensor]:
    if not listing:
        raise FolderError(f"{where}: no images ({', '.join(EXTENSIONS)})")
    images = np.stack([_decode(p, shape) for p, _ in listing])
    labels = torch.tensor([label for _, label in listing], dtype=torch.int64)
    return torch.from_numpy(images), labels


def load_image_folder(root: Path, shape: tuple[int, int, int]) -> tuple[ImageSet, ImageSet]:
    """(train, test) from a class-per-folder tree, as ``shape`` (C, H, W) uint8 images."""
    classes = class_names(root)
    train_x, train_y = _read(_listing(root, "train", classes), shape, root / "train")
    test_x, test_y = _read(_listing(root, "test", classes), shape, root)
    train = make_set(train_x, train_y, len(classes))
    return train, make_set(test_x, test_y, len(classes), stats_from=train)

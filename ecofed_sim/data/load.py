"""Which loader a scenario's ``data`` section calls (the loaders depend on ``base`` only)."""

from __future__ import annotations

from pathlib import Path

from ecofed_sim.data import embedded, files, synthetic
from ecofed_sim.data.base import ImageSet
from ecofed_sim.data.layout import dataset_root


def load_dataset(spec, base_dir: Path | None = None,
                 images: bool = True) -> tuple[ImageSet, ImageSet]:
    """(train, test) for a scenario's ``data`` section; ``root`` is relative to the
    scenario file's folder (``base_dir``). ``images=False``: only labels and counts will
    be read (a timing-only run), so a synthetic set is not rendered; files are read as
    they are."""
    if spec.dataset == "embedded_mnist":
        return embedded.load_embedded_mnist(spec.test_samples, spec.split_seed)
    if spec.dataset == "synthetic":
        return synthetic.make_synthetic(spec.synthetic, spec.split_seed, images=images)
    if spec.dataset == "image_folder":
        from ecofed_sim.data.folders import load_image_folder

        return load_image_folder(dataset_root(spec, base_dir), tuple(spec.image_shape))
    return files.load_files(spec.dataset, dataset_root(spec, base_dir), download=spec.download)



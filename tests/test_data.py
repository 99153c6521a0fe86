"""Datasets and partitioners, on files the tests write in the standard formats."""

from __future__ import annotations

import gzip
import pickle
import shutil
import struct

import numpy as np
import pytest
import torch

from ecofed_sim.data.embedded import load_embedded_mnist
from ecofed_sim.data.files import DatasetFilesError, load_files, read_idx
from ecofed_sim.data.partition import dirichlet, iid, shards
from ecofed_sim.data.synthetic import make_synthetic
from ecofed_sim.scenario import SyntheticSpec


def _write_idx(path, array: np.ndarray, compress: bool) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I",
                                                                    *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx_files(tmp_path, compress):
    rng = np.random.default_rng(0)
    folder = tmp_path / "fashion_mnist"
    folder.mkdir()
    tr_x, te_x = rng.integers(0, 256, (30, 28, 28)), rng.integers(0, 256, (10, 28, 28))
    tr_y, te_y = rng.integers(0, 10, 30), rng.integers(0, 10, 10)
    for prefix, x, y in (("train", tr_x, tr_y), ("t10k", te_x, te_y)):
        _write_idx(folder / f"{prefix}-images-idx3-ubyte", x, compress)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte", y, compress)
    train, test = load_files("fashion_mnist", tmp_path)
    assert train.images_u8.shape == (30, 1, 28, 28) and len(test) == 10
    assert torch.equal(train.images_u8[:, 0], torch.from_numpy(tr_x.astype(np.uint8)))
    assert train.labels.tolist() == tr_y.tolist()
    x, _ = train.batch(torch.arange(30))
    assert abs(float(x.mean())) < 1e-4  # normalised with the train statistics


def test_cifar10_and_cifar100_pickles(tmp_path):
    rng = np.random.default_rng(1)
    c10 = tmp_path / "cifar-10-batches-py"
    c10.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, 4).tolist()}
        (c10 / name).write_bytes(pickle.dumps(batch))
    train, test = load_files("cifar10", tmp_path)
    assert train.images_u8.shape == (20, 3, 32, 32) and test.num_classes == 10
    first = pickle.loads((c10 / "data_batch_1").read_bytes())
    assert torch.equal(train.images_u8[0].flatten(), torch.from_numpy(first[b"data"][0]))
    c100 = tmp_path / "cifar-100-python"
    c100.mkdir()
    for name, n in (("train", 6), ("test", 3)):
        (c100 / name).write_bytes(pickle.dumps({
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"fine_labels": rng.integers(0, 100, n).tolist()}))
    train, test = load_files("cifar100", tmp_path)
    assert len(train) == 6 and train.num_classes == 100


def test_missing_files_name_the_file(tmp_path):
    with pytest.raises(DatasetFilesError, match="data_batch_1: file not found"):
        load_files("cifar10", tmp_path)
    with pytest.raises(DatasetFilesError, match="not found"):
        read_idx(tmp_path / "x-idx3-ubyte")


def test_embedded_mnist_is_real_digits():
    train, test = load_embedded_mnist(1000, 0)
    assert len(train) == 4000 and len(test) == 1000 and train.shape == (1, 28, 28)
    assert sorted(torch.unique(train.labels).tolist()) == list(range(10))
    assert train.images_u8.float().mean() < 60  # mostly black background, as MNIST


def test_synthetic_is_deterministic_and_learnable():
    spec = SyntheticSpec(shape=(3, 16, 16), classes=5, train_samples=2000, test_samples=500)
    train, test = make_synthetic(spec, 0)
    again, _ = make_synthetic(spec, 0)
    assert torch.equal(train.images_u8, again.images_u8)
    # a nearest-class-mean classifier on raw pixels is far above chance (0.2) ...
    x_tr, y_tr = train.batch(torch.arange(len(train)))
    x_te, y_te = test.batch(torch.arange(len(test)))
    means = torch.stack([x_tr[y_tr == c].mean(0) for c in range(5)]).flatten(1)
    pred = torch.cdist(x_te.flatten(1), means).argmin(1)
    accuracy = float((pred == y_te).float().mean())
    assert accuracy > 0.6
    # ... but not trivial: samples of a class differ (noise, shift, contrast)
    assert float(x_tr[y_tr == 0].std(0).mean()) > 0.2


def _render_by_offset(templates, labels, noise, gen):
    """The synthetic images as first defined: samples rolled in groups by offset, each
    step a fresh tensor (the oracle for the one-gather, in-place ``_render``)."""
    n = labels.shape[0]
    x = templates[labels]
    shift = torch.randint(-2, 3, (n, 2), generator=gen)
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            pick = (shift[:, 0] == dy) & (shift[:, 1] == dx)
            x[pick] = torch.roll(x[pick], shifts=(dy, dx), dims=(2, 3))
    x = x * (0.6 + 0.8 * torch.rand(n, 1, 1, 1, generator=gen))
    x = x + noise * torch.randn(x.shape, generator=gen)
    return ((x.clamp(-2, 2) + 2) * (255 / 4)).round().to(torch.uint8)


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 7, 5)])
def test_rendering_gives_the_same_images_as_rolling_by_offset(shape):
    """Every seed's images stay what they were: runs, caches and figures depend on them."""
    from ecofed_sim.data import synthetic

    gen = torch.Generator().manual_seed(11)
    templates = synthetic._templates(6, shape, gen)
    labels = torch.randint(0, 6, (700,), generator=gen)
    fast = synthetic._render(templates, labels, 0.4, torch.Generator().manual_seed(2))
    slow = _render_by_offset(templates, labels, 0.4, torch.Generator().manual_seed(2))
    assert torch.equal(fast, slow)


def test_synthetic_without_images_draws_the_same_labels_and_renders_nothing():
    """A timing-only run reads labels and counts only: the same labels as the rendered
    set, and images that take no memory per sample."""
    spec = SyntheticSpec(shape=(3, 32, 32), classes=10, train_samples=50_000,
                         test_samples=1000)
    train, test = make_synthetic(spec, 0)
    blank_train, blank_test = make_synthetic(spec, 0, images=False)
    assert torch.equal(blank_train.labels, train.labels)
    assert torch.equal(blank_test.labels, test.labels)
    assert blank_train.shape == train.shape and len(blank_test) == len(test)
    assert blank_train.images_u8.stride()[0] == 0  # one blank image, viewed 50,000 times
    assert blank_train.images_u8.untyped_storage().nbytes() == 3 * 32 * 32


def test_iid_partition_is_disjoint_and_equal():
    parts = iid(1000, 10, 100, np.random.default_rng(0))
    flat = np.concatenate(parts)
    assert len(flat) == len(set(flat.tolist())) == 1000
    assert {len(p) for p in parts} == {100}


def test_label_shards_limit_classes_per_client():
    labels = np.random.default_rng(5).permutation(np.repeat(np.arange(10), 100))
    rng = np.random.default_rng(0)
    parts = shards(labels, clients=10, per_client=100, shard_size=20, sort_by_label=True,
                   rng=rng)
    assert all(len(np.unique(labels[p])) <= 5 for p in parts)
    assert len(np.unique(np.concatenate(parts))) == 1000
    unsorted = shards(labels, 10, 100, 20, sort_by_label=False, rng=np.random.default_rng(0))
    assert np.mean([len(np.unique(labels[p])) for p in unsorted]) > 8  # the paper's IID


def test_dirichlet_small_alpha_skews_labels():
    labels = np.repeat(np.arange(10), 200)
    skewed = dirichlet(labels, 20, 0.05, np.random.default_rng(0))
    even = dirichlet(labels, 20, 100.0, np.random.default_rng(0))
    assert sorted(np.concatenate(skewed).tolist()) == list(range(2000))

    def mean_classes(parts):
        return np.mean([len(np.unique(labels[p])) for p in parts if len(p)])

    assert mean_classes(skewed) < 4 < 9 < mean_classes(even)


def test_dirichlet_redraws_until_every_client_has_min_samples():
    labels = np.repeat(np.arange(10), 40)
    plain = dirichlet(labels, 10, 0.1, np.random.default_rng(1), min_samples=1)
    assert min(len(p) for p in plain) < 5  # the first acceptable draw leaves one small...
    rng = np.random.default_rng(1)
    parts = dirichlet(labels, 10, 0.1, rng, min_samples=5)
    assert min(len(p) for p in parts) >= 5  # ...the redraws do not
    assert sorted(np.concatenate(parts).tolist()) == list(range(400))  # a partition
    with pytest.raises(ValueError, match="30 clients x min_samples 20 exceeds the 400"):
        dirichlet(labels, 30, 0.01, rng, min_samples=20)
    # 10 classes at alpha 0.01 reach about 10 of 30 clients: no draw fills them all
    with pytest.raises(ValueError, match="no Dirichlet\\(alpha=0.01\\) draw in 1000"):
        dirichlet(labels, 30, 0.01, rng, min_samples=1)


def test_dirichlet_honours_samples_per_client_as_the_mean():
    from ecofed_sim.data.partition import partition
    from ecofed_sim.scenario import PartitionSpec

    labels = np.repeat(np.arange(10), 100)
    spec = PartitionSpec(kind="dirichlet", alpha=0.5, samples_per_client=20, min_samples=2)
    parts = partition(labels, 10, spec, seed=0)
    assert sum(len(p) for p in parts) == 200 and min(len(p) for p in parts) >= 2
    assert len(np.unique(np.concatenate(parts))) == 200
    assert len(set(map(len, parts))) > 1  # sizes still vary, as Dirichlet does


def _mnist_files(folder, n_train: int = 12, n_test: int = 4) -> None:
    rng = np.random.default_rng(3)
    folder.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)),
                   compress=prefix == "t10k")
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n), False)


def _mnist_scenario(directory, **data):
    from conftest import tiny, write_scenario

    raw = tiny(**{"data": {"dataset": "mnist", "test_samples": 4, **data},
                  "model": {"name": "small_cnn"}, "population.clients": 2})
    return write_scenario(directory, raw)


def test_validate_reports_dataset_files_that_are_missing(tiny_dir, capsys):
    from ecofed_sim.cli import main

    path = _mnist_scenario(tiny_dir)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "data.root: " in err and "train-images-idx3-ubyte not found and 3 more" in err
    assert str(tiny_dir / "data") in err  # the default root, next to the scenario


def test_the_default_data_root_is_next_to_the_scenario_file(tiny_dir, tmp_path_factory,
                                                              monkeypatch, capsys):
    from ecofed_sim.cli import main

    _mnist_files(tiny_dir / "data" / "mnist")
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    assert main(["validate", str(_mnist_scenario(tiny_dir))]) == 0, capsys.readouterr().err


def test_a_root_given_with_set_is_relative_to_the_working_folder(tiny_dir, tmp_path_factory,
                                                                   monkeypatch, capsys):
    from ecofed_sim.cli import main

    cwd = tmp_path_factory.mktemp("cwd")
    _mnist_files(cwd / "mine" / "mnist")
    monkeypatch.chdir(cwd)
    path = _mnist_scenario(tiny_dir)
    assert main(["validate", str(path), "--set", "data.root=mine"]) == 0, \
        capsys.readouterr().err
    assert main(["validate", str(path), "--set", "data={dataset: mnist, root: mine, "
                 "test_samples: 4}"]) == 0, capsys.readouterr().err


def _image_tree(root, classes=("cat", "dog"), per_class: int = 3, size=(10, 12)) -> None:
    from PIL import Image

    rng = np.random.default_rng(5)
    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"{i}.png")


def test_an_image_folder_loads_with_classes_from_its_training_folders(tmp_path):
    from ecofed_sim.data.folders import load_image_folder

    _image_tree(tmp_path / "imgs", size=(8, 8))
    (tmp_path / "imgs" / "train" / "cat" / "notes.txt").write_text("not an image")
    train, test = load_image_folder(tmp_path / "imgs", (3, 8, 8))
    assert (len(train), len(test), train.num_classes) == (6, 6, 2)
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1]  # cat, dog: sorted folder names
    from PIL import Image

    first = np.asarray(Image.open(tmp_path / "imgs" / "train" / "cat" / "0.png"))
    assert torch.equal(train.images_u8[0], torch.from_numpy(first.transpose(2, 0, 1).copy()))
    grey, _ = load_image_folder(tmp_path / "imgs", (1, 4, 4))  # converted and resized
    assert grey.images_u8.shape == (6, 1, 4, 4)


def test_tiny_imagenet_validation_annotations_are_read(tmp_path):
    from PIL import Image

    from ecofed_sim.data.folders import load_image_folder

    root = tmp_path / "tiny"
    _image_tree(root, classes=("n01", "n02"), size=(8, 8))
    shutil.rmtree(root / "test")
    (root / "val" / "images").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), 10 * i, np.uint8)).save(
            root / "val" / "images" / f"val_{i}.JPEG")
    (root / "val" / "val_annotations.txt").write_text(
        "".join(f"val_{i}.JPEG\t{c}\t0\t0\t8\t8\n" for i, c in enumerate(("n02", "n01", "n02"))))
    _, test = load_image_folder(root, (3, 8, 8))
    assert test.labels.tolist() == [1, 0, 1]


def test_image_folder_scenarios_validate_and_name_what_is_wrong(tiny_dir, capsys):
    from conftest import tiny, write_scenario

    from ecofed_sim.cli import main

    raw = tiny(**{"data": {"dataset": "image_folder", "root": "imgs",
                           "image_shape": [3, 8, 8]}})
    path = write_scenario(tiny_dir, raw)
    assert main(["validate", str(path)]) == 2
    assert "data.root: " in capsys.readouterr().err
    _image_tree(tiny_dir / "imgs", size=(8, 8))
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err
    (tiny_dir / "imgs" / "train" / "cat" / "1.png").write_bytes(b"broken")
    assert main(["run", str(path), "--out", str(tiny_dir / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1.png: not a readable image" in err, err
    path = write_scenario(tiny_dir, tiny(**{"data": {"dataset": "image_folder"}}), "x.yaml")
    assert main(["validate", str(path)]) == 2
    assert "image_folder needs image_shape" in capsys.readouterr().err

"""Files from someone else (datasets, traces, profiles, caches, downloads): loading them
never runs code, and every bad one is a one-line error naming it."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
import urllib.error

import numpy as np
import pytest
import torch
import yaml
from conftest import tiny, write_scenario

from ecofed_sim.cli import main
from ecofed_sim.data import files
from ecofed_sim.data.files import DatasetFilesError, load_files, read_idx


class RunsAShellCommand:
    """What a crafted pickle holds: unpickling it calls ``os.system``."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _cifar10(root, batch: dict, protocol: int = 4) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))


def _good_batch(n: int = 4) -> dict:
    rng = np.random.default_rng(0)
    return {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"labels": rng.integers(0, 10, n).tolist(), b"batch_label": b"training batch"}


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


def test_a_crafted_cifar_batch_runs_no_code(tiny_dir, capsys):
    marker = tiny_dir / "PWNED"
    _cifar10(tiny_dir / "data", {b"data": RunsAShellCommand(marker), b"labels": [0]})
    assert not marker.exists()
    raw = tiny(data={"dataset": "cifar10", "root": "data"}, model={"name": "small_cnn"})
    path = write_scenario(tiny_dir, raw)
    assert main(["run", str(path), "--out", str(tiny_dir / "out"), "--quiet"]) == 2
    err = _one_line(capsys)
    assert "data_batch_1: not a CIFAR python batch (refused global posix.system)" in err
    assert not marker.exists() and not (tiny_dir / "out").exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_genuine_cifar_pickles_load_under_every_protocol(tmp_path, protocol):
    """Protocol 2 is how the official (Python 2) files were written; 5 is today's."""
    batch = _good_batch()
    _cifar10(tmp_path, batch, protocol)
    train, test = load_files("cifar10", tmp_path)
    assert len(train) == 20 and len(test) == 4
    assert torch.equal(train.images_u8[0].flatten(), torch.from_numpy(batch[b"data"][0]))


@pytest.mark.parametrize("content, expected", [
    (b"", "truncated or malformed pickle"),
    (pickle.dumps(_good_batch())[:100], "pickle data was truncated"),
    (pickle.dumps([1, 2, 3]), "no dict inside"),
    (pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}),
     "'data' is not a uint8 array of N x 3072"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}),
     "'labels' is not 2 labels in 0..9"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": ["a", "b"]}),
     "'labels' is not 2 labels"),
], ids=["empty", "truncated", "list", "shape", "label_range", "label_type"])
def test_malformed_cifar_batches_name_the_file(tmp_path, content, expected):
    _cifar10(tmp_path, _good_batch())
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(content)
    with pytest.raises(DatasetFilesError, match="data_batch_3: .*" + expected):
        load_files("cifar10", tmp_path)


def _idx(array: np.ndarray) -> bytes:
    return (struct.pack(">HBB", 0, 0x08, array.ndim)
            + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("content, expected", [
    (_idx(np.zeros((5, 28, 28)))[:-10], "header says 5x28x28 values, the file holds 3910"),
    (b"\x00\x00", "too short for an IDX header"),
    (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
    (b"\x12\x34\x08\x03" + b"\x00" * 20, "not an unsigned-byte IDX file"),
    (_idx(np.zeros((5, 784))), "not an unsigned-byte IDX file of 3 dimensions"),
], ids=["truncated", "short", "short_header", "magic", "ndim"])
def test_malformed_idx_files_name_the_file(tmp_path, content, expected):
    (tmp_path / "x-idx3-ubyte").write_bytes(content)
    with pytest.raises(DatasetFilesError, match="x-idx3-ubyte: " + expected):
        read_idx(tmp_path / "x-idx3-ubyte", ndim=3)


def test_truncated_gzip_and_mismatched_labels(tmp_path):
    (tmp_path / "a-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(np.zeros(5)))[:-8])
    with pytest.raises(DatasetFilesError, match="a-idx1-ubyte.gz: truncated or not gzip"):
        read_idx(tmp_path / "a-idx1-ubyte")
    for prefix, n in (("train", 6), ("t10k", 2)):
        (tmp_path / f"{prefix}-images-idx3-ubyte").write_bytes(_idx(np.zeros((n, 28, 28))))
        (tmp_path / f"{prefix}-labels-idx1-ubyte").write_bytes(_idx(np.zeros(n - 1)))
    with pytest.raises(DatasetFilesError, match="5 labels in 0..9 expected for 6 images"):
        load_files("mnist", tmp_path)


def test_a_folder_in_place_of_a_data_file(tmp_path):
    _cifar10(tmp_path, _good_batch())
    target = tmp_path / "cifar-10-batches-py" / "test_batch"
    target.unlink()
    target.mkdir()
    with pytest.raises(DatasetFilesError, match="test_batch: not a regular file"):
        load_files("cifar10", tmp_path)


def _fake_urlretrieve(payload: bytes | None, then: BaseException | None = None):
    def retrieve(url, filename):
        if payload is not None:
            with open(filename, "wb") as f:
                f.write(payload)
        if then is not None:
            raise then
    return retrieve


@pytest.mark.parametrize("payload, then, expected", [
    (None, urllib.error.URLError("no network"), "cannot download .* \\(no network\\)"),
    (b"not the archive", None, "does not match its published MD5"),
    (b"half of it", KeyboardInterrupt(), None),
])
def test_failed_downloads_leave_nothing_behind(tmp_path, monkeypatch, payload, then,
                                               expected):
    monkeypatch.setattr(files.urllib.request, "urlretrieve", _fake_urlretrieve(payload, then))
    if expected is None:
        with pytest.raises(KeyboardInterrupt):
            files.fetch("cifar10", tmp_path)
    else:
        with pytest.raises(DatasetFilesError, match=expected):
            files.fetch("cifar10", tmp_path)
    assert list(tmp_path.iterdir()) == []  # no archive, no partial file


def test_a_checked_download_is_kept_and_unpacked(tmp_path, monkeypatch):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/readme.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"ok"))
    archive = buffer.getvalue()
    import hashlib

    md5 = hashlib.md5(archive, usedforsecurity=False).hexdigest()
    monkeypatch.setitem(files.URLS, "cifar10", [("https://example.org/cifar-10-python.tar.gz",
                                                 md5)])
    monkeypatch.setattr(files.urllib.request, "urlretrieve", _fake_urlretrieve(archive))
    files.fetch("cifar10", tmp_path)
    assert (tmp_path / "cifar-10-batches-py" / "readme.txt").read_bytes() == b"ok"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-batches-py",
                                                          "cifar-10-python.tar.gz"]


def test_archive_members_outside_the_folder_are_refused(tmp_path, monkeypatch):
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    (tmp_path / "in").mkdir()
    with pytest.raises(DatasetFilesError, match="a.tar: cannot unpack"):
        files.extract(archive, tmp_path / "in")
    assert not (tmp_path / "escaped.txt").exists()
    monkeypatch.delattr(tarfile, "data_filter")
    with pytest.raises(DatasetFilesError, match="no safe tar extraction"):
        files.extract(archive, tmp_path / "in")


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n\xff\xfe\x00", b"name: [unclosed\n"])
def test_a_binary_or_broken_profile_is_one_line(tiny_dir, capsys, content):
    (tiny_dir / "profiles" / "broken.yaml").write_bytes(content)
    path = write_scenario(tiny_dir, tiny())
    assert main(["validate", str(path)]) == 2
    err = _one_line(capsys)
    assert "broken.yaml: " in err and ("not a text file" in err or "invalid YAML" in err)


def test_a_corrupt_pretraining_cache_is_rebuilt(tiny_dir, capsys):
    raw = tiny(rounds=1, method={"name": "ecofed", "split": 2}, pretrain={
        "source": "fractal", "cache_dir": "cache", "epochs": 1,
        "fractal": {"samples_per_class": 4}})
    raw["pretrain"]["cache_dir"] = str(tiny_dir / "cache")
    path = write_scenario(tiny_dir, raw)
    assert main(["run", str(path), "--out", str(tiny_dir / "a"), "--quiet"]) == 0
    (entry,) = list((tiny_dir / "cache").glob("pretrain-*.pt"))
    entry.write_bytes(b"garbage")
    capsys.readouterr()
    assert main(["run", str(path), "--out", str(tiny_dir / "b"), "--quiet"]) == 0
    assert f"pre-training cache {entry} is unreadable; rebuilding it" in capsys.readouterr().err
    assert isinstance(torch.load(entry, weights_only=True), dict)
    first = (tiny_dir / "a" / "rounds.csv").read_text()
    assert (tiny_dir / "b" / "rounds.csv").read_text() == first  # same weights rebuilt


def test_a_cache_folder_that_is_a_file_fails_before_pretraining(tiny_dir, capsys):
    (tiny_dir / "cachefile").write_text("")
    raw = tiny(rounds=1, method={"name": "ecofed", "split": 2}, pretrain={
        "source": "fractal", "cache_dir": str(tiny_dir / "cachefile" / "sub"), "epochs": 1})
    path = write_scenario(tiny_dir, raw)
    assert main(["run", str(path), "--out", str(tiny_dir / "out"), "--quiet"]) == 2
    assert "pretrain.cache_dir: cannot write the cache folder" in _one_line(capsys)


def test_yaml_tags_construct_nothing(tiny_dir, capsys):
    marker = tiny_dir / "PWNED"
    text = yaml.safe_dump(tiny()) + (f"description: !!python/object/apply:os.system "
                                     f"['touch {marker}']\n")
    path = tiny_dir / "tagged.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 2
    assert "invalid YAML" in _one_line(capsys) and not marker.exists()

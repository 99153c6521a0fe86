"""The files a scenario names, made to travel with a sweep's tasks.

A scenario names files relative to itself: bandwidth and availability traces, a profile
folder, a checkpoint, a dataset folder. On the client every such path is made absolute, so
worker processes on this machine find them whatever their working folder. For workers
elsewhere (a Dask cluster), the small files are read here and shipped with the task
(``bundle``), then written to a temporary folder on the worker (``materialize``). Dataset
folders and files over ``SHIP_LIMIT_BYTES`` are not shipped: they need a filesystem the
workers share, which the user declares with ``--shared-fs``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

from ecofed_sim.data.files import FILE_DATASETS
from ecofed_sim.errors import ScenarioError

SHIP_LIMIT_BYTES = 64 * 2**20


def _slots(raw: dict) -> Iterator[tuple[dict, str, str, str]]:
    """(parent mapping, key, field path, kind) of every path-valued field that is set;
    kind is ``file``, ``folder`` (shipped: a profile folder) or ``dataset`` (never)."""
    pop = raw.get("population") or {}
    for i, dev in enumerate(pop.get("devices") or []):
        link = dev.get("link") if isinstance(dev, dict) else None
        if isinstance(link, dict):
            for key in ("uplink_trace", "downlink_trace"):
                yield link, key, f"population.devices[{i}].link.{key}", "file"
    yield pop, "availability_trace", "population.availability_trace", "file"
    yield raw, "profiles_dir", "profiles_dir", "folder"
    pretrain = raw.get("pretrain") or {}
    yield pretrain, "checkpoint", "pretrain.checkpoint", "file"
    for where, data in (("data", raw.get("data") or {}),
                        ("pretrain.dataset", pretrain.get("dataset") or {})):
        if data.get("dataset") in FILE_DATASETS:
            yield data, "root", f"{where}.root", "dataset"


def absolutize(raw: dict, base_dir: Path) -> dict:
    """A copy of the scenario with every relative path resolved against ``base_dir``
    (a dataset's default root ``data`` included)."""
    out = copy.deepcopy(raw)
    for parent, key, _, kind in _slots(out):
        value = parent.get(key) or ("data" if kind == "dataset" else None)
        if value:
            parent[key] = str((base_dir / value).resolve())
    return out


def bundle(raw: dict, source: str) -> tuple[dict, dict[str, bytes]]:
    """A copy of an absolutized scenario whose files are renamed into a bundle, and the
    bundle's contents (relative name -> bytes). Datasets and files over the limit cannot
    travel: a one-line error says to declare a shared filesystem."""
    out, files, total = copy.deepcopy(raw), {}, 0
    for n, (parent, key, field, kind) in enumerate(_slots(out)):
        if not parent.get(key):
            continue
        path = Path(parent[key])
        if kind == "dataset":
            raise ScenarioError(f"{source}: {field}: dataset folders are not shipped to Dask "
                                "workers; put them on a filesystem the workers share and "
                                "pass --shared-fs")
        members = sorted(path.glob("*.yaml")) if kind == "folder" else [path]
        name = f"f{n}-{path.name}"
        if kind == "folder":
            files[f"{name}/.keep"] = b""  # the folder exists on the worker, even if empty
        for member in members:
            if not member.is_file():
                continue  # reported where it is read, with its own message
            total += member.stat().st_size
            if total > SHIP_LIMIT_BYTES:
                raise ScenarioError(f"{source}: {field}: {member} takes the files to ship "
                                    f"past {SHIP_LIMIT_BYTES // 2**20} MiB; put them on a "
                                    "shared filesystem and pass --shared-fs")
            rel = f"{name}/{member.name}" if kind == "folder" else name
            files[rel] = member.read_bytes()
        parent[key] = name
    return out, files


def materialize(files: dict[str, bytes], folder: Path) -> None:
    """Write a bundle into ``folder`` (a worker's temporary folder)."""
    for rel, content in files.items():
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def restore_paths(resolved: dict, original: dict) -> dict:
    """``resolved`` (as a worker ran it: absolute or bundled paths) with the path fields
    as the user wrote them, so ``scenario.resolved.yaml`` re-runs beside its sweep file."""
    out = copy.deepcopy(resolved)
    for (parent, key, _, _), (orig, _, _, _) in zip(_slots(out), _slots(original),
                                                   strict=True):
        if key in orig or key in parent:
            parent[key] = orig.get(key)
    return out

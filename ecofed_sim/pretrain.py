"""Pre-training the device-side units once, offline, and caching the result on disk.

EcoFed (Wu et al., IEEE TPDS 2024) initialises the device-side layers from the same model
pre-trained centrally on another dataset and freezes them, so no gradient and no weights
ever cross the network. Sources: a public split of the task's own data (held out from every
client), another dataset, rendered IFS fractals (no real data at all), or a checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from ecofed_sim.compute import on_cpu
from ecofed_sim.data import ImageSet, load_dataset
from ecofed_sim.data.augment import crop_and_flip
from ecofed_sim.data.fractal import make_fractal
from ecofed_sim.errors import ScenarioError
from ecofed_sim.models import build_model
from ecofed_sim.paths import scenario_path
from ecofed_sim.progress import bar
from ecofed_sim.seeding import AUGMENT, DATA_ORDER, INIT, PRETRAIN, torch_gen

CACHE_VERSION = 1


def cache_root(spec) -> Path:
    if spec.cache_dir:
        return Path(spec.cache_dir)
    if os.environ.get("ECOFED_SIM_CACHE"):
        return Path(os.environ["ECOFED_SIM_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ecofed_sim"


def cache_key(sc, in_shape: tuple[int, ...], device: str = "cpu") -> str:
    """Hash of everything that determines the pre-trained weights (the device only when
    it is not the CPU, so CPU caches keep their names)."""
    spec = sc.pretrain.model_dump(mode="json", exclude={"units", "init_baselines",
                                                        "cache_dir", "checkpoint"})
    facts = {"v": CACHE_VERSION, "model": sc.model.name, "in_shape": list(in_shape),
             "pretrain": spec, "seed": sc.seed, "torch": torch.__version__.split("+")[0],
             "threads": sc.training.threads}
    if sc.pretrain.source == "public_split":
        facts["data"] = sc.data.model_dump(mode="json")
    if sc.model.width != 1.0:  # full-width caches keep their names
        facts["width"] = sc.model.width
    if str(device) != "cpu":
        facts["device"] = torch.device(device).type
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:20]


def source_set(sc, in_shape: tuple[int, int, int], public: ImageSet | None,
               base_dir: Path | None) -> ImageSet:
    spec = sc.pretrain
    if spec.source == "public_split":
        return public
    if spec.source == "fractal":
        f = spec.fractal
        return make_fractal(f.classes, f.samples_per_class, in_shape, f.seed, f.jitter)
    data, _ = load_dataset(spec.dataset, base_dir)
    if data.shape != in_shape:
        raise ScenarioError(f"pretrain.dataset: images are {list(data.shape)}, the task's "
                            f"are {list(in_shape)}")
    return data


def train_centrally(sc, in_shape, data: ImageSet, progress: bool = False,
                    device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Plain centralised SGD on the source set, on ``device``; deterministic in the
    scenario seed (initial weights, order and augmentation drawn on the CPU). With
    ``progress``, a bar (or log lines) over its steps: it can take minutes. The state
    comes back in CPU memory."""
    spec = sc.pretrain
    steps_per_epoch = math.ceil(len(data) / spec.batch_size)
    shown = bar(spec.epochs * steps_per_epoch, f"pre-training {sc.model.name}", "step",
                progress)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_gen(sc.seed, PRETRAIN, INIT).initial_seed())
        model = build_model(sc.model.name, in_shape, data.num_classes,
                            sc.model.width).train()
    model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum,
                          weight_decay=spec.weight_decay, nesterov=spec.nesterov)
    for epoch in range(spec.epochs):
        for group in opt.param_groups:  # a step schedule: x gamma after each milestone
            group["lr"] = spec.lr * spec.lr_gamma ** sum(epoch >= m for m in spec.lr_milestones)
        order = torch.randperm(len(data), generator=torch_gen(sc.seed, PRETRAIN,
                                                              DATA_ORDER, epoch))
        for step, start in enumerate(range(0, len(order), spec.batch_size)):
            x, y = data.batch(order[start:start + spec.batch_size])
            if len(y) < 2:
                continue  # BatchNorm in train mode needs two samples
            if spec.augment:
                x = crop_and_flip(x, torch_gen(sc.seed, PRETRAIN, AUGMENT, epoch, step))
            x, y = x.to(device), y.to(device)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
            shown.update(1)
    shown.close()
    return on_cpu(model.state_dict())


def load_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    if not path.exists():
        raise ScenarioError(f"pretrain.checkpoint: file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 (any unreadable file is one user error)
        raise ScenarioError(f"pretrain.checkpoint: cannot load {path} "
                            f"({err.__class__.__name__})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ScenarioError(f"pretrain.checkpoint: {path} holds no state dict")
    return state


def pretrained_state(sc, in_shape, public: ImageSet | None, base_dir: Path | None,
                     progress: bool = False, device: torch.device | str = "cpu"
                     ) -> dict[str, torch.Tensor] | None:
    """The pre-trained model's state dict (from cache when possible), or None."""
    spec = sc.pretrain
    if spec.source == "none":
        return None
    if spec.source == "checkpoint":
        return load_checkpoint(scenario_path(spec.checkpoint, base_dir))
    path = (cache_root(spec)
            / f"pretrain-{sc.model.name}-{cache_key(sc, in_shape, device)}.pt")
    cached = _read_cache(path)
    if cached is not None:
        return cached
    _check_cache_dir(path.parent)  # before minutes of pre-training, not after
    state = train_centrally(sc, in_shape, source_set(sc, in_shape, public, base_dir),
                            progress, device)
    _write_cache(path, state)
    return state


def _read_cache(path: Path) -> dict[str, torch.Tensor] | None:
    """A cached state dict, or None when there is none or it is unreadable (a killed
    writer on a filesystem without atomic rename, a disk error): then it is rebuilt."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and all(isinstance(v, torch.Tensor)
                                           for v in state.values()):
            return state
    except Exception:  # noqa: BLE001 (any unreadable cache entry is rebuilt)
        pass
    print(f"warning: pre-training cache {path} is unreadable; rebuilding it",
          file=sys.stderr)
    return None


def _check_cache_dir(folder: Path) -> None:
    """The cache folder exists or can be made, and takes a file; else one line."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise ScenarioError(f"pretrain.cache_dir: cannot write the cache folder {folder} "
                            f"({err.strerror or err.__class__.__name__}); set "
                            "pretrain.cache_dir or ECOFED_SIM_CACHE") from None


def _write_cache(path: Path, state: dict[str, torch.Tensor]) -> None:
    """Atomically: a killed run never leaves a half-written cache entry."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".pretrain-", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def map_checkpoint(state: dict[str, torch.Tensor], model) -> dict[str, torch.Tensor]:
    """A checkpoint in another key layout (``features.0.weight``, ``features.1.bias``, ...,
    ``classifier.0.weight``: torchvision's and the EcoFed code's VGG) onto the zoo model's
    ``units.*`` keys: parameters in order, matched while their shapes agree. BatchNorm
    running statistics are dropped (the zoo's BatchNorm keeps none). A checkpoint already
    in the zoo's layout is returned as is."""
    if all(k.startswith("units.") for k in state):
        return state
    theirs = [(k, v) for k, v in state.items()
              if isinstance(v, torch.Tensor) and not k.endswith(BN_BUFFERS)]
    mapped = {}
    for (ours, target), (_, tensor) in zip(model.state_dict().items(), theirs, strict=False):
        if tuple(tensor.shape) != tuple(target.shape):
            break
        mapped[ours] = tensor
    return mapped


def init_units(model, state: dict[str, torch.Tensor], units: int) -> None:
    """Copy the first ``units`` units of a pre-trained state dict into ``model`` (a
    checkpoint in the ``features.N`` layout is mapped first; see ``map_checkpoint``)."""
    mapped = map_checkpoint(state, model)
    prefixes = tuple(f"units.{i}." for i in range(units))
    picked = {k: v for k, v in mapped.items() if k.startswith(prefixes)}
    expected = {k for k in model.state_dict() if k.startswith(prefixes)}
    if set(picked) != expected:
        missing = sorted(expected - set(picked))
        used = len(mapped) if mapped is not state else 0
        left = [k for k in state if not k.endswith(BN_BUFFERS)][used:used + 3]
        raise ScenarioError(f"pretrain: pre-trained weights do not cover units 1..{units} of "
                            f"{model.name}: {len(missing)} tensors unmatched (first: "
                            f"{missing[:3]}); the checkpoint's next keys: {left}")
    try:
        model.load_state_dict(picked, strict=False)
    except RuntimeError:
        raise ScenarioError(f"pretrain: pre-trained tensor shapes do not match {model.name}"
                            ) from None

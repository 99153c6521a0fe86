"""Semantic checks and the shared, read-only inputs of a run (profiles, data, model facts).

Shape errors are caught by the schema; this catches what needs context: unknown profiles
and links, a split point outside the model, a dataset the model cannot take, more samples
asked for than exist. Every failure is a one-line ``ScenarioError`` naming the field.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ecofed_sim import planner
from ecofed_sim.availability import build_availability
from ecofed_sim.data import ImageSet, load_dataset, partition
from ecofed_sim.errors import ScenarioError
from ecofed_sim.models import MIN_SIDE, LayerModel, LayerStats, build_model, layer_stats
from ecofed_sim.paths import scenario_path
from ecofed_sim.population import build_population
from ecofed_sim.pretrain import pretrained_state
from ecofed_sim.profiles import DeviceProfile, ProfileError, ProfileLibrary, load_library
from ecofed_sim.scenario import Scenario
from ecofed_sim.seeding import PUBLIC, torch_gen


@dataclass(frozen=True)
class Prepared:
    scenario: Scenario
    source: str
    library: ProfileLibrary
    server_profile: DeviceProfile
    in_shape: tuple[int, int, int]
    num_classes: int
    stats: list[LayerStats]
    train: ImageSet | None = None
    test: ImageSet | None = None
    client_indices: list[np.ndarray] | None = None
    pretrained: dict | None = None
    base_dir: Path | None = None

    @property
    def pretrain_units(self) -> int | None:
        """Leading units initialised from the pre-trained model (None: not used)."""
        return self.scenario.pretrain.units or getattr(self.scenario.method, "split", None)

    def build_model(self) -> LayerModel:
        return build_model(self.scenario.model.name, self.in_shape, self.num_classes)


@functools.lru_cache(maxsize=32)
def model_stats(name: str, in_shape: tuple[int, int, int], classes: int) -> list[LayerStats]:
    """Shape-derived unit facts; cached because a sweep checks many scenarios of one model
    (pure: the same arguments always give the same, never mutated, list)."""
    return layer_stats(build_model(name, in_shape, classes), in_shape)


def _input_spec(sc: Scenario, base_dir: Path | None = None,
                source: str = "") -> tuple[tuple[int, int, int], int]:
    """Input shape and class count, known without loading the data (an image folder's
    classes are its training folders)."""
    data = sc.data
    if data.dataset == "image_folder":
        from ecofed_sim.data.folders import FolderError, class_names
        from ecofed_sim.data.load import dataset_root

        try:
            return tuple(data.image_shape), len(class_names(dataset_root(data, base_dir)))
        except FolderError as err:
            raise ScenarioError(f"{source}: data.root: {err}") from None
    if data.dataset == "synthetic":
        return tuple(data.synthetic.shape), data.synthetic.classes
    if data.dataset in ("cifar10", "cifar100"):
        return (3, 32, 32), 10 if data.dataset == "cifar10" else 100
    return (1, 28, 28), 10


def _library(sc: Scenario, base_dir: Path | None) -> ProfileLibrary:
    extra = ()
    if sc.profiles_dir:
        d = scenario_path(sc.profiles_dir, base_dir)
        if not d.is_dir():
            raise ScenarioError(f"profiles_dir: no such directory {str(d)!r}")
        extra = (str(d),)
    try:
        return load_library(extra)
    except ProfileError as err:
        raise ScenarioError(str(err)) from None


def check(sc: Scenario, source: str, base_dir: Path | None = None) -> Prepared:
    """Everything that can be checked without loading data; raises ScenarioError."""
    library = _library(sc, base_dir)
    in_shape, classes = _input_spec(sc, base_dir, source)
    if min(in_shape[1:]) < MIN_SIDE[sc.model.name]:
        raise ScenarioError(f"{source}: data.synthetic.shape: {sc.model.name} needs images of "
                            f"at least {MIN_SIDE[sc.model.name]} pixels a side "
                            f"(got {list(in_shape)})")
    _check_data_size(sc, source)
    stats = model_stats(sc.model.name, in_shape, classes)
    _check_splits(sc, source, stats)
    if sc.server.profile not in library.devices:
        raise ScenarioError(f"{source}: server.profile: unknown profile {sc.server.profile!r} "
                            f"(accepted: {', '.join(sorted(library.devices))})")
    build_population(sc, library, source, base_dir)  # unknown profiles, links, bad traces
    build_availability(sc, base_dir, source)  # a bad availability trace
    checked = Prepared(sc, source, library, library.devices[sc.server.profile], in_shape,
                       classes, stats, base_dir=base_dir)
    if getattr(sc.method, "split", None) == "auto":  # the planner's pick, written out
        sc = planner.resolve(sc, planner.plan(checked))
        checked = Prepared(**{**checked.__dict__, "scenario": sc})
    _check_pretrain(sc, source, len(stats), base_dir)
    _check_dataset_files(sc, source, base_dir)
    return checked


def _check_dataset_files(sc: Scenario, source: str, base_dir: Path | None) -> None:
    """File datasets are present (unless they are to be downloaded first)."""
    from ecofed_sim.data.files import FILE_DATASETS, check_files
    from ecofed_sim.data.load import dataset_root

    sections = [("data", sc.data)]
    if uses_pretrained(sc) and sc.pretrain.dataset is not None:
        sections.append(("pretrain.dataset", sc.pretrain.dataset))
    for where, spec in sections:
        if spec.dataset in FILE_DATASETS and not spec.download:
            try:
                check_files(spec.dataset, dataset_root(spec, base_dir))
            except FileNotFoundError as err:  # DatasetFilesError, FolderError
                raise ScenarioError(f"{source}: {where}.root: {err}") from None


MAX_DATA_BYTES = 2 * 2**30  # images are held as uint8; their statistics take 4x in float


def _check_data_size(sc: Scenario, source: str) -> None:
    """The held-out digits leave training data; synthetic images fit in memory."""
    from ecofed_sim.data.embedded import DIGITS

    syn = sc.data.synthetic
    if sc.data.dataset == "embedded_mnist" and sc.data.test_samples >= DIGITS:
        raise ScenarioError(f"{source}: data.test_samples: {sc.data.test_samples} leaves no "
                            f"training data (the embedded set has {DIGITS} digits)")
    if sc.data.dataset != "synthetic":
        return
    total = (syn.train_samples + syn.test_samples) * math.prod(syn.shape)
    if total > MAX_DATA_BYTES:
        raise ScenarioError(f"{source}: data.synthetic: {total / 2**30:.1f} GiB of images; "
                            f"the limit is {MAX_DATA_BYTES // 2**30} GiB")


def _check_splits(sc: Scenario, source: str, stats: list[LayerStats]) -> None:
    """The method's split and any per-class split lie inside the model; per-class splits
    only where the method allows them."""
    from ecofed_sim.methods import REGISTRY

    method, top = REGISTRY[sc.method.name], len(stats) - 1
    split = getattr(sc.method, "split", None)
    where = [("method.split", split)] + [(f"population.devices[{i}].split", d.split)
                                         for i, d in enumerate(sc.population.devices)]
    for field, value in where:
        if value is None or value == "auto":
            continue
        if field != "method.split" and (split is None or not method.per_class_split
                                        or getattr(sc.method, "freeze_device", False)):
            allowed = [n for n, m in REGISTRY.items() if m.per_class_split]
            raise ScenarioError(f"{source}: {field}: {sc.method.name} uses one split for "
                                f"every device class (a split per class: "
                                f"{', '.join(allowed)}, without freeze_device)")
        if not 1 <= value <= top:
            raise ScenarioError(f"{source}: {field}: must be in 1..{top} for "
                                f"{sc.model.name} ({len(stats)} units) (got {value})")


def uses_pretrained(sc: Scenario) -> bool:
    """Whether this run's initial model takes pre-trained units."""
    from ecofed_sim.methods import REGISTRY

    return sc.pretrain.source != "none" and (
        REGISTRY[sc.method.name].uses_pretrained_device or sc.pretrain.init_baselines)


def _check_pretrain(sc: Scenario, source: str, n_units: int,
                    base_dir: Path | None = None) -> None:
    spec = sc.pretrain
    if not uses_pretrained(sc):
        return
    units = spec.units or getattr(sc.method, "split", None)
    if units is None:
        raise ScenarioError(f"{source}: pretrain.units: required for {sc.method.name}, "
                            "which has no split point")
    if units >= n_units:
        raise ScenarioError(f"{source}: pretrain.units: must be < {n_units} (got {units})")
    if spec.source == "checkpoint":  # loadable, and it fits the units it initialises
        from ecofed_sim.pretrain import init_units, load_checkpoint

        in_shape, classes = _input_spec(sc, base_dir, source)
        try:
            state = load_checkpoint(scenario_path(spec.checkpoint, base_dir))
            init_units(build_model(sc.model.name, in_shape, classes), state, units)
        except ScenarioError as err:
            raise ScenarioError(f"{source}: {err}") from None


def _public_split(sc: Scenario, train: ImageSet) -> tuple[ImageSet, ImageSet | None]:
    """(clients' training data, public pre-training data held out from every client)."""
    if sc.pretrain.source != "public_split":
        return train, None
    order = torch.randperm(len(train), generator=torch_gen(sc.seed, PUBLIC))
    n_public = int(round(sc.pretrain.public_fraction * len(train)))
    if n_public < 2 or n_public >= len(train):
        raise ScenarioError(f"{sc.pretrain.public_fraction:g} of {len(train)} training "
                            f"samples is {n_public}: pre-training needs at least 2, and the "
                            "clients at least 1")
    return train.subset(order[n_public:]), train.subset(order[:n_public])


def prepare(sc: Scenario, source: str, base_dir: Path | None = None,
            progress: bool = False) -> Prepared:
    """``check`` plus the data: train/test sets and each client's sample indices (and the
    pre-trained weights, with a progress bar when they must be trained)."""
    checked = check(sc, source, base_dir)
    sc = checked.scenario  # with any ``split: auto`` resolved
    try:
        train, test = load_dataset(sc.data, base_dir)
    except FileNotFoundError as err:  # DatasetFilesError, FolderError
        raise ScenarioError(f"{source}: data.root: {err}") from None
    if len(train) == 0:
        raise ScenarioError(f"{source}: data.test_samples: {sc.data.test_samples} leaves no "
                            "training data")
    try:
        train, public = _public_split(sc, train)
    except ScenarioError as err:
        raise ScenarioError(f"{source}: pretrain.public_fraction: {err}") from None
    try:
        parts = partition(train.labels.numpy(), sc.population.clients, sc.data.partition,
                          sc.seed)
    except ValueError as err:
        raise ScenarioError(f"{source}: data.partition: {err}") from None
    pretrained = None
    if uses_pretrained(sc):  # a public split is held out either way, for equal client data
        try:
            pretrained = pretrained_state(sc, checked.in_shape, public, base_dir, progress)
        except FileNotFoundError as err:  # DatasetFilesError, FolderError
            raise ScenarioError(f"{source}: pretrain.dataset.root: {err}") from None
    return Prepared(**{**checked.__dict__, "train": train, "test": test,
                       "client_indices": parts, "pretrained": pretrained})

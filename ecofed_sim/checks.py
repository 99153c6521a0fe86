"""Semantic checks of a scenario, and the read-only facts of a run (profiles, shapes).

Shape errors are caught by the schema; this catches what needs context: unknown profiles
and links, a split point outside the model, a dataset the model cannot take, more samples
asked for than exist, missing dataset files, a checkpoint that does not fit. Every failure
is a one-line ``ScenarioError`` naming the field. Nothing here imports torch unless the
scenario needs the model built (``split: auto``, a checkpoint), so ``validate`` answers
fast; ``ecofed_sim.prepare`` then loads the data.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ecofed_sim.availability import build_availability
from ecofed_sim.errors import ScenarioError
from ecofed_sim.methods import CONFIGS
from ecofed_sim.model_zoo import MIN_SIDE, UNITS
from ecofed_sim.paths import scenario_path
from ecofed_sim.population import device_classes
from ecofed_sim.profiles import DeviceProfile, ProfileError, ProfileLibrary, load_library
from ecofed_sim.scenario import Scenario

if TYPE_CHECKING:
    import numpy as np

    from ecofed_sim.data import ImageSet
    from ecofed_sim.models import LayerModel, LayerStats


@dataclass(frozen=True)
class Prepared:
    scenario: Scenario
    source: str
    library: ProfileLibrary
    server_profile: DeviceProfile
    in_shape: tuple[int, int, int]
    num_classes: int
    train: ImageSet | None = None
    test: ImageSet | None = None
    client_indices: list[np.ndarray] | None = None
    pretrained: dict | None = None
    base_dir: Path | None = None
    shapes_only: bool = False  # a view whose tensors live on meta (``shapes_view``)

    @property
    def pretrain_units(self) -> int | None:
        """Leading units initialised from the pre-trained model (None: not used)."""
        return self.scenario.pretrain.units or getattr(self.scenario.method, "split", None)

    @functools.cached_property
    def stats(self) -> list[LayerStats]:
        """Per-unit shapes, parameters and FLOPs (builds the model: imports torch)."""
        return model_stats(self.scenario.model.name, self.in_shape, self.num_classes,
                           self.scenario.model.width)

    @functools.cached_property
    def compute_device(self):
        """The torch device the real computation runs on: ``training.device`` resolved on
        this machine (``compute.resolve_device``; a ScenarioError when it is absent)."""
        import torch

        from ecofed_sim.compute import resolve_device

        if self.shapes_only or (self.scenario.learning == "none"
                                and not type(self.scenario.method).defers_training):
            return torch.device("meta")  # timing only: tensors with shapes and no data
        return resolve_device(self.scenario.training.device, self.source)

    def shapes_view(self) -> Prepared:
        """The same inputs with the computation on meta tensors (shapes, no data): what
        plays a round's clocks while worker processes do its real training
        (``ecofed_sim.parallel``)."""
        return dataclasses.replace(self, shapes_only=True)

    def build_model(self) -> LayerModel:
        from ecofed_sim.models import build_model

        return build_model(self.scenario.model.name, self.in_shape, self.num_classes,
                           self.scenario.model.width)


@functools.lru_cache(maxsize=32)
def model_stats(name: str, in_shape: tuple[int, int, int], classes: int,
                width: float = 1.0) -> list[LayerStats]:
    """Shape-derived unit facts; cached because a sweep checks many scenarios of one model
    (pure: the same arguments always give the same, never mutated, list)."""
    from ecofed_sim.models import build_model, layer_stats

    return layer_stats(build_model(name, in_shape, classes, width), in_shape)


def _input_spec(sc: Scenario, base_dir: Path | None = None,
                source: str = "") -> tuple[tuple[int, int, int], int]:
    """Input shape and class count, known without loading the data (an image folder's
    classes are its training folders)."""
    data = sc.data
    if data.dataset == "image_folder":
        from ecofed_sim.data.layout import FolderError, class_names, dataset_root

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

    if sc.learning == "none" and getattr(sc.method, "adaptive", None) is not None:
        raise ScenarioError(f"{source}: method.adaptive: the replay period follows test "
                            "accuracy, which a timing-only run (learning: none) does not "
                            "measure; set a fixed method.period")
    _check_splits(sc, source, UNITS[sc.model.name])
    if sc.server.profile not in library.devices:
        raise ScenarioError(f"{source}: server.profile: unknown profile {sc.server.profile!r} "
                            f"(accepted: {', '.join(sorted(library.devices))})")
    device_classes(sc, library, source, base_dir)  # profiles, links, traces
    build_availability(sc, base_dir, source)  # a bad availability trace
    checked = Prepared(sc, source, library, library.devices[sc.server.profile], in_shape,
                       classes, base_dir=base_dir)
    if getattr(sc.method, "split", None) == "auto":  # the planner's pick, written out
        from ecofed_sim import planner

        sc = planner.resolve(sc, planner.plan(checked))
        checked = dataclasses.replace(checked, scenario=sc)
    _check_pretrain(sc, source, UNITS[sc.model.name], base_dir)
    _check_dataset_files(sc, source, base_dir)
    if sc.server.memory_gb is not None:  # a bound the scenario sets: does one copy fit?
        from ecofed_sim.server_resources import copy_slots  # (the profiles' fit: at run)

        copy_slots(checked, source)
    return checked


def _check_dataset_files(sc: Scenario, source: str, base_dir: Path | None) -> None:
    """File datasets are present (unless they are to be downloaded first)."""
    from ecofed_sim.data.layout import FILE_DATASETS, check_files, dataset_root

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
    from ecofed_sim.data.layout import DIGITS

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


def _check_splits(sc: Scenario, source: str, n_units: int) -> None:
    """The method's split and any per-class split lie inside the model; per-class splits
    only where the method allows them."""
    method, top = type(sc.method), n_units - 1
    split = getattr(sc.method, "split", None)
    where = [("method.split", split)] + [(f"population.devices[{i}].split", d.split)
                                         for i, d in enumerate(sc.population.devices)]
    for field, value in where:
        if value is None or value == "auto":
            continue
        if field != "method.split" and (split is None or not method.per_class_split
                                        or getattr(sc.method, "freeze_device", False)):
            allowed = [n for n, c in CONFIGS.items() if c.per_class_split]
            raise ScenarioError(f"{source}: {field}: {sc.method.name} uses one split for "
                                f"every device class (a split per class: "
                                f"{', '.join(allowed)}, without freeze_device)")
        if not 1 <= value <= top:
            raise ScenarioError(f"{source}: {field}: must be in 1..{top} for "
                                f"{sc.model.name} ({n_units} units) (got {value})")


def uses_pretrained(sc: Scenario) -> bool:
    """Whether this run's initial model takes pre-trained units."""
    return sc.learning == "real" and sc.pretrain.source != "none" and (
        type(sc.method).uses_pretrained_device or sc.pretrain.init_baselines)


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
        from ecofed_sim.models import build_model
        from ecofed_sim.pretrain import init_units, load_checkpoint

        in_shape, classes = _input_spec(sc, base_dir, source)
        try:
            state = load_checkpoint(scenario_path(spec.checkpoint, base_dir))
            init_units(build_model(sc.model.name, in_shape, classes, sc.model.width), state,
                       units)
        except ScenarioError as err:
            raise ScenarioError(f"{source}: {err}") from None

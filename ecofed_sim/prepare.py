"""The data of a run: ``check`` (``ecofed_sim.checks``), then the train and test sets,
each client's sample indices, and the pre-trained weights."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ecofed_sim.checks import Prepared, check, uses_pretrained
from ecofed_sim.data import ImageSet, load_dataset
from ecofed_sim.data.partition import partition
from ecofed_sim.errors import ScenarioError
from ecofed_sim.pretrain import pretrained_state
from ecofed_sim.scenario import Scenario
from ecofed_sim.seeding import PUBLIC, torch_gen

__all__ = ["Prepared", "check", "prepare"]


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
    device = checked.compute_device  # an absent GPU is an error before any data loads
    try:
        train, test = load_dataset(sc.data, base_dir, images=sc.learning != "none")
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
            pretrained = pretrained_state(sc, checked.in_shape, public, base_dir, progress,
                                          device)
        except FileNotFoundError as err:  # DatasetFilesError, FolderError
            raise ScenarioError(f"{source}: pretrain.dataset.root: {err}") from None
    return dataclasses.replace(checked, train=train, test=test, client_indices=parts,
                               pretrained=pretrained)

"""The learning half of the scenario schema: model, data, local training, pre-training and
evaluation. Fields here can change what is learned (the timing-only fields live with the
population, links and server in ``scenario`` and ``scenario_network``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from ecofed_sim.model_zoo import MODEL_NAMES
from ecofed_sim.strict import Seed, StrictModel

# Bounds far above any real use: they turn a typo into an error instead of a run that
# exhausts memory (the README lists them).
MAX_SAMPLES = 10_000_000
MAX_CLASSES = 10_000
Channels = Annotated[int, Field(ge=1, le=64)]
Side = Annotated[int, Field(ge=1, le=1024)]


class ModelSpec(StrictModel):
    name: Literal[MODEL_NAMES]  # type: ignore[valid-type]
    """model name: small_cnn, vgg5, vgg11, resnet9"""
    width: float = Field(1.0, gt=0, le=8)
    """multiplier of every layer's channels and hidden units (0.25: a quarter-width model
    with about 1/16 of the parameters and FLOPs, for studies that must train quickly)"""


class SyntheticSpec(StrictModel):
    """Learnable synthetic images: class templates + shift, contrast and pixel noise."""

    shape: tuple[Channels, Side, Side] = (3, 32, 32)
    """channels, height, width of each image (channels 1..64, sides 1..1024)"""
    classes: int = Field(10, ge=2, le=MAX_CLASSES)
    """number of classes"""
    train_samples: int = Field(50_000, ge=1, le=MAX_SAMPLES)
    """training images"""
    test_samples: int = Field(10_000, ge=1, le=MAX_SAMPLES)
    """test images"""
    noise: float = Field(0.5, ge=0, le=1e3)
    """pixel noise standard deviation (class templates have unit amplitude)"""
    seed: Seed = 0
    """seed of the templates and samples"""


class PartitionSpec(StrictModel):
    kind: Literal["iid", "shards", "dirichlet"] = "iid"
    """iid (equal random parts), shards (label-sorted shards, the EcoFed/FedAvg non-IID
    scheme) or dirichlet (label proportions from Dirichlet(alpha))"""
    samples_per_client: int | None = Field(None, ge=1)
    """samples each client holds (default: training set / clients); dirichlet: the mean, from
    a random pool of clients x this"""
    shard_size: int = Field(100, ge=1)
    """samples per shard (shards)"""
    sort_by_label: bool = True
    """shards: sort by label first (false gives the paper's IID shards)"""
    alpha: float = Field(0.5, gt=0, le=1e6)
    """Dirichlet concentration: small = strongly skewed labels (dirichlet)"""
    min_samples: int = Field(10, ge=1, description="dirichlet: redraw until every client "
                             "holds at least this many samples")


class DataSpec(StrictModel):
    """The task's images: where they come from, and how they are split and dealt."""

    dataset: Literal[
        "embedded_mnist", "synthetic", "cifar10", "cifar100", "mnist", "fashion_mnist",
        "image_folder"
    ] = "embedded_mnist"
    """embedded_mnist (5,000 real digits, shipped), synthetic, standard files (cifar10,
    cifar100, mnist, fashion_mnist), or image_folder (root/train/<class>/<image> and
    root/test or root/val likewise: ImageNet's and Tiny-ImageNet's layout)"""
    image_shape: list[Annotated[int, Field(ge=1, le=4096)]] | None = Field(
        None, min_length=3, max_length=3)
    """image_folder: [channels (1 or 3), height, width] the images are converted to"""
    root: str | None = None
    """folder with the standard dataset files (relative to the scenario file; default: data)"""
    download: bool = False
    """fetch the official archives into root first (needs the internet; MD5-checked)"""
    test_samples: int = Field(1000, ge=1, le=MAX_SAMPLES,
                              description="held-out digits (embedded_mnist only)")
    split_seed: Seed = 0
    """seed of the train/test split of the embedded digits and of the synthetic set's split"""
    eval_samples: int | None = Field(None, ge=1, description="evaluate on the first N test")
    synthetic: SyntheticSpec = SyntheticSpec()
    """shape and size of the synthetic image set (dataset: synthetic)"""
    partition: PartitionSpec = PartitionSpec()
    """how training samples are dealt to clients"""

    @model_validator(mode="after")
    def _folder_shape(self) -> DataSpec:
        if self.dataset == "image_folder" and self.image_shape is None:
            raise ValueError("image_folder needs image_shape: [channels, height, width]")
        if self.image_shape is not None and self.image_shape[0] not in (1, 3):
            raise ValueError("image_shape: channels must be 1 (grey) or 3 (RGB)")
        return self


class TrainingSpec(StrictModel):
    batch_size: int = Field(10, ge=1, le=MAX_SAMPLES)
    """samples per local step"""
    shuffle: Literal["every_round", "fixed"] = Field(
        "every_round", description="reshuffle local data each round, or keep one order per "
        "client (then frozen-layer activations can be reused across rounds)")
    local_epochs: int = Field(1, ge=1, le=10_000)
    """passes over local data per round"""
    lr: float = Field(0.01, gt=0)
    """SGD learning rate"""
    momentum: float = Field(0.9, ge=0, lt=1)
    """SGD momentum (a fresh optimiser per client per round)"""
    weight_decay: float = Field(0.0, ge=0)
    """SGD weight decay"""
    augment: bool = False
    """random crop (padding 4) and horizontal flip of every training batch, seeded by
    (seed, round, client, epoch), as the EcoFed code trains every method; under EcoFed the
    replay buffer keeps one augmented pass"""
    threads: int = Field(1, ge=1, le=256, description="torch intra-op threads of the "
                         "learning computation; part of what is learned, because float sums "
                         "split over threads round differently")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="where the real computation (models, batches, codecs) runs: "
        "auto picks cuda when torch sees a GPU, else cpu. Simulated times and byte counts "
        "never depend on it; accuracy agrees across devices to float tolerance, bit for "
        "bit only on the same device and machine")

    def batch_sizes(self, samples: int) -> list[int]:
        """Sizes of a client's local steps in a round, in order, for ``samples`` samples:
        full batches then the remainder, once per local epoch."""
        size = self.batch_size
        per_epoch = [size] * (samples // size) + ([samples % size] if samples % size else [])
        return per_epoch * self.local_epochs


class FractalSpec(StrictModel):
    """Formula-driven pre-training images (rendered IFS fractals, FractalDB-style)."""

    classes: int = Field(10, ge=2, le=MAX_CLASSES)
    """fractal classes"""
    samples_per_class: int = Field(200, ge=1, le=MAX_SAMPLES)
    """images per class"""
    jitter: float = Field(0.1, ge=0, le=1)
    """random perturbation of each class's IFS parameters per image"""
    seed: Seed = 0
    """seed of the fractal set"""


class PretrainSpec(StrictModel):
    """Pre-trained initialisation of the device-side units (EcoFed, Wu et al. 2024).

    The whole model is trained centrally on the source, once, and cached on disk keyed by
    a hash of everything that determines it; its first ``units`` units (default: the
    method's split) initialise the device part. Pre-training is offline: it costs wall
    time, not simulated time.
    """

    source: Literal["none", "public_split", "dataset", "fractal", "checkpoint"] = "none"
    """none, public_split (a share of the training set held out from every client), dataset
    (another dataset of the same image shape), fractal (rendered IFS fractals) or
    checkpoint (a state-dict file)"""
    public_fraction: float = Field(0.1, gt=0, lt=1, description="public_split: share of the "
                                   "training set held out from every client")
    dataset: DataSpec | None = Field(None, description="dataset: the source data")
    fractal: FractalSpec = FractalSpec()
    """the fractal source's classes, size, jitter and seed"""
    checkpoint: str | None = Field(None, description="checkpoint: a state-dict file")
    epochs: int = Field(5, ge=1, le=10_000)
    """pre-training epochs"""
    batch_size: int = Field(64, ge=1, le=MAX_SAMPLES)
    """pre-training batch size"""
    lr: float = Field(0.05, gt=0)
    """pre-training SGD learning rate"""
    momentum: float = Field(0.9, ge=0, lt=1)
    """pre-training SGD momentum"""
    weight_decay: float = Field(0.0, ge=0, le=1)
    """pre-training SGD weight decay (the EcoFed code: 5e-4)"""
    nesterov: bool = False
    """Nesterov momentum (the EcoFed code: true)"""
    lr_milestones: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list)
    """epochs after which the learning rate is multiplied by lr_gamma (the EcoFed code: 50,
    80 of 100)"""
    lr_gamma: float = Field(0.1, gt=0, le=1)
    """factor applied to the learning rate at each milestone"""
    augment: bool = False
    """random crop (padding 4) and horizontal flip of every pre-training batch (the EcoFed
    code: true)"""
    units: int | None = Field(None, ge=1, description="leading units to initialise")
    init_baselines: bool = Field(False, description="also initialise non-EcoFed methods")
    cache_dir: str | None = None
    """where pre-trained weights are cached (default: ECOFED_SIM_CACHE, else
    ~/.cache/ecofed_sim)"""

    @model_validator(mode="after")
    def _source_fields(self) -> PretrainSpec:
        if self.source == "dataset" and self.dataset is None:
            raise ValueError("source 'dataset' needs a dataset section")
        if self.source == "checkpoint" and not self.checkpoint:
            raise ValueError("source 'checkpoint' needs a checkpoint path")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        return self


class EvaluationSpec(StrictModel):
    every: int = Field(1, ge=1, description="evaluate every N rounds (and after the last)")
    batch_size: int = Field(500, ge=1)
    """test batch size"""

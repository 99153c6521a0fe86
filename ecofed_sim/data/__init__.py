"""Datasets (embedded real digits, synthetic images, standard files) and partitioners."""

from ecofed_sim.data.base import ImageSet, load_dataset
from ecofed_sim.data.partition import partition

__all__ = ["ImageSet", "load_dataset", "partition"]

"""Datasets (embedded real digits, synthetic images, standard files) and partitioners."""

from ecofed_sim.data.base import ImageSet
from ecofed_sim.data.load import load_dataset
from ecofed_sim.data.partition import partition

__all__ = ["ImageSet", "load_dataset", "partition"]

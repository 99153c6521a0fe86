"""Datasets: the embedded digits, synthetic images, the standard files, image folders.

``ImageSet`` and ``load_dataset`` are imported on first use (they need torch);
``ecofed_sim.data.layout`` answers what checking a scenario asks without it. The
partitioners are in ``ecofed_sim.data.partition``.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"ImageSet": "ecofed_sim.data.base", "load_dataset": "ecofed_sim.data.load"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_LAZY)

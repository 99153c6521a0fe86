"""ecofed_sim: a discrete-event simulator of DNN-partitioning-based federated learning.

Real PyTorch training gives the accuracy; SimPy clocks driven by device profiles and a
flow-level network model give the time and the bytes. See README.md.

The names below are imported on first use, so that ``ecofed-sim --help`` and other
commands that never train do not pay for importing torch and pandas.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

__version__ = "0.2.0"

_LAZY = {"run": "ecofed_sim.run", "Results": "ecofed_sim.run",
         "Scenario": "ecofed_sim.scenario", "load_scenario": "ecofed_sim.scenario",
         "ScenarioError": "ecofed_sim.errors"}

if TYPE_CHECKING:
    from ecofed_sim.errors import ScenarioError
    from ecofed_sim.run import Results, run
    from ecofed_sim.scenario import Scenario, load_scenario


class _Package(types.ModuleType):
    """``ecofed_sim.run`` is the function, even after the submodule of the same name has
    been imported (the import system would otherwise set the attribute to the module)."""

    @property
    def run(self):
        return importlib.import_module("ecofed_sim.run").run

    @run.setter
    def run(self, _submodule) -> None:
        pass


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ecofed_sim' has no attribute {name!r}")


__all__ = ["run", "Results", "Scenario", "ScenarioError", "load_scenario", "__version__"]

"""ecofed_sim: a discrete-event simulator of DNN-partitioning-based federated learning.

Real PyTorch training gives the accuracy; SimPy clocks driven by device profiles and a
flow-level network model give the time and the bytes. See README.md.
"""

__version__ = "0.2.0"

from ecofed_sim.errors import ScenarioError  # noqa: E402
from ecofed_sim.run import Results, run  # noqa: E402
from ecofed_sim.scenario import Scenario, load_scenario  # noqa: E402

__all__ = ["run", "Results", "Scenario", "ScenarioError", "load_scenario", "__version__"]

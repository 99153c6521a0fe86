"""How client updates become a global model, as pure functions of state dicts.

- ``sync``: FedAvg's weighted mean (McMahan et al. 2017), whole rounds at a time.
- ``asynchronous``: FedAsync's staleness-weighted mixing (Xie et al. 2019) and FedBuff's
  buffered mean of deltas (Nguyen et al. 2022), one arriving update at a time.
"""

from ecofed_sim.aggregation.asynchronous import (
    STALENESS_FUNCTIONS,
    DeltaBuffer,
    mix,
    staleness_weight,
)
from ecofed_sim.aggregation.sync import WeightedMean, fedavg

__all__ = ["STALENESS_FUNCTIONS", "DeltaBuffer", "WeightedMean", "fedavg", "mix",
           "staleness_weight"]

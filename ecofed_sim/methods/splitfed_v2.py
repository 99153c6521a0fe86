"""SplitFed-V2 (Thapa et al. 2022): one shared server-side model, updated in the order
activations arrive; only the device parts are averaged each round.

Because the engine runs the real torch work in simulated-event order, the shared model
learns exactly in the arrival order the modelled network and devices produce.
"""

from __future__ import annotations

from typing import Literal

from ecofed_sim.methods.base import sgd
from ecofed_sim.methods.splitfed import SplitFed, SplitFedConfig


class SplitFedV2Config(SplitFedConfig):
    name: Literal["splitfed_v2"]  # type: ignore[assignment]
    """splitfed_v2: one shared server part, trained in arrival order"""


class SplitFedV2(SplitFed):
    name = "splitfed_v2"
    Config = SplitFedV2Config
    timing_independent = False  # the shared model learns in arrival order
    per_class_split = False  # one shared server part needs one split

    def begin_round(self, round_index: int, clients: list[int]) -> None:
        """One optimiser for the shared server part per round (momentum restarts at 0)."""
        self.shared = self.global_model.part(self.config.split).train()
        self.shared_opt = sgd(self.shared.parameters(), self.setup.training)

    def server_part_for(self, client: int, k: int):
        return self.shared, self.shared_opt

    def server_state(self, srv_part, k: int) -> dict:
        return {}  # the shared part is already global: nothing to average

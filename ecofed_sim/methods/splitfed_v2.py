"""SplitFed-V2 (Thapa et al. 2022): one shared server-side model, updated in the order
activations arrive; only the device parts are averaged each round.

Because the engine runs the real torch work in simulated-event order, the shared model
learns exactly in the arrival order the modelled network and devices produce.
"""

from __future__ import annotations

from ecofed_sim.methods.base import sgd
from ecofed_sim.methods.configs import SplitFedV2Config
from ecofed_sim.methods.splitfed import SplitFed


class SplitFedV2(SplitFed):
    name = "splitfed_v2"
    Config = SplitFedV2Config

    def begin_round(self, round_index: int, clients: list[int]) -> None:
        """One optimiser for the shared server part per round (momentum restarts at 0)."""
        self.shared = self.global_model.part(self.config.split).train()
        self.shared_opt = sgd(self.shared.parameters(), self.setup.training)

    def server_part_for(self, client: int, k: int):
        return self.shared, self.shared_opt

    def server_state(self, srv_part, k: int) -> dict:
        return {}  # the shared part is already global: nothing to average

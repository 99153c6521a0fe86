"""SplitFed-V2 (Thapa et al. 2022): one shared server-side model, updated in the order
activations arrive; only the device parts are averaged each round.

Because the engine runs the real torch work in simulated-event order, the shared model
learns exactly in the arrival order the modelled network and devices produce.

Asynchronously (``asynchronous``), there are no rounds: one optimiser serves the shared
part for the whole run, each client still waits for its own gradients batch by batch
(SplitFed needs them) but never for other clients, and its device part is mixed into the
global one by FedAsync or FedBuff when it is done.
"""

from __future__ import annotations

from collections.abc import Generator

import torch

from ecofed_sim.methods.base import ClientUpdate, Device, RoundContext, sgd
from ecofed_sim.methods.configs import SplitFedV2Config
from ecofed_sim.methods.splitfed import SplitFed, units_state


class SplitFedV2(SplitFed):
    name = "splitfed_v2"
    Config = SplitFedV2Config
    shared = None  # the shared server part (set by begin_round, or by the first
    # asynchronous client)

    def begin_round(self, round_index: int, clients: list[int]) -> None:
        """One optimiser for the shared server part per round (momentum restarts at 0)."""
        self.shared = self.global_model.part(self.config.split).train()
        self.shared_opt = sgd(self.shared.parameters(), self.setup.training)

    def server_part_for(self, client: int, k: int):
        return self.shared, self.shared_opt

    def server_state(self, srv_part, k: int) -> dict:
        return {}  # the shared part is already global: nothing to average

    # -- asynchronous split FL (ecofed_sim.async_engine)
    def async_state(self) -> dict[str, torch.Tensor]:
        """The device part, under the whole model's keys (what clients push)."""
        return units_state(self.global_model.part(0, self.config.split), 0)

    def async_load(self, state: dict[str, torch.Tensor]) -> None:
        self.global_model.load_state_dict(state, strict=False)

    def async_client(self, ctx: RoundContext, client: int, device: Device) -> Generator:
        if self.shared is None:  # one optimiser for the whole run
            self.begin_round(0, [])
        pulled = {k: v.clone() for k, v in self.async_state().items()}
        update = yield from self.client_round(ctx, client, device)
        return ClientUpdate(client, update.num_samples, (update.payload, pulled))

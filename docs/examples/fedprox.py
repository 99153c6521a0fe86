"""FedProx (Li et al., "Federated Optimization in Heterogeneous Networks", MLSys 2020) as
an ecofed_sim method: the worked example of docs/adding_a_method.md.

FedProx is FedAvg with a proximal term added to each client's loss,
``mu / 2 * ||w - w_global||^2``, which keeps local models near the global one when client
data differ. With ``mu: 0`` it is FedAvg exactly (tests/test_method_guide.py checks that).
What crosses the network is FedAvg's: the model down, the trained model up.

Register it from your own package's pyproject.toml (no fork of ecofed_sim needed):

    [project.entry-points."ecofed_sim.methods"]
    fedprox = "fedprox:FedProx"

then use it in a scenario: ``method: {name: fedprox, mu: 0.01}``.
"""

from __future__ import annotations

import copy
from collections.abc import Generator
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ecofed_sim.aggregation import fedavg
from ecofed_sim.methods.base import (
    ClientUpdate,
    Device,
    Method,
    MethodConfigBase,
    RoundContext,
    Setup,
    sgd,
    train_step,
)
from ecofed_sim.models import state_bytes


class FedProxConfig(MethodConfigBase):
    """The scenario's ``method`` section for this method; unknown keys are errors."""

    name: Literal["fedprox"]
    mu: float = Field(0.01, ge=0, description="weight of the proximal term")


def proximal_term(model: nn.Module, anchor: list[torch.Tensor]) -> torch.Tensor:
    """``||w - w_anchor||^2`` over the trainable parameters (a pure function)."""
    return sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor, strict=True))


class FedProx(Method):
    name = "fedprox"
    Config = FedProxConfig
    plot_style = ("#882255", "P")  # colour and marker in every figure

    def __init__(self, config: FedProxConfig, setup: Setup) -> None:
        super().__init__(config, setup)
        self.global_model = setup.new_model()  # seeded: identical for every method
        self.model_bytes = state_bytes(self.global_model)  # from shapes and dtypes

    def client_round(self, ctx: RoundContext, client: int, device: Device) -> Generator:
        """One client's round, as a SimPy process fragment: every ``yield from`` takes
        simulated time (a transfer on the device's link, compute priced by its profile);
        the torch work between them is real and takes none."""
        stats, model_name = self.setup.stats, self.setup.model_name
        yield from ctx.transfer(device, client, "down", {"weights": self.model_bytes})
        model = copy.deepcopy(self.global_model).train()
        anchor = [p.detach().clone() for p in model.parameters()]
        opt = sgd(model.parameters(), self.setup.training)
        for x, y in ctx.batches(client):  # the data order is keyed by (seed, round, client)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            if self.config.mu > 0:
                loss = loss + self.config.mu / 2 * proximal_term(model, anchor)
            loss.backward()
            opt.step()
            # the proximal term's cost is a few element-wise operations: the step's price
            # is FedAvg's forward and backward pass over every unit
            yield from ctx.compute(device, client, train_step(model_name, stats, len(y)),
                                   "train")
        yield from ctx.transfer(device, client, "up", {"weights": self.model_bytes})
        return ClientUpdate(client, ctx.num_samples(client), model.state_dict())

    def end_round(self, updates: list[ClientUpdate]) -> None:
        """Aggregate the clients that finished (stragglers and dropouts are not here)."""
        if updates:
            self.global_model.load_state_dict(
                fedavg([u.payload for u in updates], [u.num_samples for u in updates]))

    def eval_model(self) -> nn.Module:
        return self.global_model

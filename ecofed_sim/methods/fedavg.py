"""Classic FL, FedAvg (McMahan et al. 2017): the whole model trains on the device.

Per client and round: the global model goes down, ``local_epochs`` of SGD run on the
device, the trained model goes up; the server averages, weighted by sample counts.
"""

from __future__ import annotations

import copy
from collections.abc import Generator
from typing import Literal

import torch.nn.functional as F
from torch import nn

from ecofed_sim.aggregate import fedavg
from ecofed_sim.methods.base import (
    ClientUpdate,
    Device,
    Method,
    MethodConfigBase,
    RoundContext,
    sgd,
    train_step,
)
from ecofed_sim.models import state_bytes


class FedAvgConfig(MethodConfigBase):
    name: Literal["fedavg"]
    """fedavg: classic FL (McMahan et al. 2017)"""


class FedAvg(Method):
    name = "fedavg"
    Config = FedAvgConfig

    def __init__(self, config: FedAvgConfig, setup) -> None:
        super().__init__(config, setup)
        self.global_model = setup.new_model()
        self.model_bytes = state_bytes(self.global_model)

    def client_round(self, ctx: RoundContext, client: int, device: Device) -> Generator:
        stats, name = self.setup.stats, self.setup.model_name
        yield from ctx.transfer(device, client, "down", {"weights": self.model_bytes})
        model = copy.deepcopy(self.global_model).train()
        opt = sgd(model.parameters(), self.setup.training)
        for x, y in ctx.batches(client):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
            yield from ctx.compute(device, client, train_step(name, stats, len(y)), "train")
        yield from ctx.transfer(device, client, "up", {"weights": self.model_bytes})
        return ClientUpdate(client, ctx.num_samples(client), model.state_dict())

    def end_round(self, updates: list[ClientUpdate]) -> None:
        if updates:
            self.global_model.load_state_dict(
                fedavg([u.payload for u in updates], [u.num_samples for u in updates]))

    def eval_model(self) -> nn.Module:
        return self.global_model

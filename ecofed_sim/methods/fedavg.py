"""Classic FL, FedAvg (McMahan et al. 2017): the whole model trains on the device.

Per client and round: the global model goes down, ``local_epochs`` of SGD run on the
device, the trained model goes up; the server averages, weighted by sample counts.

What a client learns does not depend on when it runs, so the simulated round (download,
one priced step per batch, upload) is played first, and the real training of each kept
client runs at aggregation, in client order, on one reused worker model whose result goes
straight into a running mean. A round of thousands of clients then holds two models, not
thousands, and a client cut off by the deadline costs no real training at all. The
learning is exactly that of training every client on its own copy.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Generator

import torch
import torch.nn.functional as F
from torch import nn

from ecofed_sim.aggregation import WeightedMean
from ecofed_sim.methods.base import (
    ClientUpdate,
    Device,
    Method,
    RoundContext,
    sgd,
    train_step,
)
from ecofed_sim.methods.configs import FedAvgConfig
from ecofed_sim.models import state_bytes


def local_sgd(model: nn.Module, opt: torch.optim.Optimizer, batches) -> None:
    """A client's local epochs on ``model`` (already holding the global weights), with
    ``opt``'s state reset first: the same steps as a fresh optimiser on a fresh copy."""
    model.train()
    opt.state.clear()
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()


class FedAvg(Method):
    name = "fedavg"
    Config = FedAvgConfig

    def __init__(self, config: FedAvgConfig, setup) -> None:
        super().__init__(config, setup)
        self.global_model = setup.new_model()
        self.model_bytes = state_bytes(self.global_model)
        self._worker: nn.Module | None = None  # the one model clients train on, reused
        self._worker_opt: torch.optim.SGD | None = None

    def client_round(self, ctx: RoundContext, client: int, device: Device) -> Generator:
        stats, name = self.setup.stats, self.setup.model_name
        yield from ctx.transfer(device, client, "down", {"weights": self.model_bytes})
        for size in ctx.batch_sizes(client):
            yield from ctx.compute(device, client, train_step(name, stats, size), "train")
        yield from ctx.transfer(device, client, "up", {"weights": self.model_bytes})
        # the payload trains this client when it is aggregated (see the module docstring)
        return ClientUpdate(client, ctx.num_samples(client),
                            functools.partial(self.train_client, ctx, client))

    def train_client(self, ctx: RoundContext, client: int,
                     start: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The client's local epochs from ``start`` (default: this round's global model;
        an asynchronous client's is the model it pulled), on the worker model (its state
        loaded, its optimiser's momentum reset: the same as a fresh copy and a fresh
        optimiser). Returns the worker's state, valid until the next call."""
        if self._worker is None:
            self._worker = copy.deepcopy(self.global_model)
            self._worker_opt = sgd(self._worker.parameters(), self.setup.training)
        self._worker.load_state_dict(self.global_model.state_dict() if start is None
                                     else start)
        local_sgd(self._worker, self._worker_opt, ctx.batches(client))
        return self._worker.state_dict()

    def begin_round(self, round_index: int, clients: list[int]) -> None:
        self._round = round_index

    def end_round(self, updates: list[ClientUpdate]) -> None:
        if not updates:
            return
        weights = [u.num_samples for u in updates]
        mean = WeightedMean(sum(weights))
        pool = self.setup.pool
        states = ((u.payload() for u in updates) if pool is None else pool.trained_states(
            self.global_model.state_dict(), self._round, [u.client for u in updates], weights))
        for state, weight in zip(states, weights, strict=True):  # client order (engine sorts)
            mean.add(state, weight)
        self.global_model.load_state_dict(mean.result())

    def eval_model(self) -> nn.Module:
        return self.global_model

    # -- asynchronous runs (ecofed_sim.async_engine): the whole model is aggregated
    def async_state(self) -> dict[str, torch.Tensor]:
        return self.global_model.state_dict()

    def async_load(self, state: dict[str, torch.Tensor]) -> None:
        self.global_model.load_state_dict(state)

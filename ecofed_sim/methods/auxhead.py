"""Shared machinery of the methods that train the device part on a local objective
through an auxiliary head (local-loss DPFL, FedGKT): the head, its timing, the per-round
weight exchange and the three-way FedAvg (device part, head, server copies)."""

from __future__ import annotations

import copy
from collections.abc import Generator

import torch
from torch import nn

from ecofed_sim.aggregation import fedavg
from ecofed_sim.codecs import make_codec
from ecofed_sim.methods.base import (
    ClientUpdate,
    Cost,
    Device,
    Method,
    backward,
    forward,
    sgd,
    train_step,
)
from ecofed_sim.methods.configs import AuxConfigBase
from ecofed_sim.models import LayerModel, LayerStats, layer_stats, state_bytes
from ecofed_sim.seeding import INIT, torch_gen
from ecofed_sim.shapes_only import cross_entropy, place


def build_aux_head(in_shape: tuple[int, ...], hidden: list[int], classes: int) -> LayerModel:
    layers: list[nn.Module] = [nn.Flatten()]
    width = int(torch.tensor(in_shape).prod())
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, classes))
    return LayerModel("aux", [("aux", nn.Sequential(*layers))])


class AuxHeadMethod(Method):
    """Device part + auxiliary head go down and up each round; all three parts averaged."""

    def __init__(self, config: AuxConfigBase, setup) -> None:
        super().__init__(config, setup)
        k = config.split
        self.global_model = setup.new_model()
        self.device_stats, self.server_stats = setup.stats[:k], setup.stats[k:]
        act_shape, classes = setup.stats[k - 1].out_shape, setup.stats[-1].out_shape[0]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(torch_gen(setup.seed, INIT, 1).initial_seed())
            aux = build_aux_head(act_shape, config.aux_hidden, classes)
        self.aux_stats = layer_stats(aux, act_shape)  # traced on the CPU, before it moves
        self.aux = place(aux, setup.device)
        self.codec = make_codec(config.activation_codec)
        self.weight_bytes = state_bytes(self.global_model.part(0, k)) + state_bytes(self.aux)

    def device_cost(self, batch: int, fwd: bool = True, bwd: bool = True) -> Cost:
        return aux_device_cost(self.setup.model_name, self.device_stats, self.aux_stats,
                               batch, fwd, bwd)

    @staticmethod
    def aux_stats_at(config: AuxConfigBase, stats, split: int) -> list[LayerStats]:
        """Facts of the auxiliary head a split would have (for the planner)."""
        act_shape = stats[split - 1].out_shape
        head = build_aux_head(act_shape, config.aux_hidden, stats[-1].out_shape[0])
        return layer_stats(head, act_shape)

    @classmethod
    def weights_at(cls, config: AuxConfigBase, stats, split: int) -> int:
        return sum(s.param_bytes for s in stats[:split]) + sum(
            s.param_bytes for s in cls.aux_stats_at(config, stats, split))

    def server_cost(self, batch: int) -> Cost:
        return train_step(self.setup.model_name, self.server_stats, batch)

    def local_models(self, client: int):
        """Fresh per-client copies of what the client starts from: (device part, head,
        device optimiser, server part, server optimiser)."""
        start = self.start_module(client)
        dev = copy.deepcopy(start.part(0, self.config.split)).train()
        aux = copy.deepcopy(self.start_module(client, "aux")).train()
        srv = copy.deepcopy(start.part(self.config.split)).train()
        return (dev, aux, sgd([*dev.parameters(), *aux.parameters()], self.setup.training),
                srv, sgd(srv.parameters(), self.setup.training))

    def client_round(self, ctx, client: int, device: Device) -> Generator:
        yield from ctx.transfer(device, client, "down", {"weights": self.weight_bytes})
        dev, aux, srv = yield from self.train_locally(ctx, client, device)
        yield from ctx.transfer(device, client, "up", {"weights": self.weight_bytes})
        return ClientUpdate(client, ctx.num_samples(client),
                            (dev.state_dict(), aux.state_dict(), srv.state_dict()))

    def train_locally(self, ctx, client: int, device: Device) -> Generator:
        raise NotImplementedError

    def end_round(self, updates: list[ClientUpdate]) -> None:
        if not updates:
            return
        w = [u.num_samples for u in updates]
        k = self.config.split
        self.global_model.part(0, k).load_state_dict(fedavg([u.payload[0] for u in updates], w))
        self.aux.load_state_dict(fedavg([u.payload[1] for u in updates], w))
        self.global_model.part(k).load_state_dict(fedavg([u.payload[2] for u in updates], w))

    def eval_model(self) -> nn.Module:
        return self.global_model

    def learnable_modules(self) -> dict[str, nn.Module]:
        return {"model": self.global_model, "aux": self.aux}


def aux_device_cost(model: str, device_stats, aux_stats, batch: int, fwd: bool = True,
                    bwd: bool = True) -> Cost:
    """Device part + head (the head has no latency table: it is priced by FLOPs)."""
    cost: Cost = ()
    if fwd:
        cost += forward(model, device_stats, batch) + forward("aux", aux_stats, batch)
    if bwd:
        cost += backward(model, device_stats, batch) + backward("aux", aux_stats, batch)
    return cost


def server_ce_step(part, opt, act: torch.Tensor, y: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    cross_entropy(part(act), y).backward()
    opt.step()

"""Vanilla DPFL, SplitFed-V1 (Thapa et al. 2022) as the EcoFed paper runs it.

The device holds units [0, split), the server one copy of [split, n) per client. Every
batch: fp32 activation and labels go up, the server trains its copy and sends the
activation's gradient down, the device back-propagates. At the end of the round both the
device parts and the server copies are FedAvg-averaged. With equal optimisers and data
order this is FedAvg exactly (tested as an oracle).

Device classes may each use their own split (``population.devices[i].split``): a client's
device part and server copy together are one whole model, so FedAvg averages every unit
over every client, whichever side trained it, and the result stays FedAvg's.
"""

from __future__ import annotations

import copy
from collections.abc import Generator

import torch
from torch import nn

from ecofed_sim.aggregation import fedavg
from ecofed_sim.codecs import make_codec, payload_bytes_for
from ecofed_sim.methods.base import (
    LABEL_BYTES,
    ClientUpdate,
    Device,
    Method,
    RoundContext,
    Sketch,
    backward,
    forward,
    sgd,
    tensor_bytes,
    train_step,
)
from ecofed_sim.methods.configs import SplitFedConfig
from ecofed_sim.models import state_bytes
from ecofed_sim.seeding import CODEC
from ecofed_sim.shapes_only import cross_entropy


class SplitFed(Method):
    name = "splitfed"
    Config = SplitFedConfig

    def __init__(self, config: SplitFedConfig, setup) -> None:
        super().__init__(config, setup)
        self.global_model = setup.new_model()
        self.act_codec = make_codec(config.activation_codec)
        self.grad_codec = make_codec(config.gradient_codec)

    @classmethod
    def sketch(cls, config: SplitFedConfig, model: str, stats, split: int, batch: int) -> Sketch:
        act_shape = (batch, *stats[split - 1].out_shape)
        frozen = config.freeze_device
        weights = 0 if frozen else sum(s.param_bytes for s in stats[:split])
        return Sketch(
            forward(model, stats[:split], batch),
            payload_bytes_for(config.activation_codec, act_shape) + batch * LABEL_BYTES,
            train_step(model, stats[split:], batch),
            0 if frozen else payload_bytes_for(config.gradient_codec, act_shape),
            () if frozen else backward(model, stats[:split], batch),
            weights_down_bytes=weights, weights_up_bytes=weights)

    def split_of(self, device: Device) -> int:
        return self.config.split if device.split is None else device.split

    def server_part_for(self, client: int, k: int) -> tuple[nn.Module, torch.optim.Optimizer]:
        """V1: a fresh copy of the global server part per client (V2 overrides)."""
        part = copy.deepcopy(self.start_module(client).part(k)).train()
        return part, sgd(part.parameters(), self.setup.training)

    def client_round(self, ctx: RoundContext, client: int, device: Device) -> Generator:
        frozen, name, k = self.config.freeze_device, self.setup.model_name, self.split_of(device)
        device_stats, server_stats = self.setup.stats[:k], self.setup.stats[k:]
        dev_part = copy.deepcopy(self.start_module(client).part(0, k)).train()
        device_bytes = state_bytes(dev_part)
        if not frozen:
            yield from ctx.transfer(device, client, "down", {"weights": device_bytes})
        dev_opt = sgd(dev_part.parameters(), self.setup.training)
        srv_part, srv_opt = self.server_part_for(client, k)
        for b, (x, y) in enumerate(ctx.batches(client)):
            dev_opt.zero_grad(set_to_none=True)
            with torch.set_grad_enabled(not frozen):
                act = dev_part(x)
            yield from ctx.compute(device, client, forward(name, device_stats, len(y)), "fwd")
            enc = self.act_codec.encode(act, ctx.generator(CODEC, client, b))
            yield from ctx.transfer(device, client, "up", {"activations": enc.payload_bytes,
                                                           "labels": tensor_bytes(y)})

            def server_step(sent=enc.decoded, y=y) -> torch.Tensor:
                srv_opt.zero_grad(set_to_none=True)
                a = sent.requires_grad_(True)
                cross_entropy(srv_part(a), y).backward()
                srv_opt.step()
                return a.grad

            grad = yield from ctx.server_work(
                client, train_step(name, server_stats, len(y)), server_step, "server_step")
            if frozen:
                continue  # nothing to send back: the device part does not learn
            g = self.grad_codec.encode(grad, ctx.generator(CODEC, client, b, 1))
            yield from ctx.transfer(device, client, "down", {"gradients": g.payload_bytes})
            act.backward(g.decoded)
            dev_opt.step()
            yield from ctx.compute(device, client, backward(name, device_stats, len(y)), "bwd")
        if not frozen:
            yield from ctx.transfer(device, client, "up", {"weights": device_bytes})
        state = units_state(dev_part, 0)
        state.update(self.server_state(srv_part, k))
        return ClientUpdate(client, ctx.num_samples(client), state)

    def server_state(self, srv_part: nn.Module, k: int) -> dict:
        return units_state(srv_part, k)

    def end_round(self, updates: list[ClientUpdate]) -> None:
        """FedAvg, unit by unit, of what each client's update holds (V1: the whole model;
        V2: the device parts, its shared server part being global already)."""
        if updates:
            average = fedavg([u.payload for u in updates], [u.num_samples for u in updates])
            self.global_model.load_state_dict(average, strict=False)

    def eval_model(self) -> nn.Module:
        return self.global_model


def units_state(part: nn.Module, first_unit: int) -> dict[str, torch.Tensor]:
    """A part's state dict under the whole model's keys (``part(k)``'s "0.w" is unit k's
    "units.k.w"), so parts split at different points average unit by unit."""
    out = {}
    for key, value in part.state_dict().items():
        index, rest = key.split(".", 1)
        out[f"units.{first_unit + int(index)}.{rest}"] = value
    return out

"""Vanilla DPFL, SplitFed-V1 (Thapa et al. 2022) as the EcoFed paper runs it.

The device holds units [0, split), the server one copy of [split, n) per client. Every
batch: fp32 activation and labels go up, the server trains its copy and sends the
activation's gradient down, the device back-propagates. At the end of the round both the
device parts and the server copies are FedAvg-averaged. With equal optimisers and data
order this is FedAvg exactly (tested as an oracle).
"""

from __future__ import annotations

import copy
from collections.abc import Generator
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ecofed_sim.aggregate import fedavg
from ecofed_sim.codecs import CodecSpec, make_codec
from ecofed_sim.methods.base import (
    ClientUpdate,
    Device,
    Method,
    RoundContext,
    SplitConfigBase,
    backward,
    forward,
    sgd,
    tensor_bytes,
    train_step,
)
from ecofed_sim.models import state_bytes
from ecofed_sim.seeding import CODEC


class SplitFedConfig(SplitConfigBase):
    name: Literal["splitfed"]
    activation_codec: CodecSpec = CodecSpec()
    gradient_codec: CodecSpec = CodecSpec()
    freeze_device: bool = Field(False, description="keep the device part at its initial "
                                "weights: no gradient and no weights cross the network")


class SplitFed(Method):
    name = "splitfed"
    Config = SplitFedConfig

    def __init__(self, config: SplitFedConfig, setup) -> None:
        super().__init__(config, setup)
        self.global_model = setup.new_model()
        k = config.split
        self.device_stats, self.server_stats = setup.stats[:k], setup.stats[k:]
        self.device_bytes = state_bytes(self.global_model.part(0, k))
        self.act_codec = make_codec(config.activation_codec)
        self.grad_codec = make_codec(config.gradient_codec)

    def server_part_for(self, client: int) -> tuple[nn.Module, torch.optim.Optimizer]:
        """V1: a fresh copy of the global server part per client (V2 overrides)."""
        part = copy.deepcopy(self.global_model.part(self.config.split)).train()
        return part, sgd(part.parameters(), self.setup.training)

    def client_round(self, ctx: RoundContext, client: int, device: Device) -> Generator:
        frozen, name = self.config.freeze_device, self.setup.model_name
        if not frozen:
            yield from ctx.transfer(device, client, "down", {"weights": self.device_bytes})
        dev_part = copy.deepcopy(self.global_model.part(0, self.config.split)).train()
        dev_opt = sgd(dev_part.parameters(), self.setup.training)
        srv_part, srv_opt = self.server_part_for(client)
        for b, (x, y) in enumerate(ctx.batches(client)):
            dev_opt.zero_grad(set_to_none=True)
            with torch.set_grad_enabled(not frozen):
                act = dev_part(x)
            yield from ctx.compute(device, client, forward(name, self.device_stats, len(y)),
                                   "fwd")
            enc = self.act_codec.encode(act, ctx.generator(CODEC, client, b))
            yield from ctx.transfer(device, client, "up", {"activations": enc.payload_bytes,
                                                           "labels": tensor_bytes(y)})

            def server_step(sent=enc.decoded, y=y) -> torch.Tensor:
                srv_opt.zero_grad(set_to_none=True)
                a = sent.requires_grad_(True)
                F.cross_entropy(srv_part(a), y).backward()
                srv_opt.step()
                return a.grad

            grad = yield from ctx.server_work(
                client, train_step(name, self.server_stats, len(y)), server_step, "server_step")
            if frozen:
                continue  # nothing to send back: the device part does not learn
            g = self.grad_codec.encode(grad, ctx.generator(CODEC, client, b, 1))
            yield from ctx.transfer(device, client, "down", {"gradients": g.payload_bytes})
            act.backward(g.decoded)
            dev_opt.step()
            yield from ctx.compute(device, client, backward(name, self.device_stats, len(y)),
                                   "bwd")
        if not frozen:
            yield from ctx.transfer(device, client, "up", {"weights": self.device_bytes})
        return ClientUpdate(client, ctx.num_samples(client),
                            (dev_part.state_dict(), self.server_state(srv_part)))

    def server_state(self, srv_part: nn.Module) -> dict | None:
        return srv_part.state_dict()

    def end_round(self, updates: list[ClientUpdate]) -> None:
        if not updates:
            return
        weights = [u.num_samples for u in updates]
        self.global_model.part(0, self.config.split).load_state_dict(
            fedavg([u.payload[0] for u in updates], weights))
        server_states = [u.payload[1] for u in updates if u.payload[1] is not None]
        if server_states:
            self.global_model.part(self.config.split).load_state_dict(
                fedavg(server_states, weights))

    def eval_model(self) -> nn.Module:
        return self.global_model

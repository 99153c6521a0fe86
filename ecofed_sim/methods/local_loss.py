"""Local-loss DPFL (Han et al. 2021, "Accelerating federated learning with split learning
on locally generated losses").

The device trains its part and an auxiliary head on a local cross-entropy loss, and sends
activations and labels up; nothing comes back per batch, so the device never waits for
the server (with ``lockstep``, as the EcoFed code's devices: it waits for the server's
step and a release message before its local backward). The server trains its per-client
copy on the activations as they arrive. Device part, head and server copies are
FedAvg-averaged every round.
"""

from __future__ import annotations

from collections.abc import Generator

import torch.nn.functional as F

from ecofed_sim.codecs import payload_bytes_for
from ecofed_sim.methods.auxhead import (
    AuxHeadMethod,
    aux_device_cost,
    server_ce_step,
)
from ecofed_sim.methods.base import LABEL_BYTES, Device, Sketch, tensor_bytes, train_step
from ecofed_sim.methods.configs import LocalLossConfig
from ecofed_sim.seeding import CODEC


class LocalLoss(AuxHeadMethod):
    name = "local_loss"
    Config = LocalLossConfig

    @classmethod
    def sketch(cls, config: LocalLossConfig, model: str, stats, split: int,
               batch: int) -> Sketch:
        """The device trains on its local loss and streams activations; nothing comes back."""
        act_shape = (batch, *stats[split - 1].out_shape)
        weights = cls.weights_at(config, stats, split)
        aux = cls.aux_stats_at(config, stats, split)
        if config.lockstep:  # forward, up, server, release down, then the local backward
            return Sketch(aux_device_cost(model, stats[:split], aux, batch, bwd=False),
                          payload_bytes_for(config.activation_codec, act_shape)
                          + batch * LABEL_BYTES, train_step(model, stats[split:], batch),
                          down_bytes=config.release_bytes,
                          device_after=aux_device_cost(model, stats[:split], aux, batch,
                                                       fwd=False),
                          weights_down_bytes=weights, weights_up_bytes=weights)
        return Sketch(aux_device_cost(model, stats[:split], aux, batch),
                      payload_bytes_for(config.activation_codec, act_shape)
                      + batch * LABEL_BYTES,
                      train_step(model, stats[split:], batch), waits=False,
                      weights_down_bytes=weights, weights_up_bytes=weights)

    def train_locally(self, ctx, client: int, device: Device) -> Generator:
        dev, aux, dev_opt, srv, srv_opt = self.local_models()
        handles = []
        lockstep = self.config.lockstep
        for b, (x, y) in enumerate(ctx.batches(client)):
            dev_opt.zero_grad(set_to_none=True)
            act = dev(x)
            F.cross_entropy(aux(act), y).backward()
            dev_opt.step()
            # the same learning either way; lockstep only moves the backward's time
            yield from ctx.compute(device, client, self.device_cost(len(y), bwd=not lockstep),
                                   "local_step")
            enc = self.codec.encode(act, ctx.generator(CODEC, client, b))
            yield from ctx.transfer(device, client, "up", {"activations": enc.payload_bytes,
                                                           "labels": tensor_bytes(y)})
            handles.append(ctx.server_async(
                client, self.server_cost(len(y)),
                lambda a=enc.decoded, y=y: server_ce_step(srv, srv_opt, a, y), "server_step"))
            if lockstep:  # the server's step, its release message, then the local backward
                yield from ctx.wait(handles[-1:])
                yield from ctx.transfer(device, client, "down",
                                        {"control": self.config.release_bytes})
                yield from ctx.compute(device, client, self.device_cost(len(y), fwd=False),
                                       "local_backward")
        yield from ctx.wait(handles)
        return dev, aux, srv

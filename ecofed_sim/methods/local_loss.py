"""Local-loss DPFL (Han et al. 2021, "Accelerating federated learning with split learning
on locally generated losses").

The device trains its part and an auxiliary head on a local cross-entropy loss, and sends
activations and labels up; nothing comes back per batch, so the device never waits for
the server (with ``lockstep``, as the EcoFed code's devices: it waits for the server's
step and a release message before its local backward). The server trains its per-client
copy on the activations as they arrive. Device part, head and server copies are
FedAvg-averaged every round.

Asynchronously (``asynchronous``; asynchronous split FL as in FedOptima, Wu et al., arXiv
2504.13850, and local-loss SFL): there is one server part, trained on every client's
activations in the order they arrive, with one optimiser (its momentum carries over, as
a real shared server's does). A client streams its activations without waiting for the
server, and pushes its device part and head when its epochs are done; those are mixed
into the global ones by FedAsync or FedBuff. Unlike FedOptima, the device part still
trains on its local loss (no server-side feedback) and the server part is never averaged.
"""

from __future__ import annotations

import copy
from collections.abc import Generator

import torch
from torch import nn

from ecofed_sim.codecs import payload_bytes_for
from ecofed_sim.methods.auxhead import (
    AuxHeadMethod,
    aux_device_cost,
    server_ce_step,
)
from ecofed_sim.methods.base import (
    LABEL_BYTES,
    ClientUpdate,
    Device,
    Sketch,
    load_modules_state,
    modules_state,
    sgd,
    tensor_bytes,
    train_step,
)
from ecofed_sim.methods.configs import LocalLossConfig
from ecofed_sim.seeding import CODEC
from ecofed_sim.shapes_only import cross_entropy


class LocalLoss(AuxHeadMethod):
    name = "local_loss"
    Config = LocalLossConfig
    _shared_opt: torch.optim.Optimizer | None = None  # asynchronous: the server part's

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
        dev, aux, dev_opt, srv, srv_opt = self.local_models(client)
        handles = yield from self._stream(ctx, client, device, dev, aux, dev_opt, srv,
                                          srv_opt, self.config.lockstep)
        yield from ctx.wait(handles)
        return dev, aux, srv

    def _stream(self, ctx, client: int, device: Device, dev, aux, dev_opt, srv, srv_opt,
                lockstep: bool) -> Generator:
        """Every batch: the local step, then its activations up to ``srv`` (trained by
        the server as they arrive). Returns the server steps' handles."""
        handles = []
        for b, (x, y) in enumerate(ctx.batches(client)):
            dev_opt.zero_grad(set_to_none=True)
            act = dev(x)
            cross_entropy(aux(act), y).backward()
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
        return handles

    # -- asynchronous split FL (ecofed_sim.async_engine)
    def _device_modules(self) -> dict[str, nn.Module]:
        return {"device": self.global_model.part(0, self.config.split), "aux": self.aux}

    def async_state(self) -> dict[str, torch.Tensor]:
        """What clients push and the aggregator mixes: the device part and the head."""
        return modules_state(self._device_modules())

    def async_load(self, state: dict[str, torch.Tensor]) -> None:
        load_modules_state(self._device_modules(), state)

    def async_client(self, ctx, client: int, device: Device) -> Generator:
        """One asynchronous client: pull the device part and head, stream every batch's
        activations to the shared server part (its steps queue at the server in arrival
        order; the client never waits for them), push the trained part and head. The
        update's payload: (trained, pulled) states, for FedAsync or FedBuff."""
        shared = self.global_model.part(self.config.split).train()
        if self._shared_opt is None:
            self._shared_opt = sgd(shared.parameters(), self.setup.training)
        pulled = {n: t.clone() for n, t in self.async_state().items()}
        copies = {n: copy.deepcopy(m).train() for n, m in self._device_modules().items()}
        dev_opt = sgd([p for m in copies.values() for p in m.parameters()],
                      self.setup.training)
        yield from ctx.transfer(device, client, "down", {"weights": self.weight_bytes})
        yield from self._stream(ctx, client, device, copies["device"], copies["aux"],
                                dev_opt, shared, self._shared_opt, lockstep=False)
        yield from ctx.transfer(device, client, "up", {"weights": self.weight_bytes})
        return ClientUpdate(client, ctx.num_samples(client), (modules_state(copies), pulled))

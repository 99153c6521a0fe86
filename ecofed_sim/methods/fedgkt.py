"""FedGKT (He et al., NeurIPS 2020, "Group knowledge transfer") as adapted in the EcoFed
paper's code: both sides learn by cross-entropy plus knowledge distillation. KD is the
temperature-scaled KL divergence times T^2 (Hinton et al. 2015).

Two variants (``mode``):

- ``lockstep`` (the default): per batch the device sends activations, labels and its
  head's logits; the server trains its copy on CE + alpha * KD(server || client logits)
  and returns its logits; the device then trains its part and head on CE + alpha *
  KD(client || server logits).
- ``two_phase``, as the EcoFed code runs it (and FedGKT's paper describes): (a) the device
  trains its part and head for its local epochs with no communication, on CE + alpha * KD
  against the server logits stored for that client and batch in an earlier round (CE
  alone when none are stored: in the first round, or when the batch differs, so use
  ``training.shuffle: fixed`` as the reference code does); (b) an inference pass then
  sends, per batch, activations, labels and client logits; the server trains on KD +
  alpha * CE and returns its logits, stored for the next round. Bytes per round equal the
  lock-step variant's; device compute, timing and what is learned do not.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Generator

import torch
import torch.nn.functional as F

from ecofed_sim.codecs import payload_bytes_for
from ecofed_sim.methods.auxhead import AuxHeadMethod, aux_device_cost
from ecofed_sim.methods.base import LABEL_BYTES, Device, Sketch, tensor_bytes, train_step
from ecofed_sim.methods.configs import FedGKTConfig
from ecofed_sim.seeding import CODEC
from ecofed_sim.shapes_only import cross_entropy, shaped

FP32_BYTES = 4  # logits cross the network as fp32


@shaped  # on meta tensors (a round planned for workers, or timing only): shapes alone
def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    t = temperature
    return F.kl_div(F.log_softmax(student / t, 1), F.softmax(teacher / t, 1),
                    reduction="batchmean") * t * t


class FedGKT(AuxHeadMethod):
    name = "fedgkt"
    Config = FedGKTConfig

    @classmethod
    def sketch(cls, config: FedGKTConfig, model: str, stats, split: int, batch: int) -> Sketch:
        """Activations, labels and client logits up; server logits down, then backward."""
        act_shape = (batch, *stats[split - 1].out_shape)
        aux = cls.aux_stats_at(config, stats, split)
        logits_bytes = batch * stats[-1].out_shape[0] * FP32_BYTES
        weights = cls.weights_at(config, stats, split)
        before = aux_device_cost(model, stats[:split], aux, batch, bwd=False)
        after = aux_device_cost(model, stats[:split], aux, batch, fwd=False)
        if config.mode == "two_phase":  # a local step, later the inference forward: sums
            before, after = aux_device_cost(model, stats[:split], aux, batch) + before, ()
        return Sketch(before, payload_bytes_for(config.activation_codec, act_shape)
                      + batch * LABEL_BYTES + logits_bytes,
                      train_step(model, stats[split:], batch), logits_bytes, after,
                      weights_down_bytes=weights, weights_up_bytes=weights)

    def __init__(self, config: FedGKTConfig, setup) -> None:
        super().__init__(config, setup)
        self.stored: dict[tuple[int, bytes], torch.Tensor] = {}  # two_phase: server logits

    def train_locally(self, ctx, client: int, device: Device) -> Generator:
        if self.config.mode == "two_phase":
            return (yield from self._two_phase(ctx, client, device))
        return (yield from self._lockstep(ctx, client, device))

    def _two_phase(self, ctx, client: int, device: Device) -> Generator:
        cfg = self.config
        dev, aux, dev_opt, srv, srv_opt = self.local_models(client)
        per_epoch = math.ceil(ctx.num_samples(client) / self.setup.training.batch_size)
        last_epoch: deque = deque(maxlen=per_epoch)  # the inference pass walks it again
        for idx, x, y in ctx.indexed_batches(client):  # (a) local epochs, no traffic
            last_epoch.append((idx, x, y))
            dev_opt.zero_grad(set_to_none=True)
            logits = aux(dev(x))
            loss = cross_entropy(logits, y)
            teacher = self.stored.get((client, idx.numpy().tobytes()))
            if teacher is not None:
                loss = loss + cfg.alpha * kd_loss(logits, teacher, cfg.temperature)
            loss.backward()
            dev_opt.step()
            yield from ctx.compute(device, client, self.device_cost(len(y)), "local_step")
        for b, (idx, x, y) in enumerate(last_epoch):  # (b) inference pass, server learns
            with torch.no_grad():
                act = dev(x)
                client_logits = aux(act)
            yield from ctx.compute(device, client, self.device_cost(len(y), bwd=False), "fwd")
            server_logits = yield from self._exchange(ctx, client, device, b, act, y,
                                                      client_logits, srv, srv_opt,
                                                      kd_weight=1.0, ce_weight=cfg.alpha)
            self.stored[(client, idx.numpy().tobytes())] = server_logits
        return dev, aux, srv

    def _lockstep(self, ctx, client: int, device: Device) -> Generator:
        cfg = self.config
        dev, aux, dev_opt, srv, srv_opt = self.local_models(client)
        for b, (x, y) in enumerate(ctx.batches(client)):
            dev_opt.zero_grad(set_to_none=True)
            act = dev(x)
            client_logits = aux(act)
            yield from ctx.compute(device, client, self.device_cost(len(y), bwd=False), "fwd")
            server_logits = yield from self._exchange(ctx, client, device, b, act, y,
                                                      client_logits.detach(), srv, srv_opt,
                                                      kd_weight=cfg.alpha, ce_weight=1.0)
            loss = cross_entropy(client_logits, y) + cfg.alpha * kd_loss(
                client_logits, server_logits, cfg.temperature)
            loss.backward()
            dev_opt.step()
            yield from ctx.compute(device, client, self.device_cost(len(y), fwd=False), "bwd")
        return dev, aux, srv

    def _exchange(self, ctx, client: int, device: Device, b: int, act: torch.Tensor,
                  y: torch.Tensor, client_logits: torch.Tensor, srv, srv_opt, *,
                  kd_weight: float, ce_weight: float) -> Generator:
        """One batch's round trip: activations, labels and client logits up; the server
        trains on ce_weight x CE + kd_weight x KD(server || client logits); its logits
        come back (returned)."""
        temperature = self.config.temperature
        enc = self.codec.encode(act, ctx.generator(CODEC, client, b))
        yield from ctx.transfer(device, client, "up", {
            "activations": enc.payload_bytes, "labels": tensor_bytes(y),
            "logits": tensor_bytes(client_logits)})

        def server_step(a=enc.decoded) -> torch.Tensor:
            srv_opt.zero_grad(set_to_none=True)
            logits = srv(a)
            loss = (ce_weight * cross_entropy(logits, y)
                    + kd_weight * kd_loss(logits, client_logits, temperature))
            loss.backward()
            srv_opt.step()
            return logits.detach()

        server_logits = yield from ctx.server_work(
            client, self.server_cost(len(y)), server_step, "server_step")
        yield from ctx.transfer(device, client, "down", {"logits": tensor_bytes(server_logits)})
        return server_logits

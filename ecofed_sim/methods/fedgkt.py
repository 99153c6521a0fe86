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

Both train apart on workers (``run --workers``). Two-phase jobs carry the client's stored
logits out and back; a client cut off during its inference pass still stored logits for
the batches it finished, so it gets a job that goes that far (``cut``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Generator
from typing import Any

import torch
import torch.nn.functional as F

from ecofed_sim.codecs import payload_bytes_for
from ecofed_sim.methods.auxhead import AuxHeadMethod, aux_device_cost
from ecofed_sim.methods.base import (
    LABEL_BYTES,
    ClientUpdate,
    Device,
    Method,
    Sketch,
    tensor_bytes,
    train_step,
)
from ecofed_sim.methods.configs import FedGKTConfig
from ecofed_sim.seeding import CODEC
from ecofed_sim.shapes_only import cross_entropy, shaped

FP32_BYTES = 4  # logits cross the network as fp32


@shaped  # on meta tensors (a round planned for workers, or timing only): shapes alone
def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    t = temperature
    return F.kl_div(F.log_softmax(student / t, 1), F.softmax(teacher / t, 1),
                    reduction="batchmean") * t * t


@shaped
def distilled_loss(logits: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor,
                   ce_weight: float, kd_weight: float, temperature: float) -> torch.Tensor:
    """``ce_weight`` x cross-entropy + ``kd_weight`` x KD(logits || teacher); a weight of
    1 multiplies nothing. (On meta, the sum and products took most of a timing-only
    FedGKT round.)"""
    ce = F.cross_entropy(logits, labels)
    if ce_weight != 1.0:
        ce = ce_weight * ce
    return ce + kd_weight * kd_loss(logits, teacher, temperature)


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

    device_jobs = ("client", "cut")

    def __init__(self, config: FedGKTConfig, setup) -> None:
        super().__init__(config, setup)
        # two_phase: server logits per client, by the batch's sample indices
        self.stored: dict[int, dict[bytes, torch.Tensor]] = {}
        self.stored_now: dict[int, int] = {}  # this round: batches whose logits it stored

    def begin_round(self, round_index: int, clients: list[int]) -> None:
        self.stored_now = {}

    def train_locally(self, ctx, client: int, device: Device) -> Generator:
        if self.config.mode == "two_phase":
            return (yield from self._two_phase(ctx, client, device))
        return (yield from self._lockstep(ctx, client, device))

    def _two_phase(self, ctx, client: int, device: Device,
                   limit: int | None = None) -> Generator:
        """``limit``: stop after that many batches of the inference pass (a cut-off
        client's logits, re-made apart)."""
        cfg = self.config
        dev, aux, dev_opt, srv, srv_opt = self.local_models(client)
        stored = self.stored.setdefault(client, {})
        per_epoch = math.ceil(ctx.num_samples(client) / self.setup.training.batch_size)
        last_epoch: deque = deque(maxlen=per_epoch)  # the inference pass walks it again
        for idx, x, y in ctx.indexed_batches(client):  # (a) local epochs, no traffic
            last_epoch.append((idx, x, y))
            dev_opt.zero_grad(set_to_none=True)
            logits = aux(dev(x))
            teacher = stored.get(idx.numpy().tobytes())
            loss = (cross_entropy(logits, y) if teacher is None else
                    distilled_loss(logits, y, teacher, 1.0, cfg.alpha, cfg.temperature))
            loss.backward()
            dev_opt.step()
            yield from ctx.compute(device, client, self.device_cost(len(y)), "local_step")
        for b, (idx, x, y) in enumerate(last_epoch):  # (b) inference pass, server learns
            if b == limit:
                break
            with torch.no_grad():
                act = dev(x)
                client_logits = aux(act)
            yield from ctx.compute(device, client, self.device_cost(len(y), bwd=False), "fwd")
            server_logits = yield from self._exchange(ctx, client, device, b, act, y,
                                                      client_logits, srv, srv_opt,
                                                      kd_weight=1.0, ce_weight=cfg.alpha)
            stored[idx.numpy().tobytes()] = server_logits
            self.stored_now[client] = b + 1
        return dev, aux, srv

    # -- training apart: two-phase jobs carry their stored logits
    def apart_jobs(self, kept: list[int]) -> list[tuple[str, int]]:
        """The kept clients' rounds; two-phase, also the logits of clients cut off after
        storing some."""
        cut = sorted(set(self.stored_now) - set(kept))
        return super().apart_jobs(kept) + [("cut", client) for client in cut]

    def apart_input(self, kind: str, client: int, timing: Method) -> Any:
        if self.config.mode != "two_phase":
            return None
        return (self.stored.get(client, {}),
                timing.stored_now[client] if kind == "cut" else None)

    def run_apart(self, ctx, kind: str, client: int, device: Device | None,
                  shipped: Any) -> Generator:
        if shipped is None:
            return (yield from super().run_apart(ctx, kind, client, device, shipped))
        self.stored[client] = dict(shipped[0])
        try:
            if kind == "cut":
                yield from self._two_phase(ctx, client, device, limit=shipped[1])
                return None, self.stored[client]
            return (yield from self.client_round(ctx, client, device)), self.stored[client]
        finally:
            del self.stored[client]  # this worker's copy; the real one is the main's

    def take_apart(self, timing: Method, kept: list[int], jobs: list[tuple[str, int]],
                   results: list[tuple[ClientUpdate | None, Any]]) -> list[ClientUpdate]:
        for (_, client), (_, stored) in zip(jobs, results, strict=True):
            if stored is not None:
                self.stored[client] = stored
        return [update for (kind, _), (update, _) in zip(jobs, results, strict=True)
                if kind == "client"]

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
            loss = distilled_loss(client_logits, y, server_logits, 1.0, cfg.alpha,
                                  cfg.temperature)
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
            loss = distilled_loss(logits, y, client_logits, ce_weight, kd_weight,
                                  temperature)
            loss.backward()
            srv_opt.step()
            return logits.detach()

        server_logits = yield from ctx.server_work(
            client, self.server_cost(len(y)), server_step, "server_step")
        yield from ctx.transfer(device, client, "down", {"logits": tensor_bytes(server_logits)})
        return server_logits

"""EcoFed (Wu, Ullah, Rodgers, Kilpatrick, Spence, Varghese; IEEE TPDS 2024).

1. Pre-trained initialisation: the device units [0, split) come from a centrally
   pre-trained model and stay frozen. Devices run a no-grad forward pass only, so no
   gradient and no weights ever cross the network.
2. Replay buffer: devices send activations only in buffer-update rounds (``round % period
   == 0``, or an adaptive rule). The server keeps each client's latest epoch, encoded. In
   replay rounds the devices are idle and the server trains on buffered epochs of clients
   drawn at random (without replacement when enough are stored).
3. Quantization: activations are encoded on the device (default: the paper's 8-bit, one
   scale per batch tensor, scale = max / 127) and decoded on the server.
4. Aggregation: FedAvg of the server-side copies; test accuracy uses the frozen device
   part plus the global server part.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Generator
from typing import Any

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
    forward,
    sgd,
    tensor_bytes,
    train_step,
)
from ecofed_sim.methods.configs import EcoFedConfig
from ecofed_sim.replay_buffer import ReplayBuffer
from ecofed_sim.seeding import CODEC, REPLAY, torch_gen
from ecofed_sim.shapes_only import cross_entropy


class FrozenCache:
    """Outputs of the frozen device part, keyed by (who, exact batch composition).

    BatchNorm without running statistics normalises with the batch, so the key is the
    whole ordered index list, not single samples. LRU-bounded in bytes.
    """

    def __init__(self, cap_bytes: float) -> None:
        self.cap_bytes = cap_bytes
        self.items: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self.nbytes = 0
        self.hits = self.misses = 0

    def get_or_compute(self, key: tuple, compute) -> torch.Tensor:
        if key in self.items:
            self.hits += 1
            self.items.move_to_end(key)
            return self.items[key]
        self.misses += 1
        value = compute()
        self.items[key] = value
        self.nbytes += tensor_bytes(value)
        while self.nbytes > self.cap_bytes and self.items:
            _, old = self.items.popitem(last=False)
            self.nbytes -= tensor_bytes(old)
        return value


def train_server_step(part: nn.Module, opt: torch.optim.Optimizer, act: torch.Tensor,
                      y: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    cross_entropy(part(act), y).backward()
    opt.step()


class EcoFed(Method):
    name = "ecofed"
    Config = EcoFedConfig
    # not while workers train: taking their epochs in reads the buffer of the instance
    # that played the round, and an adaptive period follows test accuracy
    pipelines = False

    def __init__(self, config: EcoFedConfig, setup) -> None:
        super().__init__(config, setup)
        k = config.split
        self.global_model = setup.new_model()
        self.frozen = self.global_model.part(0, k).eval().requires_grad_(False)
        self.device_stats, self.server_stats = setup.stats[:k], setup.stats[k:]
        self.codec = make_codec(config.activation_codec)
        self.buffer = ReplayBuffer(config.buffer_cap_bytes, config.eviction)
        self.cache = FrozenCache(config.frozen_cache_mib * 2**20 if config.reuse_frozen else 0)
        self.period = config.period
        self.last_update = -(10**9)
        self.accuracy: list[tuple[int, float]] = []
        self.update_round = True
        self.replay_targets: list[int] = []

    @classmethod
    def sketch(cls, config: EcoFedConfig, model: str, stats, split: int, batch: int) -> Sketch:
        """Update rounds stream encoded activations; the rest are server-only replay."""
        act_shape = (batch, *stats[split - 1].out_shape)
        return Sketch(forward(model, stats[:split], batch),
                      payload_bytes_for(config.activation_codec, act_shape)
                      + batch * LABEL_BYTES,
                      train_step(model, stats[split:], batch), waits=config.lockstep,
                      down_bytes=config.release_bytes if config.lockstep else 0,
                      device_round_share=1.0 / config.period)

    # --- frozen device part
    def frozen_forward(self, key: tuple, x: torch.Tensor) -> torch.Tensor:
        def compute() -> torch.Tensor:
            with torch.no_grad():
                return self.frozen(x)

        return self.cache.get_or_compute(key, compute)

    def _fresh_server_copy(self, client: int) -> tuple[nn.Module, torch.optim.Optimizer]:
        part = copy.deepcopy(self.start_module(client).part(self.config.split)).train()
        return part, sgd(part.parameters(), self.setup.training)

    # --- round structure
    def begin_round(self, round_index: int, clients: list[int]) -> None:
        self.round_index = round_index
        self.puts_after = self.buffer.puts  # entries stored later are this round's
        self.update_round = round_index - self.last_update >= self.period
        if self.update_round:
            self.last_update = round_index
            self.replay_targets = []
            return
        if self.config.replay == "round":
            self.replay_targets = [c for c in clients if c in self.buffer.entries]
        else:
            gen = torch_gen(self.setup.seed, REPLAY, round_index)
            # as many as a round keeps (over-selected clients do no work in replay rounds)
            count = min(len(clients), self.setup.clients_per_round)
            self.replay_targets = self.buffer.draw(count, gen)

    def client_round(self, ctx: RoundContext, client: int, device: Device) -> Generator:
        """Update rounds: frozen forward, encode, upload; the server trains as batches
        arrive (nothing comes back, so the device never waits; with ``lockstep`` it waits
        for the server's step and a release message per batch). Replay rounds: idle."""
        if not self.update_round:
            yield from self._replay_control(ctx, client, device)
            return None
        part, opt = self._fresh_server_copy(client)
        stored, handles = [], []
        for b, (idx, x, y) in enumerate(ctx.indexed_batches(client)):
            enc = yield from self._send_batch(ctx, client, device, b, idx, x, y)
            stored.append((enc.stored, y))
            handles.append(ctx.server_async(
                client, train_step(self.setup.model_name, self.server_stats, len(y)),
                lambda a=enc.decoded, y=y: train_server_step(part, opt, a, y), "server_step"))
            if self.config.lockstep:  # the server's step, then its release message
                yield from ctx.wait(handles[-1:])
                yield from ctx.transfer(device, client, "down",
                                        {"control": self.config.release_bytes})
        yield from ctx.wait(handles)
        self.buffer.put(client, stored, ctx.generator(REPLAY, client))
        return ClientUpdate(client, ctx.num_samples(client), part.state_dict())

    def _send_batch(self, ctx: RoundContext, client: int, device: Device, b: int,
                    idx: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> Generator:
        """One batch's frozen forward, encoding and upload; returns the encoded batch."""
        # augmented images differ every round: cached outputs are this round's only
        fresh = ctx.data_round if self.setup.training.augment else None
        act = self.frozen_forward((client, idx.numpy().tobytes(), fresh), x)
        yield from ctx.compute(device, client, forward(
            self.setup.model_name, self.device_stats, len(y)), "frozen_forward")
        enc = self.codec.encode(act, ctx.generator(CODEC, client, b))
        yield from ctx.transfer(device, client, "up", {"activations": enc.payload_bytes,
                                                       "labels": tensor_bytes(y)})
        return enc

    def _replay_control(self, ctx: RoundContext, client: int, device: Device) -> Generator:
        """Replay rounds in the EcoFed code: the device still walks its batches and trades
        small control messages with the server per batch, though no data moves."""
        nbytes = self.config.replay_control_bytes
        if nbytes <= 0:
            return
        training = self.setup.training
        batches = math.ceil(ctx.num_samples(client) / training.batch_size)
        for _ in range(batches * training.local_epochs):
            for m in range(self.config.replay_control_messages):
                yield from ctx.transfer(device, client, "up" if m % 2 == 0 else "down",
                                        {"control": nbytes})

    def server_round(self, ctx: RoundContext) -> Generator | None:
        """Replay rounds: one server process per drawn client, trained on its buffer."""
        if self.update_round or not self.replay_targets:
            return None
        return self._replay_all(ctx)

    def uses_server_copies(self) -> bool:
        return self.update_round  # replay rounds: devices idle; the replay holds copies

    def _replay_all(self, ctx: RoundContext) -> Generator:
        handles = [ctx.start(self._replay_one(ctx, c),
                             hosting=(c, len(self.buffer.entries[c].batches)))
                   for c in self.replay_targets]
        return (yield from ctx.wait(handles))

    def _replay_one(self, ctx: RoundContext, client: int) -> Generator:
        part, opt = self._fresh_server_copy(client)
        entry = self.buffer.entries[client]
        for stored, y in entry.batches:
            act = self.codec.decode(stored)
            yield from ctx.server_work(client, train_step(self.setup.model_name,
                                                          self.server_stats, len(y)),
                                       lambda a=act, y=y: train_server_step(part, opt, a, y),
                                       "replay_step")
        samples = sum(len(y) for _, y in entry.batches)
        return ClientUpdate(client, samples, part.state_dict())

    # --- training apart (``run --workers``): update rounds train each client's copy on
    # its stream and bring its buffered epoch back; replay rounds ship buffered epochs
    def apart_jobs(self, kept: list[int]) -> list[tuple[str, int]]:
        """Update rounds: every client that was kept or buffered an epoch (one finishing
        in the same instant as the last kept one buffers without being kept). Replay
        rounds: each drawn client's replay, repeats included."""
        if not self.update_round:
            return [("replay", client) for client in sorted(self.replay_targets)]
        stored = [c for c, e in self.buffer.entries.items() if e.stored_at > self.puts_after]
        return [("client", client) for client in sorted({*kept, *stored})]

    def apart_input(self, kind: str, client: int, timing: Method) -> Any:
        return self.buffer.entries[client] if kind == "replay" else None

    def run_apart(self, ctx: RoundContext, kind: str, client: int, device: Device | None,
                  shipped: Any) -> Generator:
        if kind == "replay":
            self.buffer = ReplayBuffer(entries={client: shipped})
            return (yield from self._replay_one(ctx, client)), None
        self.update_round, self.buffer = True, ReplayBuffer()
        update = yield from self.client_round(ctx, client, device)
        return update, self.buffer.entries[client].batches

    def take_apart(self, timing: Method, kept: list[int], jobs: list[tuple[str, int]],
                   results: list[tuple[ClientUpdate, Any]]) -> list[ClientUpdate]:
        """Update rounds: this buffer becomes ``timing``'s (which played the round's
        puts and evictions in event order, on meta tensors), holding the real epochs;
        the kept clients' updates are aggregated. Replay rounds: every replay's."""
        if not self.update_round:
            return [update for update, _ in results]
        fresh = {client: left for (_, client), (_, left) in zip(jobs, results, strict=True)}
        self.buffer.mirror(timing.buffer, timing.puts_after, fresh)
        wanted = set(kept)
        return [update for (_, client), (update, _) in zip(jobs, results, strict=True)
                if client in wanted]

    # --- asynchronous split FL (ecofed_sim.async_engine)
    _shared_opt: torch.optim.Optimizer | None = None

    def async_state(self) -> dict[str, torch.Tensor]:
        return {}  # the device part is frozen: clients push nothing to mix

    def async_load(self, state: dict[str, torch.Tensor]) -> None:
        """Nothing to load: only the shared server part learns, as activations arrive."""

    def async_client(self, ctx: RoundContext, client: int, device: Device) -> Generator:
        """Asynchronous EcoFed: frozen forward, encode and upload every batch; one shared
        server part trains on the activations in the order they arrive (one optimiser
        for the run). No replay buffer: the server learns only from arriving data."""
        shared = self.global_model.part(self.config.split).train()
        if self._shared_opt is None:
            self._shared_opt = sgd(shared.parameters(), self.setup.training)
        for b, (idx, x, y) in enumerate(ctx.indexed_batches(client)):
            enc = yield from self._send_batch(ctx, client, device, b, idx, x, y)
            ctx.server_async(client, train_step(self.setup.model_name, self.server_stats,
                                                len(y)),
                             lambda a=enc.decoded, y=y: train_server_step(
                                 shared, self._shared_opt, a, y), "server_step")
        return ClientUpdate(client, ctx.num_samples(client), ({}, {}))

    def end_round(self, updates: list[ClientUpdate]) -> None:
        updates = [u for u in updates if u is not None]
        if updates:
            self.global_model.part(self.config.split).load_state_dict(
                fedavg([u.payload for u in updates], [u.num_samples for u in updates]))

    # --- evaluation and adaptation
    def eval_model(self) -> nn.Module:
        return self.global_model

    def eval_logits(self, model: nn.Module, x: torch.Tensor, batch_start: int) -> torch.Tensor:
        act = self.frozen_forward(("test", batch_start, len(x)), x)
        return model.part(self.config.split)(act)

    def observe(self, round_index: int, metrics: dict[str, float]) -> None:
        a = self.config.adaptive
        acc = metrics.get("test_accuracy", float("nan"))
        if a is None or acc != acc:  # NaN: not evaluated this round
            return
        self.accuracy.append((round_index, acc))
        past = [v for r, v in self.accuracy if r <= round_index - a.window]
        if not past or past[-1] <= 0:
            return
        gain = (acc - past[-1]) / past[-1]
        if gain > a.grow_above:
            self.period = min(self.period * 2, a.max_period)
        elif gain < a.shrink_below:
            self.period = max(self.period // 2, a.min_period)

    def round_metrics(self) -> dict[str, Any]:
        return {"update_round": self.update_round, "buffer_bytes": self.buffer.nbytes,
                "period": self.period}

"""What one round offers a method: its clients' batches and seeded generators, and the
process fragments for compute, transfers and server work on modelled clocks (see
``methods.base``). A cohort of alike clients (``ecofed_sim.cohorts``) writes every
member's rows from its first member's work."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import simpy
import torch

from ecofed_sim.checks import Prepared
from ecofed_sim.cohorts import Member
from ecofed_sim.data.augment import crop_and_flip
from ecofed_sim.methods.base import Cost, Device
from ecofed_sim.participation import guarded
from ecofed_sim.seeding import AUGMENT, DATA_ORDER, torch_gen

if TYPE_CHECKING:
    from ecofed_sim.engine import World

T = TypeVar("T")


def client_batches(prep: Prepared, round_index: int, client: int
                   ) -> Iterator[tuple[torch.Tensor, ...]]:
    """(sample indices, x, y) of a client's local epochs in a round, in an order keyed by
    (seed, round, client, epoch); with ``shuffle: fixed`` the round is left out. With
    ``training.augment`` each batch is cropped and flipped, drawn from a generator keyed by
    (seed, round, client, epoch). A pure function of its arguments: a worker process
    holding the same ``prep`` draws the same batches. Drawn on the CPU, then moved to the
    run's compute device: the same batches on every device."""
    training, seed, device = prep.scenario.training, prep.scenario.seed, prep.compute_device
    idx = torch.as_tensor(prep.client_indices[client])
    order_round = round_index if training.shuffle == "every_round" else 0
    for epoch in range(training.local_epochs):
        order = idx[torch.randperm(len(idx), generator=torch_gen(
            seed, DATA_ORDER, order_round, client, epoch))]
        augment = (torch_gen(seed, AUGMENT, round_index, client, epoch)
                   if training.augment else None)
        for start in range(0, len(order), training.batch_size):
            batch = order[start:start + training.batch_size]
            x, y = prep.train.batch(batch)
            x = crop_and_flip(x, augment) if augment else x
            yield batch, x.to(device), y.to(device)


class RoundData:
    """A round's data as a method sees it: each client's batches and seeded generators,
    drawn from ``batch_prep`` and keyed by (seed, round, client). Shared by the engine's
    contexts and the clockless one of worker processes (``ecofed_sim.clockless``), so
    both draw the same."""

    batch_prep: Prepared
    data_round: int  # what keys the data order and random draws

    def num_samples(self, client: int) -> int:
        return len(self.batch_prep.client_indices[client])

    def indexed_batches(self, client: int) -> Iterator[tuple[torch.Tensor, ...]]:
        """(sample indices, x, y) of this round's local epochs (``client_batches``)."""
        return client_batches(self.batch_prep, self.data_round, client)

    def batch_sizes(self, client: int) -> list[int]:
        """The sizes of ``batches(client)``, in order, without touching the data: what a
        method needs to price a client's compute before (or without) its real training."""
        return self.batch_prep.scenario.training.batch_sizes(self.num_samples(client))

    def batches(self, client: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _, x, y in self.indexed_batches(client):
            yield x, y

    def generator(self, stream: int, *parts: int, round_index: int | None = None
                  ) -> torch.Generator:
        """A torch generator keyed by (seed, stream, round, parts): reproducible alone."""
        rnd = self.data_round if round_index is None else round_index
        return torch_gen(self.batch_prep.scenario.seed, stream, rnd, *parts)


class RoundContext(RoundData):
    """The engine services one round offers to a method (see ``methods.base``)."""

    def __init__(self, engine: World, round_index: int, data_round: int | None = None) -> None:
        self.engine = engine
        self.batch_prep = engine.batch_prep
        self.round = round_index
        # what keys the data order and random draws: the round, or an asynchronous job
        self.data_round = round_index if data_round is None else data_round
        self.server_profile = engine.prep.server_profile
        self.children: dict[simpy.Process, list[simpy.Process]] = {}  # for cutting off
        self.cohorts: dict[int, list[Member]] = {}  # first member -> the cohort it plays
        self._names: dict[int, list[tuple[str, int]]] = {}

    def members(self, device: Device, client: int) -> list[Member]:
        """Whose outcome a client's play decides: its cohort's (``cohorts``), or its own."""
        return self.cohorts.get(client) or [(device, client)]

    def _who(self, device: Device, client: int) -> list[tuple[str, int]]:
        """(device name, client) of each member: whose rows a client's work writes."""
        cohort = self.cohorts.get(client)
        if cohort is None:
            return [(device.name, client)]
        who = self._names.get(client)
        if who is None:
            who = self._names[client] = [(member.name, c) for member, c in cohort]
        return who

    def _record(self, *op) -> None:
        if self.engine.recorder is not None:
            self.engine.recorder.op(op)

    def compute(self, device: Device, client: int, cost: Cost, what: str) -> Generator:
        self._record("compute", client, cost, what)
        env = self.engine.env
        t0 = env.now
        try:
            yield env.timeout(self.engine.cost_s(device.profile, cost))
        finally:  # a cut-off compute still spent its time (and energy) until the cut
            self.engine.ledger.spans_of(self.round, self._who(device, client), "compute",
                                        what, t0, env.now)

    def transfer(self, device: Device, client: int, direction: str,
                 parts: dict[str, int]) -> Generator:
        """One message of one or more kinds (e.g. activations + labels) as one flow."""
        self._record("transfer", client, direction, dict(parts))
        overhead = self.engine.scenario.network.message_overhead_bytes
        if overhead:  # the message's envelope: traffic like its payload
            parts = {**parts, "overhead": overhead}
        env, ledger = self.engine.env, self.engine.ledger
        who = self._who(device, client)
        t0 = env.now
        try:
            yield from self.engine.network.transfer(device.link, direction,
                                                    sum(parts.values()), len(who))
        except simpy.Interrupt as cut:  # the bytes that got through before the cut
            share = cut.delivered_fraction
            ledger.transfers_of(self.round, who, direction,
                                {k: int(v * share) for k, v in parts.items()}, t0, env.now)
            raise
        ledger.transfers_of(self.round, who, direction, parts, t0, env.now)

    def server_work(self, client: int, cost: Cost, work: Callable[[], T],
                    what: str) -> Generator[Any, Any, T]:
        """Wait for a server worker, do the real work, hold the worker for its cost (on
        the client's edge server, with a topology)."""
        self._record("server", client, cost, what)
        env = self.engine.env
        workers, profile, where = self.engine.server_for(client)
        with workers.request() as slot:
            yield slot
            t0 = env.now
            result = work()
            try:
                yield env.timeout(self.engine.cost_s(profile, cost))
            finally:
                self.engine.ledger.span(self.round, where, client, "compute", what, t0,
                                        env.now)
        return result

    def server_async(self, client: int, cost: Cost, work: Callable[[], T],
                     what: str) -> object:
        """Start server work without waiting for it; pass the handle to ``wait``."""
        return self.start(self.server_work(client, cost, work, what))

    def start(self, fragment: Generator, hosting: tuple[int, int] | None = None) -> object:
        """Run a process fragment concurrently; pass the handle to ``wait``. It is cut off
        with the process that started it (a dropped client's server steps stop too).
        ``hosting=(client, server_steps)``: server-only work on that client's own server
        copy (EcoFed's replay), admitted as ``host`` says."""
        env = self.engine.env
        if hosting is not None:
            fragment = self.host(*hosting, fragment)
        proc = env.process(guarded(fragment))
        self.children.setdefault(env.active_process, []).append(proc)
        if self.engine.recorder is not None:
            self.engine.recorder.child(proc, hosting)
        return proc

    def host(self, client: int, server_steps: int, fragment: Generator,
             device: Device | None = None) -> Generator:
        """``fragment`` on a per-client server copy: it waits for the server to admit it
        when memory bounds the copies (``server_resources``). The wait is a ``queued``
        span on the device's timeline (server-only work: on the server's, as ``replay``);
        the copy, a ``hosting`` span on the server's."""
        copies, ledger = self.engine.copies, self.engine.ledger
        if copies is None:
            return fragment
        where, what = (("server", "replay") if device is None
                       else (device.name, "server_copy"))

        def waited(t0: float, t1: float) -> None:
            ledger.span(self.round, where, client, "queued", what, t0, t1)

        def held(t0: float, t1: float) -> None:
            ledger.span(self.round, "server", client, "hosting", "copy", t0, t1)

        return copies.host(fragment, server_steps, waited, held)

    def wait(self, handles: list) -> Generator[Any, Any, list]:
        """Until every handle's server work is done; returns their results in order."""
        if self.engine.recorder is not None:
            self.engine.recorder.waits(handles)
        if handles:
            yield self.engine.env.all_of(handles)
        return [h.value for h in handles]

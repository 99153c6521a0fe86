"""The round loop: real PyTorch training inside SimPy processes on modelled clocks.

One ``simpy.Environment`` per run owns all simulated state. Each sampled client runs as a
process on its device; the method's real torch work happens in simulated-event order, and
the clock advances only by modelled compute time (profiles) and transfer time (network).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import Any, TypeVar

import simpy
import torch
import torch.nn.functional as F

from ecofed_sim.ledger import Ledger
from ecofed_sim.methods import REGISTRY
from ecofed_sim.methods.base import ClientUpdate, Cost, Device, Setup
from ecofed_sim.network import Capacity, Network
from ecofed_sim.population import build_population, sample_clients
from ecofed_sim.prepare import Prepared
from ecofed_sim.pretrain import init_units
from ecofed_sim.seeding import DATA_ORDER, INIT, torch_gen

T = TypeVar("T")


class RoundContext:
    """The engine services one round offers to a method (see ``methods.base``)."""

    def __init__(self, engine: Engine, round_index: int) -> None:
        self.engine = engine
        self.round = round_index
        self.server_profile = engine.prep.server_profile

    def num_samples(self, client: int) -> int:
        return len(self.engine.prep.client_indices[client])

    def indexed_batches(self, client: int) -> Iterator[tuple[torch.Tensor, ...]]:
        """(sample indices, x, y) of this round's local epochs, in an order keyed by
        (seed, round, client, epoch); with ``shuffle: fixed`` the round is left out."""
        prep, training = self.engine.prep, self.engine.scenario.training
        idx = torch.as_tensor(prep.client_indices[client])
        order_round = self.round if training.shuffle == "every_round" else 0
        for epoch in range(training.local_epochs):
            order = idx[torch.randperm(len(idx), generator=self.generator(
                DATA_ORDER, client, epoch, round_index=order_round))]
            for start in range(0, len(order), training.batch_size):
                batch = order[start:start + training.batch_size]
                yield (batch, *prep.train.batch(batch))

    def batches(self, client: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _, x, y in self.indexed_batches(client):
            yield x, y

    def generator(self, stream: int, *parts: int, round_index: int | None = None
                  ) -> torch.Generator:
        """A torch generator keyed by (seed, stream, round, parts): reproducible alone."""
        rnd = self.round if round_index is None else round_index
        return torch_gen(self.engine.scenario.seed, stream, rnd, *parts)

    def compute(self, device: Device, client: int, cost: Cost, what: str) -> Generator:
        env = self.engine.env
        t0 = env.now
        yield env.timeout(device.profile.cost_s(cost))
        self.engine.ledger.span(self.round, device.name, client, "compute", what, t0, env.now)

    def transfer(self, device: Device, client: int, direction: str,
                 parts: dict[str, int]) -> Generator:
        """One message of one or more kinds (e.g. activations + labels) as one flow."""
        env = self.engine.env
        t0 = env.now
        yield from self.engine.network.transfer(device.link, direction, sum(parts.values()))
        self.engine.ledger.transfer(self.round, device.name, client, direction, parts, t0,
                                    env.now)

    def server_work(self, client: int, cost: Cost, work: Callable[[], T],
                    what: str) -> Generator[Any, Any, T]:
        """Wait for a server worker, do the real work, hold the worker for its cost."""
        env = self.engine.env
        with self.engine.server_workers.request() as slot:
            yield slot
            t0 = env.now
            result = work()
            yield env.timeout(self.server_profile.cost_s(cost))
            self.engine.ledger.span(self.round, "server", client, "compute", what, t0, env.now)
        return result

    def server_async(self, client: int, cost: Cost, work: Callable[[], T],
                     what: str) -> object:
        """Start server work without waiting for it; pass the handle to ``wait``."""
        return self.start(self.server_work(client, cost, work, what))

    def start(self, fragment: Generator) -> object:
        """Run a process fragment concurrently; pass the handle to ``wait``."""
        return self.engine.env.process(fragment)

    def wait(self, handles: list) -> Generator[Any, Any, list]:
        """Until every handle's server work is done; returns their results in order."""
        if handles:
            yield self.engine.env.all_of(handles)
        return [h.value for h in handles]


class Engine:
    """Builds one run's simulated world from a prepared scenario and plays its rounds."""

    def __init__(self, prep: Prepared) -> None:
        self.prep = prep
        self.scenario = sc = prep.scenario
        self.env = simpy.Environment()
        link = sc.server.link
        self.network = Network(self.env, Capacity("server/in", link.ingress_mbps * 1e6),
                               Capacity("server/out", link.egress_mbps * 1e6))
        self.server_workers = simpy.Resource(self.env, capacity=sc.server.workers)
        self.population = build_population(sc, prep.library, prep.source)
        self.ledger = Ledger()
        method_cls = REGISTRY[sc.method.name]
        self.init_pretrained = prep.pretrained is not None and (
            method_cls.uses_pretrained_device or sc.pretrain.init_baselines)
        setup = Setup(sc.model.name, self._new_model, prep.stats, sc.training,
                      sc.population.clients, sc.seed)
        self.method = method_cls(sc.method, setup)

    def _new_model(self):
        """The initial global model, identical on every call (seeded, RNG state restored),
        with its leading units pre-trained when the scenario asks for it."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(torch_gen(self.scenario.seed, INIT).initial_seed())
            model = self.prep.build_model()
        if self.init_pretrained:
            init_units(model, self.prep.pretrained, self.prep.pretrain_units)
        return model

    def _device_process(self, ctx: RoundContext, device: Device, clients: list[int],
                        updates: list[ClientUpdate]) -> Generator:
        for client in clients:  # waves: one client after another on this device
            update = yield from self.method.client_round(ctx, client, device)
            if update is not None:
                updates.append(update)

    def _server_process(self, fragment: Generator, updates: list[ClientUpdate]) -> Generator:
        updates.extend((yield from fragment) or [])

    def run_round(self, round_index: int) -> dict:
        sc = self.scenario
        selected = sample_clients(sc.seed, round_index, sc.population.clients,
                                  sc.population.clients_per_round)
        ctx = RoundContext(self, round_index)
        t0 = self.env.now
        self.method.begin_round(round_index, selected)
        updates: list[ClientUpdate] = []
        procs = [self.env.process(self._device_process(ctx, device, clients, updates))
                 for device, clients in self.population.schedule(selected)]
        server_work = self.method.server_round(ctx)
        if server_work is not None:
            procs.append(self.env.process(self._server_process(server_work, updates)))
        self.env.run(until=self.env.all_of(procs))
        self.method.end_round(sorted(updates, key=lambda u: u.client))
        self.ledger.idle_spans(round_index, [d.name for d, _ in
                                             self.population.schedule(selected)], t0, self.env.now)
        last = round_index == sc.rounds - 1
        metrics = (self.evaluate() if last or (round_index + 1) % sc.evaluation.every == 0
                   else {"test_accuracy": float("nan"), "test_loss": float("nan")})
        self.method.observe(round_index, metrics)
        return self.ledger.close_round(round_index, t0, self.env.now, len(selected),
                                       {**metrics, **self.method.round_metrics()})

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Real test accuracy and mean loss of the method's current global model."""
        model = self.method.eval_model()
        was_training = model.training
        model.eval()
        test, size = self.prep.test, self.scenario.evaluation.batch_size
        n = min(len(test), self.scenario.data.eval_samples or len(test))
        correct, loss_sum = 0, 0.0
        for start in range(0, n, size):
            x, y = test.batch(torch.arange(start, min(start + size, n)))
            logits = self.method.eval_logits(model, x, start)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
        model.train(was_training)
        return {"test_accuracy": correct / n, "test_loss": loss_sum / n}

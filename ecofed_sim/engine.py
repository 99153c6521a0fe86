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
from ecofed_sim.methods.base import ClientUpdate, Device, Setup
from ecofed_sim.network import Capacity, Network
from ecofed_sim.population import build_population, sample_clients
from ecofed_sim.prepare import Prepared
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

    def batches(self, client: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This round's local epochs, in an order keyed by (seed, round, client, epoch)."""
        prep, seed = self.engine.prep, self.engine.scenario.seed
        idx = torch.as_tensor(prep.client_indices[client])
        size = self.engine.scenario.training.batch_size
        for epoch in range(self.engine.scenario.training.local_epochs):
            order = idx[torch.randperm(len(idx), generator=torch_gen(
                seed, DATA_ORDER, self.round, client, epoch))]
            for start in range(0, len(order), size):
                yield prep.train.batch(order[start:start + size])

    def compute(self, device: Device, client: int, seconds: float, what: str) -> Generator:
        env = self.engine.env
        t0 = env.now
        yield env.timeout(seconds)
        self.engine.ledger.span(self.round, device.name, client, "compute", what, t0, env.now)

    def transfer(self, device: Device, client: int, direction: str,
                 parts: dict[str, int]) -> Generator:
        """One message of one or more kinds (e.g. activations + labels) as one flow."""
        env = self.engine.env
        t0 = env.now
        yield from self.engine.network.transfer(device.link, direction, sum(parts.values()))
        self.engine.ledger.transfer(self.round, device.name, client, direction, parts, t0,
                                    env.now)

    def server_work(self, client: int, seconds: float, work: Callable[[], T],
                    what: str) -> Generator[Any, Any, T]:
        """Wait for a server worker, do the real work, hold the worker for ``seconds``."""
        env = self.engine.env
        with self.engine.server_workers.request() as slot:
            yield slot
            t0 = env.now
            result = work()
            yield env.timeout(seconds)
            self.engine.ledger.span(self.round, "server", client, "compute", what, t0, env.now)
        return result


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
        setup = Setup(sc.model.name, self._new_model, prep.stats, sc.training,
                      sc.population.clients)
        self.method = REGISTRY[sc.method.name](sc.method, setup)

    def _new_model(self):
        """The initial global model, identical on every call (seeded, RNG state restored)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(torch_gen(self.scenario.seed, INIT).initial_seed())
            return self.prep.build_model()

    def _device_process(self, ctx: RoundContext, device: Device, clients: list[int],
                        updates: list[ClientUpdate]) -> Generator:
        for client in clients:  # waves: one client after another on this device
            update = yield from self.method.client_round(ctx, client, device)
            updates.append(update)

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
        self.env.run(until=self.env.all_of(procs))
        self.method.end_round(sorted(updates, key=lambda u: u.client))
        self.ledger.idle_spans(round_index, [d.name for d, _ in
                                             self.population.schedule(selected)], t0, self.env.now)
        last = round_index == sc.rounds - 1
        metrics = (self.evaluate() if last or (round_index + 1) % sc.evaluation.every == 0
                   else {"test_accuracy": float("nan"), "test_loss": float("nan")})
        return self.ledger.close_round(round_index, t0, self.env.now, len(selected), metrics)

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
            logits = model(x)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
        model.train(was_training)
        return {"test_accuracy": correct / n, "test_loss": loss_sum / n}

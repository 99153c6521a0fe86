"""The asynchronous loop: FedAsync and FedBuff on the same simulated world.

There are no rounds. ``concurrency`` slots each run one client at a time: pick a client
that is online and not already training, let it pull the global model (its version is
remembered), play its work (download, priced local steps, upload) on its device and link,
and, when its update arrives, hand it to the aggregator. Then the slot picks the next
client at once. The aggregator makes server updates: FedAsync one per arrival, FedBuff
one per ``buffer_size`` arrivals (``ecofed_sim.aggregation.asynchronous``). Each server
update is one row of rounds.csv; each arrival one row of updates.parquet, with its
staleness (server versions between pull and push).

FedAvg's real training runs when an update arrives, from the model its client pulled;
pulled models are kept once per version still in use. Split methods (local_loss) train as
they run: the client's device part and head from the version it pulled, the one shared
server part on activations in the order they reach the server (its workers serve them
first come, first served), and the update carries the trained and pulled device states.

Clients are drawn from a generator keyed by (seed, job), where jobs are numbered in
start order (jobs also key each client's data order): same seed, same arrival order, ties
included (SimPy runs same-instant events in the order they were scheduled). Availability
(keyed by job), deadlines (per client, from its start), traces, energy and the network
model apply as in synchronous runs; a client cut off by either contributes nothing and
its slot moves on. Ledger rows carry the version a client pulled as their ``round``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Generator

import torch

from ecofed_sim.aggregation import DeltaBuffer, mix, staleness_weight
from ecofed_sim.checks import Prepared
from ecofed_sim.engine import Engine
from ecofed_sim.errors import ScenarioError
from ecofed_sim.methods.base import ClientUpdate
from ecofed_sim.participation import RoundPlay
from ecofed_sim.population import Device
from ecofed_sim.round_context import RoundContext
from ecofed_sim.seeding import ASYNC_SAMPLING, np_rng

COUNTS = ("selected", "completed", "dropped", "stragglers")


class AsyncEngine(Engine):
    """An asynchronous run; ``run_round(i)`` plays until server update ``i``."""

    def __init__(self, prep: Prepared) -> None:
        super().__init__(prep)
        sc = self.scenario
        self.spec = spec = sc.asynchronous
        self.concurrency = spec.concurrency or min(sc.population.clients_per_round,
                                                   sc.population.clients)
        self.learns = sc.learning == "real"
        # fedavg trains each update when it arrives, from the model its client pulled;
        # split methods train as they run, against the one shared server part
        self.defers = type(sc.method).defers_training
        self.version = 0  # server updates made so far
        self.buffer = DeltaBuffer(spec.buffer_size) if spec.aggregator == "fedbuff" else None
        self._waiting = 0  # arrivals since the last server update
        self._staleness: list[int] = []  # of those arrivals
        self._counts = dict.fromkeys(COUNTS, 0)
        self._t_last_s = 0.0
        self._jobs = 0
        self._busy: set[int] = set()
        self._pulled: dict[int, list] = {}  # version -> [state, clients holding it]
        self._rows: deque[dict] = deque()
        self._updated = self.env.event()
        self._released = self.env.event()
        self._stalled = self.env.event()
        self._live_slots = 0
        self._started = False
        self._stopped = False

    # -- the loop, top to bottom ------------------------------------------------------
    def run_round(self, round_index: int) -> dict | None:
        """Play until server update ``round_index`` is made; its rounds row, or None if
        ``asynchronous.until_s`` comes first."""
        env = self.env
        if not self._started:
            self._started, self._live_slots = True, self.concurrency
            for _ in range(self.concurrency):
                env.process(self._slot())
        if not self._rows:
            limit_s = min(self.scenario.max_sim_time_s, self.spec.until_s or math.inf)
            env.run(until=self._updated | self._stalled
                    | env.timeout(max(0.0, limit_s - env.now)))
            if self._stalled.triggered and not self._rows:
                raise ScenarioError(
                    f"{self.prep.source}: asynchronous: no client can train after "
                    f"{env.now:g} s of simulated time (none online: see population)")
            if not self._rows:
                if self.spec.until_s is not None and env.now >= self.spec.until_s:
                    return None
                raise ScenarioError(
                    f"{self.prep.source}: max_sim_time_s: server update {round_index} is "
                    f"still to come at {limit_s:g} s of simulated time (a bandwidth or "
                    "FLOP/s near zero?); raise max_sim_time_s if this is meant")
        return self._rows.popleft()

    def _slot(self) -> Generator:
        """One concurrency slot: client after client until the run stops."""
        while not self._stopped:
            picked = yield from self._next_client()
            if picked is None:
                break
            yield from self._job(*picked)
        self._live_slots -= 1
        if self._live_slots == 0 and not self._stalled.triggered:
            self._stalled.succeed()

    def _next_client(self) -> Generator:
        """(job, client): an online client not already training, drawn by (seed, job);
        waits for one to free up or come online. None: none ever can."""
        env = self.env
        while True:
            job = self._jobs
            self._jobs += 1
            free = [c for c in self.availability.online(job, env.now) if c not in self._busy]
            if free:
                rng = np_rng(self.scenario.seed, ASYNC_SAMPLING, job)
                return job, free[int(rng.integers(len(free)))]
            waits = [self._released] if self._busy else []
            next_s = self.availability.next_online_s(env.now)
            if env.now < next_s < math.inf:
                waits.append(env.timeout(next_s - env.now))
            if not waits:
                if self.availability.online_probability < 1.0:
                    continue  # the next job draws who is online afresh
                return None
            yield env.any_of(waits)

    def _job(self, job: int, client: int) -> Generator:
        """One client: pull, play its work (cut off by going offline or by the
        deadline), and hand its update to the aggregator."""
        env, device = self.env, self.population.devices[client]
        version, start_s = self.version, env.now
        self._busy.add(client)
        pulled = self._pull(version) if self.defers else None
        ctx = RoundContext(self, version, data_round=job)
        work = self.method.client_round if self.defers else self.method.async_client
        play = RoundPlay(env, version, start_s, 1, 1,
                         lambda c: self.availability.offline_at(job, c, start_s),
                         self.ledger, ctx.children)
        proc = env.process(play.device_process(
            device, [client], lambda c, d: work(ctx, c, d)))
        deadline_s = self.scenario.population.deadline_s
        if deadline_s is not None:
            yield play.enough | env.timeout(deadline_s)
            if not play.enough.triggered:
                play.close()
        yield proc
        for name, n in play.finish(env.now).items():
            self._counts[name] += n
        self._busy.discard(client)
        if play.updates and not self._stopped:
            self._arrive(job, client, device, version, pulled, start_s, play.updates[0])
        self._drop(version)
        released, self._released = self._released, env.event()
        released.succeed()

    def _arrive(self, job: int, client: int, device: Device, version: int,
                pulled: dict | None, start_s: float, update: ClientUpdate) -> None:
        """An update reaches the server: train it for real, aggregate, maybe update."""
        spec = self.spec
        staleness = self.version - version
        factor = staleness_weight(spec.staleness, staleness, spec.staleness_a,
                                  spec.staleness_b)
        samples = len(self.prep.client_indices[client])
        if self.buffer is None:
            weight = spec.mixing * factor
        else:
            weight = float(samples if spec.weighting == "samples" else 1)
        if self.learns:
            if self.defers:
                trained = self.method.train_client(
                    RoundContext(self, version, data_round=job), client, pulled)
            else:
                trained, pulled = update.payload
            if self.buffer is None:
                self.method.async_load(mix(self.method.async_state(), trained, weight))
            else:
                self.buffer.add(trained, pulled, weight, factor)
        self.ledger.update(self.version, job, client, device.name, version, factor, weight,
                           start_s, self.env.now)
        self._waiting += 1
        self._staleness.append(staleness)
        if self.buffer is None or self._waiting >= spec.buffer_size:
            self._server_update()

    def _server_update(self) -> None:
        """Apply the buffer (FedBuff), evaluate when due, close the update's row."""
        if self.learns and self.buffer is not None:
            self.method.async_load(self.buffer.apply(self.method.async_state(),
                                                     self.spec.server_lr))
        index, now = self.version, self.env.now
        self.version += 1
        sc = self.scenario
        due = index == sc.rounds - 1 or (index + 1) % sc.evaluation.every == 0
        metrics = (self.evaluate() if self.learns and due
                   else {"test_accuracy": float("nan"), "test_loss": float("nan")})
        metrics |= {**self.server_load(self._t_last_s), "updates": self._waiting,
                    "staleness_mean": sum(self._staleness) / len(self._staleness),
                    "staleness_max": max(self._staleness)}
        self._rows.append(self.ledger.close_round(index, self._t_last_s, now,
                                                  dict(self._counts), metrics))
        self._t_last_s, self._waiting, self._staleness = now, 0, []
        self._counts = dict.fromkeys(COUNTS, 0)
        if index == sc.rounds - 1:
            self._stopped = True
        updated, self._updated = self._updated, self.env.event()
        updated.succeed()

    # -- the pulled models ---------------------------------------------------------
    def _pull(self, version: int) -> dict[str, torch.Tensor] | None:
        """The global model at ``version``, kept while a client that pulled it trains."""
        if not self.learns:
            return None
        held = self._pulled.get(version)
        if held is None:
            state = {k: v.clone() for k, v in self.method.global_model.state_dict().items()}
            held = self._pulled[version] = [state, 0]
        held[1] += 1
        return held[0]

    def _drop(self, version: int) -> None:
        held = self._pulled.get(version)
        if held is not None:
            held[1] -= 1
            if held[1] == 0:
                del self._pulled[version]


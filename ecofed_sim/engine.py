"""The round loop: real PyTorch training inside SimPy processes on modelled clocks.

One ``simpy.Environment`` per run owns all simulated state. Each sampled client runs as a
process on its device; the method's real torch work happens in simulated-event order, and
the clock advances only by modelled compute time (profiles) and transfer time (network).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import simpy
import torch
import torch.nn.functional as F

from ecofed_sim import cohorts
from ecofed_sim.availability import build_availability
from ecofed_sim.checks import Prepared
from ecofed_sim.errors import ScenarioError
from ecofed_sim.ledger import Ledger
from ecofed_sim.methods import REGISTRY
from ecofed_sim.methods.base import ClientUpdate, Cost, Device, Method, Setup
from ecofed_sim.network import Capacity, Network
from ecofed_sim.participation import RoundPlay, WaveBarrier
from ecofed_sim.population import build_population, sample_clients
from ecofed_sim.pretrain import init_units
from ecofed_sim.round_context import RoundContext
from ecofed_sim.seeding import INIT, torch_gen
from ecofed_sim.server_resources import build_server_copies
from ecofed_sim.shapes_only import place
from ecofed_sim.trace import Recorder

T = TypeVar("T")
UNTESTED = {"test_accuracy": float("nan"), "test_loss": float("nan")}  # a round not tested


def initial_model(prep: Prepared, device: torch.device):
    """The initial global model, identical on every call (seeded, RNG state restored),
    with its leading units pre-trained when the scenario asks for it. Initialised on the
    CPU, then moved: the same weights on every device (on meta: shapes only)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_gen(prep.scenario.seed, INIT).initial_seed())
        model = prep.build_model()
    if prep.pretrained is not None:
        init_units(model, prep.pretrained, prep.pretrain_units)
    return place(model, device)


def build_method(prep: Prepared, device: torch.device, pool=None) -> Method:
    """The scenario's method, its models on ``device`` (a worker process builds its own
    the same way: ``ecofed_sim.parallel``)."""
    sc = prep.scenario
    setup = Setup(sc.model.name, lambda: initial_model(prep, device), prep.stats,
                  sc.training, sc.population.clients, sc.population.clients_per_round,
                  sc.seed, pool, device)
    return REGISTRY[sc.method.name](sc.method, setup)


class World:
    """The simulated world of one run: clock, network, server workers, population and
    ledger. It knows nothing of learning; ``Engine`` adds the method and the data, and
    ``trace.Replayer`` re-plays a recorded run under other timing parameters."""

    def __init__(self, prep: Prepared) -> None:
        self.prep = prep
        self.batch_prep = prep  # what a round's batches come from (``Engine``: on meta)
        self.scenario = sc = prep.scenario
        self.env = simpy.Environment()
        link = sc.server.link
        self.network = Network(self.env, Capacity("server/in", link.ingress_mbps * 1e6),
                               Capacity("server/out", link.egress_mbps * 1e6),
                               sc.network.framing_bytes, sc.network.framing_fraction,
                               tcp=sc.network.tcp_params())
        self.server_workers = simpy.Resource(self.env, capacity=sc.server.workers)
        self.population = build_population(sc, prep.library, prep.source, prep.base_dir)
        self.availability = build_availability(sc, prep.base_dir, prep.source)
        for device in self.population.devices:
            for direction, (trace, loop, offset_s) in device.link.traces.items():
                capacity = device.link.up if direction == "up" else device.link.down
                self.network.drive(capacity, trace, loop, offset_s)
        self.ledger = Ledger(power={d.name: d.profile.power_w for d in self.population.devices
                                    if d.profile.power_w is not None})
        self.copies = build_server_copies(self.env, prep, prep.source)
        self.recorder: Recorder | None = None
        self._cost_cache: dict[tuple, float] = {}
        self.cohorts_on = True  # play alike clients as one (``cohorts``; off: one each)

    def run_until(self, event: simpy.Event, round_index: int) -> None:
        """``env.run(until=event)``, stopped with a one-line error if the simulated clock
        would pass ``max_sim_time_s`` first: a rate or FLOP/s typo (1e-9 Mbit/s) would
        otherwise simulate for centuries or run until killed."""
        limit_s = self.scenario.max_sim_time_s
        self.env.run(until=event | self.env.timeout(max(0.0, limit_s - self.env.now)))
        if not event.triggered:
            raise ScenarioError(
                f"{self.prep.source}: max_sim_time_s: round {round_index} is still running "
                f"at {limit_s:g} s of simulated time (a bandwidth or FLOP/s near zero?); "
                "raise max_sim_time_s if this is meant")

    def server_for(self, client: int) -> tuple[simpy.Resource, Any, str]:
        """Where a client's server work runs: workers, profile and timeline row."""
        return self.server_workers, self.prep.server_profile, "server"

    def cost_s(self, profile, cost: Cost) -> float:
        """Modelled seconds of ``cost`` on ``profile``, memoised: every batch repeats it."""
        key = (profile.name, *(p.key for p in cost))
        seconds = self._cost_cache.get(key)
        if seconds is None:
            seconds = self._cost_cache[key] = profile.cost_s(cost)
        return seconds

    def play_round(self, ctx: RoundContext, selected: list[int], keep: int,
                   client_round: Callable, server_fragment: Generator | None,
                   offline_at: Callable[[int], float] = lambda client: math.inf,
                   hosted: Callable[[int], int | None] = lambda client: None
                   ) -> tuple[list[ClientUpdate], dict[str, int]]:
        """Run every scheduled client's fragment on its device, and the server's fragment
        beside them. The round closes when ``keep`` clients have finished, when every
        client is done or dropped, or at the deadline; clients still working then are
        cut off (see ``participation``). ``hosted(client)``: the server steps of a client
        that needs its own server copy this round (None: it needs none). Returns the kept
        updates and the counts, with the server's load."""
        env, deadline_s = self.env, self.scenario.population.deadline_s
        play = RoundPlay(env, ctx.round, env.now, keep, len(selected), offline_at,
                         self.ledger, ctx.children)
        schedule = self.population.schedule(selected)
        played = self._cohorts(ctx, schedule, keep, offline_at)

        def client_process(client: int, device: Device) -> Generator:
            if self.recorder is not None:
                self.recorder.own(env.active_process, ("client", client))
            fragment, steps = client_round(ctx, client, device), hosted(client)
            if steps is not None:
                if self.recorder is not None:
                    self.recorder.host(client, steps)
                fragment = ctx.host(client, steps, fragment, device)
            try:
                return (yield from fragment)
            finally:  # a cohort's members end with its links' state
                if client in ctx.cohorts:
                    cohorts.played(ctx.cohorts[client])

        if self.copies is not None:
            self.copies.new_round()

        barrier = (WaveBarrier(env, [clients for _, clients in schedule])
                   if self.scenario.population.wave_barrier else None)
        procs = [env.process(play.device_process(device, clients, client_process, barrier,
                                                 ctx.members))
                 for device, clients in played]
        if server_fragment is not None:  # server-only work is never cut off
            procs.append(env.process(self._server_process(server_fragment, play.updates)))
        self.run_until(play.enough if deadline_s is None
                       else play.enough | env.timeout(deadline_s), ctx.round)
        play.close()
        self.run_until(env.all_of(procs), ctx.round)
        counts = play.finish(env.now)
        self.ledger.idle_spans(ctx.round, [d.name for d, _ in schedule], play.t0_s, env.now)
        return play.updates, {**counts, **self.server_load(play.t0_s)}

    def _cohorts(self, ctx: RoundContext, schedule: list, keep: int,
                 offline_at: Callable[[int], float]) -> list:
        """The (device, clients) pairs to play: one per cohort of alike clients, each
        cohort kept in ``ctx.cohorts`` (``ecofed_sim.cohorts``); else ``schedule``."""
        if not (self.cohorts_on and cohorts.usable(
                self.scenario, self.scenario.method, keep,
                sum(len(clients) for _, clients in schedule), self.copies,
                self.recorder)):
            for device, _ in schedule:  # it may follow an earlier round's cohort
                cohorts.materialize(device.link)
            return schedule
        batches: dict[int, tuple[int, ...]] = {}  # samples -> batch sizes
        now_s = self.env.now

        def key(device: Device, client: int) -> tuple:
            n = ctx.num_samples(client)
            sizes = batches.get(n) or batches.setdefault(n, tuple(ctx.batch_sizes(client)))
            return cohorts.link_key(self.network, device.link, now_s), offline_at(client), sizes

        for group in cohorts.group(schedule, key):
            ctx.cohorts[group[0][1]] = group
            cohorts.materialize(group[0][0].link)
        return [(device, [client]) for device, client in
                (group[0] for group in ctx.cohorts.values())]

    def server_load(self, t0_s: float) -> dict[str, float]:
        """The round's server figures: compute-busy seconds, their share of the workers'
        time since ``t0_s``, and with per-client copies the most live at once and the
        clients' total wait for one."""
        busy_s = self.ledger.busy_s("server", "compute")
        span_s = (self.env.now - t0_s) * self.scenario.server.workers
        load = {"server_busy_s": busy_s,
                "server_utilisation": busy_s / span_s if span_s > 0 else 0.0}
        if self.copies is not None:
            load |= {"server_copies_peak": self.copies.peak,
                     "queue_wait_s": self.copies.wait_s}
        return load

    def _server_process(self, fragment: Generator, updates: list[ClientUpdate]) -> Generator:
        if self.recorder is not None:
            self.recorder.own(self.env.active_process, ("server",))
        updates.extend((yield from fragment) or [])


@dataclass
class _Played:
    """A round played on meta tensors whose training is yet to be taken in."""

    round_index: int
    selected: list[int]
    kept: list[int]  # the clients whose updates count, in client order
    jobs: list[tuple[str, int]]  # what the workers run (``Method.apart_jobs``)
    row: dict  # the ledger's row of the round, tested once it is learned
    results: Iterator | None = None  # the workers' results, once the jobs are sent


class Engine(World):
    """A full run: the real training of the scenario's method inside the world.

    With a ``pool`` of worker processes and a method that ``trains_apart`` (its
    config), a second instance of the method, on meta tensors, plays each round's clocks
    (``timing``); the kept clients then train in the workers, and the real method
    aggregates what they send back, in client order (``ecofed_sim.parallel``). If the
    method ``pipelines``, each round is played while the workers train the one before."""

    pipelines_rounds = True  # a subclass whose rounds depend on each other otherwise: False

    def __init__(self, prep: Prepared, record: bool = False, pool=None) -> None:
        super().__init__(prep)
        self.pool = pool
        if pool is not None and self.scenario.method.trains_apart():
            self.method = build_method(prep, prep.compute_device)
            self.batch_prep = prep.shapes_view()
            self.timing = build_method(self.batch_prep, self.batch_prep.compute_device)
            self._device_index = {d.name: i for i, d in enumerate(self.population.devices)}
        else:
            self.method = self.timing = build_method(prep, prep.compute_device, pool)
        if record:
            self.recorder = Recorder(self.env)
        self.pipelined = (self.pipelines_rounds and self.timing is not self.method
                          and self.recorder is None and self.scenario.learning == "real"
                          and type(self.method).pipelines)
        self._ahead: _Played | None = None

    def run_round(self, round_index: int) -> dict:
        if self.pipelined:
            return self._pipelined_round(round_index)
        t0, selected, counts, updates = self._play(round_index)
        learns = self.scenario.learning == "real"  # timing only: nothing trains or tests
        if learns and self.timing is not self.method:  # the kept clients, in the workers
            kept = [u.client for u in updates]
            jobs = self.timing.apart_jobs(kept)
            updates = self.method.take_apart(self.timing, kept, jobs,
                                             list(self._run_jobs(round_index, selected, jobs)))
        self.aggregate(round_index, selected, updates, learns)
        metrics = self._tested(round_index, learns)
        self.method.observe(round_index, metrics)
        if self.timing is not self.method:
            self.timing.observe(round_index, metrics)
        metrics = {**metrics, **self.timing.round_metrics()}
        if self.recorder is not None:
            self.recorder.end_round(metrics)
        return self.ledger.close_round(round_index, t0, self.env.now, counts, metrics)

    def _play(self, round_index: int) -> tuple[float, list[int], dict, list[ClientUpdate]]:
        """Play the round's clocks (with the real training in a serial run): when it
        began, the clients selected, the counts of outcomes, the kept updates in client
        order."""
        sc, pop, env = self.scenario, self.scenario.population, self.env
        t0 = env.now
        self._wait_for_someone_online(round_index)
        online = self.availability.online(round_index, env.now)
        selected = sample_clients(sc.seed, round_index, online, pop.clients, pop.select_count)
        ctx = RoundContext(self, round_index)
        if not self.pipelined:  # else when the workers' results come in
            self.method.begin_round(round_index, selected)
        if self.timing is not self.method:
            self.timing.begin_round(round_index, selected)
        if self.recorder is not None:
            self.recorder.begin_round(selected)
        start_s = env.now
        hosts = self.copies is not None and self.timing.uses_server_copies()
        updates, counts = self.play_round(
            ctx, selected, min(pop.clients_per_round, len(selected)), self.timing.client_round,
            self.timing.server_round(ctx),
            lambda client: self.availability.offline_at(round_index, client, start_s),
            lambda client: len(ctx.batch_sizes(client)) if hosts else None)
        return t0, selected, counts, sorted(updates, key=lambda u: u.client)

    def _pipelined_round(self, round_index: int) -> dict:
        """With workers, a method that ``pipelines``: the next round is played on meta
        tensors while the workers train this one (its schedule needs no trained weights),
        then this round's results are taken in, aggregated and tested, and the next
        round's jobs go out from the new global model. The ledger closes each round as
        it is played; its test metrics are filled in once known."""
        now = self._ahead or self._play_ahead(round_index)
        if now.results is None:  # the run's first round
            now.results = self._run_jobs(round_index, now.selected, now.jobs)
        self._ahead = (self._play_ahead(round_index + 1)
                       if round_index + 1 < self.scenario.rounds else None)
        self.method.begin_round(round_index, now.selected)
        updates = self.method.take_apart(self.timing, now.kept, now.jobs, list(now.results))
        self.aggregate(round_index, now.selected, updates, True)
        metrics = self._tested(round_index, True)
        self.method.observe(round_index, metrics)
        self.timing.observe(round_index, metrics)
        now.row.update(metrics)
        if self._ahead is not None:
            ahead = self._ahead
            ahead.results = self._run_jobs(ahead.round_index, ahead.selected, ahead.jobs)
        return now.row

    def _play_ahead(self, round_index: int) -> _Played:
        t0, selected, counts, updates = self._play(round_index)
        kept = [u.client for u in updates]
        row = self.ledger.close_round(round_index, t0, self.env.now, counts,
                                      {**UNTESTED, **self.timing.round_metrics()})
        return _Played(round_index, selected, kept, self.timing.apart_jobs(kept), row)

    def _run_jobs(self, round_index: int, selected: list[int],
                  jobs: list[tuple[str, int]]) -> Iterator[tuple[ClientUpdate | None, Any]]:
        """The workers' results of the jobs the round ``timing`` played asks for
        (``Method.apart_jobs``), each from the state its client starts from; sent now."""
        device_of = {client: device.name for device, clients
                     in self.population.schedule(selected) for client in clients}
        return self.pool.run_jobs(
            self.start_states(), round_index,
            [(kind, client, self._device_index[device_of[client]]
              if kind in self.method.device_jobs else -1,
              self.method.apart_input(kind, client, self.timing), self.start_key(client))
             for kind, client in jobs],
            [len(self.prep.client_indices[client]) for _, client in jobs])

    def start_states(self) -> dict[str, dict[str, torch.Tensor]]:
        """The states clients start their rounds from, by key (``start_key``): here
        the global model alone."""
        return {"": self.method.learnable_state()}

    def start_key(self, client: int) -> str:
        return ""

    def aggregate(self, round_index: int, selected: list[int], updates: list[ClientUpdate],
                  learns: bool) -> None:
        """The round's kept updates (in client order) into the global model. A
        hierarchy aggregates at its edges first, and at the cloud in its own time."""
        if learns:
            self.method.end_round(updates)

    def _wait_for_someone_online(self, round_index: int) -> None:
        """With an availability trace, a round starts once some client is online."""
        t_s = self.availability.next_online_s(self.env.now)
        if self.env.now < t_s < math.inf:
            self.run_until(self.env.timeout(t_s - self.env.now), round_index)

    def _tested(self, round_index: int, learns: bool) -> dict[str, float]:
        """Test metrics of the global model after the round, or NaN if not due."""
        sc = self.scenario
        due = round_index == sc.rounds - 1 or (round_index + 1) % sc.evaluation.every == 0
        return self.evaluate() if learns and due else dict(UNTESTED)

    def evaluate(self) -> dict[str, float]:
        """Real test accuracy and mean loss of the method's current global model. With a
        pool of workers, they score slices of the test batches; the sums are taken here
        batch by batch in order, as a serial run takes them, so they are the same."""
        test, size = self.prep.test, self.scenario.evaluation.batch_size
        n = min(len(test), self.scenario.data.eval_samples or len(test))
        batches = [(start, min(start + size, n)) for start in range(0, n, size)]
        if self.pool is not None and len(batches) > 1:
            scores = self.pool.score_test_batches(self.method.learnable_state(), batches)
        else:
            scores = score_test_batches(self.method, self.prep, batches)
        correct, loss_sum = 0, 0.0
        for batch_loss_sum, batch_correct in scores:
            loss_sum += batch_loss_sum
            correct += batch_correct
        return {"test_accuracy": correct / n, "test_loss": loss_sum / n}


@torch.no_grad()
def score_test_batches(method: Method, prep: Prepared,
                       batches: list[tuple[int, int]]) -> list[tuple[float, int]]:
    """(summed cross-entropy, correct predictions) of each test batch, samples
    [start, stop), under ``method``'s global model."""
    model = method.eval_model()
    was_training = model.training
    model.eval()
    scores = []
    for start, stop in batches:
        x, y = prep.test.batch(torch.arange(start, stop))
        x, y = x.to(prep.compute_device), y.to(prep.compute_device)
        logits = method.eval_logits(model, x, start)
        scores.append((float(F.cross_entropy(logits, y, reduction="sum")),
                       int((logits.argmax(1) == y).sum())))
    model.train(was_training)
    return scores

"""Split-point planner: the analytic round time of every split, per device class.

No simulation and no training. For each device class and candidate split ``k``, one
client's round is timed from its method's ``Sketch`` (sizes from shapes and codecs, compute
from the profiles) and the class's link:

- a message takes latency (+ mean jitter) + wire bytes / min(device link, server link /
  flows sharing it). Clients of one class start together and move in lock-step, so they
  all share it at once; each client of another class adds the share of its round it
  spends sending (a mean-field fixed point, started from Plato's even split);
- a batch where the device waits for the server: before + up + server + down + after;
- a streaming batch (local loss, EcoFed): the device sends on, and the server's queue of
  steps is walked exactly; the client ends when its last step is done.

A round lasts as long as its slowest class (times its waves), and never less than the
server's compute for the round's clients spread over its workers. EcoFed's rounds are
weighted: 1/period update rounds, the rest server-only replay. The pick is the assignment
of splits to classes with the least expected round time (one split for every class when
the method needs that), ties to fewer bytes, then to smaller splits.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

from ecofed_sim.methods import REGISTRY
from ecofed_sim.methods.base import Sketch
from ecofed_sim.network import BITS_PER_BYTE, MBPS, wire_bytes
from ecofed_sim.network.burst import burst_loss, probe_srtt_s, recovery_end_s
from ecofed_sim.network.tcp import Connection
from ecofed_sim.network.window import Window, slow_start_s
from ecofed_sim.paths import scenario_path
from ecofed_sim.population import class_counts, resolve_link
from ecofed_sim.profiles import one_way_ms, round_trip_ms
from ecofed_sim.traces import read_trace

TRAIN_SIZES = {"cifar10": 50_000, "cifar100": 50_000, "mnist": 60_000,
               "fashion_mnist": 60_000, "embedded_mnist": 5_000}
MAX_COMBINATIONS = 200_000


@dataclass(frozen=True)
class ClassLink:
    """What the planner needs of one device class."""

    label: str
    profile: object  # profiles.DeviceProfile
    up_bps: float
    down_bps: float
    latency_s: float
    clients_per_round: float  # expected clients of this class in a round
    waves: int  # clients each physical device plays one after another
    rtt_s: float = 0.0  # round-trip time (the TCP transport's rounds and handshakes)
    buffer_bytes: float | None = None  # the bottleneck's buffer (None: one BDP)


@dataclass(frozen=True)
class Candidate:
    splits: tuple[int, ...]  # per device class
    round_time_s: float
    bytes_per_round: float


@dataclass(frozen=True)
class Plan:
    method: str
    classes: list[ClassLink]
    splits: list[int]
    client_time_s: dict[tuple[int, int], float]  # (class index, split) -> seconds
    candidates: list[Candidate]  # best first
    per_class: bool
    batches: list[int]

    @property
    def best(self) -> Candidate:
        return self.candidates[0]

    def same_split(self, k: int) -> Candidate:
        return next(c for c in self.candidates if set(c.splits) == {k})


def mean_client_samples(sc) -> int:
    """Samples of a typical client, known without loading data (see ``data.partition``)."""
    data = sc.data
    n = (data.synthetic.train_samples if data.dataset == "synthetic"
         else TRAIN_SIZES[data.dataset] - (data.test_samples
                                           if data.dataset == "embedded_mnist" else 0))
    if sc.pretrain.source == "public_split":
        n -= int(round(sc.pretrain.public_fraction * n))
    return data.partition.samples_per_client or n // sc.population.clients


def round_batches(sc) -> list[int]:
    """Batch sizes of one client's round, in order."""
    return sc.training.batch_sizes(mean_client_samples(sc))


def _mean_rate_mbps(link, direction: str, base_dir: Path | None, where: str) -> float:
    path = getattr(link, f"{direction}link_trace", None)
    if not path:
        return getattr(link, f"{direction}link_mbps")
    trace = read_trace(scenario_path(path, base_dir), where)
    ends = (*trace.times_s[1:], trace.period_s)
    return sum(r * (e - t) for r, t, e in zip(trace.rates_mbps, trace.times_s, ends,
                                              strict=True)) / trace.period_s


def class_links(sc, library, base_dir: Path | None, source: str) -> list[ClassLink]:
    pop = sc.population
    total = sum(d.count for d in pop.devices) if pop.waves else pop.clients
    counts = class_counts(pop, total)
    in_flight = min(pop.clients_per_round, total)
    out = []
    for i, (spec, count) in enumerate(zip(pop.devices, counts, strict=True)):
        where = f"{source}: population.devices[{i}].link"
        link = resolve_link(spec.link, library, where)
        share = count / total
        out.append(ClassLink(
            f"{i}:{spec.profile}", library.devices[spec.profile],
            _mean_rate_mbps(link, "up", base_dir, where) * MBPS,
            _mean_rate_mbps(link, "down", base_dir, where) * MBPS,
            (one_way_ms(link) + getattr(link, "latency_jitter_ms", 0.0) / 2) / 1e3,
            pop.clients_per_round * share,
            math.ceil(pop.clients_per_round / in_flight) if pop.waves else 1,
            round_trip_ms(link) / 1e3, getattr(link, "buffer_bytes", None)))
    return out


class Timer:
    """Analytic seconds of sketches on one scenario's server and links."""

    def __init__(self, sc, server_profile) -> None:
        self.sc, self.server = sc, server_profile
        pop = sc.population
        self.in_flight = min(pop.clients_per_round,
                             sum(d.count for d in pop.devices) if pop.waves else pop.clients)
        # flows sharing the server link (True: up, False: down), for the class being timed
        self.flows = {True: float(self.in_flight), False: float(self.in_flight)}
        self.busy_s = {True: 0.0, False: 0.0}  # sending time of the last client timed
        self.tcp = sc.network.tcp_params()  # None under the flow transport
        self.connection = Connection()

    def message_s(self, cls: ClassLink, payload_bytes: float, up: bool,
                  start_s: float = 0.0) -> float:
        """Seconds from issuing a message at ``start_s`` to its last bit's arrival, at the
        fair share of the server link; under the ``tcp`` transport with the window of the
        client's connection (slow start, restart after idle, handshakes per message)."""
        if payload_bytes <= 0:
            return 0.0
        net, link = self.sc.network, self.sc.server.link
        server_cap_bps = (link.ingress_mbps if up else link.egress_mbps) * MBPS
        device_bps = cls.up_bps if up else cls.down_bps
        rate = min(device_bps, server_cap_bps / self.flows[up])
        bits = wire_bytes(payload_bytes, net.framing_bytes, net.framing_fraction)
        if self.tcp is None:
            bits *= BITS_PER_BYTE
            self.busy_s[up] += bits / rate
            return cls.latency_s + bits / rate
        bits = self.tcp.wire_bytes(bits) * BITS_PER_BYTE
        self.busy_s[up] += bits / rate
        direction, conn = ("up" if up else "down"), self.connection
        path_bps = min(device_bps, server_cap_bps)
        begin_s = start_s
        if not conn.open or self.tcp.per_message_connections:  # the handshake first
            begin_s += cls.rtt_s
            conn.open = True
            conn.window_bits[direction] = self.tcp.initial_window_bits
            conn.last_send_end_s[direction] = begin_s
        window, cap = conn.start(self.tcp, direction, begin_s, cls.rtt_s, path_bps,
                                 cls.buffer_bytes, bits)
        ssthresh = conn.ssthresh(direction)
        flight_s, last_window, round_bits = slow_start_s(bits, rate, cls.rtt_s, window, cap,
                                                         ssthresh, self.tcp.segment_bits)
        arrived_s = begin_s + cls.latency_s + flight_s
        loss = burst_loss(self.tcp, window, bits,
                          self.tcp.buffer_bits(path_bps, cls.rtt_s, cls.buffer_bytes),
                          rate_bps=path_bps)
        if loss is not None:  # the message ends when its last lost segment arrives, resent
            srtt_s = probe_srtt_s(self.tcp, conn.srtt_s.get(direction, cls.rtt_s), cls.rtt_s,
                                  path_bps, loss)
            arrived_s = max(arrived_s, begin_s + recovery_end_s(
                self.tcp, loss, path_bps, cls.rtt_s, cls.latency_s, srtt_s=srtt_s))
        conn.finish(self.tcp, direction, arrived_s, cls.latency_s, cls.rtt_s, path_bps,
                    cls.buffer_bytes, Window(cls.rtt_s, last_window, cap,
                                             last_window - round_bits, 0.0,
                                             open=round_bits == 0, start_bits=window,
                                             ssthresh_bits=ssthresh,
                                             lost_segments=loss.lost if loss else 0),
                    bits, bits)
        return arrived_s - start_s

    def client_s(self, cls: ClassLink, sketches: list[Sketch]) -> float:
        """One client's round alone: weights down, every batch, weights up. Under TCP its
        connection is new, as in the first round (a handshake, then slow start from the
        initial window); later rounds save the handshake."""
        self.busy_s = {True: 0.0, False: 0.0}
        self.connection = Connection()
        first = sketches[0]
        t = self.message_s(cls, first.weights_down_bytes, up=False, start_s=0.0)
        server_free = t
        for s in sketches:
            before = cls.profile.cost_s(s.device_before)
            up = self.message_s(cls, s.up_bytes, up=True, start_s=t + before)
            server = self.server.cost_s(s.server)
            if s.waits:
                down = self.message_s(cls, s.down_bytes, up=False,
                                      start_s=t + before + up + server)
                t += before + up + server + down + cls.profile.cost_s(s.device_after)
            else:  # streams: the server works through its queue behind the device
                t += before + up
                server_free = max(server_free, t) + server
        end = max(t, server_free)
        return end + self.message_s(cls, first.weights_up_bytes, up=True, start_s=end)

    def class_times(self, classes: list[ClassLink], sketches: list[Sketch],
                    iterations: int = 50) -> list[float]:
        """Client time per class at one split, with the flows sharing the server link at
        their fixed point: the class's own clients in flight, plus every other class's
        clients in flight times the share of their round they spend sending."""
        scale = self.in_flight / sum(c.clients_per_round for c in classes)
        in_flight = [c.clients_per_round * scale for c in classes]
        flows = [{True: float(self.in_flight), False: float(self.in_flight)} for _ in classes]
        times = [0.0] * len(classes)
        for _ in range(iterations):
            duty = []
            for i, c in enumerate(classes):
                self.flows = flows[i]
                times[i] = self.client_s(c, sketches)
                duty.append({up: busy / times[i] for up, busy in self.busy_s.items()})
            new = [{up: max(1.0, in_flight[i] + sum(
                n * d[up] for j, (n, d) in enumerate(zip(in_flight, duty, strict=True))
                if j != i)) for up in (True, False)} for i in range(len(classes))]
            if all(abs(a[u] - b[u]) < 1e-9 for a, b in zip(new, flows, strict=True) for u in a):
                break
            flows = new
        return times


def plan(prep, splits: list[int] | None = None) -> Plan:
    """Every candidate assignment of splits to device classes, best first."""
    sc = prep.scenario
    method = REGISTRY[sc.method.name]
    classes = class_links(sc, prep.library, prep.base_dir, prep.source)
    splits = splits or list(range(1, len(prep.stats)))
    batches = round_batches(sc)
    timer = Timer(sc, prep.server_profile)
    sketch = {(k, b): method.sketch(sc.method, sc.model.name, prep.stats, k, b)
              for k in splits for b in set(batches)}
    times = {}
    for k in splits:
        at_k = timer.class_times(classes, [sketch[k, b] for b in batches])
        times.update({(i, k): t for i, t in enumerate(at_k)})
    server_s = {k: sum(prep.server_profile.cost_s(sketch[k, b].server) for b in batches)
                for k in splits}
    bytes_ = {k: sum(sketch[k, b].up_bytes + sketch[k, b].down_bytes for b in batches)
              + sketch[k, batches[0]].weights_down_bytes + sketch[k, batches[0]].weights_up_bytes
              for k in splits}
    share = sketch[splits[0], batches[0]].device_round_share
    workers = sc.server.workers

    def expected(assign: tuple[int, ...]) -> Candidate:
        served = sum(c.clients_per_round * server_s[k] for c, k in zip(classes, assign,
                                                                        strict=True))
        update = max(max(c.waves * times[i, k] for i, (c, k) in enumerate(zip(
            classes, assign, strict=True))), served / workers)
        replay = served / workers  # server-only rounds: the same steps on buffered data
        traffic = sum(c.clients_per_round * bytes_[k] for c, k in zip(classes, assign,
                                                                       strict=True))
        return Candidate(assign, share * update + (1 - share) * replay, share * traffic)

    per_class = type(sc.method).per_class_split and len(classes) > 1
    combos = (itertools.product(splits, repeat=len(classes)) if per_class
              else ((k,) * len(classes) for k in splits))
    if per_class and len(splits) ** len(classes) > MAX_COMBINATIONS:
        combos = _coordinate_descent(expected, splits, len(classes))
    candidates = sorted({expected(tuple(a)) for a in combos},
                        key=lambda c: (c.round_time_s, c.bytes_per_round, c.splits))
    return Plan(sc.method.name, classes, splits, times, candidates, per_class, batches)


def _coordinate_descent(expected, splits: list[int], n: int) -> list[tuple[int, ...]]:
    """Too many classes for every combination: improve one class at a time from the best
    common split; returns the assignments visited."""
    visited = [(k,) * n for k in splits]
    best = min(visited, key=lambda a: expected(a).round_time_s)
    improved = True
    while improved:
        improved = False
        for i in range(n):
            for k in splits:
                trial = best[:i] + (k,) + best[i + 1:]
                visited.append(trial)
                if expected(trial).round_time_s < expected(best).round_time_s:
                    best, improved = trial, True
    return visited


def resolve(scenario, plan_: Plan):
    """The scenario with ``split: auto`` replaced by the plan's pick."""
    splits = plan_.best.splits
    method = scenario.method.model_copy(update={"split": splits[0]})
    devices = scenario.population.devices
    if plan_.per_class:
        devices = [d.model_copy(update={"split": k}) for d, k in zip(devices, splits,
                                                                      strict=True)]
    population = scenario.population.model_copy(update={"devices": devices})
    return scenario.model_copy(update={"method": method, "population": population})


def format_plan(plan_: Plan, source: str) -> str:
    """The table ``ecofed-sim plan`` prints: every split's time per class, and the pick."""
    heads = [f"class {c.label}" for c in plan_.classes]
    lines = [f"{source}: {plan_.method}, {len(plan_.batches)} batches per client round; "
             "analytic expected times (s)",
             "split  " + "  ".join(f"{h:>18}" for h in heads)
             + f"  {'round, same split':>18}  {'MiB/round':>10}"]
    for k in plan_.splits:
        same = plan_.same_split(k)
        cells = "  ".join(f"{plan_.client_time_s[i, k]:>18.6g}"
                          for i in range(len(plan_.classes)))
        lines.append(f"{k:>5}  {cells}  {same.round_time_s:>18.6g}  "
                     f"{same.bytes_per_round / 2**20:>10.4g}")
    best = plan_.best
    pick = ", ".join(f"class {c.label} -> {k}" for c, k in zip(plan_.classes, best.splits,
                                                                 strict=True))
    kind = "a split per class" if plan_.per_class else "one split for every class"
    lines.append(f"pick ({kind}): {pick}; expected round time {best.round_time_s:.6g} s, "
                 f"{best.bytes_per_round / 2**20:.4g} MiB per round")
    return "\n".join(lines)

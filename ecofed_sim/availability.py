"""When clients are online: per-round coin flips, on/off interval traces, and churn.

Three models, which combine (a client must pass all that are configured):

1. ``online_probability``: each round, each client is online independently with this
   chance (a stream keyed by (seed, round)). Decided at the round's start; such a client
   never drops mid-round.
2. An availability trace: intervals ``client, online_s, offline_s`` of simulated time in
   which a trace client is online (FedScale's client-availability traces have this shape).
   Scenario client ``c`` follows trace client ``ids[c mod len(ids)]``; the trace loops with
   the period of its last ``offline_s`` unless told not to. A client sampled while online
   drops out when its interval ends.
3. ``mean_online_s``: memoryless churn. From the round's start a sampled client stays
   online for an exponential time with this mean (a stream keyed by (seed, round,
   client)), so long rounds lose more clients, as slow devices do in deployments.

Everything here is a pure function of (seed, round, client, time): the same scenario
gives the same availability for every method and on any executor.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from pathlib import Path

from ecofed_sim.errors import ScenarioError
from ecofed_sim.paths import scenario_path
from ecofed_sim.seeding import AVAILABILITY, CHURN, np_rng
from ecofed_sim.traces import numeric_rows

NEVER = math.inf


@dataclass(frozen=True)
class OnOffTrace:
    """Online intervals per trace client, sorted and disjoint; ``period_s`` loops them."""

    ids: tuple[int, ...]
    intervals: tuple[tuple[tuple[float, float], ...], ...]  # per id: ((on_s, off_s), ...)
    period_s: float | None  # None: no loop (offline for ever after the last interval)

    def _of(self, client: int) -> tuple[tuple[float, float], ...]:
        return self.intervals[client % len(self.ids)]

    def online_until(self, client: int, t_s: float) -> float | None:
        """End of the interval that holds ``t_s`` (None when offline at ``t_s``)."""
        base, local = self._fold(t_s)
        spans = self._of(client)
        i = bisect.bisect_right([on for on, _ in spans], local) - 1
        if i < 0 or local >= spans[i][1]:
            return None
        end = base + spans[i][1]
        if self.period_s is not None and spans[i][1] >= self.period_s and spans[0][0] == 0:
            # online up to the wrap and from the next period's start: one interval
            return NEVER if i == 0 else end + spans[0][1]
        return end

    def next_online_s(self, client: int, t_s: float) -> float:
        """The first time >= ``t_s`` at which ``client`` is online (inf if never)."""
        base, local = self._fold(t_s)
        for on, off in self._of(client):
            if local < off:
                return base + max(on, local)
        if self.period_s is None:
            return NEVER
        return base + self.period_s + self._of(client)[0][0]

    def _fold(self, t_s: float) -> tuple[float, float]:
        if self.period_s is None:
            return 0.0, t_s
        base = math.floor(t_s / self.period_s) * self.period_s
        return base, t_s - base


def read_onoff_trace(path: Path, loop: bool, where: str) -> OnOffTrace:
    """``client, online_s, offline_s`` per line (CSV; header, blanks and # comments
    skipped). Intervals of one client must not overlap."""
    spans: dict[int, list[tuple[float, float]]] = {}
    for n, (client, on, off) in numeric_rows(path, where, "availability trace",
                                             "client, online_s, offline_s", (int, float, float)):
        if client < 0 or on < 0 or off <= on:
            raise ScenarioError(f"{where}: {path}: line {n}: need client >= 0 and "
                                "0 <= online_s < offline_s")
        spans.setdefault(client, []).append((on, off))
    ids = tuple(sorted(spans))
    for cid in ids:
        spans[cid].sort()
        for (_, off), (on, _) in zip(spans[cid], spans[cid][1:], strict=False):
            if on < off:
                raise ScenarioError(f"{where}: {path}: client {cid}: overlapping intervals")
    period = max(off for cid in ids for _, off in spans[cid]) if loop else None
    return OnOffTrace(ids, tuple(tuple(spans[c]) for c in ids), period)


@dataclass(frozen=True)
class Availability:
    """The scenario's availability models, combined."""

    seed: int
    clients: int
    online_probability: float = 1.0
    trace: OnOffTrace | None = None
    mean_online_s: float | None = None

    def online(self, round_index: int, t_s: float) -> list[int]:
        """Clients online at the start (time ``t_s``) of round ``round_index``."""
        clients = range(self.clients)
        if self.online_probability < 1.0:
            draws = np_rng(self.seed, AVAILABILITY, round_index).random(self.clients)
            clients = [c for c in clients if draws[c] < self.online_probability]
        if self.trace is not None:
            clients = [c for c in clients if self.trace.online_until(c, t_s) is not None]
        return list(clients)

    def next_online_s(self, t_s: float) -> float:
        """When the next client comes online by the trace (``t_s`` without a trace)."""
        if self.trace is None:
            return t_s
        return min(self.trace.next_online_s(c, t_s) for c in range(self.clients))

    def offline_at(self, round_index: int, client: int, round_start_s: float) -> float:
        """When a client online at ``round_start_s`` goes offline (inf: not this round)."""
        t = NEVER
        if self.trace is not None:
            until = self.trace.online_until(client, round_start_s)
            t = round_start_s if until is None else until
        if self.mean_online_s is not None:
            stay_s = np_rng(self.seed, CHURN, round_index, client).exponential(
                self.mean_online_s)
            t = min(t, round_start_s + float(stay_s))
        return t


def build_availability(scenario, base_dir: Path | None, source: str) -> Availability:
    """The scenario's availability; a bad trace file is a one-line ScenarioError."""
    pop = scenario.population
    trace = None
    if pop.availability_trace:
        trace = read_onoff_trace(scenario_path(pop.availability_trace, base_dir),
                                 pop.availability_trace_loop,
                                 f"{source}: population.availability_trace")
    return Availability(scenario.seed, pop.clients, pop.online_probability, trace,
                        pop.mean_online_s)

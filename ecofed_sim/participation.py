"""Who finishes a round: completion, dropout, stragglers and the round's close.

One ``RoundPlay`` per round. Each device runs its scheduled clients one after another (a
wave). A client's work is its method's fragment, run as its own SimPy process so that it
can be cut off:

- **dropped**: the client went offline (``availability``) before its work was done. Its
  process, and every server process it started, is interrupted where it stands; the
  bytes that got through and the compute it spent stay on the ledger, and its update is
  discarded.
- **straggler**: the round closed while the client was still working (or waiting for its
  turn in a wave): ``keep`` clients had already finished, FedScale's over-selection, or
  the deadline passed. Its work is cut off and discarded the same way.
- **completed**: its fragment returned, and it was among the first ``keep`` to; these
  are the round's updates. The round closes at the ``keep``-th; a client finishing in
  that same instant, after it in event order, is a straggler.

What a cut-off client's *partial* work does to learning is the method's semantics, and
needs no code here: per-client copies (FedAvg, SplitFed-V1, local loss, FedGKT, EcoFed's
server copies) are never aggregated, EcoFed's buffer keeps the client's previous full
epoch, and SplitFed-V2's shared server part keeps the steps it already took, as a real
shared server would.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import simpy

from ecofed_sim.methods.base import ClientUpdate, Device

CUT = object()  # what a cut-off process returns


def guarded(fragment: Generator) -> Generator:
    """Run ``fragment``; if it is interrupted, end quietly with ``CUT``."""
    try:
        return (yield from fragment)
    except simpy.Interrupt:
        return CUT


class WaveBarrier:
    """The EcoFed code's wave loop: a wave's clients all finish (or are cut off or
    dropped) before any device starts its next client."""

    def __init__(self, env: simpy.Environment, waves: list[list[int]]) -> None:
        sizes = [sum(len(clients) > w for clients in waves)
                 for w in range(max((len(c) for c in waves), default=0))]
        self.left = list(sizes)
        self.done = [env.event() for _ in sizes]

    def arrive(self, wave: int) -> None:
        self.left[wave] -= 1
        if self.left[wave] == 0:
            self.done[wave].succeed()


@dataclass
class RoundPlay:
    """One round's participation: runs the clients, tallies outcomes, closes the round."""

    env: simpy.Environment
    round_index: int
    t0_s: float
    keep: int  # updates the round needs; it closes at the keep-th completion
    selected: int
    offline_at: Callable[[int], float]  # client -> when it goes offline (inf: never)
    ledger: object  # ecofed_sim.ledger.Ledger
    children: dict = field(default_factory=dict)  # process -> processes it started
    updates: list[ClientUpdate] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("completed", "dropped", "stragglers"), 0))
    closed: bool = False
    offline_from: dict[str, tuple[int, float]] = field(default_factory=dict)
    enough: simpy.Event = field(init=False)  # the round may close: keep done, or all out
    _running: dict[int, simpy.Process] = field(default_factory=dict)
    _cut: set[simpy.Process] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.enough = self.env.event()
        if self.selected == 0 or self.keep == 0:
            self.enough.succeed()

    def device_process(self, device: Device, clients: list[int], client_round: Callable,
                       barrier: WaveBarrier | None = None,
                       members: Callable[[Device, int], list] = lambda d, c: [(d, c)]
                       ) -> Generator:
        """A device's wave: each client in turn, until done, dropped or the round closes.
        With a ``barrier``, client i waits until every device has finished wave i - 1.
        ``members(device, client)``: the (device, client) pairs whose outcome the client's
        play decides (a cohort's, ``ecofed_sim.cohorts``; else itself)."""
        for i, client in enumerate(clients):
            if barrier is not None and i > 0:
                yield barrier.done[i - 1]
            yield from self._play(device, client, client_round, members(device, client))
            if barrier is not None:
                barrier.arrive(i)

    def _play(self, device: Device, client: int, client_round: Callable,
              members: list) -> Generator:
        started = self.env.now
        self._back_online(device)
        off_s = self.offline_at(client)
        if self.closed or off_s <= started:
            for member, c in members:
                self._resolve(c, member, "straggler" if self.closed else "dropped", started)
            return
        proc = self.env.process(guarded(client_round(client, device)))
        self._running[client] = proc
        if math.isfinite(off_s):
            yield proc | self.env.timeout(off_s - started)
        else:
            yield proc
        if proc.is_alive:  # the drop timer fired first
            self.cut(proc)
            yield proc
            outcome = "dropped"
        else:
            outcome = "straggler" if proc.value is CUT else "completed"
        for member, c in members:  # a cohort's others: timing only, no update to keep
            self._resolve(c, member, outcome, started,
                          proc.value if outcome == "completed" and c == client else None)
        del self._running[client]

    def _resolve(self, client: int, device: Device, outcome: str, started: float,
                 update: ClientUpdate | None = None) -> None:
        now = self.env.now
        if outcome == "completed" and self.outcomes["completed"] >= self.keep:
            outcome = "straggler"  # finished in the same instant as the keep-th: not kept
        self.ledger.participant(self.round_index, client, device.name, outcome, started, now)
        self.outcomes["stragglers" if outcome == "straggler" else outcome] += 1
        if outcome == "dropped":
            self.offline_from[device.name] = (client, now)
        if outcome == "completed" and update is not None:
            self.updates.append(update)
        resolved = sum(self.outcomes.values())
        if not self.enough.triggered and (
                self.outcomes["completed"] >= self.keep or resolved >= self.selected):
            self.enough.succeed()

    def _back_online(self, device: Device) -> None:
        """Close the device's offline span when it starts its next client (waves)."""
        if device.name in self.offline_from:
            client, since = self.offline_from.pop(device.name)
            self.ledger.span(self.round_index, device.name, client, "offline", "dropped",
                             since, self.env.now)

    def close(self) -> None:
        """The round closes now: cut every client still working (stragglers)."""
        self.closed = True
        for proc in list(self._running.values()):
            self.cut(proc)

    def cut(self, proc: simpy.Process) -> None:
        """Interrupt a process and, depth first, every process it started."""
        if proc in self._cut or not proc.is_alive:
            return
        self._cut.add(proc)
        proc.interrupt("cut")
        for child in self.children.get(proc, []):
            self.cut(child)

    def finish(self, t1_s: float) -> dict[str, int]:
        """Offline spans up to the round's end; the per-round participation counts."""
        for device, (client, since) in self.offline_from.items():
            self.ledger.span(self.round_index, device, client, "offline", "dropped", since,
                             t1_s)
        self.offline_from.clear()
        return {"selected": self.selected, **self.outcomes}

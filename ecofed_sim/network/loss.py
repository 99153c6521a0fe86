"""Random loss on a TCP connection, from its first loss on: a sawtooth, epoch by epoch.

Cardwell, Savage and Anderson, "Modeling TCP latency" (INFOCOM 2000), has a connection
slow-start unhindered until its first loss, expected after 1/p segments; Padhye, Firoiu,
Towsley and Kurose, "Modeling TCP throughput: a simple model and its empirical
validation" (SIGCOMM 1998), give the rate it settles at. Between the two, the window
does not drop to its steady state at once: the first loss finds the large window slow
start reached, each loss keeps ``beta`` of the window, and the window grows back in
between, so it takes several losses to come down. On a fat path with little loss (100
Mbit/s, 40 ms, 0.1%) that descent is most of a 10 MB transfer.

The model is the sawtooth of Mathis, Semke, Mahdavi and Ott, "The macroscopic behavior
of the TCP congestion avoidance algorithm" (CCR 1997). An epoch is the segments between
two losses: 1/p each in their deterministic sawtooth (``network.loss_gaps: regular``);
by default (``random``) each gap, the first loss's included, is drawn from the geometric
distribution of mean 1/p, as a Bernoulli loss process makes them (``DrawnLossEpochs``).
Time is convex in where the first loss falls, so the regular sawtooth, which puts it at
its mean, is faster than the mean over draws. An epoch starts from ``beta`` times the
window the last loss found and grows ``alpha`` = 3 (1 - beta) / (1 + beta) segments per
round trip, the additive increase that gives any ``beta`` Reno's rate (RFC 9438's
Reno-friendly region; 1 for Reno's 0.5). A round trip carries the window, but no more
than the path's bandwidth-delay product (beyond it the bottleneck is the limit and the
rest queues); the window never passes what the path holds. A window that carries more
than 1/p segments in a round trip loses several in it, and TCP cuts it once for them
(RFC 5681, RFC 6675): such an epoch is that one round trip. The loss that ends an epoch
costs a retransmission timeout with ``TcpParams.timeout_chance``: ``p`` with selective
acknowledgements (the retransmission is lost too), Padhye et al.'s ``min(1, 3 / w)`` for
a window of ``w`` segments without them. Regular epochs converge geometrically; for Reno
(``beta`` 0.5) without selective acknowledgements the limit is Padhye et al.'s rate,
timeouts and all (Mathis et al.'s square-root law, sqrt(3 / 2p) segments per round trip,
while no timeout is due).

Held against ns-3 (``benchmarks/ns3_reference.py``, whose senders use selective
acknowledgements, as Linux's do), ``3 / w`` charged a timeout to about one loss in five
at 1% loss, where ns-3's senders timed out in 4 to 17 of about 600 loss episodes, and the
model took up to 1.57x ns-3's Cubic time; with ``p``, 0.95x to 1.10x at 1% (drawn
losses).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ecofed_sim.network.tcp import TcpParams

if TYPE_CHECKING:
    from ecofed_sim.network.flows import Flow
    from ecofed_sim.network.links import DeviceLink

_CONVERGED = 1e-4  # relative change of the window at a loss below which it has settled
_MAX_EPOCHS = 200


def reno_friendly_increase(beta: float) -> float:
    """Segments per round trip a window grows after a loss that kept ``beta`` of it: the
    AIMD increase with Reno's throughput (RFC 9438, section 4.3)."""
    return 3 * (1 - beta) / (1 + beta)


def epoch_round_trips(start_segments: float, epoch_segments: float, bdp_segments: float,
                      cap_segments: float, increase: float) -> tuple[float, float]:
    """(round trips an epoch of ``epoch_segments`` takes, the window at its end), the
    window growing ``increase`` segments per round trip from ``start_segments`` (as a
    fluid: Mathis et al.'s model), each round trip carrying the window but no more than
    the bandwidth-delay product, the window never beyond ``cap_segments``."""
    window = min(start_segments, cap_segments)
    if window >= bdp_segments:
        rounds = epoch_segments / bdp_segments
    else:
        to_bdp = (bdp_segments - window) / increase  # round trips until the path is full
        before_bdp = window * to_bdp + increase * to_bdp**2 / 2  # segments sent by then
        if epoch_segments <= before_bdp:  # window t + increase t^2 / 2 = epoch_segments
            rounds = (math.sqrt(window**2 + 2 * increase * epoch_segments) - window) / increase
        else:
            rounds = to_bdp + (epoch_segments - before_bdp) / bdp_segments
    return rounds, min(window + increase * rounds, cap_segments)


@dataclass(frozen=True)
class LossEpochs:
    """A connection's epochs from its first loss on: where each ends, in segments sent
    since that loss, and its wire rate in bits per second. The last is the steady state
    and never ends."""

    ends_segments: tuple[float, ...]
    rates_bps: tuple[float, ...]

    def at(self, segments: float) -> tuple[float, float]:
        """(the rate, where the epoch ends) ``segments`` after the first loss."""
        index = min(bisect.bisect_right(self.ends_segments, segments),
                    len(self.rates_bps) - 1)
        end = math.inf if index == len(self.rates_bps) - 1 else self.ends_segments[index]
        return self.rates_bps[index], end


@dataclass(frozen=True)
class _Path:
    """What every epoch of a connection's loss sawtooth is worked out against, in
    segments and seconds."""

    tcp: TcpParams
    loss_rate: float
    rtt_s: float
    bdp_segments: float
    cap_segments: float
    increase: float
    timeout_s: float

    @classmethod
    def of(cls, tcp: TcpParams, loss_rate: float, rtt_s: float, rate_bps: float,
           cap_bits: float) -> _Path:
        seg = tcp.segment_bits
        return cls(tcp, loss_rate, rtt_s, rate_bps * rtt_s / seg, max(cap_bits / seg, 1.0),
                   reno_friendly_increase(tcp.beta),
                   tcp.rto_s(rtt_s) * (1 + 32 * loss_rate**2))

    def epoch(self, window: float, segments: float) -> tuple[float, float, float]:
        """(segments the epoch carries, its wire rate in bits per second, the window at its
        end) for an epoch of ``segments`` after a loss that found ``window`` segments. A
        window that carries more than that in a round trip loses several in it, but TCP
        cuts its window once per round trip of losses (RFC 5681, RFC 6675): such an
        epoch lasts one round trip."""
        start = max(self.tcp.beta * window, 1.0)
        rounds, end = epoch_round_trips(start, segments, self.bdp_segments,
                                        self.cap_segments, self.increase)
        if rounds < 1:
            segments, rounds = min(start, self.bdp_segments), 1.0
            end = min(start + self.increase, self.cap_segments)
        waited_s = self.tcp.timeout_chance(end, self.loss_rate) * self.timeout_s
        return segments, segments * self.tcp.segment_bits / (rounds * self.rtt_s + waited_s), end


def loss_epochs(tcp: TcpParams, loss_rate: float, rtt_s: float, rate_bps: float,
                cap_bits: float, window_at_loss_bits: float) -> LossEpochs:
    """The epochs after a connection's first loss, which found ``window_at_loss_bits``,
    one loss every 1/p segments (``network.loss_gaps: regular``). ``rate_bps`` is the
    path's bottleneck, ``cap_bits`` the largest window (what the path holds, or the
    receive window)."""
    path = _Path.of(tcp, loss_rate, rtt_s, rate_bps, cap_bits)
    per_loss = tcp.segments_before_loss(loss_rate)  # one loss every 1/p segments
    window = min(window_at_loss_bits / tcp.segment_bits, path.cap_segments)
    sent, ends, rates = 0.0, [], []
    for _ in range(_MAX_EPOCHS):
        segments, rate_bps, end = path.epoch(window, per_loss)
        sent += segments
        ends.append(sent)
        rates.append(rate_bps)
        if abs(end - window) <= _CONVERGED * end:
            break
        window = end
    return LossEpochs(tuple(ends), tuple(rates))


@dataclass(eq=False)
class DrawnLossEpochs:
    """The epochs after a connection's first loss when losses fall at random
    (``network.loss_gaps: random``): each epoch's length in segments is drawn from the
    geometric distribution of mean 1/p, the gaps of a Bernoulli loss process (each
    segment lost with chance p, as on a lossy radio link or under ns-3's
    ``RateErrorModel``). The sawtooth then never settles, so epochs are worked out as
    the transfer reaches them. ``draw()`` gives the next gap; a connection's draws are
    its own, keyed by the run's seed and its device."""

    path: _Path
    window: float  # segments, at the last loss
    draw: Callable[[], float]
    ends_segments: list[float] = field(default_factory=list)
    rates_bps: list[float] = field(default_factory=list)

    def at(self, segments: float) -> tuple[float, float]:
        """(the rate, where the epoch ends) ``segments`` after the first loss."""
        while not self.ends_segments or self.ends_segments[-1] <= segments:
            carried, rate_bps, self.window = self.path.epoch(self.window, self.draw())
            self.ends_segments.append((self.ends_segments[-1] if self.ends_segments
                                       else 0.0) + carried)
            self.rates_bps.append(rate_bps)
        index = bisect.bisect_right(self.ends_segments, segments)
        return self.rates_bps[index], self.ends_segments[index]


@dataclass(eq=False)
class LossPlan:
    """Random loss on the connection a flow uses: the link, the direction, the segments
    the connection had sent before the flow, and the path's bottleneck rate."""

    link: DeviceLink
    direction: str
    sent_before_segments: float
    path_rate_bps: float


def step_loss_cap(tcp: TcpParams, flow: Flow, slack_bits: float) -> None:
    """Give ``flow`` the cap of the loss epoch it is in, and the point where the next
    begins (``flow.loss_cap_at_bits``; none once the epochs have settled)."""
    plan, seg = flow.loss, tcp.segment_bits
    first_loss = plan.link.first_loss_segments(tcp, plan.direction)  # into the connection
    sent = plan.sent_before_segments + (
        flow.total_bits - flow.remaining_bits + slack_bits) / seg
    if sent < first_loss - 1e-9:
        next_at = first_loss
    else:
        rate_bps, end = _epochs_of(tcp, flow).at(sent - first_loss + 1e-9)
        flow.set_loss_cap(plan.link.loss_cap(plan.direction, rate_bps))
        next_at = first_loss + end
    flow.loss_cap_at_bits = flow.total_bits - (next_at - plan.sent_before_segments) * seg


def _epochs_of(tcp: TcpParams, flow: Flow) -> LossEpochs | DrawnLossEpochs:
    """The connection's loss epochs, worked out at its first loss from the window that
    loss found (the flow's, in the round trip it is in)."""
    plan = flow.loss
    link, direction = plan.link, plan.direction
    epochs = link.connection.loss_epochs.get(direction)
    if epochs is None:
        _, cap_bits = tcp.pipe_and_cap_bits(plan.path_rate_bps, link.round_trip_s,
                                            link.buffer_bytes)
        window = cap_bits if flow.window is None else min(flow.window.window_bits, cap_bits)
        draw = link.loss_gap_draw(tcp, direction)
        if draw is None:
            epochs = loss_epochs(tcp, link.loss_rate, link.round_trip_s, plan.path_rate_bps,
                                 cap_bits, window)
        else:
            path = _Path.of(tcp, link.loss_rate, link.round_trip_s, plan.path_rate_bps,
                            cap_bits)
            epochs = DrawnLossEpochs(path, min(window / tcp.segment_bits,
                                               path.cap_segments), draw)
        link.connection.loss_epochs[direction] = epochs
    return epochs

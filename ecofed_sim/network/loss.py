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
its mean, is faster than the mean over draws. The first loss finds the window slow start
had grown by the time it was detected (``Window.at_loss_bits``: the initial window plus
every segment delivered before it). An epoch starts from ``beta`` times the window the
last loss found and grows along Cubic's curve (``network.cubic``, RFC 9438; with fast
convergence) or the line of ``alpha`` = 3 (1 - beta) / (1 + beta) segments per round
trip, whichever is higher: the line is the additive increase that gives any ``beta``
Reno's rate (RFC 9438's Reno-friendly region; 1 for Reno's 0.5), and the curve leads on
long fat paths (``TcpParams.cubic_growth``; off, the line alone, as Reno). A round trip
carries the window, but no more
than the path's bandwidth-delay product (beyond it the bottleneck is the limit and the
rest queues); the window never passes what the path holds. The segments sent after a
lost one before it was detected, a window of them, carry any further losses into its
episode, and TCP cuts the window once for them (RFC 5681, RFC 6675): an epoch runs to
the first loss beyond that window, so it lasts at least a round trip, and the lost
segments are sent again within it (``next_episode``). The loss that ends an epoch
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
losses, before Cubic's curve). With the line alone, the model was slow at 0.1% on long
fat paths, where an early loss leaves a small window that the line takes hundreds of
round trips to grow back (1.26x to 1.49x ns-3's Cubic mean).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from ecofed_sim.network.cubic import CubicGrowth, fast_convergence_max, queued_line
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
    the bandwidth-delay product (a window beyond it queues, and its round trips last
    longer: ``queued_line``), the window never beyond ``cap_segments``."""
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
    return rounds, min(queued_line(window, increase, bdp_segments, rounds), cap_segments)


class Epoch(NamedTuple):
    """The transfer's progress in one epoch, in segments (what it sent less what it
    resent); the rate of that progress, in wire bits per second; the window at its end;
    and Cubic's ``W_max`` for it (fast convergence reads it at the next loss)."""

    segments: float
    rate_bps: float
    end_window: float
    w_max: float


@dataclass(frozen=True)
class LossEpochs:
    """A connection's epochs from its first loss on: where each ends, in segments of the
    transfer since that loss, and the rate of its progress in wire bits per second. The
    last is the steady state and never ends."""

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

    def epoch(self, window: float, sent: float, last_max: float | None = None,
              resent: int = 0) -> Epoch:
        """The epoch after a loss that found ``window`` segments, the loss before it
        having set Cubic's ``last_max`` (``network.cubic``): ``sent`` segments on the
        wire up to the next loss that cuts the window (``next_episode``: at least
        ``window``, as TCP cuts its window once per round trip of losses, RFC 6675), of
        which ``resent`` are retransmissions of lost ones; the rest is the transfer's
        progress."""
        start = max(self.tcp.beta * window, 1.0)
        if self.tcp.cubic_growth:
            w_max = fast_convergence_max(window, last_max, self.tcp.beta)
            growth = CubicGrowth.after_loss(min(start, self.cap_segments), w_max, self.rtt_s,
                                            self.increase, self.cap_segments,
                                            self.bdp_segments)
            rounds = growth.round_trips(sent)
            end = growth.window(rounds)
        else:
            w_max = window
            rounds, end = epoch_round_trips(start, sent, self.bdp_segments,
                                            self.cap_segments, self.increase)
        waited_s = self.tcp.timeout_chance(end, self.loss_rate) * self.timeout_s
        delivered = max(sent - resent, 0.0)
        return Epoch(delivered,
                     delivered * self.tcp.segment_bits / (rounds * self.rtt_s + waited_s),
                     end, w_max)


def next_episode(window: float, draw: Callable[[], float]) -> tuple[float, int]:
    """(segments sent from a loss that found ``window`` segments to the next loss that
    cuts the window again, the losses among them, that one's included). ``draw`` gives
    the gaps between losses, in segments sent (retransmissions too: each segment on the
    wire is lost with chance p). The ``window`` segments after a lost one were sent
    before the loss was detected, a round trip later: losses among them are recovered
    in the same episode (RFC 6675's recovery point) and cut nothing."""
    segments, losses = draw(), 1
    while segments < window:
        segments, losses = segments + draw(), losses + 1
    return segments, losses


def loss_epochs(tcp: TcpParams, loss_rate: float, rtt_s: float, rate_bps: float,
                cap_bits: float, window_at_loss_bits: float) -> LossEpochs:
    """The epochs after a connection's first loss, which found ``window_at_loss_bits``,
    one loss every 1/p segments (``network.loss_gaps: regular``). ``rate_bps`` is the
    path's bottleneck, ``cap_bits`` the largest window (what the path holds, or the
    receive window)."""
    path = _Path.of(tcp, loss_rate, rtt_s, rate_bps, cap_bits)
    per_loss = tcp.segments_before_loss(loss_rate)  # one loss every 1/p segments
    window = min(window_at_loss_bits / tcp.segment_bits, path.cap_segments)
    progress, ends, rates, last_max = 0.0, [], [], None
    for _ in range(_MAX_EPOCHS):
        episode_sent, losses = next_episode(window, lambda: per_loss)
        epoch = path.epoch(window, episode_sent, last_max, resent=losses)
        progress += epoch.segments
        ends.append(progress)
        rates.append(epoch.rate_bps)
        if abs(epoch.end_window - window) <= _CONVERGED * epoch.end_window:
            break
        window, last_max = epoch.end_window, epoch.w_max
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
    last_max: float | None = None  # Cubic's W_max at the last loss
    ends_segments: list[float] = field(default_factory=list)
    rates_bps: list[float] = field(default_factory=list)

    def at(self, segments: float) -> tuple[float, float]:
        """(the rate, where the epoch ends) ``segments`` after the first loss."""
        while not self.ends_segments or self.ends_segments[-1] <= segments:
            sent, losses = next_episode(self.window, self.draw)
            epoch = self.path.epoch(self.window, sent, self.last_max, resent=losses)
            self.window, self.last_max = epoch.end_window, epoch.w_max
            self.ends_segments.append((self.ends_segments[-1] if self.ends_segments
                                       else 0.0) + epoch.segments)
            self.rates_bps.append(epoch.rate_bps)
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
    loss found (``Window.at_loss_bits``)."""
    plan = flow.loss
    link, direction = plan.link, plan.direction
    epochs = link.connection.loss_epochs.get(direction)
    if epochs is None:
        _, cap_bits = tcp.pipe_and_cap_bits(plan.path_rate_bps, link.round_trip_s,
                                            link.buffer_bytes)
        window = cap_bits if flow.window is None else min(flow.window.at_loss_bits(),
                                                            cap_bits)
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

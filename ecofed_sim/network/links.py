"""A device's access link and one direction of a link: rates, latency, jitter, traces,
buffer, and the TCP connection the device keeps to the server."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ecofed_sim.network.tcp import BITS_PER_BYTE, Connection, TcpParams

MBPS = 1e6  # bits per second in one Mbit/s
_SERIALS = itertools.count()  # a capacity's serial: unlike id(), never reused in a process


@dataclass(eq=False)
class Capacity:
    """One direction of one link, in bits per second.

    An optional token bucket (``burst_bits``, as a ``tc tbf`` shaper has) refills at the
    rate while the direction is idle; a message starting on an idle direction sends up to
    the accumulated tokens at once. While busy the bucket stays empty.

    Under TCP, the bursts that leave senders at once (``network.burst``) queue in the
    buffer of the slowest direction on their path; bursts from several connections share
    it, in the order they leave."""

    name: str
    rate_bps: float
    burst_bits: float = 0.0
    active: int = 0
    idle_since_s: float = 0.0
    tokens_bits: float = 0.0  # left in the bucket at ``idle_since_s``
    burst_queue_bits: float = 0.0  # what bursts left queued here, at ``burst_queue_at_s``
    burst_queue_at_s: float = 0.0
    instant_bits: float = 0.0  # of that, queued in the instant ``burst_queue_at_s``
    # names the capacity in memo keys (``Network._rates``), which outlive the objects
    serial: int = field(default_factory=lambda: next(_SERIALS), repr=False)

    def __setstate__(self, state: dict) -> None:
        """A capacity unpickled (or deep-copied) takes a serial of this process's: one
        from another process could name a capacity made here."""
        self.__dict__.update(state)
        self.serial = next(_SERIALS)

    def burst_backlog_bits(self, now_s: float) -> float:
        """Bits of earlier bursts still queued here at ``now_s``, draining at the rate."""
        drained = max(now_s - self.burst_queue_at_s, 0.0) * self.rate_bps
        return max(self.burst_queue_bits - drained, 0.0)

    def queue_burst(self, now_s: float, bits: float) -> None:
        """A burst joins the queue (what the buffer took of it)."""
        if now_s > self.burst_queue_at_s:
            self.instant_bits = bits
        elif now_s == self.burst_queue_at_s:
            self.instant_bits += bits
        # (a burst sent before the latest instant, over a longer delay, is not of it)
        self.burst_queue_bits = self.burst_backlog_bits(now_s) + bits
        self.burst_queue_at_s = max(now_s, self.burst_queue_at_s)

    def standing_bits(self, now_s: float) -> float:
        """Bits still queued at ``now_s`` by bursts that left before that instant: the
        backlog less what bursts of the same instant added (``burst.recovery_end_s``)."""
        backlog = self.burst_backlog_bits(now_s)
        if now_s == self.burst_queue_at_s:
            return max(backlog - self.instant_bits, 0.0)
        return backlog

    def tokens_at(self, now_s: float) -> float:
        """Bits the bucket holds at ``now_s`` if the direction stays idle until then."""
        return min(self.burst_bits,
                   self.tokens_bits + (now_s - self.idle_since_s) * self.rate_bps)

    def take_tokens(self, now_s: float, wanted_bits: float) -> float:
        """Bits a new flow sends at once: what the bucket holds after refilling while idle
        (nothing while another flow keeps the direction busy and the bucket empty)."""
        if self.burst_bits <= 0 or self.active > 0:
            return 0.0
        tokens = self.tokens_at(now_s)
        taken = min(tokens, wanted_bits)
        self.tokens_bits, self.idle_since_s = tokens - taken, now_s
        return taken


@dataclass(eq=False)
class DeviceLink:
    """A device's access link: separate up and down capacities and a one-way latency, plus
    optional uniform jitter (drawn from a generator seeded per device) and rate traces."""

    up: Capacity
    down: Capacity
    latency_s: float
    jitter_s: float = 0.0
    rng: np.random.Generator | None = None
    traces: dict = field(default_factory=dict)  # "up"/"down" -> (Trace, loop, offset_s)
    rtt_s: float | None = None  # round-trip time (default: twice the one-way latency)
    connection: Connection = field(default_factory=Connection)  # TCP state
    loss_rate: float = 0.0  # chance a segment is lost (TCP transport: caps a flow's rate)
    buffer_bytes: float | None = None  # bottleneck drop-tail buffer (None: one BDP, >= 64 pkts)
    server: tuple[Capacity, Capacity] | None = None  # (in, out) of its edge; None: the cloud
    _loss_caps: dict = field(default_factory=dict)  # direction -> its latest loss cap
    cohort_key: int | None = None  # its state's key while idle (``ecofed_sim.cohorts``)
    cohort_state: Any = None  # the ``cohorts.LinkState`` it follows, until it next plays
    # per direction, the generator of the gaps between random losses (keyed by the run's
    # seed and the device; None: every gap is 1/p segments)
    loss_rngs: dict[str, np.random.Generator] | None = None

    def side(self, direction: str) -> Capacity:
        return self.up if direction == "up" else self.down

    def loss_cap(self, direction: str, rate_bps: float) -> Capacity:
        """A random-loss rate cap on one direction (``network.loss``), as one more
        constraint its flows cross: the direction's last one while its rate holds, else
        a new one. Drawn losses give every epoch its own rate, so only the latest is
        kept; memoised rates name capacities by serial, which no new one reuses."""
        cap = self._loss_caps.get(direction)
        if cap is None or cap.rate_bps != rate_bps:
            cap = self._loss_caps[direction] = Capacity(f"{self.side(direction).name}/loss",
                                                        rate_bps)
        return cap

    def draws_losses(self, tcp: TcpParams) -> bool:
        """Whether this link's random losses fall where its own generators put them
        (``network.loss_gaps: random``), rather than every 1/p segments."""
        return bool(self.loss_rngs) and tcp.random_loss

    def loss_gap_draw(self, tcp: TcpParams, direction: str):
        """What draws the next gap between random losses on one direction, in segments
        (``network.loss_gaps: random``): geometric, of mean 1/p, a Bernoulli loss
        process's; None when every gap is 1/p (``regular``)."""
        rng = self.loss_rngs.get(direction) if self.draws_losses(tcp) else None
        if rng is None:
            return None
        return lambda: float(rng.geometric(self.loss_rate))

    def first_loss_segments(self, tcp: TcpParams, direction: str) -> float:
        """Segments into the connection where its first random loss falls: 1/p, or
        drawn once (``loss_gap_draw``) and kept."""
        got = self.connection.first_loss_segments.get(direction)
        if got is None:
            draw = self.loss_gap_draw(tcp, direction)
            got = tcp.segments_before_loss(self.loss_rate) if draw is None else draw()
            self.connection.first_loss_segments[direction] = got
        return got

    @property
    def round_trip_s(self) -> float:
        return 2 * self.latency_s if self.rtt_s is None else self.rtt_s

    def set_burst(self, burst_bytes: float) -> None:
        self.up.burst_bits = self.down.burst_bits = burst_bytes * BITS_PER_BYTE

    def delay_s(self) -> float:
        if self.jitter_s > 0 and self.rng is not None:
            return self.latency_s + float(self.rng.uniform(0.0, self.jitter_s))
        return self.latency_s

    @classmethod
    def from_mbps(cls, name: str, uplink_mbps: float, downlink_mbps: float,
                  latency_ms: float) -> DeviceLink:
        return cls(Capacity(f"{name}/up", uplink_mbps * MBPS),
                   Capacity(f"{name}/down", downlink_mbps * MBPS), latency_ms / 1e3)


def wire_bytes(payload_bytes: float, framing_bytes: int, framing_fraction: float) -> float:
    """Bytes on the wire for a message: payload plus framing (nothing for no payload)."""
    if payload_bytes <= 0:
        return 0.0
    return payload_bytes * (1.0 + framing_fraction) + framing_bytes

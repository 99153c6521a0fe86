"""The network sections of a scenario: a device class's link, the server's link, and the
transport (the flow model, or TCP's window on top of it). Every field here is timing-only:
it can change simulated time, never what is learned."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from ecofed_sim.strict import RateMbps, StrictModel

TIMING = {"timing_only": True}  # can change simulated time, never what is learned


class LinkSpec(StrictModel):
    """A device class's access link: fixed rates, or bandwidth traces (time_s, Mbit/s)."""

    uplink_mbps: RateMbps | None = Field(None, json_schema_extra=TIMING)
    """fixed uplink rate, Mbit/s (>= 0.001)"""
    downlink_mbps: RateMbps | None = Field(None, json_schema_extra=TIMING)
    """fixed downlink rate, Mbit/s (>= 0.001)"""
    latency_ms: float = Field(0.0, ge=0, json_schema_extra=TIMING)
    """one-way latency, ms (default: half of rtt_ms)"""
    rtt_ms: float | None = Field(None, ge=0, json_schema_extra=TIMING)
    """round-trip time, ms, for TCP's handshake and windows (default: twice latency_ms)"""
    latency_jitter_ms: float = Field(0.0, ge=0, json_schema_extra=TIMING,
                                     description="extra latency, uniform in [0, jitter]")
    loss_rate: float = Field(0.0, ge=0, le=0.5, json_schema_extra=TIMING)
    """chance that a segment is lost at random (tcp transport): from a connection's first
    loss on (where network.loss_gaps puts it) its rate is capped, loss by loss, as its
    window comes down along Mathis et al.'s sawtooth (with regular gaps, to Padhye et
    al.'s TCP throughput with network.sack false)"""
    buffer_bytes: float | None = Field(None, gt=0, le=2**34, json_schema_extra=TIMING)
    """tcp: drop-tail buffer at the path's bottleneck, bytes; caps the window at
    bandwidth-delay product + buffer (default: one bandwidth-delay product, at least 64
    full-size packets)"""
    burst_bytes: float = Field(0.0, ge=0, json_schema_extra=TIMING,
                               description="token bucket of a shaper: sent at once after "
                               "an idle period")
    uplink_trace: str | None = Field(None, json_schema_extra=TIMING,
                                     description="CSV of time_s, Mbit/s (relative to the "
                                     "scenario file); replaces uplink_mbps")
    downlink_trace: str | None = Field(None, json_schema_extra=TIMING)
    """CSV of time_s, Mbit/s (relative to the scenario file); replaces downlink_mbps"""
    trace_loop: bool = Field(True, json_schema_extra=TIMING)
    """restart a trace at its end (else its last rate holds)"""
    trace_offset_s: float = Field(0.0, ge=0, json_schema_extra=TIMING)
    """where in the trace the class's first device starts, s"""
    trace_offset_step_s: float = Field(0.0, ge=0, json_schema_extra=TIMING,
                                       description="added to the offset per device")

    @model_validator(mode="after")
    def _rate_or_trace(self) -> LinkSpec:
        for d in ("uplink", "downlink"):
            if (getattr(self, f"{d}_mbps") is None) == (getattr(self, f"{d}_trace") is None):
                raise ValueError(f"give exactly one of {d}_mbps or {d}_trace")
        return self


class NetworkSpec(StrictModel):
    """The transport (flow model, or TCP's window on top of it) and protocol overhead on
    the wire. TCP defaults are Linux's (see ``ecofed_sim.network.tcp``)."""

    transport: Literal["flow", "tcp"] = Field("tcp", json_schema_extra=TIMING)
    """flow: latency plus wire bytes at the max-min fair rate; tcp: also a handshake per
    new connection, slow start from the initial window, restart after idle"""
    connections: Literal["persistent", "per_message"] = Field(
        "persistent", json_schema_extra=TIMING)
    """tcp: one connection per device for the whole run, or a new one (and handshake) per
    message"""
    mss_bytes: int = Field(1448, ge=100, le=65_495, json_schema_extra=TIMING)
    """tcp: payload bytes per segment (MTU 1500 - IPv4 20 - TCP 20 - timestamps 12)"""
    header_bytes: int = Field(66, ge=0, le=1_000, json_schema_extra=TIMING)
    """tcp: header bytes per segment on the wire (Ethernet 14 + IPv4 20 + TCP 32)"""
    initial_window_segments: int = Field(10, ge=1, le=1_000, json_schema_extra=TIMING)
    """tcp: initial congestion window (RFC 6928; Linux TCP_INIT_CWND)"""
    receive_window_bytes: int = Field(3 * 2**20, ge=1_000, le=2**30,
                                      json_schema_extra=TIMING)
    """tcp: largest window, bytes (half of Linux's tcp_rmem max of 6 MiB)"""
    slow_start_after_idle: bool = Field(True, json_schema_extra=TIMING)
    """tcp: halve the window per RTO of idleness (net.ipv4.tcp_slow_start_after_idle)"""
    min_rto_ms: float = Field(200.0, ge=0, le=60_000, json_schema_extra=TIMING)
    """tcp: the RTO of a steady path is RTT plus this (Linux TCP_RTO_MIN)"""
    hystart: bool = Field(True, json_schema_extra=TIMING)
    """tcp: Cubic's HyStart ends the first slow start early (Linux tcp_cubic hystart=1)"""
    burst_loss: bool = Field(True, json_schema_extra=TIMING)
    """tcp: a window sent at once into a bottleneck loses what its buffer cannot hold,
    and is recovered as Linux does (RACK, tail loss probe, proportional rate reduction);
    bursts queued at one bottleneck go through first in, first out"""
    cubic_beta: float = Field(0.7, gt=0, lt=1, json_schema_extra=TIMING)
    """tcp: the share of the window kept after a loss (Cubic, RFC 9438; Linux 717/1024)"""
    timer_tick_ms: float = Field(4.0, ge=0, le=100, json_schema_extra=TIMING)
    """tcp: the kernel's timer tick, in which the RTO, RACK's timer and the idle time
    before a restart are counted (4 ms at CONFIG_HZ=250, Debian's and Ubuntu's kernels;
    0: exact)"""
    sack: bool = Field(True, json_schema_extra=TIMING)
    """tcp: selective acknowledgements (net.ipv4.tcp_sack=1, RFC 2018): under random loss
    (``link.loss_rate``) a loss ends in a retransmission timeout only if its
    retransmission is lost too (chance p); false: Padhye et al.'s chance min(1, 3/w) for
    Reno without them"""
    loss_gaps: Literal["random", "regular"] = Field("random", json_schema_extra=TIMING)
    """tcp: where a link's random losses (``loss_rate``) fall. random: each segment is
    lost with chance p, so the gaps between losses are geometric of mean 1/p, drawn per
    device and direction from the run's seed (a Bernoulli loss process, as ns-3's
    RateErrorModel); regular: one loss every 1/p segments (Mathis et al.'s deterministic
    sawtooth). A transfer's time is convex in where its first loss falls, so the mean of
    random runs is slower than the regular run's"""
    cubic_growth: bool = Field(True, json_schema_extra=TIMING)
    """tcp: after a random loss the window grows back along Cubic's curve (RFC 9438),
    or the Reno-friendly line where that is faster; false: the line alone (with
    cubic_beta 0.5, Reno's one segment per round trip)"""

    send_buffer_segments: int = Field(60, ge=0, le=10**6, json_schema_extra=TIMING)
    """tcp: full segments a message starting from idle may send before its first
    acknowledgement until the connection's send buffer has grown: Linux sizes it as the
    connection opens (2 x max(cwnd, 10) x 4,608 bytes of memory, tcp_sndbuf_expand;
    about 60 segments queued) and grows it only once it held data back, so a message of
    61-70 segments leaves a window the buffer cannot fill at once (0: no such limit,
    as with a large SO_SNDBUF)"""

    line_rate_mbps: float | None = Field(None, gt=0, le=10**7, json_schema_extra=TIMING)
    """tcp: the line rate at which a window sent at once reaches the bottleneck's buffer
    (the hop before it), Mbit/s; the bottleneck drains while it comes, so a slower hop
    lets more of the burst in (from a 100 Mbit/s LAN into a 20 Mbit/s bottleneck, a
    fifth of it). Unset: the burst arrives at once. On the delay line (about 10,000)
    the drain let 6 more of a 612-segment burst into a 330-packet buffer at 100 Mbit/s,
    but at a shared bottleneck the model's bursts then lose too little: it has no
    standing queue to take that room"""

    def tcp_params(self):
        """The TCP model's parameters, or None under the flow transport."""
        from ecofed_sim.network import TcpParams

        if self.transport != "tcp":
            return None
        return TcpParams(self.mss_bytes, self.header_bytes, self.initial_window_segments,
                         self.receive_window_bytes, self.slow_start_after_idle,
                         self.min_rto_ms, self.connections == "per_message", self.hystart,
                         self.burst_loss, self.cubic_beta, self.timer_tick_ms, self.sack,
                         self.loss_gaps == "random", self.cubic_growth,
                         self.send_buffer_segments,
                         math.inf if self.line_rate_mbps is None else self.line_rate_mbps)

    message_overhead_bytes: int = Field(0, ge=0, le=10**9, json_schema_extra=TIMING)
    """bytes each message carries besides its payload, counted as traffic (kind
    ``overhead``) and sent on the wire: e.g. the envelope of a pickled message, about 930
    bytes in the EcoFed code (which reproduces its 132.9x and 16.1x)"""
    framing_bytes: int = Field(0, ge=0, le=10**9, json_schema_extra=TIMING)
    """bytes added per message on the wire"""
    framing_fraction: float = Field(0.0, ge=0, le=100, json_schema_extra=TIMING)
    """bytes added per payload byte (e.g. 0.0456 for TCP/IP over Ethernet at MTU 1500)"""


class ServerLinkSpec(StrictModel):
    """The server's access link, shared max-min fairly by concurrent transfers."""

    ingress_mbps: RateMbps = Field(1000.0, json_schema_extra=TIMING)
    """server ingress, Mbit/s, shared by concurrent uploads"""
    egress_mbps: RateMbps = Field(1000.0, json_schema_extra=TIMING)
    """server egress, Mbit/s, shared by concurrent downloads"""

"""TCP's window on top of the flow model: handshake, slow start, restart after idle.

A flow-level model (rates shared max-min fairly) is right once a connection's congestion
window fills the path. It is wrong while the window is small: on a new connection, and,
with Linux's default ``net.ipv4.tcp_slow_start_after_idle = 1``, after an idle period
longer than one retransmission timeout, which split learning hits every batch. This module
adds the window:

- a new connection costs its handshake, one round trip (SYN, SYN-ACK; data goes with the
  ACK), and starts from the initial window (10 segments, RFC 6928; Linux since 2.6.39);
- in slow start a flow may send one window per round trip and the window doubles each
  round (every segment acknowledged, as Linux's quick-ACK mode does early in a
  connection); a round in which the flow could not use its whole window (its fair rate was
  the limit) ends slow start, and the flow is rate-limited from then on, as today. The
  connection keeps the window grown by every segment sent (``cwnd += acked``);
- the window never exceeds the receive window (``receive_window_bytes``);
- after an idle period longer than the RTO, the window is halved once per RTO elapsed,
  down to the initial window (Linux ``tcp_cwnd_restart``). The RTO of a steady path is
  RTT + 200 ms (Linux: ``srtt + max(rttvar, TCP_RTO_MIN)``, ``TCP_RTO_MIN`` = 200 ms);
- the bottleneck has a drop-tail buffer (``link.buffer_bytes``; default one bandwidth-delay
  product, the rule of thumb of Villamizar and Song, "High performance TCP in ANSNET",
  CCR 1994, and at least 64 full-size packets). A loss-based congestion control (Cubic,
  Reno) cannot keep a window larger than the path holds, the bandwidth-delay product plus
  the buffer: the window is capped there. A window leaves the sender as one burst (Cubic
  is not paced), so its last segment waits behind the whole burst in the buffer: the
  connection's smoothed RTT is taken as RTT + burst / (2 rate) (the mean over the
  burst's segments), which sets the RTO for restart after idle, and its last send is
  when the burst's last segment entered the buffer;
- each segment of ``mss_bytes`` payload carries ``header_bytes`` of headers on the wire
  (Ethernet 14 + IPv4 20 + TCP 20 + timestamps 12 = 66 for MSS 1448 at MTU 1500);
- random loss on a link (``loss_rate``, the chance that a segment is lost) follows the
  standard short-transfer model of Cardwell, Savage and Anderson, "Modeling TCP latency"
  (INFOCOM 2000): a connection slow-starts unhindered until its first loss, expected after
  1/p segments; from then on its rate is capped at the steady-state throughput of Padhye,
  Firoiu, Towsley and Kurose, "Modeling TCP throughput: a simple model and its empirical
  validation" (SIGCOMM 1998), which adds retransmission timeouts to Mathis et al.'s
  square-root law:
  ``1 / (RTT sqrt(2bp/3) + RTO min(1, 3 sqrt(3bp/8)) p (1 + 32 p^2))`` segments per
  second, with ``b`` = 1 segment per ACK (Linux counts acknowledged segments).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

BITS_PER_BYTE = 8


@dataclass(frozen=True)
class TcpParams:
    """Linux defaults; each one is a ``network`` field of the scenario."""

    mss_bytes: int = 1448  # MTU 1500 - IPv4 20 - TCP 20 - timestamps 12
    header_bytes: int = 66  # Ethernet 14 + IPv4 20 + TCP 20 + timestamps 12
    initial_window_segments: int = 10  # RFC 6928, Linux TCP_INIT_CWND
    receive_window_bytes: int = 3 * 2**20  # half of tcp_rmem max 6 MiB (tcp_adv_win_scale 1)
    slow_start_after_idle: bool = True  # net.ipv4.tcp_slow_start_after_idle
    min_rto_ms: float = 200.0  # TCP_RTO_MIN
    per_message_connections: bool = False  # a new connection (and handshake) per message

    @property
    def segment_bits(self) -> int:
        return (self.mss_bytes + self.header_bytes) * BITS_PER_BYTE

    @property
    def initial_window_bits(self) -> int:
        return self.initial_window_segments * self.segment_bits

    def wire_bytes(self, payload_bytes: float) -> float:
        """Payload plus the headers of every segment it takes."""
        if payload_bytes <= 0:
            return 0.0
        return payload_bytes + math.ceil(payload_bytes / self.mss_bytes) * self.header_bytes

    @property
    def min_buffer_bits(self) -> int:
        return 64 * self.segment_bits

    def buffer_bits(self, rate_bps: float, rtt_s: float, buffer_bytes: float | None) -> float:
        """The bottleneck's drop-tail buffer: as given, else one bandwidth-delay product,
        at least 64 full-size packets."""
        if buffer_bytes is not None:
            return buffer_bytes * BITS_PER_BYTE
        return max(rate_bps * rtt_s, self.min_buffer_bits)

    def rto_s(self, rtt_s: float) -> float:
        return rtt_s + self.min_rto_ms / 1e3

    def loss_rate_cap_bps(self, rtt_s: float, loss_rate: float) -> float:
        """Padhye et al.'s steady-state rate under random loss, in wire bits per second
        (``b`` = 1, the timeout the RTO of a steady path). No cap without loss or RTT."""
        p = loss_rate
        if p <= 0 or rtt_s <= 0:
            return math.inf
        seconds_per_segment = (rtt_s * math.sqrt(2 * p / 3) + self.rto_s(rtt_s)
                               * min(1.0, 3 * math.sqrt(3 * p / 8)) * p * (1 + 32 * p**2))
        return self.segment_bits / seconds_per_segment

    @staticmethod
    def segments_before_loss(loss_rate: float) -> float:
        """Segments a connection sends before its first loss, on average (1/p; Cardwell
        et al.'s expected slow-start length for a long transfer)."""
        return math.inf if loss_rate <= 0 else 1 / loss_rate

    def restart_window_bits(self, window_bits: float, idle_s: float, rtt_s: float) -> float:
        """Linux ``tcp_cwnd_restart``: halve once per RTO of idleness beyond the first,
        never below the initial window (or the window itself, if smaller)."""
        rto = self.rto_s(rtt_s)
        if not self.slow_start_after_idle or idle_s <= rto:
            return window_bits
        floor = min(self.initial_window_bits, window_bits)
        delta = idle_s
        while (delta := delta - rto) > 0 and window_bits > floor:
            window_bits /= 2
        return max(window_bits, floor)


@dataclass
class Connection:
    """One device's TCP connection to the server: open or not, and per direction its
    congestion window, when it last sent, and how much (random loss starts biting after
    the first 1/p segments)."""

    open: bool = False
    window_bits: dict[str, float] = field(default_factory=dict)
    last_send_end_s: dict[str, float] = field(default_factory=dict)
    segments_sent: dict[str, float] = field(default_factory=dict)  # since it opened
    sending: dict[str, object] = field(default_factory=dict)  # the latest flow in flight
    srtt_s: dict[str, float] = field(default_factory=dict)  # with the queue its bursts made


@dataclass(eq=False)
class Window:
    """A flow in slow start: what it may still send in this round trip, and when the
    round trip ends (then the window doubles, up to ``cap_bits``)."""

    rtt_s: float
    window_bits: float
    cap_bits: float
    left_bits: float
    round_end_s: float
    open: bool = False  # slow start over: the path's rate, not the window, is the limit
    start_bits: float = 0.0  # the window the message started with

    def continuation(self) -> Window:
        """The window of a message queued behind one still in flight on the same
        connection: not idle, so no restart; it goes on where that one stands."""
        return Window(self.rtt_s, self.window_bits, self.cap_bits, self.window_bits,
                      self.round_end_s, self.open, self.window_bits)

    def after(self, sent_bits: float) -> float:
        """The window once every segment sent is acknowledged: slow start adds one segment
        per segment acknowledged (``cwnd += acked``), up to the receive window."""
        return min(self.start_bits + sent_bits, self.cap_bits)

    @property
    def blocked(self) -> bool:
        return not self.open and self.left_bits <= 0

    def next_round(self) -> None:
        self.window_bits = min(2 * self.window_bits, self.cap_bits)
        self.left_bits = self.window_bits
        self.round_end_s += self.rtt_s

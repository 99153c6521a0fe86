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


def slow_start_s(wire_bits: float, rate_bps: float, rtt_s: float, window_bits: float,
                 cap_bits: float) -> tuple[float, float]:
    """(seconds from the first bit's arrival to the last's, window of the last round) for
    one message alone on a path of constant ``rate_bps``: the flow model's slow start in
    closed form. Each round sends the window; a round whose window takes the rate longer
    than the round trip to send is open, and the rest goes at the rate."""
    t_s, left, window = 0.0, wire_bits, window_bits
    while left > window and window < rate_bps * rtt_s:
        t_s, left, window = t_s + rtt_s, left - window, min(2 * window, cap_bits)
    return t_s + left / rate_bps, window


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

    def start(self, tcp: TcpParams, direction: str, now_s: float, rtt_s: float,
              rate_bps: float, buffer_bytes: float | None) -> tuple[float, float]:
        """(window, cap) a message starts with: the connection's window after any
        restart for idleness, capped by the receive window and by what the path holds
        (bandwidth-delay product plus the bottleneck's buffer)."""
        window = self.window_bits.setdefault(direction, tcp.initial_window_bits)
        idle_s = now_s - self.last_send_end_s.get(direction, now_s)
        window = tcp.restart_window_bits(window, idle_s, self.srtt_s.get(direction, rtt_s))
        pipe_bits = rate_bps * rtt_s + tcp.buffer_bits(rate_bps, rtt_s, buffer_bytes)
        cap = min(tcp.receive_window_bytes * BITS_PER_BYTE, pipe_bits)
        return min(window, cap), cap

    def finish(self, tcp: TcpParams, direction: str, arrived_s: float, latency_s: float,
               rtt_s: float, rate_bps: float, buffer_bytes: float | None, window: Window,
               sent_bits: float, total_bits: float) -> None:
        """Book a message's end: the window it grew (``cwnd += acked``), the segments
        sent, and, as its last window left as one burst that queued at the bottleneck,
        the smoothed RTT (the burst's mean wait added) and the time of its last send (a
        whole burst before it left the buffer, one one-way delay before it arrived)."""
        seg = tcp.segment_bits  # acknowledged segments, a partial last one counting 1
        sent = math.ceil(sent_bits / seg - 1e-9)
        self.window_bits[direction] = window.after(sent * seg)
        self.segments_sent[direction] = self.segments_sent.get(direction, 0.0) + sent
        burst_bits = min(window.window_bits, total_bits,
                         tcp.buffer_bits(rate_bps, rtt_s, buffer_bytes))
        self.srtt_s[direction] = rtt_s + burst_bits / (2 * rate_bps)
        self.last_send_end_s[direction] = arrived_s - latency_s - burst_bits / rate_bps


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

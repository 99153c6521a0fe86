"""TCP's window on top of the flow model: handshake, slow start, restart after idle, loss.

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
  connection keeps the window grown by every segment sent (``cwnd += acked``) below its
  slow-start threshold;
- the window never exceeds the receive window (``receive_window_bytes``);
- after an idle period longer than the RTO, the window is halved once per RTO elapsed,
  down to the initial window (Linux ``tcp_cwnd_restart``), and the slow-start threshold
  keeps at least three quarters of the old window. The RTO of a steady path is
  RTT + 200 ms (Linux: ``srtt + max(rttvar, TCP_RTO_MIN)``, ``TCP_RTO_MIN`` = 200 ms), in
  whole timer ticks (``timer_tick_ms``, a jiffy);
- the bottleneck has a drop-tail buffer (``link.buffer_bytes``; default one bandwidth-delay
  product, the rule of thumb of Villamizar and Song, "High performance TCP in ANSNET",
  CCR 1994, and at least 64 full-size packets). A loss-based congestion control (Cubic,
  Reno) cannot keep a window larger than the path holds, the bandwidth-delay product plus
  the buffer: the window is capped there. The queue a message's last segment finds at
  the bottleneck (``Window.queue_at_end_bits``: the whole message if it left in one
  burst, as Cubic is not paced; half its last round in slow start; what an open window
  holds beyond the bandwidth-delay product) sets its last send, when that segment
  entered the queue, and the connection's smoothed RTT (``TcpParams.smoothed_rtt_s``),
  which sets the RTO for restart after idle;
- slow start ends early with Cubic's HyStart (Ha and Rhee, "Taming the elephants: new
  TCP slow start", Computer Networks 2011; Linux ``tcp_cubic`` ``hystart=1``): once the
  window is at least 16 segments, a round whose ACK train (ACKs at most 2 ms apart) lasts
  longer than half the minimum RTT, or whose first RTTs show a queue left by the round
  before (``TcpParams.hystart_exit``), ends it with the window it reached. Both are
  judged at the rate the flow's segments were served at (``Window.served_rate_bps``):
  its share when other flows cross the same bottleneck. From then on
  (congestion avoidance, and after a loss) the window grows one segment per window
  acknowledged (RFC 5681);
- a window sent at once into an idle bottleneck loses what its buffer cannot hold
  (``ecofed_sim.network.burst``): the connection then recovers the lost segments as Linux
  does (RACK, RFC 8985; proportional rate reduction, RFC 6937), and its window and
  slow-start threshold become ``beta`` times the window (Cubic, RFC 9438);
- a message starting from idle sends at most what the send buffer holds before its
  first acknowledgement: Linux sizes a connection's buffer (``SO_SNDBUF``, autotuned
  while ``tcp_wmem`` is not overridden) as it opens at ``2 * max(cwnd, 10)`` times 4,608
  bytes of memory (``tcp_sndbuf_expand``; read as 101,376 bytes on the delay line), about
  60 full segments at the 1,700 bytes each one queued costs. It grows the buffer (to the
  same with the window of the moment) only once the buffer, not the window, held data
  back. A message of 61-70 segments leaves slow start with a window beyond the buffer
  without ever sending such a flight, so the next one that starts from idle sends 60
  segments and the rest a round trip later (``send_buffer_segments``);
- each segment of ``mss_bytes`` payload carries ``header_bytes`` of headers on the wire
  (Ethernet 14 + IPv4 20 + TCP 20 + timestamps 12 = 66 for MSS 1448 at MTU 1500);
- random loss on a link (``loss_rate``, the chance that a segment is lost): a
  connection slow-starts unhindered until its first loss (Cardwell, Savage and Anderson,
  "Modeling TCP latency", INFOCOM 2000), then its rate is capped epoch by epoch as its
  window comes down loss by loss and grows back between them (``network.loss``, where
  the sources are); the losses fall at random by default (``network.loss_gaps``). A
  loss times out only if its retransmission is lost too, with selective
  acknowledgements; without them, with Padhye et al.'s chance ``min(1, 3 / w)``
  (``TcpParams.timeout_chance``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ecofed_sim.network.loss import DrawnLossEpochs, LossEpochs
    from ecofed_sim.network.window import Window

BITS_PER_BYTE = 8
HYSTART_LOW_WINDOW = 16  # segments: HyStart acts from this window on (hystart_low_window)
HYSTART_ACK_DELTA_S = 0.002  # ACKs further apart break a train (hystart_ack_delta_us)
HYSTART_DELAY_MIN_S, HYSTART_DELAY_MAX_S = 0.004, 0.016  # clamp of the delay threshold
HYSTART_MIN_SAMPLES = 8  # acknowledgements whose RTTs the delay detector takes
SRTT_GAIN = 1 / 8  # weight of each new RTT sample in the smoothed RTT (RFC 6298 alpha)
SEGMENTS_PER_ACK = 2  # delayed ACKs: one per two full-sized segments (RFC 5681 4.2)
# tcp_sndbuf_expand: 2 * cwnd * 4,608 bytes of memory, about 1,700 bytes per segment queued
SEND_BUFFER_GROWTH = 2 * 4608 / 1700  # segments of send buffer per segment of window


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
    hystart: bool = True  # Cubic's HyStart ends slow start (tcp_cubic hystart=1)
    burst_loss: bool = True  # a window sent at once loses what the buffer cannot hold
    beta: float = 0.7  # window kept after a loss (Cubic: RFC 9438; Linux 717/1024)
    timer_tick_ms: float = 4.0  # one jiffy at CONFIG_HZ=250 (Debian's and Ubuntu's kernels)
    sack: bool = True  # selective acknowledgements (net.ipv4.tcp_sack=1, RFC 2018)
    random_loss: bool = True  # random loss falls at random (False: every 1/p segments)
    cubic_growth: bool = True  # after a random loss, Cubic's curve (False: Reno's line)
    send_buffer_segments: int = 60  # a first flight before the send buffer grows (0: any)
    line_rate_mbps: float = math.inf  # a burst reaches the bottleneck's buffer this fast

    @cached_property  # a frozen dataclass: computed once, on the hot path
    def segment_bits(self) -> int:
        return (self.mss_bytes + self.header_bytes) * BITS_PER_BYTE

    @cached_property
    def send_buffer_bits(self) -> float:
        """The most a connection's first flights may hold until its send buffer grows."""
        if self.send_buffer_segments <= 0:
            return math.inf
        return self.send_buffer_segments * self.segment_bits

    @cached_property
    def line_rate_bps(self) -> float:
        return self.line_rate_mbps * 1e6

    @cached_property
    def initial_window_bits(self) -> int:
        return self.initial_window_segments * self.segment_bits

    def wire_bytes(self, payload_bytes: float) -> float:
        """Payload plus the headers of every segment it takes."""
        if payload_bytes <= 0:
            return 0.0
        return payload_bytes + math.ceil(payload_bytes / self.mss_bytes) * self.header_bytes

    @cached_property
    def min_buffer_bits(self) -> int:
        return 64 * self.segment_bits

    def buffer_bits(self, rate_bps: float, rtt_s: float, buffer_bytes: float | None) -> float:
        """The bottleneck's drop-tail buffer: as given, else one bandwidth-delay product,
        at least 64 full-size packets."""
        if buffer_bytes is not None:
            return buffer_bytes * BITS_PER_BYTE
        return max(rate_bps * rtt_s, self.min_buffer_bits)

    def steady_window_bits(self, cap_bits: float, pipe_bits: float) -> float:
        """The window of a connection that has been sending for a while. Capped by the
        receive window below what the path holds, it sits at that cap. Otherwise Cubic's
        window climbs from ``beta`` times what the path holds back to it along
        ``W_max - (1 - beta) W_max (1 - t/K)^3`` (RFC 9438), then loses; its mean over
        that climb is ``W_max (1 - (1 - beta) / 4)``."""
        if cap_bits < pipe_bits:
            return cap_bits
        return pipe_bits * (1 - (1 - self.beta) / 4)

    def hystart_exit(self, round_segments: float, previous_segments: float,
                     rate_bps: float, rtt_s: float) -> float:
        """Acknowledgements of a slow-start round after which HyStart ends slow start
        (infinite: it does not in this round). Two detectors, as Linux's:

        - ACK train: acknowledgements at most 2 ms apart (one segment's time at the
          bottleneck) for longer than half the minimum RTT;
        - delay: the minimum RTT of a round's first 8 acknowledgements exceeds the path's
          by ``clamp(RTT / 8, 4 ms, 16 ms)``, which happens once the previous round's
          segments take that much longer than an RTT to drain (its queue is left over).
        """
        if not self.hystart:
            return math.inf
        seg_s = self.segment_bits / rate_bps
        train = rtt_s / 2 / seg_s if seg_s <= HYSTART_ACK_DELTA_S else math.inf
        threshold_s = min(max(rtt_s / 8, HYSTART_DELAY_MIN_S), HYSTART_DELAY_MAX_S)
        delay = HYSTART_MIN_SAMPLES if previous_segments * seg_s > rtt_s + threshold_s else (
            math.inf)
        exit_after = min(train, delay)
        return exit_after if round_segments > exit_after else math.inf

    def grow_bits(self, start_bits: float, sent_bits: float, ssthresh_bits: float,
                  cap_bits: float, rate_bps: float, rtt_s: float) -> tuple[float, float]:
        """(window, slow-start threshold) once a message's segments are acknowledged,
        round trip by round trip: below the threshold one segment per segment (until
        HyStart ends slow start), above it one per window (congestion avoidance).
        HyStart acts in a connection's first slow start only, while the threshold is
        unset: Linux re-arms it only after a retransmission timeout."""
        seg = self.segment_bits
        cwnd, ssthresh = start_bits / seg, ssthresh_bits / seg
        left, previous = math.ceil(sent_bits / seg - 1e-9), 0
        while left > 0:
            acked = min(left, max(1, math.floor(cwnd + 1e-9)))  # one round trip
            left -= acked
            if cwnd < ssthresh:
                grown = min(acked, ssthresh - cwnd)
                if cwnd >= HYSTART_LOW_WINDOW and math.isinf(ssthresh):
                    exit_after = self.hystart_exit(acked, previous, rate_bps, rtt_s)
                    if exit_after < grown:
                        grown, ssthresh = exit_after, cwnd + exit_after
                cwnd, previous, acked = cwnd + grown, acked, acked - grown
            cwnd += acked / cwnd
        return min(cwnd * seg, cap_bits), ssthresh * seg

    def pipe_and_cap_bits(self, rate_bps: float, rtt_s: float,
                          buffer_bytes: float | None) -> tuple[float, float]:
        """(what the path holds: bandwidth-delay product plus the bottleneck's buffer,
        the largest window: that, or the receive window if smaller)."""
        pipe_bits = rate_bps * rtt_s + self.buffer_bits(rate_bps, rtt_s, buffer_bytes)
        return pipe_bits, min(self.receive_window_bytes * BITS_PER_BYTE, pipe_bits)

    def smoothed_rtt_s(self, before_s: float, rtt_s: float, queue_bits: float,
                       rate_bps: float, segments: int, ramp: float) -> float:
        """The smoothed RTT after a message of ``segments`` whose last segment found
        ``queue_bits`` ahead of it at a bottleneck of ``rate_bps``. Linux's
        ``tcp_rtt_estimator`` moves it an eighth of the way to each acknowledgement's RTT
        sample, one per two segments: over a long message it forgets ``before_s`` and
        follows the last samples. Where the queue grew as the message went (``ramp``
        segments' waits per segment sent: one in a burst, half in a round of slow
        start), it lags the last sample by the mean age of its weights, 7 samples, 14
        segments sent: 100 KB in one burst at 100 Mbit/s (69 segments, the last waiting
        8.4 ms) leaves RTT + 6.7 ms; Linux reported RTT + 6.9-7.1 ms on the delay line
        (``benchmarks/delayline/exchange_info.py``). 100 KB from the initial window at
        5 Mbit/s and 100 ms (rounds of 10, 20 and 40 segments, the last round's last
        segment behind 20) leaves RTT + 31.2 ms; Linux reported RTT + 38.5-38.7 ms. An
        open window holds its queue steady (``ramp`` 0): the samples are RTT plus its
        wait."""
        samples = max(segments / SEGMENTS_PER_ACK, 1.0)
        kept = (1 - SRTT_GAIN) ** samples
        lag_bits = ramp * (1 - SRTT_GAIN) / SRTT_GAIN * SEGMENTS_PER_ACK * self.segment_bits
        target_s = rtt_s + max(queue_bits - lag_bits, 0.0) / rate_bps
        return kept * before_s + (1 - kept) * target_s

    def rto_s(self, rtt_s: float) -> float:
        """RTT plus the minimum RTO, held in whole timer ticks (jiffies), rounded up as
        Linux's ``usecs_to_jiffies`` does."""
        rto_s = rtt_s + self.min_rto_ms / 1e3
        tick_s = self.timer_tick_ms / 1e3
        return math.ceil(rto_s / tick_s - 1e-9) * tick_s if tick_s > 0 else rto_s

    def idle_as_counted_s(self, idle_s: float) -> float:
        """``idle_s`` as the kernel counts it: the nearest whole number of timer ticks."""
        tick_s = self.timer_tick_ms / 1e3
        return math.floor(idle_s / tick_s + 0.5) * tick_s if tick_s > 0 else idle_s

    def loss_rate_cap_bps(self, rtt_s: float, loss_rate: float) -> float:
        """Padhye et al.'s steady-state rate under random loss, in wire bits per second
        (``b`` = 1, the timeout the RTO of a steady path): where Reno's sawtooth settles
        without selective acknowledgements (the tests' oracle for ``network.loss``). No
        cap without loss or RTT."""
        p = loss_rate
        if p <= 0 or rtt_s <= 0:
            return math.inf
        seconds_per_segment = (rtt_s * math.sqrt(2 * p / 3) + self.rto_s(rtt_s)
                               * min(1.0, 3 * math.sqrt(3 * p / 8)) * p * (1 + 32 * p**2))
        return self.segment_bits / seconds_per_segment

    def timeout_chance(self, window_segments: float, loss_rate: float) -> float:
        """The chance that a random loss ends in a retransmission timeout. Without
        selective acknowledgements, Padhye et al.'s ``min(1, 3 / w)`` for a window of
        ``w`` segments: Reno recovers one loss a round trip and stalls when a window
        holds too few segments to send three duplicate acknowledgements. With them
        (Linux's default), the sender knows which segments arrived and resends just the
        lost ones (RFC 6675), so a loss times out only if its retransmission is lost too:
        ``p``."""
        if self.sack:
            return min(loss_rate, 1.0)
        return min(1.0, 3 / window_segments)

    @staticmethod
    def segments_before_loss(loss_rate: float) -> float:
        """Segments a connection sends before a loss, on average (1/p): before its first
        (Cardwell et al.'s expected slow-start length for a long transfer), and between
        two in Mathis et al.'s sawtooth (``network.loss``)."""
        return math.inf if loss_rate <= 0 else 1 / loss_rate

    def restart_window_bits(self, window_bits: float, idle_s: float, rtt_s: float) -> float:
        """Linux ``tcp_cwnd_restart``: halve once per RTO of idleness beyond the first,
        never below the initial window (or the window itself, if smaller). Linux counts
        the idleness in whole timer ticks (``lsndtime`` is in jiffies), so an idle time
        of ``k + f`` ticks counts ``k + 1`` with chance ``f``, ``k`` otherwise: the
        model takes the likelier count, the nearer whole one (``idle_as_counted_s``).
        The window is whole segments, halved by a shift as Linux's ``snd_cwnd``: 93
        segments after 0.8 s idle at a 304 ms RTO become 23, which leaves a 70-segment
        message (100 KB) a third round trip (23 + 46 < 70), where half of half of a
        fractional window (93.1 / 4) would not."""
        rto = self.rto_s(rtt_s)
        idle_s = self.idle_as_counted_s(idle_s)
        if not self.slow_start_after_idle or idle_s <= rto + 1e-12:
            return window_bits
        seg = self.segment_bits
        segments = max(math.floor(window_bits / seg + 1e-9), 1)  # Linux keeps one at least
        floor = min(self.initial_window_segments, segments)
        delta = idle_s
        while (delta := delta - rto) > 1e-12 and segments > floor:
            segments >>= 1
        return max(segments, floor) * seg


@dataclass
class Connection:
    """One device's TCP connection to the server: open or not, and per direction its
    congestion window, when it last sent, and how much (random loss starts biting at its
    first loss, ``first_loss_segments`` into it)."""

    open: bool = False
    window_bits: dict[str, float] = field(default_factory=dict)
    ssthresh_bits: dict[str, float] = field(default_factory=dict)  # slow-start threshold
    last_send_end_s: dict[str, float] = field(default_factory=dict)
    segments_sent: dict[str, float] = field(default_factory=dict)  # since it opened
    sending: dict[str, object] = field(default_factory=dict)  # the latest flow in flight
    srtt_s: dict[str, float] = field(default_factory=dict)  # with the queue its bursts made
    loss_epochs: dict[str, LossEpochs | DrawnLossEpochs] = field(
        default_factory=dict)  # ``network.loss``
    first_loss_segments: dict[str, float] = field(default_factory=dict)  # into it
    send_buffer_bits: dict[str, float] = field(default_factory=dict)  # once it has grown
    buffer_grows: dict[str, bool] = field(default_factory=dict)  # the message in flight grows it

    def first_flight_bits(self, tcp: TcpParams, direction: str, window_bits: float,
                          message_bits: float) -> float:
        """What a message starting from idle sends before its first acknowledgement: its
        window, or, if the message is longer than the send buffer, what the buffer holds
        if that is less (a shorter message is all in the buffer). The buffer grows (to
        ``SEND_BUFFER_GROWTH`` times the window) if the message finds it short: Linux
        grows it when an acknowledgement leaves the window room while the buffer has no
        unsent data left, and the application, blocked on a full buffer, is woken only
        once a third of it is free (``sk_stream_min_wspace``, half of what is queued).
        A message beyond the buffer runs it dry first if its first flight exceeds a third
        of it (in slow start each acknowledgement sends two segments and frees one), two
        thirds past slow start (one for one), or if it is more than a third longer than
        the buffer (one refill does not take it all)."""
        buffer_bits = self.send_buffer_bits.get(direction, tcp.send_buffer_bits)
        if message_bits <= buffer_bits:
            return window_bits
        share = 1 / 3 if window_bits < self.ssthresh(direction) else 2 / 3
        if window_bits > share * buffer_bits or message_bits > 4 / 3 * buffer_bits:
            self.buffer_grows[direction] = True  # with the window it ends with
        return min(window_bits, buffer_bits)

    def warm(self, tcp: TcpParams, direction: str, window_bits: float,
             last_send_s: float = 0.0) -> None:
        """Open, with ``window_bits`` reached by a transfer whose last segment left at
        ``last_send_s``: a transfer that long also grew the send buffer."""
        self.open = True
        self.window_bits[direction], self.last_send_end_s[direction] = window_bits, last_send_s
        self.grow_send_buffer(tcp, direction, window_bits)

    def grow_send_buffer(self, tcp: TcpParams, direction: str, window_bits: float) -> None:
        """Linux's ``tcp_sndbuf_expand`` with a window of ``window_bits``: never smaller."""
        self.send_buffer_bits[direction] = max(
            self.send_buffer_bits.get(direction, tcp.send_buffer_bits),
            SEND_BUFFER_GROWTH * window_bits)

    def start(self, tcp: TcpParams, direction: str, now_s: float, rtt_s: float,
              rate_bps: float, buffer_bytes: float | None,
              message_bits: float = 0.0) -> tuple[float, float]:
        """(first flight, cap) of a message of ``message_bits``: the connection's window
        after any restart for idleness, capped by the receive window and by what the
        path holds (bandwidth-delay product plus the bottleneck's buffer), and by the
        send buffer (``first_flight_bits``). A restart keeps at least three quarters of
        the old window as the slow-start threshold (Linux ``tcp_current_ssthresh``)."""
        before = self.window_bits.setdefault(direction, tcp.initial_window_bits)
        idle_s = now_s - self.last_send_end_s.get(direction, now_s)
        window = tcp.restart_window_bits(before, idle_s, self.srtt_s.get(direction, rtt_s))
        if window < before:
            self.ssthresh_bits[direction] = max(self.ssthresh(direction), 0.75 * before)
        _, cap = tcp.pipe_and_cap_bits(rate_bps, rtt_s, buffer_bytes)
        return self.first_flight_bits(tcp, direction, min(window, cap), message_bits), cap

    def ssthresh(self, direction: str) -> float:
        return self.ssthresh_bits.get(direction, math.inf)

    def finish(self, tcp: TcpParams, direction: str, arrived_s: float, latency_s: float,
               rtt_s: float, rate_bps: float, buffer_bytes: float | None, window: Window,
               sent_bits: float, total_bits: float) -> None:
        """Book a message's end: the window it grew (or, after a loss, ``beta`` times
        the window it started with), the segments sent, and, from the queue its last
        segment found at the bottleneck with the flows sharing it
        (``Window.shared_queue_bits``), the smoothed RTT (``TcpParams.smoothed_rtt_s``)
        and the time of its last send (that wait and one one-way delay before it
        arrived; after a loss, the last resent segment's). A message of several flights
        moves the smoothed RTT with its first flight's samples, a burst's queue ramping
        up to that flight, then with the rest's: after a short last flight, Linux's
        estimator still holds much of the first."""
        seg = tcp.segment_bits  # acknowledged segments, a partial last one counting 1
        sent = math.ceil(sent_bits / seg - 1e-9)
        served_bps = window.served_rate_bps(sent_bits, rate_bps)
        if window.lost_segments:
            grown = ssthresh = max(tcp.beta * window.start_bits, 2 * seg)
        else:
            grown, ssthresh = tcp.grow_bits(window.start_bits, sent * seg, window.ssthresh_bits,
                                            window.cap_bits, served_bps, rtt_s)
        self.window_bits[direction], self.ssthresh_bits[direction] = grown, ssthresh
        if self.buffer_grows.pop(direction, False):  # again as the window grew
            self.grow_send_buffer(tcp, direction, max(grown, window.start_bits))
        self.segments_sent[direction] = self.segments_sent.get(direction, 0.0) + sent
        buffer_bits = tcp.buffer_bits(rate_bps, rtt_s, buffer_bytes)
        queue_bits = min(window.shared_queue_bits(total_bits, served_bps, rate_bps, rtt_s),
                         buffer_bits)
        before_s, later = self.srtt_s.get(direction, rtt_s), sent
        first = math.floor(window.start_bits / seg + 1e-9)
        if 0 < first < sent and not window.lost_segments:  # the first flight's samples
            first_bits = window.shared_queue_bits(first * seg, served_bps, rate_bps, rtt_s)
            before_s = tcp.smoothed_rtt_s(before_s, rtt_s, min(first_bits, buffer_bits),
                                          rate_bps, first, ramp=1.0)
            later = sent - first
        self.srtt_s[direction] = tcp.smoothed_rtt_s(
            before_s, rtt_s, queue_bits, rate_bps, later, ramp=window.queue_ramp(total_bits))
        self.last_send_end_s[direction] = arrived_s - latency_s - (
            0.0 if window.lost_segments else queue_bits / rate_bps)

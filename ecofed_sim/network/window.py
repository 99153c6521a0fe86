"""A message's congestion window, round trip by round trip (``ecofed_sim.network.tcp``
describes the model and its sources): what it may still send in the round it is in,
when that round ends, and how the next round's window follows in slow start and after.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def next_round_bits(window_bits: float, ssthresh_bits: float, segment_bits: float,
                    cap_bits: float) -> float:
    """The window of the next round trip: doubled below the slow-start threshold (up to
    it), one segment more above it."""
    if window_bits < ssthresh_bits:
        return min(2 * window_bits, ssthresh_bits, cap_bits)
    return min(window_bits + segment_bits, cap_bits)


def slow_start_s(wire_bits: float, rate_bps: float, rtt_s: float, window_bits: float,
                 cap_bits: float, ssthresh_bits: float = math.inf,
                 segment_bits: float = 0.0) -> tuple[float, float, float]:
    """(seconds from the first bit's arrival to the last's, window of the last round, bits
    of the last round if the window limited it, else 0) for one message alone on a path of
    constant ``rate_bps``: the flow model's slow start in closed form. Each round sends
    the window; a round whose window takes the rate longer than the round trip to send is
    open, and the rest goes at the rate."""
    t_s, left, window = 0.0, wire_bits, window_bits
    while left > window and window < rate_bps * rtt_s:
        t_s, left = t_s + rtt_s, left - window
        window = next_round_bits(window, ssthresh_bits, segment_bits, cap_bits)
    return t_s + left / rate_bps, window, (left if window < rate_bps * rtt_s else 0.0)


@dataclass(eq=False)
class Window:
    """A flow in slow start: what it may still send in this round trip, and when the
    round trip ends (then the window doubles below the slow-start threshold, or grows a
    segment above it, up to ``cap_bits``)."""

    rtt_s: float
    window_bits: float
    cap_bits: float
    left_bits: float
    round_end_s: float
    open: bool = False  # slow start over: the path's rate, not the window, is the limit
    start_bits: float = 0.0  # the window the message started with
    ssthresh_bits: float = math.inf  # the connection's slow-start threshold
    segment_bits: float = 0.0  # one segment on the wire: the step above the threshold
    lost_segments: int = 0  # lost from the message's first burst (``network.burst``)
    sending_s: float = 0.0  # time it had segments to send (served, or queued behind others)

    def served_rate_bps(self, sent_bits: float, path_rate_bps: float) -> float:
        """The rate its segments got through the bottleneck: the path's, unless other
        flows shared it (or queued ahead of it) while it had segments to send."""
        if self.sending_s <= 0 or sent_bits <= 0:
            return path_rate_bps
        return min(path_rate_bps, sent_bits / self.sending_s)

    def continuation(self) -> Window:
        """The window of a message queued behind one still in flight on the same
        connection: not idle, so no restart; it goes on where that one stands."""
        return Window(self.rtt_s, self.window_bits, self.cap_bits, self.window_bits,
                      self.round_end_s, self.open, self.window_bits, self.ssthresh_bits,
                      self.segment_bits)

    def queue_at_end_bits(self, total_bits: float, bdp_bits: float) -> float:
        """The bottleneck's queue as the message's last segment joins it. Sent in one
        burst (the window held it all), the whole message is queued; in a later round of
        slow start each acknowledgement releases two segments while the bottleneck drains
        one, so half the round is; an open window keeps what exceeds the path's
        bandwidth-delay product queued."""
        if self.start_bits >= total_bits:
            return total_bits
        if self.open:
            return max(self.window_bits - bdp_bits, 0.0)
        return max(self.window_bits - max(self.left_bits, 0.0), 0.0) / 2

    def shared_queue_bits(self, total_bits: float, served_bps: float, path_rate_bps: float,
                          rtt_s: float) -> float:
        """The bottleneck's queue as the message's last segment joins it, with the flows
        it shared the bottleneck with: its own queue at the rate it was served
        (``served_rate_bps``; its share of the path's bandwidth-delay product), times the
        path's rate over that rate, as each flow of a drop-tail queue keeps about as much
        queued per unit of its rate. Alone, it is ``queue_at_end_bits``. Five FedAvg
        downloads of 81.5 KB at 20 Mbit/s and 40 ms left Linux's smoothed RTT at 60-78 ms
        on the delay line (``benchmarks/round_replay.py``); the message's own queue alone
        left 40 ms."""
        if served_bps <= 0:
            return self.queue_at_end_bits(total_bits, path_rate_bps * rtt_s)
        own_bits = self.queue_at_end_bits(total_bits, served_bps * rtt_s)
        return own_bits * path_rate_bps / served_bps

    def queue_ramp(self, total_bits: float) -> float:
        """How fast that queue grew as the message went, in segments' waits per segment
        sent: one in a burst; half in a round of slow start (each acknowledgement
        releases two segments while the bottleneck drains one); none at an open window,
        whose queue stands at its excess."""
        if self.start_bits >= total_bits:
            return 1.0
        return 0.0 if self.open else 0.5

    def at_loss_bits(self) -> float:
        """The window a random loss finds when it is detected, a round trip after the lost
        segment left: in slow start, grown by each segment acknowledged before it (the
        round's window plus what the round had sent; Linux's: the initial window plus
        every segment delivered), up to the threshold; past slow start, as it stands."""
        if self.open:
            return self.window_bits
        sent_bits = self.window_bits - max(self.left_bits, 0.0)
        return min(self.window_bits + sent_bits, max(self.ssthresh_bits, self.window_bits))

    @property
    def blocked(self) -> bool:
        return not self.open and self.left_bits <= 0

    def next_round(self) -> None:
        self.window_bits = next_round_bits(self.window_bits, self.ssthresh_bits,
                                           self.segment_bits, self.cap_bits)
        self.left_bits = self.window_bits
        self.round_end_s += self.rtt_s

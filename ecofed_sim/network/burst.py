"""A window sent at once into an idle bottleneck: what its buffer cannot hold is lost, and
how Linux gets it back.

Cubic is not paced: a message starting on an open window leaves the sender as one burst,
far faster than the bottleneck drains. The bottleneck's drop-tail buffer keeps the first
segments; the full segments beyond it are dropped; a short last segment still fits (the
buffer has drained by a segment's time when it comes), unless other bursts are queued
there too and take that room. What follows the burst is sent as acknowledgements return,
and arrives after the hole. Linux then:

- detects the loss when the first segment after the hole is acknowledged (a SACK). With
  at least three such segments (the duplicate threshold, ``tp->reordering``) it marks the
  hole lost at once; with fewer, RACK (RFC 8985) waits a quarter of the minimum RTT, on a
  timer of whole jiffies plus two (``TCP_TIMEOUT_MIN``), which fires half a jiffy early on
  average. If nothing follows the hole, the tail loss probe (RFC 8985 section 7) resends
  the last segment two smoothed RTTs after the last acknowledgement (the smoothed RTT
  the acknowledged segments' queueing left, ``probe_srtt_s``), and the acknowledgement
  of that probe starts recovery. If the whole window was lost (other bursts filled the
  buffer), nothing comes back to release the rest of the message: the probe, sent two
  smoothed RTTs after the burst, is its next segment, and the window and the rest all go
  in recovery's rounds;
- resends the lost segments in round trips. Proportional rate reduction (RFC 6937), far
  below its threshold, lets each acknowledgement release what it delivered plus one
  segment: the first round resends as many as were delivered after the hole, and every
  later round twice the one before (its segments fill holes and are acknowledged one by
  one).

Bursts from several connections into one bottleneck (a server sending to many devices
over its own slower link, or devices uploading through the server's) share its buffer in
the order they leave: a later burst finds the earlier ones' segments queued ahead of it,
and less room. A drop-tail queue is first in, first out, so the bottleneck also serves
them in that order (``serve_in_arrival_order``): of five 11-segment messages arriving
together, the first is through after a fifth of the time that sharing the rate would give
all of them. On the delay line, five devices uploading 16 KB each every batch desynchronise
this way and keep the bottleneck busy; with the rate shared, they would finish together
and leave it idle for a one-way delay every batch.

A window's later flights queue the same way (``queue_flight``). Where both directions of
the bottleneck are busy, acknowledgements wait behind the reverse direction's data and
come back together, so each flight leaves as a burst too. On the delay line, five
devices exchanging 63 KB activations and gradients through a 20 Mbit/s server link
(``benchmarks/round_breakdown.py --capture``): 17 acknowledgements of one upload's first
flight arrived within 0.3 ms, and round trips in recovery took 41-100 ms on a 40 ms path.

Traced on the delay line (``benchmarks/delayline/capture.py``): 100 KB at 20 Mbit/s and
10 ms RTT loses 5 segments behind a 64-packet buffer, marks them after 9 ms of RACK, and
resends 1, 2 and 2, the last byte arriving at 87 ms (this model: 86.8 ms); 1 MB at
100 Mbit/s and 40 ms on a window of 612 segments loses 275 and resends 79, 158 and 38.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ecofed_sim.network.tcp import TcpParams

if TYPE_CHECKING:
    from ecofed_sim.network.links import Capacity, DeviceLink
    from ecofed_sim.network.window import Window

DUPTHRESH = 3  # Linux tp->reordering: segments acknowledged past a hole that mark it lost


@dataclass(frozen=True)
class BurstLoss:
    """What a burst's bottleneck did with it, in segments."""

    accepted: int  # full segments the buffer took, ahead of the hole
    lost: int  # full segments dropped
    after: int  # segments that arrive after the hole (a short last one, and the rest)
    unsent: int = 0  # of those, the ones beyond the window: sent as acknowledgements come


def burst_loss(tcp: TcpParams, window_bits: float, wire_bits: float,
               buffer_bits: float, tail_fits: bool = True,
               rate_bps: float = 0.0) -> BurstLoss | None:
    """The loss of a message whose first ``min(window, message)`` leaves at once into a
    bottleneck of ``rate_bps`` with ``buffer_bits`` of room; None if it all fits (or the
    model is off). The burst reaches the buffer at the line rate of the hop before it
    (``TcpParams.line_rate_mbps``; by default at once), and the bottleneck drains
    meanwhile, so the room grows by the burst's time on that line at ``rate_bps``. On the
    delay line (about 10 Gbit/s) a window of 612 segments into 330 packets' room at
    100 Mbit/s lost 275: 276 with a 10,000 Mbit/s line, 282 at once.

    A short last segment fits in what full segments leave of a byte-counted buffer
    (``tail_fits``): the application writes it last, and the bottleneck has drained a
    segment's worth by then. On the delay line, a 154-byte last segment of 70 into a
    64-packet buffer was kept at 20 Mbit/s; at 5 Mbit/s it was kept in some series of
    runs and lost in others (warm messages and lock-step exchanges alike). Behind other
    bursts queued there, it is lost: their segments take that room (a 616-byte last
    segment of an upload that met the others' bursts was lost and resent by the loss
    probe)."""
    if not tcp.burst_loss or wire_bits <= 0:
        return None
    seg = tcp.segment_bits
    total = math.ceil(wire_bits / seg - 1e-9)
    burst = min(math.floor(window_bits / seg + 1e-9), total)
    short_last = int(tail_fits and burst == total and wire_bits < total * seg - 1e-6)
    burst_bits = wire_bits if burst == total else burst * seg
    drained_bits = burst_bits * rate_bps / tcp.line_rate_bps
    room = max(math.floor((buffer_bits + drained_bits) / seg + 1e-9), 0)
    lost = burst - short_last - room
    if lost <= 0:
        return None
    return BurstLoss(room, lost, short_last + total - burst, total - burst)


def probe_srtt_s(tcp: TcpParams, before_s: float, rtt_s: float, rate_bps: float,
                 loss: BurstLoss, ahead_bits: float = 0.0) -> float:
    """The smoothed RTT the sender's loss-probe timer reads once the segments the buffer
    took ahead of the hole are acknowledged: each waited behind ``ahead_bits`` and the
    burst's segments before it (``TcpParams.smoothed_rtt_s``); with none acknowledged,
    the connection's ``before_s``."""
    if loss.accepted <= 0:
        return before_s
    queue_bits = ahead_bits + loss.accepted * tcp.segment_bits
    return tcp.smoothed_rtt_s(before_s, rtt_s, queue_bits, rate_bps, loss.accepted, ramp=1.0)


def recovery_end_s(tcp: TcpParams, loss: BurstLoss, rate_bps: float, rtt_s: float,
                   latency_s: float, ahead_bits: float = 0.0,
                   srtt_s: float | None = None, standing_bits: float = 0.0) -> float:
    """Seconds from the burst's first bit leaving the sender to the last resent segment's
    arrival, on a path of ``rate_bps`` at its bottleneck, whose queue held ``ahead_bits``
    of other bursts when this one came (see the module docstring). The tail loss probe
    fires two smoothed RTTs (``srtt_s``, default the path's RTT; ``probe_srtt_s``) after
    the last acknowledgement, as Linux's ``tcp_schedule_loss_probe``.

    Each later round of resends also waits behind ``standing_bits``: the part of that
    queue left by bursts from before this one's instant. Connections that were already
    sending keep refilling what drains (their acknowledgements release more), so their
    queue stands while the recovery goes on; bursts that left in the same instant (one
    host's sends at once, such as a server's model downloads) are the message's peers,
    whose segments leave the queue with its own. On the delay line a SplitFed upload's
    resent segments waited behind 0-27 ms of other devices' segments
    (``benchmarks/round_breakdown.py --queues``). Counting the standing queue took
    SplitFed's rounds over 40 jittered draws of the model from 2.725 / 2.571 s to 2.884 /
    2.697 s (real medians 2.87-2.90 / 2.79-2.85 s in three runs of
    ``benchmarks/round_replay.py --repeats 15 --model-draws 40``); counting all of
    ``ahead_bits`` instead took FedAvg's second round from 0.701 to 0.908 s (0.68-0.70 s
    real)."""
    srtt_s = rtt_s if srtt_s is None else srtt_s
    seg_s = tcp.segment_bits / rate_bps
    back_s = rtt_s - latency_s
    lost, after = loss.lost, loss.after
    queued_s = ahead_bits / rate_bps + loss.accepted * seg_s  # ahead of the hole
    if loss.accepted == 0 and after == loss.unsent > 0:
        # the whole window was lost, so no acknowledgement releases the rest: the tail
        # loss probe sends the next segment 2 smoothed RTTs after the burst; once it is
        # acknowledged, the window and the rest go in recovery's rounds
        sack_s = ahead_bits / rate_bps + 2 * srtt_s + rtt_s + seg_s
        lost, after = lost + after - 1, 1
    elif after == 0:  # nothing follows the hole: the tail loss probe resends the last one
        probe_s = rtt_s + queued_s + 2 * srtt_s  # 2 smoothed RTTs after the last ACK
        if lost == 1:
            return probe_s + latency_s + seg_s
        sack_s = probe_s + rtt_s + seg_s
        lost, after = lost - 1, 1
    else:  # the first segment after the hole, out of the bottleneck and acknowledged
        sack_s = latency_s + queued_s + seg_s + back_s
    if after >= DUPTHRESH:
        detect_s = sack_s + (DUPTHRESH - 1) * seg_s
    else:
        tick_s = tcp.timer_tick_ms / 1e3
        wait_s = rtt_s / 4
        if tick_s > 0:
            wait_s = (math.ceil(wait_s / tick_s - 1e-9) + 2) * tick_s - tick_s / 2
        detect_s = sack_s + wait_s
    send_s, size = detect_s, after
    while lost > size:
        round_s = rtt_s + standing_bits / rate_bps + seg_s
        lost, send_s, size = lost - size, send_s + round_s, 2 * size
    return send_s + latency_s + lost * seg_s


def first_burst_end_s(tcp: TcpParams, neck: Capacity, window: Window, wire_bits: float,
                      sent_s: float, delay_s: float, link: DeviceLink,
                      direction: str) -> float | None:
    """When the last segment lost from a message's first burst arrives, resent (None
    without such a loss). The burst left at ``sent_s``, ``delay_s`` one way (latency and
    jitter) from its receiver, into the buffer of its path's bottleneck ``neck``, behind
    what earlier bursts left queued there (which also take the room a short last segment
    would fit in). The flow carries every bit once; the message ends no earlier than
    this."""
    rtt_s = link.round_trip_s
    ahead_bits = neck.burst_backlog_bits(sent_s)
    standing_bits = neck.standing_bits(sent_s)
    room_bits = max(tcp.buffer_bits(neck.rate_bps, rtt_s, link.buffer_bytes) - ahead_bits, 0.0)
    neck.queue_burst(sent_s, min(window.window_bits, wire_bits, room_bits))
    # Behind other bursts, a short last segment is lost with the full ones before it. If
    # the buffer took none of this burst, Linux's loss probe (armed as the burst leaves,
    # two smoothed RTTs) goes out before the queue ahead drains and is acknowledged as
    # that short segment would be: it is kept.
    tail_fits = ahead_bits <= 0 or room_bits < tcp.segment_bits
    loss = burst_loss(tcp, window.window_bits, wire_bits, room_bits, tail_fits, neck.rate_bps)
    if loss is None:
        return None
    window.lost_segments = loss.lost
    srtt_s = probe_srtt_s(tcp, link.connection.srtt_s.get(direction, rtt_s), rtt_s,
                          neck.rate_bps, loss, ahead_bits)
    return sent_s + recovery_end_s(tcp, loss, neck.rate_bps, rtt_s, delay_s, ahead_bits, srtt_s,
                                   standing_bits)


def ack_wait_s(ack_neck: Capacity | None, now_s: float) -> float:
    """How long a flight's acknowledgements wait behind the bursts queued at the reverse
    path's bottleneck when the flight leaves at ``now_s``: they cross it after those
    bursts' bits have drained. No reverse bottleneck (a flow without a window), no wait.

    Counted for first flights as well as later ones, it took the median of SplitFed's
    rounds over 40 jittered runs of the model (``benchmarks/round_replay.py
    --model-draws 40``) from 2.651 / 2.470 s to 2.725 / 2.571 s, nearer the replays'
    2.85-2.98 / 2.64-2.90 s; one unjittered run had seemed to say the opposite (2.944 s
    to 2.59-2.64 s for the first round), but one run is one draw of a chaotic round."""
    if ack_neck is None:
        return 0.0
    return ack_neck.burst_backlog_bits(now_s) / ack_neck.rate_bps


def queue_flight(neck: Capacity, window: Window, remaining_bits: float, now_s: float,
                 ack_neck: Capacity | None = None) -> None:
    """A window's next flight joins its bottleneck's queue as one burst, as its first
    did: Cubic is not paced, and acknowledgements that waited behind the reverse
    direction's data come back together. Its round trip ends once the bursts queued
    ahead of it have drained, and once its acknowledgements have waited behind the
    bursts queued at the reverse path's bottleneck (``ack_neck``); a flow alone finds
    both drained (it would not be waiting for a round trip otherwise).

    On the delay line (``benchmarks/round_breakdown.py --queues``), the packets of
    SplitFed's two replayed rounds found a median of 7.2 ms (90th percentile 25.4 ms)
    of downloads queued ahead of them in the server-to-device direction, which the
    uploads' acknowledgements cross. Counting that wait for a later flight took the
    model's uploads from a median of 79.5 ms to 85.7 ms (Linux 93.7 over 15 replays).
    A message's first flight counts it too (``Network.transfer``, ``ack_wait_s``)."""
    ahead_bits = neck.burst_backlog_bits(now_s)
    window.round_end_s += ahead_bits / neck.rate_bps + ack_wait_s(ack_neck, now_s)
    neck.queue_burst(now_s, min(window.window_bits, max(remaining_bits, 0.0)))


class QueuedFlow(Protocol):
    constraints: tuple
    rate_bps: float
    burst_neck: object  # the capacity whose queue holds it as one burst (None: not a burst)
    burst_seq: int  # its place in arrival order


def serve_in_arrival_order(flows: Sequence[QueuedFlow]) -> None:
    """Re-deal the max-min rates of bursts queued at one bottleneck first come, first
    served: together they keep what sharing gave them there, but the earliest takes all it
    can (up to what its other capacities have spare), then the next. Other flows keep
    their rates; a flow without a burst at a shared bottleneck is untouched."""
    queues: dict[int, list[QueuedFlow]] = {}
    for f in flows:
        if f.burst_neck is not None:
            queues.setdefault(id(f.burst_neck), []).append(f)
    queues = {k: q for k, q in queues.items() if len(q) > 1}
    if not queues:
        return
    spare: dict[int, float] = {}
    for f in flows:
        for c in f.constraints:
            spare[id(c)] = spare.get(id(c), c.rate_bps) - f.rate_bps
    for queue in queues.values():
        pool_bps = sum(f.rate_bps for f in queue)
        for f in sorted(queue, key=lambda f: f.burst_seq):
            others = [id(c) for c in f.constraints if c is not f.burst_neck]
            room_bps = min((spare[k] for k in others), default=math.inf)
            rate = max(min(pool_bps, f.rate_bps + max(room_bps, 0.0)), 0.0)
            for k in others:
                spare[k] -= rate - f.rate_bps
            pool_bps -= rate
            f.rate_bps = rate

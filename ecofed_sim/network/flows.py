"""Flow-level network model: per-device access links and a shared server access link.

A transfer waits the one-way latency, then becomes a flow crossing two capacity
constraints: the device's uplink and the server's ingress (uploads), or the server's
egress and the device's downlink (downloads). With a topology, a device's "server" is
its edge (``DeviceLink.server``), and an edge's backhaul is a link to the cloud.
Concurrent flows share capacity max-min fairly (progressive filling, as in SimGrid's flow
model); rates are recomputed whenever a flow starts or ends, so every transfer ends
exactly when its bytes are through.

With the ``tcp`` transport (``network.tcp``), a flow in slow start may also send at most
one congestion window per round trip, a new connection costs its handshake, and an idle
connection restarts its window as Linux does. A window-blocked flow takes no capacity.

Delay lives here, as in SimPy's ``Cable`` example: processes only ``yield`` the events.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Generator
from dataclasses import dataclass, field

import simpy

from ecofed_sim.network.burst import (
    ack_wait_s,
    first_burst_end_s,
    queue_flight,
    serve_in_arrival_order,
)
from ecofed_sim.network.fairshare import max_min_rates
from ecofed_sim.network.links import MBPS, Capacity, DeviceLink, wire_bytes
from ecofed_sim.network.loss import LossPlan, step_loss_cap
from ecofed_sim.network.tcp import BITS_PER_BYTE, TcpParams
from ecofed_sim.network.window import Window
from ecofed_sim.traces import segments

_EPS_S = 1e-12  # completion slack for floating-point remainders
_CLOCK_STEPS = 4  # a flow this few clock steps from its end is done (see ``_finish_slack_s``)
_MEMO_MAX_FLOWS = 200_000  # flows held by the memo's patterns, at most (then it restarts)


def _finish_slack_s(now_s: float) -> float:
    """Time within which a flow counts as finished at ``now_s``.

    A float clock at ``now_s`` cannot advance by less than one unit in the last place
    (about 1e-10 s at 1e6 s). A remainder shorter than a few such steps would schedule a
    wake-up that does not move the clock, and the same step would repeat for ever; so the
    completion slack grows with the clock, and every wake-up either moves time or ends a
    flow. The error this admits is a few ULPs of the clock, below anything measurable."""
    return max(_EPS_S, _CLOCK_STEPS * math.ulp(now_s))


@dataclass(eq=False)
class Flow:
    constraints: tuple[Capacity, ...]
    remaining_bits: float
    done: simpy.Event
    rate_bps: float = 0.0
    window: Window | None = None  # TCP slow start (None: limited by rate alone)
    total_bits: float = 0.0  # its size on the wire
    loss: LossPlan | None = None  # random loss on its connection (``network.loss``)
    loss_cap_at_bits: float = -math.inf  # ``remaining_bits`` where its loss cap next changes
    weights: tuple[int, ...] | None = None  # a cohort's flows per constraint (None: one)
    pattern: tuple = ()  # serials of ``constraints`` (and weights): its part of a memo key
    burst_neck: Capacity | None = None  # where it queues as one burst (``network.burst``)
    burst_seq: int = 0  # its place in the order bursts arrive
    neck: Capacity | None = None  # its path's bottleneck, where its window's flights queue
    ack_neck: Capacity | None = None  # the reverse path's, where its acknowledgements queue

    def __post_init__(self) -> None:
        self.path = self.constraints  # without a loss cap
        self._set_pattern()

    def _set_pattern(self) -> None:
        self.pattern = tuple(c.serial for c in self.constraints)
        if self.weights is not None:
            self.pattern += self.weights

    def set_loss_cap(self, cap: Capacity) -> None:
        """Cross ``cap`` (a loss epoch's rate) besides the path; a cohort's members each
        their own."""
        self.constraints = (*self.path, cap)
        if self.weights is not None:
            self.weights = (*self.weights[:len(self.path)], 1)
        self._set_pattern()

    def loss_cap_due(self, slack_bits: float) -> bool:
        """Whether the flow has reached the point where its loss cap changes."""
        return self.remaining_bits <= self.loss_cap_at_bits + slack_bits


@dataclass(eq=False)
class Network:
    """All flows of one run. Owned by one ``simpy.Environment``; no globals."""

    env: simpy.Environment
    server_in: Capacity
    server_out: Capacity
    framing_bytes: int = 0  # protocol overhead per message
    framing_fraction: float = 0.0  # and per payload byte
    tcp: TcpParams | None = None  # the TCP transport; None: the flow model alone
    flows: list[Flow] = field(default_factory=list)
    _last_update_s: float = 0.0
    _generation: itertools.count = field(default_factory=itertools.count)
    _current: int = -1
    _pending: bool = False  # a solve is scheduled for the current instant
    # Rates depend only on which constraints the active flows cross (capacities are fixed
    # for a run), and the same patterns recur every batch: memoise them.
    _rates_cache: dict[tuple, list[float]] = field(default_factory=dict)
    _memo_flows: int = 0  # flows in the memo's keys
    _bursts: itertools.count = field(default_factory=itertools.count)  # arrival order
    _bursts_at: dict[int, int] = field(default_factory=dict)  # bottleneck id -> bursts
    _shared_necks: int = 0  # bottlenecks holding two bursts or more (then order matters)
    cohort_ids: dict[tuple, int] = field(default_factory=dict)  # link states (``cohorts``)

    def wire_bytes(self, payload_bytes: int) -> float:
        """Bytes on the wire: framing, and under TCP the headers of every segment."""
        framed = wire_bytes(payload_bytes, self.framing_bytes, self.framing_fraction)
        return self.tcp.wire_bytes(framed) if self.tcp is not None else framed

    def _open_window(self, link: DeviceLink, direction: str, delay_s: float,
                     wire_bits: float) -> Generator:
        """Process fragment: the handshake if the connection is new, then the window this
        message starts from (after any restart for idleness; no more than the send
        buffer holds). Its first round trip starts as the first byte arrives,
        ``delay_s`` from now."""
        tcp, conn, rtt_s = self.tcp, link.connection, link.round_trip_s
        if not conn.open or tcp.per_message_connections:
            yield self.env.timeout(rtt_s)  # SYN, SYN-ACK; the data goes with the ACK
            conn.open = True
            conn.window_bits[direction] = tcp.initial_window_bits
            conn.last_send_end_s[direction] = self.env.now
        start, cap = conn.start(tcp, direction, self.env.now, rtt_s,
                                self._path_rate_bps(link, direction), link.buffer_bytes,
                                wire_bits)
        return Window(rtt_s, start, cap, start, self.env.now + delay_s + rtt_s,
                      start_bits=start, ssthresh_bits=conn.ssthresh(direction),
                      segment_bits=tcp.segment_bits)

    def transfer(self, link: DeviceLink, direction: str, payload_bytes: int,
                 count: int = 1) -> Generator:
        """Process fragment: latency, then the flow; ends when the last bit arrives.
        ``count``: the flow stands for that many identical devices' flows in lock-step (a
        cohort, ``ecofed_sim.cohorts``): each on its own link like ``link``, all of them
        through the server's.

        If the process is interrupted (its device dropped out, or the round closed), the
        flow leaves the network at once and the ``simpy.Interrupt`` goes on up with a
        ``delivered_fraction`` attribute: the share of the wire bytes that got through."""
        delay_s = link.delay_s()
        wire_bits = self.wire_bytes(payload_bytes) * BITS_PER_BYTE
        window, recovered_s, neck = None, None, None
        try:
            if self.tcp is not None and payload_bytes > 0:
                window = yield from self._open_window(link, direction, delay_s, wire_bits)
            if delay_s > 0:
                yield self.env.timeout(delay_s)
        except simpy.Interrupt as cut:
            cut.delivered_fraction = 0.0
            raise
        if payload_bytes <= 0:
            return
        window_neck = ack_neck = None  # where the window's flights and their ACKs queue
        if window is not None:
            window_neck = self.bottleneck(link, direction)
            ack_neck = self.bottleneck(link, "down" if direction == "up" else "up")
            busy = link.connection.sending.get(direction)
            if busy is not None:  # the connection is not idle: no restart, no new rounds
                window = busy.window.continuation()
            else:
                recovered_s = first_burst_end_s(  # the message ends no earlier than this
                    self.tcp, window_neck, window, wire_bits, self.env.now - delay_s,
                    delay_s, link, direction)
                if self.tcp.burst_loss and count == 1 and window.start_bits >= wire_bits:
                    neck = window_neck  # it queues there as one block
                # its acknowledgements cross the reverse bottleneck behind the bursts queued there
                window.round_end_s += ack_wait_s(ack_neck, self.env.now)
        server_in, server_out = link.server or (self.server_in, self.server_out)
        path = (link.up, server_in) if direction == "up" else (server_out, link.down)
        device_side = link.up if direction == "up" else link.down
        bits = wire_bits - device_side.take_tokens(self.env.now, wire_bits)
        device_side.active += 1
        try:
            if bits > 0:
                weights = None if count == 1 else tuple(  # each member has its own link
                    1 if c is device_side else count for c in path)
                flow = Flow(path, bits, self.env.event(), window=window, total_bits=bits,
                            weights=weights, burst_neck=neck,
                            burst_seq=next(self._bursts) if neck is not None else 0,
                            neck=window_neck, ack_neck=ack_neck)
                self._arm_loss_cap(link, direction, flow)
                if neck is not None:
                    self._count_burst(neck, 1)
                if window is not None:
                    link.connection.sending[direction] = flow
                self._advance()  # the others' bits up to now: the new flow was not there
                self.flows.append(flow)  # rate 0 until this instant's solve
                self._reschedule()
                try:
                    yield flow.done
                    if recovered_s is not None and recovered_s > self.env.now:
                        yield self.env.timeout(recovered_s - self.env.now)
                except simpy.Interrupt as cut:
                    if flow in self.flows:
                        self._remove(flow)  # drains it to now first
                        missing_bits = max(flow.remaining_bits, 0.0)
                    elif window is not None:  # cut while resending what its burst lost
                        missing_bits = window.lost_segments * self.tcp.segment_bits
                    else:  # cut in the instant its last bit arrived
                        missing_bits = 0.0
                    cut.delivered_fraction = 1.0 - min(missing_bits / wire_bits, 1.0)
                    raise
                finally:
                    if neck is not None:
                        self._count_burst(neck, -1)
                    self._keep_window(link, direction, flow)
        finally:
            device_side.active -= 1
            if device_side.active == 0 and bits > 0:  # a rate-limited flow drained the bucket
                device_side.idle_since_s, device_side.tokens_bits = self.env.now, 0.0

    def _count_burst(self, neck: Capacity, change: int) -> None:
        """Bursts queued per bottleneck: ordering them matters only where two meet."""
        before = self._bursts_at.get(id(neck), 0)
        self._bursts_at[id(neck)] = after = before + change
        self._shared_necks += (after >= 2) - (before >= 2)
        if after == 0:
            del self._bursts_at[id(neck)]

    def _arm_loss_cap(self, link: DeviceLink, direction: str, flow: Flow) -> None:
        """Random loss caps the flow from its connection's first loss on (``network.loss``)."""
        if self.tcp is not None and link.loss_rate > 0 and link.round_trip_s > 0:
            flow.loss = LossPlan(link, direction,
                                 link.connection.segments_sent.get(direction, 0.0),
                                 self._path_rate_bps(link, direction))
            step_loss_cap(self.tcp, flow, 0.0)

    def _keep_window(self, link: DeviceLink, direction: str, flow: Flow) -> None:
        """The connection keeps the window a message ended with (an open window: the
        bandwidth-delay product it reached, at least the last round's window)."""
        if self.tcp is None or flow.window is None:
            return
        if link.connection.sending.get(direction) is flow:
            del link.connection.sending[direction]
        link.connection.finish(self.tcp, direction, self.env.now, link.latency_s,
                               link.round_trip_s, self._path_rate_bps(link, direction),
                               link.buffer_bytes, flow.window,
                               flow.total_bits - max(flow.remaining_bits, 0.0), flow.total_bits)

    def bottleneck(self, link: DeviceLink, direction: str) -> Capacity:
        """The slowest capacity on a message's path (the device's side on a tie): where
        its queue builds."""
        server_in, server_out = link.server or (self.server_in, self.server_out)
        server = server_in if direction == "up" else server_out
        device = link.side(direction)
        return device if device.rate_bps <= server.rate_bps else server

    def _path_rate_bps(self, link: DeviceLink, direction: str) -> float:
        return self.bottleneck(link, direction).rate_bps

    def _remove(self, flow: Flow) -> None:
        """Take a flow off the network mid-way; the others' rates are recomputed."""
        self._advance()
        self.flows.remove(flow)
        self._reschedule()

    def _advance(self) -> None:
        """Drain bits sent since the last rate change (nothing to do twice in an instant)."""
        now_s = self.env.now
        elapsed = now_s - self._last_update_s
        if elapsed == 0:
            return
        for f in self.flows:
            sent_bits = f.rate_bps * elapsed
            f.remaining_bits -= sent_bits
            w = f.window
            if w is not None:
                if w.open or w.left_bits > 0:  # not waiting for its round trip's ACKs
                    w.sending_s += elapsed
                w.left_bits -= sent_bits
        self._last_update_s = now_s

    def drive(self, capacity: Capacity, trace, loop: bool, offset_s: float) -> None:
        """Start a process that sets ``capacity`` from a bandwidth trace; a transfer that
        spans a change is integrated exactly (bits drained at each rate in turn)."""

        def process() -> Generator:
            for mbps, duration_s in segments(trace, offset_s, loop):
                self.set_rate(capacity, mbps * MBPS)
                if duration_s == float("inf"):
                    return
                yield self.env.timeout(duration_s)

        self.env.process(process())

    def set_rate(self, capacity: Capacity, rate_bps: float) -> None:
        if capacity.rate_bps == rate_bps:
            return
        self._advance()
        capacity.rate_bps = rate_bps
        self._rates_cache.clear()
        self._memo_flows = 0
        self._reschedule()

    def _rates(self, flows: list[Flow]) -> list[float]:
        """Max-min fair rates, memoised: the same patterns recur every batch in split
        learning, and within a round whenever only windows move. The memo holds at most
        ``_MEMO_MAX_FLOWS`` flows' worth of patterns, then starts afresh: a long
        cross-device run meets new patterns every round and must not keep them all."""
        key = tuple(f.pattern for f in flows)
        rates = self._rates_cache.get(key)
        if rates is None:
            if self._memo_flows + len(key) > _MEMO_MAX_FLOWS:
                self._rates_cache.clear()
                self._memo_flows = 0
            weights = ([f.weights for f in flows]
                       if any(f.weights is not None for f in flows) else None)
            rates = self._rates_cache[key] = max_min_rates([f.constraints for f in flows],
                                                           weights)
            self._memo_flows += len(key)
        return rates

    def _reschedule(self) -> None:
        """Rates change once per instant, after every flow that starts or ends at it: at
        a round's start a thousand downloads cost one solve, not a thousand. Any wake-up
        planned before is void from now on."""
        self._current = next(self._generation)
        if not self._pending:
            self._pending = True
            self.env.timeout(0).callbacks.append(lambda _event: self._solve())

    def _solve(self) -> None:
        """New rates for the flows now on the network, and the next wake-up."""
        self._pending = False
        self._advance()
        if not self.flows:
            return
        sending = []
        for f in self.flows:
            f.rate_bps = 0.0  # a window-blocked flow takes no capacity
            w = f.window
            if w is None or w.open or w.left_bits > 0:  # not waiting for its round's ACKs
                sending.append(f)
        for f, rate in zip(sending, self._rates(sending), strict=True):
            f.rate_bps = rate
        if self._shared_necks:
            serve_in_arrival_order(sending)  # a burst waits for those queued before it
        self._current = generation = next(self._generation)
        self.env.timeout(self._next_event_s(sending)).callbacks.append(
            lambda _event: self._wake(generation))

    def _next_event_s(self, sending: list[Flow]) -> float:
        """Time to the next thing that changes rates: a flow's last bit, a loss cap's
        step, a window used up or a round trip's end."""
        # Plain comparisons, not min() and max(): this runs at every rate change.
        now_s, wait_s = self.env.now, math.inf
        for f in sending:
            rate_bps = f.rate_bps
            if rate_bps > 0:
                left_s = f.remaining_bits / rate_bps
                if left_s < wait_s:
                    wait_s = left_s if left_s > 0.0 else 0.0
                if f.loss is not None and f.loss_cap_at_bits > -math.inf:
                    left_s = (f.remaining_bits - f.loss_cap_at_bits) / rate_bps
                    if left_s < wait_s:
                        wait_s = left_s if left_s > 0.0 else 0.0
        for f in self.flows:
            w = f.window
            if w is not None and not w.open:
                left_s = w.round_end_s - now_s
                if left_s < wait_s:
                    wait_s = left_s if left_s > 0.0 else 0.0
                if f.rate_bps > 0:
                    left_s = w.left_bits / f.rate_bps
                    if left_s < wait_s:
                        wait_s = left_s if left_s > 0.0 else 0.0
        return wait_s

    def _wake(self, generation: int) -> None:
        if generation != self._current:
            return  # a flow started or ended meanwhile; a newer wake-up is scheduled
        self._advance()
        slack_s = _finish_slack_s(self.env.now)
        finished = [f for f in self.flows if f.rate_bps > 0
                    and f.remaining_bits <= f.rate_bps * slack_s]
        if finished:
            gone = {id(f) for f in finished}
            self.flows = [f for f in self.flows if id(f) not in gone]
        for f in finished:
            f.done.succeed()
        for f in self.flows:
            if f.window is not None and not f.window.open:
                self._step_window(f, slack_s)
            if f.loss is not None and f.rate_bps > 0 and f.loss_cap_due(f.rate_bps * slack_s):
                step_loss_cap(self.tcp, f, f.rate_bps * slack_s)
        if finished or self._pending:
            self._reschedule()  # their processes go on at this instant: solve after them
        else:  # only windows moved, and nothing waits to start: solve now, one event less
            self._solve()

    def _step_window(self, flow: Flow, slack_s: float) -> None:
        """A slow-start flow that used its window waits for the round trip's end, then
        doubles it; one that could not use it all in a round is open: rate-limited only.
        Called for flows whose window is not open yet."""
        w = flow.window
        if flow.rate_bps > 0 and w.left_bits <= flow.rate_bps * slack_s:
            w.left_bits = 0.0  # window used: blocked until the round trip ends
        if w.round_end_s - self.env.now <= slack_s:
            if w.blocked:
                w.next_round()
                queue_flight(flow.neck, w, flow.remaining_bits, self.env.now, flow.ack_neck)
            else:  # the pipe, not the window, was the limit for a whole round trip
                w.open = True

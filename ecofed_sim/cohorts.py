"""Cohorts: the clients a timing-only round plays identically, simulated as one.

In a timing-only run (``learning: none``) of a method whose round needs no real
computation (``defers_training``: FedAvg), a client's round is a fixed script: the model
down, one priced step per batch, the model up. Two clients of one round then follow the
same clock exactly when their devices are alike (profile, link, split, edge), their
links are in the same state (TCP window, slow-start threshold, segments sent, last
send, smoothed RTT, token bucket, burst queue), they have the same batch sizes, and they
go offline at the same time (never, without availability). Such clients form a cohort:
one SimPy process plays its first member, its flows count once per member on the
server's link and once on the member's own link (``network.fairshare``), and every
member gets the same rows (transfers, timeline, participation). At the end, every
member's link follows the first member's state: one snapshot they share (``LinkState``),
copied into a link only when it next plays (``materialize``).

A link's state is keyed by what decides its clock from the round's start on. Times that
no longer matter are left out of the key: the time of the last send once an idle restart
can take the window no lower (Linux halves it once per RTO idle, down to the initial
window), an empty token bucket's refill once it is full, and a burst queue once it has
drained. Without that, each round's leavers would key apart from every earlier round's,
and cohorts would multiply round after round. A population of 100,000 devices in a
handful of classes then costs a few hundred processes per round, not ten thousand.

The clocks are the per-client run's: the same max-min shares, computed over a cohort's
flows at once (floating-point sums in another order: equal to about 1e-12 relative,
``tests/test_cohorts.py``). Rows of clients that finish in the same instant may come in
another order, and message ids number them in that order.

Devices that can never share a clock stay alone: jittered latency (each draw its own),
rate traces, and, under TCP's burst loss, a path whose bottleneck is the server's link
(bursts from every member would share its buffer, in order). Cohorts are off when the
round keeps fewer clients than it selects (which same-instant finisher is kept depends on
event order), with waves, per-client server copies, or a recorded learning trace.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, fields

from ecofed_sim.network import Capacity, DeviceLink, Network
from ecofed_sim.network.tcp import Connection, TcpParams
from ecofed_sim.population import Device

Member = tuple[Device, int]  # (device, client)

_CONNECTION_STATE = [f.name for f in fields(Connection) if f.name not in ("open", "sending")]
_CAPACITY_STATE = ("active", "idle_since_s", "tokens_bits", "burst_queue_bits",
                   "burst_queue_at_s", "instant_bits")


@dataclass(eq=False)
class LinkState:
    """A link's connection and capacity state as a cohort's round left it. The members
    follow it (``DeviceLink.cohort_state``) rather than each taking a copy, until they
    next play (``materialize``)."""

    connection: Connection
    up: Capacity
    down: Capacity
    cohort_key: int | None = None  # its key, once no time in it can matter (``link_key``)


def usable(scenario, method_config, keep: int, selected: int, copies, recorder) -> bool:
    """Whether this round may play cohorts (see the module docstring)."""
    return (scenario.learning == "none" and type(method_config).defers_training
            and keep >= selected and not scenario.population.waves and copies is None
            and recorder is None and scenario.topology is None)


def _capacity_key(c: Capacity, now_s: float) -> tuple[tuple, bool]:
    """(what decides a capacity's future, whether that holds for any later start)."""
    full = c.burst_bits <= 0 or (c.active == 0 and c.tokens_at(now_s) >= c.burst_bits)
    drained = c.burst_queue_at_s <= now_s and c.burst_backlog_bits(now_s) == 0.0
    return ((c.rate_bps, c.burst_bits, c.active,
             None if full else (c.tokens_bits, c.idle_since_s),
             None if drained else (c.burst_queue_bits, c.burst_queue_at_s, c.instant_bits)),
            full and drained)


def _direction_key(tcp: TcpParams, link: DeviceLink, conn: Connection, direction: str,
                   now_s: float) -> tuple[tuple, bool]:
    """(what decides a direction's next window, whether that holds for any later start).
    Once an idle restart can take the window no lower, when it last sent (and the RTO,
    from its smoothed RTT) no longer matters; its segment count and loss epochs matter
    only under loss."""
    window = conn.window_bits.get(direction)
    last_s, srtt_s = conn.last_send_end_s.get(direction), conn.srtt_s.get(direction)
    settled = last_s is None or window is None or not tcp.slow_start_after_idle
    if not settled:
        idle_s, rtt_s = now_s - last_s, link.round_trip_s if srtt_s is None else srtt_s
        settled = tcp.restart_window_bits(window, idle_s, rtt_s) <= min(
            tcp.initial_window_bits, window)
    # under random loss a device's own draws decide: it shares a key with no other
    segments = ((conn.segments_sent.get(direction), conn.loss_epochs.get(direction),
                 id(link) if link.draws_losses(tcp) else None)
                if link.loss_rate > 0 else None)
    return ((window, conn.ssthresh_bits.get(direction), conn.send_buffer_bits.get(direction),
             segments, None if settled else (last_s, srtt_s)), settled)


def _state_key(network: Network, link: DeviceLink, conn: Connection, up: Capacity,
               down: Capacity, now_s: float) -> tuple[tuple, bool]:
    (up_key, up_settled), (down_key, down_settled) = (_capacity_key(up, now_s),
                                                      _capacity_key(down, now_s))
    key, settled = (up_key, down_key), up_settled and down_settled
    if network.tcp is not None:  # the flow model keeps no connection state
        directions = [_direction_key(network.tcp, link, conn, d, now_s) for d in ("up", "down")]
        key += (conn.open, *(k for k, _ in directions))
        settled = settled and all(s for _, s in directions)
    return key, settled


def _shares_a_burst_queue(network: Network, link: DeviceLink) -> bool:
    """Under TCP's burst loss, whether a path's bottleneck is the server's link (where
    every member's burst would queue, one after another)."""
    tcp = network.tcp
    return tcp is not None and tcp.burst_loss and any(
        network.bottleneck(link, d) is not link.side(d) for d in ("up", "down"))


def link_key(network: Network, link: DeviceLink, now_s: float) -> int | tuple:
    """What decides a link's clock from ``now_s`` on: its fixed parameters and its state
    (its own, or the ``LinkState`` it follows). A link that must stay alone keys by its
    identity. A key in which no time can matter any more is kept with the state, so a
    round hashes it once per cohort, not once per client."""
    holder = link.cohort_state or link
    if holder.cohort_key is not None:
        return holder.cohort_key
    conn = holder.connection
    if (link.jitter_s > 0 or link.traces or conn.sending
            or _shares_a_burst_queue(network, link)):
        return (id(link),)
    state, settled = _state_key(network, link, conn, holder.up, holder.down, now_s)
    key = (state, link.latency_s, link.rtt_s, link.loss_rate, link.buffer_bytes,
           None if link.server is None else tuple(map(id, link.server)))
    key_id = network.cohort_ids.setdefault(key, len(network.cohort_ids))
    if settled:
        holder.cohort_key = key_id
    return key_id


def played(cohort: list[Member]) -> None:
    """A cohort's round is over (done or cut off): every member's link follows a snapshot
    of the first member's state."""
    source = cohort[0][0].link
    conn = source.connection
    state = LinkState(Connection(open=conn.open, **{name: dict(getattr(conn, name))
                                                    for name in _CONNECTION_STATE}),
                      copy.copy(source.up), copy.copy(source.down))
    for device, _ in cohort:
        device.link.cohort_state = state


def materialize(link: DeviceLink) -> None:
    """A link about to play takes the state it follows, if any, as its own."""
    state = link.cohort_state
    if state is None:
        return
    conn, src = link.connection, state.connection
    conn.open = src.open
    for name in _CONNECTION_STATE:
        setattr(conn, name, dict(getattr(src, name)))
    for side in ("up", "down"):
        a, b = getattr(state, side), getattr(link, side)
        for name in _CAPACITY_STATE:
            setattr(b, name, getattr(a, name))
    link.cohort_state = link.cohort_key = None


def group(schedule: list[tuple[Device, list[int]]],
          key_of: Callable[[Device, int], tuple]) -> list[list[Member]]:
    """The round's cohorts, in the order their first members come in ``schedule`` (one
    client per device: no waves)."""
    cohorts: dict[tuple, list[Member]] = {}
    for device, (client,) in schedule:
        key = (device.profile.name, device.split, device.edge, key_of(device, client))
        cohorts.setdefault(key, []).append((device, client))
    return list(cohorts.values())


__all__ = ["LinkState", "Member", "group", "link_key", "materialize", "played", "usable"]

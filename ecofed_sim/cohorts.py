"""Cohorts: the clients a timing-only round plays identically, simulated as one.

In a timing-only run (``learning: none``) of a method whose round needs no real
computation (``defers_training``: FedAvg), a client's round is a fixed script: the model
down, one priced step per batch, the model up. Two clients of one round then follow the
same clock exactly when their devices are alike (profile, link, split, edge), their
links are in the same state (TCP window, slow-start threshold, last send, smoothed RTT,
token bucket, burst queue), they have the same batch sizes, and they go offline at the
same time (never, without availability). Such clients form a cohort: one SimPy process
plays its first member, its flows count once per member on the server's link and once
on the member's own link (``network.fairshare``), and every member gets the same rows
(transfers, timeline, participation). At the end, every member's link takes the first
member's state.

A population of 100,000 devices in a handful of classes then costs a few hundred
processes per round, not ten thousand. The clocks are the per-client run's: the same
max-min shares, computed over a cohort's flows at once (floating-point sums in another
order: equal to about 1e-12 relative, ``tests/test_cohorts.py``). Rows of clients that
finish in the same instant may come in another order, and message ids number them in that
order.

Devices that can never share a clock stay alone: jittered latency (each draw its own),
rate traces, and, under TCP's burst loss, a path whose bottleneck is the server's link
(bursts from every member would share its buffer, in order). Cohorts are off when the
round keeps fewer clients than it selects (which same-instant finisher is kept depends on
event order), with waves, per-client server copies, or a recorded learning trace.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields

from ecofed_sim.network import Capacity, DeviceLink, Network
from ecofed_sim.network.tcp import Connection
from ecofed_sim.population import Device

Member = tuple[Device, int]  # (device, client)

_CONNECTION_STATE = [f.name for f in fields(Connection) if f.name not in ("open", "sending")]
_CAPACITY_STATE = ("active", "idle_since_s", "tokens_bits", "burst_queue_bits",
                   "burst_queue_at_s")


def usable(scenario, method_config, keep: int, selected: int, copies, recorder) -> bool:
    """Whether this round may play cohorts (see the module docstring)."""
    return (scenario.learning == "none" and type(method_config).defers_training
            and keep >= selected and not scenario.population.waves and copies is None
            and recorder is None and scenario.topology is None)


def _capacity_state(c: Capacity) -> tuple:
    return (c.rate_bps, c.burst_bits, *(getattr(c, name) for name in _CAPACITY_STATE))


def _shares_a_burst_queue(network: Network, link: DeviceLink) -> bool:
    """Under TCP's burst loss, whether a path's bottleneck is the server's link (where
    every member's burst would queue, one after another)."""
    tcp = network.tcp
    return tcp is not None and tcp.burst_loss and any(
        network.bottleneck(link, d) is not link.side(d) for d in ("up", "down"))


def link_key(network: Network, link: DeviceLink) -> int | tuple:
    """What decides a link's clock from now on: its fixed parameters and its state. A
    link that must stay alone keys by its identity. Kept on the link until it next plays
    (``played``): a link that sits out a round keeps its key."""
    if link.cohort_key is not None:
        return link.cohort_key
    if (link.jitter_s > 0 or link.traces or link.connection.sending
            or _shares_a_burst_queue(network, link)):
        return (id(link),)
    conn = link.connection
    state = tuple(tuple(sorted(getattr(conn, name).items())) for name in _CONNECTION_STATE)
    key = (_capacity_state(link.up), _capacity_state(link.down), link.latency_s,
           link.rtt_s, link.loss_rate, link.buffer_bytes, conn.open, state,
           None if link.server is None else tuple(map(id, link.server)))
    # a small number stands for the key: a round hashes it once per client
    link.cohort_key = network.cohort_ids.setdefault(key, len(network.cohort_ids))
    return link.cohort_key


def played(network: Network, cohort: list[Member]) -> None:
    """A cohort's round is over (done or cut off): every member's link takes the first
    member's state, and its key."""
    source = cohort[0][0].link
    source.cohort_key = None
    link_key(network, source)
    for device, _ in cohort[1:]:
        copy_link_state(source, device.link)


def group(schedule: list[tuple[Device, list[int]]],
          key_of: Callable[[Device, int], tuple]) -> list[list[Member]]:
    """The round's cohorts, in the order their first members come in ``schedule`` (one
    client per device: no waves)."""
    cohorts: dict[tuple, list[Member]] = {}
    for device, (client,) in schedule:
        key = (device.profile.name, device.split, device.edge, key_of(device, client))
        cohorts.setdefault(key, []).append((device, client))
    return list(cohorts.values())


def copy_link_state(source: DeviceLink, target: DeviceLink) -> None:
    """``target`` takes ``source``'s connection and capacity state (a cohort's end)."""
    conn, src = target.connection, source.connection
    conn.open = src.open
    for name in _CONNECTION_STATE:
        setattr(conn, name, dict(getattr(src, name)))
    for side in ("up", "down"):
        a, b = getattr(source, side), getattr(target, side)
        for name in _CAPACITY_STATE:
            setattr(b, name, getattr(a, name))
    target.cohort_key = source.cohort_key


__all__ = ["Member", "copy_link_state", "group", "link_key", "played", "usable"]

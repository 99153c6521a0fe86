"""Max-min fair sharing on the flow-level network model, checked against hand arithmetic."""

from __future__ import annotations

import pytest
import simpy

from ecofed_sim.network import Capacity, DeviceLink, Flow, Network, max_min_rates


def _run(server_in_mbps: float, starts: list[tuple[float, DeviceLink, int]]) -> list[float]:
    env = simpy.Environment()
    net = Network(env, Capacity("in", server_in_mbps * 1e6), Capacity("out", 1e9))
    ends: list[float] = [0.0] * len(starts)

    def proc(i, t0, link, nbytes):
        yield env.timeout(t0)
        yield from net.transfer(link, "up", nbytes)
        ends[i] = env.now

    for i, (t0, link, nbytes) in enumerate(starts):
        env.process(proc(i, t0, link, nbytes))
    env.run()
    return ends


def test_rates_are_recomputed_when_a_flow_joins_and_leaves():
    a = DeviceLink.from_mbps("a", 10, 10, 0)
    b = DeviceLink.from_mbps("b", 10, 10, 0)
    # A alone at 4 Mbit/s for 1 s (4e6 bits), then 2 + 2 until A ends at t=3,
    # then B alone at 4 Mbit/s for its last 4e6 bits: t=4.
    ends = _run(4, [(0.0, a, 1_000_000), (1.0, b, 1_000_000)])
    assert ends == pytest.approx([3.0, 4.0], rel=1e-12)


def test_max_min_gives_spare_capacity_to_the_unconstrained_flow():
    slow = DeviceLink.from_mbps("slow", 2, 10, 0)
    fast = DeviceLink.from_mbps("fast", 10, 10, 0)
    ends = _run(10, [(0.0, slow, 250_000), (0.0, fast, 1_000_000)])
    # slow is capped at 2 by its own uplink, fast gets the remaining 8 of the server's 10
    assert ends == pytest.approx([1.0, 1.0], rel=1e-12)


def test_latency_precedes_the_flow():
    link = DeviceLink.from_mbps("a", 8, 8, latency_ms=25)
    assert _run(100, [(0.0, link, 1_000_000)]) == pytest.approx([1.025], rel=1e-12)


def test_progressive_filling_pure_function():
    server = Capacity("s", 12.0)
    caps = [Capacity(str(i), c) for i, c in enumerate([1.0, 20.0, 20.0])]
    flows = [Flow((c, server), 1.0, None) for c in caps]
    rates = max_min_rates(flows)
    assert rates == {0: 1.0, 1: 5.5, 2: 5.5}


def test_token_bucket_sends_its_burst_after_idle_only():
    env = simpy.Environment()
    net = Network(env, Capacity("in", 1e12), Capacity("out", 1e12))
    link = DeviceLink.from_mbps("a", 8, 8, 0)
    link.set_burst(100_000)
    ends = []

    def proc():
        yield env.timeout(1.0)  # idle 1 s: the bucket is full (100 KB)
        yield from net.transfer(link, "up", 1_000_000)
        ends.append(env.now)  # 900 KB at 1 MB/s after the burst: 0.9 s
        yield from net.transfer(link, "up", 1_000_000)
        ends.append(env.now)  # back to back: no tokens, 1.0 s
        yield env.timeout(0.05)  # 50 ms idle refills 50 KB
        yield from net.transfer(link, "up", 1_000_000)
        ends.append(env.now)

    env.process(proc())
    env.run()
    assert ends == pytest.approx([1.9, 2.9, 2.95 + 0.95], rel=1e-12)

"""Max-min fair sharing on the flow-level network model, checked against hand arithmetic."""

from __future__ import annotations

import math

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


@pytest.mark.parametrize("start_s", [1e3, 2e4, 1e5, 987_654.0, 1e7, 1e9])
def test_transfers_finish_at_large_clock_values(start_s):
    """A float clock near ``start_s`` cannot take steps below its ULP; every transfer must
    still finish, in a bounded number of events, at the time its bits take."""
    import random

    rnd = random.Random(int(start_s))
    for _ in range(40):
        env = simpy.Environment(initial_time=start_s)
        net = Network(env, Capacity("in", 1e9), Capacity("out", 1e9))
        links = [DeviceLink.from_mbps(f"d{i}", rnd.uniform(0.1, 100), 10, 0) for i in range(3)]
        sizes = [rnd.randint(1, 10**7) for _ in links]
        ends: dict[int, float] = {}

        def send(env, net, link, nbytes, ends, i):
            yield from net.transfer(link, "up", nbytes)
            ends[i] = env.now

        for i in range(len(links)):
            env.process(send(env, net, links[i], sizes[i], ends, i))
        steps = 0
        while env.peek() != float("inf") and steps < 1000:
            env.step()
            steps += 1
        assert len(ends) == len(links), f"stuck after {steps} events at t={env.now!r}"
        for i, link in enumerate(links):  # independent links: each at its own rate
            expected = start_s + sizes[i] * 8 / link.up.rate_bps
            assert ends[i] == pytest.approx(expected, rel=1e-12, abs=64 * math.ulp(start_s))

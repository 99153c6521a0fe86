"""Max-min fair sharing on the flow-level network model, checked against hand arithmetic."""

from __future__ import annotations

import math

import pytest
import simpy
from helpers import cut_transfer

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
    rates = max_min_rates([f.constraints for f in flows])
    assert rates == [1.0, 5.5, 5.5]


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


def test_a_flow_cut_mid_way_frees_its_share_for_the_others():
    """Server ingress 4 Mbit/s shared by A and B (1 MB each, 2 Mbit/s each). A is cut at
    t = 1 s, having sent 2e6 of its 8e6 bits; B then has the whole 4 Mbit/s for its last
    6e6 bits: it ends at 1 + 1.5 = 2.5 s (at 4.0 s if A's share were not given back)."""
    env = simpy.Environment()
    net = Network(env, Capacity("in", 4e6), Capacity("out", 1e9))
    a, b = DeviceLink.from_mbps("a", 10, 10, 0), DeviceLink.from_mbps("b", 10, 10, 0)
    got: dict[str, float] = {}

    def sender(name, link):
        try:
            yield from net.transfer(link, "up", 1_000_000)
            got[name] = env.now
        except simpy.Interrupt as cut:
            got[f"{name}_delivered"] = cut.delivered_fraction

    proc_a = env.process(sender("a", a))
    env.process(sender("b", b))

    def cutter():
        yield env.timeout(1.0)
        proc_a.interrupt("round closed")

    env.process(cutter())
    env.run()
    assert got == {"a_delivered": pytest.approx(0.25, rel=1e-12),
                   "b": pytest.approx(2.5, rel=1e-12)}
    assert net.flows == []


def test_jitter_stays_within_its_range_and_fills_it():
    import numpy as np

    link = DeviceLink.from_mbps("a", 10, 10, latency_ms=20)
    link.jitter_s, link.rng = 0.005, np.random.default_rng(7)
    delays = np.array([link.delay_s() for _ in range(20_000)])
    assert delays.min() >= 0.020 and delays.max() <= 0.025  # uniform in [0, jitter]
    assert delays.max() > 0.0249 and delays.min() < 0.0201  # and all of it
    assert delays.mean() == pytest.approx(0.0225, abs=5e-5)


def test_scenario_jitter_bounds_every_transfer(tiny_dir):
    from conftest import tiny
    from helpers import run_dict

    # 2 clients x 2 rounds: the weights down at 2 Mbit/s and up at 0.5 Mbit/s (server
    # ingress 1 Mbit/s, shared), each after 10 ms plus up to 4 ms of jitter
    raw = tiny(**{"population.devices.0.link.latency_jitter_ms": 4.0})
    base = run_dict(tiny(), tiny_dir).transfers
    jit = run_dict(raw, tiny_dir).transfers
    extra = (jit.t_end_s - jit.t_start_s) - (base.t_end_s - base.t_start_s)
    downs = jit.direction == "down"
    assert (extra[downs] >= -1e-12).all() and (extra[downs] <= 0.004 + 1e-12).all()
    assert extra[downs].max() > 0


def _timed(net, env, plan):
    """Run (start_s, link, direction, payload_bytes) transfers; their end times."""
    ends = {}

    def one(i, start_s, link, direction, size):
        yield env.timeout(start_s)
        yield from net.transfer(link, direction, size)
        ends[i] = env.now

    for i, (start_s, link, direction, size) in enumerate(plan):
        env.process(one(i, start_s, link, direction, size))
    env.run()
    return [ends[i] for i in range(len(plan))]


def test_each_direction_crosses_its_own_link_side_and_server_side():
    """Up 8 Mbit/s, down 16; server ingress 2, egress 100. 1 MB (8e6 bits) up is held to
    the server's 2 Mbit/s: 4 s; 1 MB down to the device's 16: 0.5 s."""
    env = simpy.Environment()
    net = Network(env, Capacity("in", 2e6), Capacity("out", 1e8))
    link = DeviceLink.from_mbps("a", 8, 16, 0)
    assert link.side("up") is link.up and link.side("down") is link.down
    assert _timed(net, env, [(0.0, link, "up", 1_000_000),
                             (0.0, link, "down", 1_000_000)]) == pytest.approx([4.0, 0.5])


def test_empty_and_one_byte_messages_under_tcp():
    """No payload: no handshake, no flow, only the one-way delay (10 ms). One byte: the
    handshake (one 40 ms RTT), the delay, then 67 wire bytes (one header) at 8 Mbit/s."""
    from ecofed_sim.network import TcpParams

    env = simpy.Environment()
    net = Network(env, Capacity("in", 1e9), Capacity("out", 1e9), tcp=TcpParams())
    link = DeviceLink.from_mbps("a", 8, 8, 10)
    link.rtt_s = 0.04
    empty, one = _timed(net, env, [(0.0, link, "up", 0), (1.0, link, "down", 1)])
    assert empty == pytest.approx(0.010, rel=1e-12)
    assert one == pytest.approx(1.0 + 0.04 + 0.010 + 67 * 8 / 8e6, rel=1e-12)
    assert TcpParams().wire_bytes(0) == 0.0 and TcpParams().wire_bytes(1) == 67
    assert TcpParams().wire_bytes(1449) == 1449 + 2 * 66


def test_framing_adds_per_message_and_per_byte_overhead():
    from ecofed_sim.network.links import wire_bytes

    assert wire_bytes(0, 40, 0.05) == 0.0 and wire_bytes(-3, 40, 0.05) == 0.0
    assert wire_bytes(1, 40, 0.0) == 41.0
    assert wire_bytes(1000, 40, 0.05) == pytest.approx(1000 * 1.05 + 40, rel=1e-15)


def test_a_cut_during_the_delay_delivers_nothing():
    env = simpy.Environment()
    net = Network(env, Capacity("in", 1e9), Capacity("out", 1e9))
    link = DeviceLink.from_mbps("a", 8, 8, 100)  # 0.1 s one-way delay
    seen = cut_transfer(env, net, link, "up", 1000, 0.05)
    assert seen == {"fraction": 0.0, "at": 0.05} and net.flows == []


def test_token_bucket_refills_from_what_a_message_left():
    """Bucket 100 KB (8e5 bits), 8 Mbit/s, no delay, full after 1 s idle. 40 KB at t = 1
    leaves in the burst (3.2e5 bits taken, 4.8e5 left; the link is never busy). 100 KB at
    t = 1.01: the bucket holds 4.8e5 + 0.01 s x 8e6 = 5.6e5 bits; 2.4e5 remain. 30 KB at
    t = 1.02 gets no tokens, the link being busy: it shares the link with the second's
    last 1.6e5 bits, both at 4 Mbit/s until that one ends at 1.06, then sends its last
    8e4 bits at 8 Mbit/s: 1.07. The bucket refills only from then, when no flow is left:
    30 KB at t = 1.08 finds 0.01 s x 8e6 = 8e4 bits, and sends the other 1.6e5 bits by
    1.10."""
    env = simpy.Environment()
    net = Network(env, Capacity("in", 1e12), Capacity("out", 1e12))
    a = DeviceLink.from_mbps("a", 8, 8, 0)
    a.set_burst(100_000)
    ends = _timed(net, env, [(1.0, a, "up", 40_000), (1.01, a, "up", 100_000),
                             (1.02, a, "up", 30_000), (1.08, a, "up", 30_000)])
    assert ends == pytest.approx([1.0, 1.06, 1.07, 1.10], rel=1e-12)
    b = DeviceLink.from_mbps("b", 8, 8, 0)  # no bucket: no burst
    env = simpy.Environment()
    net = Network(env, Capacity("in", 1e12), Capacity("out", 1e12))
    assert _timed(net, env, [(1.0, b, "up", 1000)]) == pytest.approx([1.001], rel=1e-12)


def test_each_direction_has_its_own_token_bucket():
    """A 1 MB upload keeps the uplink busy from t = 1; a 40 KB download at t = 1 still
    finds the downlink's bucket full (it was idle for 1 s) and arrives at once."""
    env = simpy.Environment()
    net = Network(env, Capacity("in", 1e12), Capacity("out", 1e12))
    link = DeviceLink.from_mbps("a", 8, 8, 0)
    link.set_burst(100_000)
    up, down = _timed(net, env, [(1.0, link, "up", 1_000_000), (1.0, link, "down", 40_000)])
    assert down == 1.0
    assert up == pytest.approx(1.0 + 0.9, rel=1e-12)  # 100 KB burst, 900 KB at 1 MB/s

"""HyStart on a shared bottleneck: it judges the rate a flow's segments were served at.

Linux's HyStart reads the spacing of a round's acknowledgements and the RTT of its first
ones. Both follow the rate the bottleneck serves the flow's segments at: the path's own
rate when the flow is alone, its share when others send through the same link. All
numbers are derived by hand below; segments carry 1,448 payload bytes and 66 of headers
(12,112 bits on the wire).
"""

from __future__ import annotations

import math

import pytest
import simpy

from ecofed_sim.network import Capacity, DeviceLink, Network, TcpParams

SEG = 12_112
PAYLOAD_43 = 43 * 1448  # 43 full segments: 520,816 bits on the wire


def _uploads(devices: int) -> list[tuple[float, float]]:
    """``devices`` devices (1 Gbit/s links, 20 ms one way) upload 43 segments each at
    once, on connections opened beforehand, through a 20 Mbit/s server ingress; each
    connection's (window, slow-start threshold) afterwards, in segments."""
    env = simpy.Environment()
    net = Network(env, Capacity("in", 20e6), Capacity("out", 1e9), tcp=TcpParams())
    links = [DeviceLink.from_mbps(f"d{i}", 1000, 1000, 20) for i in range(devices)]
    for link in links:
        link.connection.open = True
        env.process(net.transfer(link, "up", PAYLOAD_43))
    env.run()
    return [(link.connection.window_bits["up"] / SEG, link.connection.ssthresh("up") / SEG)
            for link in links]


def test_alone_a_flow_is_judged_at_the_path_rate():
    """20 Mbit/s: 0.6056 ms a segment, so half the 40 ms RTT is a train of 33.02 ACKs, and
    a round of 20 drains in 12.1 ms (no queue left). Rounds of 10, 20 and 13 segments:
    HyStart never ends slow start; the window is 10 + 43 = 53, the threshold unset. (Were
    the 20 ms before the flow reached the link counted as sending, its rate would read
    11.3 Mbit/s and round 2 would end slow start.)"""
    assert _uploads(1) == [(pytest.approx(53.0, rel=1e-12), math.inf)]


def test_two_flows_sharing_the_link_are_judged_at_their_share():
    """Two flows in slow start share the 20 Mbit/s ingress. Round 1: 10 segments each at
    10 Mbit/s (12.112 ms). Round 2: 20 each at 10 Mbit/s (24.224 ms); the second flow's
    flight queued behind the first's (20 segments, 12.112 ms), so its round trip ends
    that much later, and in round 3 each sends its last 13 alone, at 20 Mbit/s
    (7.8728 ms). Each was served 43 segments in 44.2088 ms: 11.78 Mbit/s, 1.0281 ms a
    segment, so half the RTT is a train of 19.45 ACKs. Round 1 (10 segments, below 16,
    no HyStart) leaves 20. Round 2: 20 ACKs; after 19.45 the train ends slow start at
    39.45 (the threshold); the other 0.55 add 0.55 / 39.45. Round 3: the last 13 add
    13 / cwnd. At the path's rate the same rounds would leave 53."""
    sending_s = (10 + 20) * SEG / 10e6 + 13 * SEG / 20e6
    train = 0.020 / (sending_s / 43)
    cwnd = 20 + train
    ssthresh = cwnd
    cwnd += (20 - train) / cwnd
    cwnd += 13 / cwnd
    expected = (pytest.approx(cwnd, rel=1e-9), pytest.approx(ssthresh, rel=1e-9))
    assert _uploads(2) == [expected, expected]


def test_a_flight_queued_behind_another_ends_its_round_trip_later():
    """The same two uploads, each connection's message end: the first flow's three
    rounds end at 60 and 100 ms (round trips from its first bit's arrival at 20 ms), and
    its last 13 segments take 7.8728 ms at 20 Mbit/s (done 107.87 ms). The second's
    round 2 flight waits behind the first's 20 segments (12.112 ms), so its round 3
    starts at 112.112 ms and ends at 119.98 ms."""
    env = simpy.Environment()
    net = Network(env, Capacity("in", 20e6), Capacity("out", 1e9), tcp=TcpParams())
    ends = []

    def upload(link):
        yield from net.transfer(link, "up", PAYLOAD_43)
        ends.append(env.now)

    for i in range(2):
        link = DeviceLink.from_mbps(f"d{i}", 1000, 1000, 20)
        link.connection.open = True
        env.process(upload(link))
    env.run()
    last_13_s = 13 * SEG / 20e6
    assert ends == [pytest.approx(0.100 + last_13_s, abs=1e-12),
                    pytest.approx(0.100 + 20 * SEG / 20e6 + last_13_s, abs=1e-12)]

"""The network model at its edges: thresholds met exactly, each direction on its own side,
what a connection books at a message's end, and a message queued behind another.

Hand arithmetic as in ``test_tcp.py``: a segment is 1448 payload + 66 header bytes =
12,112 bits on the wire; the initial window is 10 segments = 121,120 bits.
"""

from __future__ import annotations

import numpy as np
import pytest
import simpy
from helpers import cut_transfer

from ecofed_sim.network import Capacity, DeviceLink, Network, TcpParams

SEG = 12_112
IW = 10 * SEG


def _pftk_bps(rtt_s: float, p: float) -> float:
    """Padhye et al. (1998), b = 1, timeout = RTT + 200 ms; wire bits per second."""
    per_segment_s = (rtt_s * (2 * p / 3) ** 0.5
                     + (rtt_s + 0.2) * min(1.0, 3 * (3 * p / 8) ** 0.5) * p * (1 + 32 * p**2))
    return SEG / per_segment_s


def _tcp_net(server_in_bps: float = 1e12, server_out_bps: float = 1e12,
             tcp: TcpParams | None = None):
    env = simpy.Environment()
    return env, Network(env, Capacity("in", server_in_bps), Capacity("out", server_out_bps),
                        tcp=tcp or TcpParams())


def _open_link(name: str, up_mbps: float, down_mbps: float, latency_ms: float) -> DeviceLink:
    """A link whose connection is open with the initial window, last used at t = 0."""
    link = DeviceLink.from_mbps(name, up_mbps, down_mbps, latency_ms)
    link.connection.open = True
    for direction in ("up", "down"):
        link.connection.window_bits[direction] = IW
        link.connection.last_send_end_s[direction] = 0.0
    return link


def _send(env, net, plan):
    """Run (start_s, link, direction, payload_bytes) transfers; their end times."""
    ends: dict[int, float] = {}

    def one(i, start_s, link, direction, size):
        yield env.timeout(start_s)
        yield from net.transfer(link, direction, size)
        ends[i] = env.now

    for i, item in enumerate(plan):
        env.process(one(i, *item))
    env.run()
    return [ends[i] for i in range(len(plan))]


def test_a_one_bit_bucket_sends_its_bit_at_once():
    side = Capacity("c", 8e6, burst_bits=1.0)
    assert side.take_tokens(5.0, 100.0) == 1.0
    assert side.take_tokens(5.0, 100.0) == 0.0  # emptied, no time to refill
    assert Capacity("c", 8e6).take_tokens(5.0, 100.0) == 0.0  # no bucket


def test_a_link_without_jitter_draws_no_random_numbers():
    """Jitter 0 with a generator attached: the delay is the latency and the generator's
    stream is untouched (other draws keyed to it stay as they were)."""
    link = DeviceLink.from_mbps("a", 10, 10, latency_ms=20)
    link.rng = np.random.default_rng(3)
    assert [link.delay_s() for _ in range(3)] == [0.020] * 3
    assert link.rng.random() == np.random.default_rng(3).random()


def test_a_bucket_on_the_uplink_only_serves_uploads():
    """A 100 KB bucket on the uplink alone (8 Mbit/s both ways, no delay), full after 1 s
    idle: 40 KB up leaves at once; 40 KB down goes at the rate, 0.04 s."""
    env = simpy.Environment()
    net = Network(env, Capacity("in", 1e12), Capacity("out", 1e12))
    link = DeviceLink.from_mbps("a", 8, 8, 0)
    link.up.burst_bits = 800_000
    up, down = _send(env, net, [(1.0, link, "up", 40_000), (2.0, link, "down", 40_000)])
    assert up == 1.0 and down == pytest.approx(2.04, rel=1e-12)


def test_the_flow_model_ignores_a_loss_rate():
    """Random loss is a TCP model: without the TCP transport a lossy link is the flow model
    (one way 50 ms, 800,000 bits at 10 Mbit/s)."""
    env = simpy.Environment()
    net = Network(env, Capacity("in", 1e9), Capacity("out", 1e9))
    link = DeviceLink.from_mbps("a", 10, 10, 50)
    link.loss_rate = 0.01
    assert _send(env, net, [(0.0, link, "up", 100_000)]) == [pytest.approx(0.13, rel=1e-12)]


def test_the_window_cap_follows_each_directions_slowest_side():
    """Server ingress 5 Mbit/s, egress 1 Tbit/s; device up 10, down 20 Mbit/s; RTT 0.1 s.
    Up, the path's rate is the server's 5 Mbit/s: the window may reach the BDP 500,000 +
    the buffer max(500,000, 64 x 12,112 = 775,168) = 1,275,168 bits. Down it is the
    device's 20 Mbit/s: 2e6 + 2e6 = 4e6 bits. 5 MB each way grows the window to its cap
    (``cwnd += acked``), with HyStart off (it would end slow start below the cap)."""
    env, net = _tcp_net(server_in_bps=5e6, tcp=TcpParams(hystart=False))
    link = _open_link("a", 10, 20, 50)
    _send(env, net, [(0.0, link, "up", 5_000_000), (0.0, link, "down", 5_000_000)])
    assert link.connection.window_bits == {"up": 1_275_168, "down": 4e6}


def _booked(rate_mbps: float, payload_bytes: int, buffer_bytes: float | None,
            tcp: TcpParams | None = None):
    """One message up an open connection (initial window, RTT 0.1 s; the downlink twice
    as fast, unused): its arrival and the connection's smoothed RTT and last send time."""
    env, net = _tcp_net(tcp=tcp)
    link = _open_link("a", rate_mbps, 2 * rate_mbps, 50)
    link.buffer_bytes = buffer_bytes
    (arrived_s,) = _send(env, net, [(0.0, link, "up", payload_bytes)])
    conn = link.connection
    return arrived_s, conn.srtt_s["up"], conn.last_send_end_s["up"], conn


def test_a_message_books_the_queue_its_last_segment_found():
    """The queue at the bottleneck as the last segment joins it sets the last send (the
    queue's wait and one way before the arrival) and the smoothed RTT: RTT plus that wait
    less the estimator's lag where the queue ramped up, the waits of the last 14 segments
    sent (169,568 bits in a burst, half that in slow start, where the queue grows by one
    segment for every two sent), each of the message's samples (one per two segments)
    weighing an eighth. At 10 Mbit/s:

    - one segment: sent in one burst, the message is the queue, 12,112 bits, below the
      lag: the smoothed RTT stays 0.1 s;
    - 100 KB (70 segments, 836,960 bits), buffer 1 GB: rounds of 10, 20, then a window
      of 40 segments that carries the last 473,600 bits; they leave two segments per
      acknowledgement while the bottleneck drains one, so half of them, 236,800 bits,
      are queued, less a lag of 84,784 bits. The first flight's 10 segments (5 samples)
      queued 121,120 bits, below a burst's lag: they leave 0.1 s. The 60 segments after
      it, 30 samples: 0.1 (7/8)^30 + (0.1 + 152,016 / 1e7) (1 - (7/8)^30);
    - the same with a 10,000-byte buffer (burst loss off: the initial window would not
      fit): the queue is the buffer, 80,000 bits, below the lag."""
    kept = (7 / 8) ** 30
    for payload, buffer, queue, srtt, tcp in [
            (1448, None, SEG, 0.1, None),
            (100_000, 1e9, 236_800, 0.1 * kept + (0.1 + 152_016 / 1e7) * (1 - kept), None),
            (100_000, 10_000, 80_000, 0.1, TcpParams(burst_loss=False))]:
        arrived_s, srtt_s, last_send_s, _ = _booked(10, payload, buffer, tcp)
        assert srtt_s == pytest.approx(srtt, rel=1e-12), payload
        assert last_send_s == pytest.approx(arrived_s - 0.05 - queue / 1e7, rel=1e-12)


def test_a_first_flight_leaves_its_samples_in_the_smoothed_rtt():
    """100 KB (70 segments) up an open connection whose window is 55 segments, at
    20 Mbit/s and RTT 0.1 s (HyStart and the send buffer off, buffer 1 GB): the first
    flight goes at once, its queue ramping to 55 segments, 666,160 bits; its 27.5 samples
    move the smoothed RTT to 0.1 + (666,160 - 14 x 12,112) / 2e7 less (7/8)^27.5 of the
    way. The last 15 segments (170,800 bits) go a round trip later, half of them queued,
    85,400 bits, below slow start's lag of 7 x 12,112: their 7.5 samples pull it towards
    0.1 + 616 / 2e7. 108.9 ms; Linux reported 113.7 ms after 55 and 15 segments at
    20 Mbit/s and 100 ms; counting the last flight alone gave 100.0 ms."""
    env, net = _tcp_net(tcp=TcpParams(hystart=False, send_buffer_segments=0))
    link = _open_link("a", 20, 40, 50)
    link.buffer_bytes = 1e9
    link.connection.window_bits["up"] = 55 * SEG
    _send(env, net, [(0.0, link, "up", 100_000)])
    kept = (7 / 8) ** 27.5
    first_s = 0.1 * kept + (0.1 + (55 * SEG - 14 * SEG) / 2e7) * (1 - kept)
    kept = (7 / 8) ** 7.5
    expected_s = first_s * kept + (0.1 + (85_400 - 7 * SEG) / 2e7) * (1 - kept)
    assert link.connection.srtt_s["up"] == pytest.approx(expected_s, rel=1e-12)
    assert link.connection.srtt_s["up"] == pytest.approx(0.1089, abs=1e-4)


def test_the_smoothed_rtt_follows_the_last_samples():
    """Linux's estimator moves an eighth of the way to each sample. A queue of 1e6 bits at
    10 Mbit/s (0.1 s) behind an RTT of 0.1 s, from a smoothed RTT of 0.5 s:

    - 10,000 segments (5,000 samples) forget 0.5 s: an open window's steady queue gives
      0.2 s; a burst's ramp lags by 14 segments' waits, 0.2 - 169,568 / 1e7 =
      0.1830432 s; slow start's by 7, 0.1915216 s;
    - two segments are one sample: 0.5 x 7/8 + 0.2 / 8 = 0.4625 s."""
    tcp = TcpParams()
    assert tcp.smoothed_rtt_s(0.5, 0.1, 1e6, 1e7, 10_000, ramp=0.0) == pytest.approx(0.2)
    assert tcp.smoothed_rtt_s(0.5, 0.1, 1e6, 1e7, 10_000, ramp=1.0) == pytest.approx(
        0.1830432, rel=1e-12)
    assert tcp.smoothed_rtt_s(0.5, 0.1, 1e6, 1e7, 10_000, ramp=0.5) == pytest.approx(
        0.1915216, rel=1e-12)
    assert tcp.smoothed_rtt_s(0.5, 0.1, 1e6, 1e7, 2, ramp=0.0) == pytest.approx(
        0.4625, rel=1e-12)


def test_an_open_window_queues_what_exceeds_the_path():
    """Window 120 segments, above the BDP of 82.56 (1e6 bits at 10 Mbit/s, RTT 0.1 s),
    and open (the rate limits it): 1,453,440 - 1,000,000 = 453,440 bits wait at the
    bottleneck; a window still in slow start with 30,000 bits of its round unsent has
    sent 1,423,440 and queued half; a message the window held whole is all queued."""
    from ecofed_sim.network.window import Window

    w = Window(0.1, 120 * SEG, 1e9, 30_000.0, 0.0, open=True, start_bits=10 * SEG)
    assert w.queue_at_end_bits(2e6, 1e6) == 120 * SEG - 1e6
    w.open = False
    assert w.queue_at_end_bits(2e6, 1e6) == (120 * SEG - 30_000) / 2
    w.start_bits = 2e6
    assert w.queue_at_end_bits(2e6, 1e6) == 2e6


def test_a_shared_bottleneck_queues_the_other_flows_share_too():
    """At 10 Mbit/s and RTT 0.1 s, a message served at half the rate (5e6 bit/s)
    shared the bottleneck with as much again: its own queue, at its
    share of the bandwidth-delay product (500,000 bits), counts twice. Open window of 120
    segments: (1,453,440 - 500,000) x 2; in slow start with 30,000 bits of the round
    unsent: half the round sent, x 2; a message the window held whole: all of it, x 2.
    Served at the full rate (alone), it is ``queue_at_end_bits`` exactly."""
    from ecofed_sim.network.window import Window

    w = Window(0.1, 120 * SEG, 1e9, 30_000.0, 0.0, open=True, start_bits=10 * SEG)
    assert w.shared_queue_bits(2e6, 5e6, 1e7, 0.1) == (120 * SEG - 500_000) * 2
    assert w.shared_queue_bits(2e6, 1e7, 1e7, 0.1) == w.queue_at_end_bits(2e6, 1e6)
    w.open = False
    assert w.shared_queue_bits(2e6, 5e6, 1e7, 0.1) == (120 * SEG - 30_000) / 2 * 2
    w.start_bits = 2e6
    assert w.shared_queue_bits(2e6, 5e6, 1e7, 0.1) == 2e6 * 2


def test_messages_sharing_the_server_link_raise_each_others_smoothed_rtt():
    """Two 300 KB uploads at once through a 10 Mbit/s server link (devices 100 Mbit/s,
    RTT 0.1 s, connections open, buffers of a bandwidth-delay product) each get half
    of it; each connection's smoothed RTT then counts the other's queue as well as its
    own, and ends above that of the same upload alone."""
    def srtt_after(uploads: int) -> list[float]:
        env, net = _tcp_net(server_in_bps=1e7)
        links = [_open_link(f"d{i}", 100, 100, 50) for i in range(uploads)]
        _send(env, net, [(0.0, link, "up", 300_000) for link in links])
        return [link.connection.srtt_s["up"] for link in links]

    (alone,) = srtt_after(1)
    shared = srtt_after(2)
    assert shared[0] == pytest.approx(shared[1], rel=1e-9)
    assert shared[0] > alone + 0.01


def test_whole_segments_are_counted_exactly_and_add_up():
    """14,480 bytes are exactly 10 segments: 10 acknowledged, the window grows from 10 to
    20 segments. A second message of 70 segments brings the count to 80."""
    env, net = _tcp_net()
    link = _open_link("a", 10, 10, 50)
    _send(env, net, [(0.0, link, "up", 14_480)])
    assert link.connection.segments_sent == {"up": 10}
    assert link.connection.window_bits["up"] == 20 * SEG
    _send(env, net, [(0.0, link, "up", 100_000)])
    assert link.connection.segments_sent == {"up": 80}


def test_a_cut_message_books_only_what_it_sent():
    """1 MB (691 segments, 8,364,848 wire bits) at 10 Mbit/s, RTT 0.1 s, open connection
    with the initial window: the first 10 segments arrive by 0.05 + 0.012112 s, then the
    window blocks until 0.15. Cut at 0.1: 10 segments were sent; the window is 20."""
    env, net = _tcp_net()
    link = _open_link("a", 10, 10, 50)
    seen = cut_transfer(env, net, link, "up", 1_000_000, 0.1)
    assert seen["fraction"] == pytest.approx(IW / 8_364_848, rel=1e-12)
    assert link.connection.segments_sent == {"up": 10}
    assert link.connection.window_bits["up"] == 20 * SEG
    assert net.flows == [] and "up" not in link.connection.sending


def test_a_message_behind_one_in_flight_continues_its_window():
    """10 Mbit/s, RTT 0.1 s, open connection with the initial window. A (1 MB) leaves at
    0: its rounds send 10 segments by 0.15, 20 by 0.25, then a window of 40 segments
    (484,480 bits) in the round 0.25-0.35. B (100 KB, 836,960 bits) is sent at 0.21 and
    arrives at 0.26, while A is in that round: the connection is busy, so B goes on from
    A's window (40 segments, the round ending at 0.35) with no restart.

    At 0.26 A has 384,480 bits of its window left; A and B share 10 Mbit/s, 5 each, until
    A's window is used at 0.26 + 384,480 / 5e6 = 0.336896. B has sent 384,480 bits and
    has 100,000 of its window left: alone at 10 Mbit/s, it uses them by 0.346896 and
    waits for the round's end at 0.35. Both then have windows of 80 segments: B's last
    352,480 bits at 5 Mbit/s take 0.070496 s; B arrives at 0.420496. (From a fresh
    window of 10 segments, or with no window at all, B would arrive at other times.)"""
    env, net = _tcp_net()
    link = _open_link("a", 10, 10, 50)
    _, b_end = _send(env, net, [(0.0, link, "up", 1_000_000), (0.21, link, "up", 100_000)])
    assert b_end == pytest.approx(0.420496, rel=1e-12)


def test_restart_counts_whole_rtos_exactly():
    """RTT 0.25 s with a 250 ms minimum: the RTO is exactly 0.5 s. Idle exactly one RTO:
    no restart; exactly two: one halving; a little more: two (exact time, no tick)."""
    tcp = TcpParams(min_rto_ms=250.0, timer_tick_ms=0.0)
    w = 64 * SEG
    assert tcp.rto_s(0.25) == 0.5
    assert tcp.restart_window_bits(w, 0.5, 0.25) == w
    assert tcp.restart_window_bits(w, 1.0, 0.25) == w / 2
    assert tcp.restart_window_bits(w, 1.0 + 1e-9, 0.25) == w / 4


def test_restart_counts_idleness_in_the_nearest_whole_ticks():
    """Linux stamps the last send in jiffies (4 ms here): an idle time of k + f ticks
    counts k + 1 with chance f. The model takes the likelier count. The RTO is 0.5 s
    (125 ticks): 1.9 ms more is still 125 ticks, no restart; 2.1 ms more is 126, one
    halving; two RTOs and 1.9 ms, one halving; 2.1 ms more, two."""
    tcp = TcpParams(min_rto_ms=250.0)
    w = 64 * SEG
    assert tcp.idle_as_counted_s(0.5019) == pytest.approx(0.5, abs=1e-12)
    assert tcp.restart_window_bits(w, 0.5019, 0.25) == w
    assert tcp.restart_window_bits(w, 0.5021, 0.25) == w / 2
    assert tcp.restart_window_bits(w, 1.0019, 0.25) == w / 2
    assert tcp.restart_window_bits(w, 1.0021, 0.25) == w / 4


def test_rate_memo_is_bounded_and_changes_no_time(monkeypatch):
    """Forty flows in four waves of ten, each wave over other links: with a memo of at
    most 12 flows' patterns the end times are those of a network that memoises
    everything."""
    from ecofed_sim.network import flows

    def ends() -> tuple[list[float], Network]:
        env = simpy.Environment()
        net = Network(env, Capacity("in", 3e6), Capacity("out", 1e9))
        links = [DeviceLink.from_mbps(f"d{i}", 1 + i % 7, 10, 5) for i in range(40)]
        plan = [(0.5 * (i // 10), links[i], "up", 20_000 + 1000 * i) for i in range(40)]
        return _send(env, net, plan), net

    unbounded, net = ends()
    assert sum(len(k) for k in net._rates_cache) > 12
    monkeypatch.setattr(flows, "_MEMO_MAX_FLOWS", 12)
    bounded, net = ends()
    assert bounded == unbounded and sum(len(k) for k in net._rates_cache) <= 12

"""The TCP transport: golden times worked out by hand, and oracles against the flow model.

Hand arithmetic used throughout: MSS 1448 + 66 header bytes = 1514 bytes = 12,112 bits per
segment on the wire; the initial window is 10 segments = 121,120 bits. A 100,000-byte
message takes ceil(100000 / 1448) = 70 segments: 104,620 wire bytes = 836,960 bits. At
10 Mbit/s with a 100 ms RTT (50 ms one way) the path holds 1,000,000 bits, so slow start
is window-limited: a round sends its window, then waits for the round trip to end.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
import simpy
from conftest import tiny
from helpers import run_dict

from ecofed_sim.network import Capacity, DeviceLink, Network, TcpParams, time_messages
from ecofed_sim.network.window import Window, slow_start_s

SEG = 12_112
IW = 10 * SEG


def test_a_fresh_connection_pays_handshake_and_slow_start():
    # handshake 0.1 + one way 0.05; round 0: IW (121,120 bits), wait to 0.1; round 1:
    # 2 IW (242,240), wait to 0.2; round 2: the last 473,600 bits at 10 Mbit/s = 0.04736
    assert time_messages(10, 100, 100_000, "fresh") == [pytest.approx(0.39736, abs=1e-12)]
    # the flow model: one way plus payload at the rate
    assert time_messages(10, 100, 100_000, "fresh", transport="flow") == [
        pytest.approx(0.05 + 0.08, abs=1e-12)]


def test_a_warm_connection_is_the_flow_model_plus_headers():
    assert time_messages(10, 100, 100_000, "warm") == [
        pytest.approx(0.05 + 836_960 / 10e6, abs=1e-12)]


def _two_messages(gap_s: float, warm: bool = False, buffer_bytes: float | None = None,
                  tcp: TcpParams | None = None) -> float:
    """100 KB, ``gap_s`` idle, then 100 KB again on one device link (10 Mbit/s, 50 ms one
    way): the second's duration. The connection is new, or open with a huge window."""
    env = simpy.Environment()
    net = Network(env, Capacity("in", 1e9), Capacity("out", 1e9), tcp=tcp or TcpParams())
    link = DeviceLink.from_mbps("d", 10, 10, 50)
    link.buffer_bytes = buffer_bytes
    if warm:
        link.connection.warm(net.tcp, "up", 3 * 2**20 * 8)
    out = []

    def play():
        yield from net.transfer(link, "up", 100_000)
        yield env.timeout(gap_s)
        t0 = env.now
        yield from net.transfer(link, "up", 100_000)
        out.append(env.now - t0)

    env.run(until=env.process(play()))
    return out[0]


def test_idle_longer_than_the_rto_halves_the_window():
    # The first message (handshake 0.1, rounds of 1, 2 and 4 IW from 0.15) ends at
    # 0.39736. Its 70 segments, all acknowledged, grew the window from 10 to 80 segments
    # (968,960 bits; HyStart does not act: a round's 40 ACKs, 1.2112 ms apart, last less
    # than half the RTT, and no round's queue outlasts the RTT by 12.5 ms). Its last
    # round, the last 473,600 bits, left two segments per acknowledgement, so half of it,
    # 236,800 bits, queued ahead of its last segment: the smoothed RTT is about 0.1 +
    # (236,800 - 84,784) / 10e6 = 0.1152 (``test_a_message_books_the_queue...``), so
    # RTO = 0.316 in whole 4 ms ticks, and the last segment was sent at 0.39736 - 0.05 -
    # 0.02368 = 0.32368.
    # Gap 0.5: idle 0.57368 > RTO: halved once (0.25768 > 0), to 40 segments.
    # Round 0 sends 484,480 bits, waits to 0.1; round 1: the last 352,480 bits take
    # 0.035248. Plus one way 0.05.
    assert _two_messages(0.5) == pytest.approx(0.05 + 0.1 + 0.035248, abs=1e-12)
    # Gap 0.2: idle 0.27368 < RTO: the window stays at 80 segments, more than the
    # message. Without a send buffer's limit it goes at the rate, 836,960 bits in
    # 0.083696 (the default buffer, one BDP, holds 82 segments: nothing is lost).
    unlimited = TcpParams(send_buffer_segments=0)
    assert _two_messages(0.2, tcp=unlimited) == pytest.approx(0.05 + 0.083696, abs=1e-12)
    # With it (60 segments, not grown: the first message's flights were 10, 20 and 40),
    # 726,720 bits go first (0.072672 s), the round ends at 0.1, the other 110,240 bits
    # take 0.011024.
    assert _two_messages(0.2) == pytest.approx(0.05 + 0.1 + 0.011024, abs=1e-12)
    # Gap 1.0: idle 1.07368: halved three times (0.758, 0.442, 0.126 > 0), floored at IW.
    # Round 0: IW, to 0.1; round 1: 2 IW, to 0.2; round 2: the last 473,600 bits.
    assert _two_messages(1.0) == pytest.approx(0.05 + 0.2 + 0.04736, abs=1e-12)



def test_a_restart_halves_a_whole_number_of_segments():
    # RTT 0.1: RTO 0.3 (75 ticks). Idle 0.8 s: halved twice (0.5 and 0.2 > 0). Linux's
    # window is whole segments and halves by a shift: 93.1 segments become 93 >> 2 = 23,
    # not 23.275; 13 become 6, then the initial window's 10 as a floor.
    tcp = TcpParams()
    seg = tcp.segment_bits
    assert tcp.restart_window_bits(93.1 * seg, 0.8, 0.1) == 23 * seg
    assert tcp.restart_window_bits(13 * seg, 0.8, 0.1) == 10 * seg
    assert tcp.restart_window_bits(93.1 * seg, 0.2, 0.1) == 93.1 * seg  # not idle an RTO
    assert tcp.restart_window_bits(0.5 * seg, 0.8, 0.1) == seg  # never below one segment


def test_lock_step_exchanges_after_long_gaps_keep_taking_three_round_trips():
    """100 KB (70 segments, the last short) at 100 Mbit/s and 100 ms, 0.5 s apart: each
    side's window grows 80, 90, 92, 93, 93 segments and is halved twice by every gap, so
    each exchange starts from 23 at most and needs a third round trip (23 + 46 < 70),
    as Linux on the delay line: 504-513 ms for each of five exchanges
    (``benchmarks/delayline/exchange_info.py 100 100 100000 5 0.5``). Halving the
    fractional 93.1 left 23.3, enough for two round trips from the fourth exchange on."""
    times_s = time_messages(100, 100, 100_000, "exchange", gap_s=0.5, count=5)
    assert min(times_s) > 0.49

def test_the_window_never_outgrows_what_the_path_and_its_buffer_hold():
    # A 12,500-byte buffer (100,000 bits) on a path holding 1,000,000: the window is capped
    # at 1,100,000 bits. (The burst that buffer cannot hold would lose segments: that is
    # turned off here, and tested below.) The first message (836,960 bits) goes at the
    # rate and ends at 0.133696; it left in one burst, which waited at most the buffer,
    # so the smoothed RTT is 0.1 + 100,000 / 20e6 = 0.105 (RTO 0.305, 0.308 in 4 ms
    # ticks) and its last segment left at 0.133696 - 0.05 - 0.01 = 0.073696. Idle 0.56:
    # halved once (0.252 > 0), as Linux halves its whole-segment window: 90 segments
    # (1,100,000 bits is 90.8) to 45, 545,040 bits. Round 0 sends those (0.054504 s) and
    # waits to 0.1; round 1 (1,100,000, capped) sends the other 291,920 bits in 0.029192.
    # Plus one way 0.05.
    assert _two_messages(0.5, warm=True, buffer_bytes=12_500,
                         tcp=TcpParams(burst_loss=False)) == pytest.approx(
        0.05 + 0.1 + 0.029192, abs=1e-12)
    # The default buffer, one BDP: a 2,000,000-bit cap, RTO 0.1 + 0.041848 + 0.2 (0.344
    # in ticks), last send at 0; idle 0.633696 halves once to 1,000,000 bits, which
    # covers the message
    assert _two_messages(0.5, warm=True) == pytest.approx(0.05 + 0.083696, abs=1e-12)


def test_without_restart_after_idle_the_window_survives_a_long_gap():
    env = simpy.Environment()
    params = TcpParams(slow_start_after_idle=False, send_buffer_segments=0)
    net = Network(env, Capacity("in", 1e9), Capacity("out", 1e9), tcp=params)
    link = DeviceLink.from_mbps("d", 10, 10, 50)
    out = []

    def play():
        yield from net.transfer(link, "up", 100_000)
        yield env.timeout(5.0)
        t0 = env.now
        yield from net.transfer(link, "up", 100_000)
        out.append(env.now - t0)

    env.run(until=env.process(play()))
    assert out[0] == pytest.approx(0.05 + 0.083696, abs=1e-12)  # 80 segments survive


def _messages_apart(gap_s: float, count: int, tcp: TcpParams | None = None) -> list[float]:
    """``count`` messages of 100 KB up one new connection (10 Mbit/s, 50 ms one way),
    ``gap_s`` apart: each one's duration."""
    env = simpy.Environment()
    net = Network(env, Capacity("in", 1e9), Capacity("out", 1e9), tcp=tcp or TcpParams())
    link = DeviceLink.from_mbps("d", 10, 10, 50)
    out = []

    def play():
        for _ in range(count):
            t0 = env.now
            yield from net.transfer(link, "up", 100_000)
            out.append(env.now - t0)
            yield env.timeout(gap_s)

    env.run(until=env.process(play()))
    return out


def test_the_send_buffer_holds_back_one_first_flight_then_grows():
    """Linux's send buffer holds about 60 segments until it first holds data back. The
    first message (70 segments, flights of 10, 20 and 40) never fills it; the second
    starts on an 80-segment window, sends 60 and the rest a round trip later (see
    ``test_idle_longer_than_the_rto_halves_the_window``), and grows it; the third goes
    at once, at the rate (836,960 bits in 0.083696 s), as the second would without the
    limit."""
    first, second, third = _messages_apart(0.2, 3)
    assert first == pytest.approx(0.39736, abs=1e-12)  # handshake and slow start
    assert second == pytest.approx(0.05 + 0.1 + 0.011024, abs=1e-12)
    assert third == pytest.approx(0.05 + 0.083696, abs=1e-12)
    unlimited = _messages_apart(0.2, 3, TcpParams(send_buffer_segments=0))
    assert unlimited[:2] == [pytest.approx(first, abs=1e-12), pytest.approx(third, abs=1e-12)]


def test_which_messages_grow_the_send_buffer():
    """A message beyond the 60-segment buffer grows it if it runs the buffer dry before
    the blocked application refills it (woken once a third is free): its first flight
    above a third of it in slow start, above two thirds past slow start, or the message
    over a third longer than the buffer."""
    tcp = TcpParams()
    cases = [  # (window, slow-start threshold, message), in segments: grows?
        (10, math.inf, 70, False), (20, math.inf, 70, False), (21, math.inf, 70, True),
        (40, 20, 70, False), (41, 20, 70, True), (10, math.inf, 80, False),
        (10, math.inf, 81, True), (80, math.inf, 60, False), (80, math.inf, 61, True)]
    for window, ssthresh, message, grows in cases:
        conn = DeviceLink.from_mbps("d", 10, 10, 50).connection
        conn.ssthresh_bits["up"] = ssthresh * SEG
        flight = conn.first_flight_bits(tcp, "up", window * SEG, message * SEG)
        assert flight == (min(window, 60) if message > 60 else window) * SEG
        assert conn.buffer_grows.get("up", False) is grows, (window, ssthresh, message)


def test_two_flows_in_slow_start_share_the_server_link():
    # 20 segments each (28,960 payload bytes = 242,240 bits), devices at 10 Mbit/s, server
    # ingress 10 Mbit/s: 5 Mbit/s each while both send. Round 0: IW each takes 0.024224,
    # then both wait to 0.1 after their first bit; round 1: the other 121,120 bits each,
    # 0.024224 again. Connected beforehand with the initial window, one way 0.05.
    env = simpy.Environment()
    net = Network(env, Capacity("in", 10e6), Capacity("out", 1e9), tcp=TcpParams())
    ends = []

    def send(link):
        yield from net.transfer(link, "up", 28_960)
        ends.append(env.now)

    for name in ("a", "b"):
        link = DeviceLink.from_mbps(name, 10, 10, 50)
        link.connection.open = True
        env.process(send(link))
    env.run()
    assert ends == [pytest.approx(0.05 + 0.1 + 0.024224, abs=1e-12)] * 2


def test_the_receive_window_caps_long_fat_paths():
    # 100 Mbit/s x 100 ms holds 10 Mbit; a 64 KB receive window (524,288 bits) allows
    # 5.24 Mbit/s: 10 MB (about 83.6 Mbit with headers) then takes 16 round trips or more
    params = TcpParams(receive_window_bytes=65_536)
    (t,) = time_messages(100, 100, 10_000_000, "warm", tcp=params)
    wire_bits = (10_000_000 + 6907 * 66) * 8
    assert t >= 0.05 + (wire_bits // 524_288) * 0.1
    (open_t,) = time_messages(100, 100, 10_000_000, "warm")
    assert open_t == pytest.approx(0.05 + wire_bits / 100e6, abs=1e-9)


def test_lock_step_exchanges_after_compute_gaps_restart_every_time():
    """Split learning's pattern: each exchange after 0.5 s of compute starts over."""
    tcp = time_messages(100, 100, 100_000, "exchange", gap_s=0.5, count=4)
    flow = time_messages(100, 100, 100_000, "exchange", gap_s=0.5, count=4,
                         transport="flow")
    assert len(tcp) == 4
    assert min(tcp[:3]) > 4 * max(flow)  # several times the flow model
    assert tcp[3] < tcp[2]  # halved once per gap, the window still grows by what is sent


def test_in_a_scenario_a_huge_window_is_the_flow_model_plus_one_handshake(tiny_dir):
    """Oracle: without headers, restart or slow start (a window larger than any message)
    TCP adds exactly one handshake per device connection, in the first round."""
    net = {"transport": "tcp", "header_bytes": 0, "initial_window_segments": 1000,
           "slow_start_after_idle": False}
    flow = run_dict(tiny(), tiny_dir).rounds  # tiny() pins the flow transport
    tcp = run_dict(tiny(network=net), tiny_dir).rounds
    rtt_s = 2 * 10 / 1e3  # the tiny link's one-way latency is 10 ms
    assert tcp.round_time_s.iloc[0] == pytest.approx(flow.round_time_s.iloc[0] + rtt_s,
                                                     abs=1e-9)
    assert tcp.round_time_s.iloc[1] == pytest.approx(flow.round_time_s.iloc[1], abs=1e-9)
    pd.testing.assert_series_equal(tcp.cum_bytes, flow.cum_bytes)
    slow = run_dict(tiny(network={"transport": "tcp"}), tiny_dir).rounds
    assert (slow.round_time_s > flow.round_time_s).all()


def _pftk_bps(rtt_s: float, p: float) -> float:
    """Padhye et al. (1998) with b = 1 and the timeout the RTO (RTT + 200 ms), bits/s."""
    per_segment_s = (rtt_s * (2 * p / 3) ** 0.5
                     + (rtt_s + 0.2) * min(1.0, 3 * (3 * p / 8) ** 0.5) * p * (1 + 32 * p**2))
    return SEG / per_segment_s


def test_random_loss_needs_the_tcp_transport(tiny_dir):
    from ecofed_sim.errors import ScenarioError

    sc = tiny(network={"transport": "flow"})
    sc["population"]["devices"][0]["link"]["loss_rate"] = 0.01
    with pytest.raises(ScenarioError, match=r"link\.loss_rate: .*network\.transport: tcp"):
        run_dict(sc, tiny_dir)


def test_tcp_is_the_default_transport():
    from ecofed_sim.scenario import NetworkSpec

    assert NetworkSpec().transport == "tcp"
    assert NetworkSpec().tcp_params() == TcpParams()


@pytest.mark.parametrize("rate, rtt, size", [(10, 100, 100_000), (100, 40, 1_000_000),
                                             (5, 10, 10_000), (20, 100, 3_000_000)])
def test_closed_form_slow_start_is_the_simulated_fresh_message(rate, rtt, size):
    """Oracle: one message alone on a new connection is the handshake, one way, and the
    closed form of slow start."""
    from ecofed_sim.network.window import slow_start_s

    params = TcpParams()
    bits = params.wire_bytes(size) * 8
    pipe = rate * 1e6 * rtt / 1e3 + max(rate * 1e6 * rtt / 1e3, 64 * SEG)
    flight, _, _ = slow_start_s(bits, rate * 1e6, rtt / 1e3, IW, min(3 * 2**20 * 8, pipe))
    assert time_messages(rate, rtt, size, "fresh") == [
        pytest.approx(rtt / 1e3 * 1.5 + flight, rel=1e-12)]


def test_tcp_parameter_arithmetic_by_hand():
    """Each number from the Linux rules in the module docstring, worked out here."""
    tcp = TcpParams()
    seg = (1448 + 66) * 8
    assert tcp.buffer_bits(8e6, 0.1, None) == 8e5  # one BDP, above 64 packets (775,168)
    assert tcp.buffer_bits(1e6, 0.1, None) == 64 * seg  # the 64-packet floor
    assert tcp.buffer_bits(8e6, 0.1, 1000) == 8000
    assert tcp.loss_rate_cap_bps(0.0, 0.01) == math.inf  # no RTT, no loss model
    assert tcp.loss_rate_cap_bps(0.1, 0.0) == math.inf
    p, rtt = 0.01, 0.1
    per_segment_s = rtt * math.sqrt(2 * p / 3) + (rtt + 0.2) * min(
        1.0, 3 * math.sqrt(3 * p / 8)) * p * (1 + 32 * p * p)
    assert tcp.loss_rate_cap_bps(rtt, p) == pytest.approx(seg / per_segment_s, rel=1e-12)
    p = 0.5  # the timeout term saturates at 1
    per_segment_s = rtt * math.sqrt(2 * p / 3) + (rtt + 0.2) * p * (1 + 32 * p * p)
    assert tcp.loss_rate_cap_bps(rtt, p) == pytest.approx(seg / per_segment_s, rel=1e-12)
    assert TcpParams.segments_before_loss(0.0) == math.inf
    assert TcpParams.segments_before_loss(0.02) == pytest.approx(50.0)


def test_restart_after_idle_halves_once_per_rto_beyond_the_first():
    """RTT 0.1 s: RTO 0.3 s. A 64-segment window idle for exactly one RTO keeps it; each
    further RTO (or part of one) halves it, never below the initial 10 segments."""
    tcp = TcpParams()
    seg = (1448 + 66) * 8
    w = 64 * seg
    assert tcp.restart_window_bits(w, 0.3, 0.1) == w
    assert tcp.restart_window_bits(w, 0.31, 0.1) == w / 2
    assert tcp.restart_window_bits(w, 0.6, 0.1) == w / 2  # exactly two RTOs: one halving
    assert tcp.restart_window_bits(w, 0.61, 0.1) == w / 4
    assert tcp.restart_window_bits(w, 100.0, 0.1) == 10 * seg
    assert tcp.restart_window_bits(5 * seg, 100.0, 0.1) == 5 * seg  # below the floor
    assert TcpParams(slow_start_after_idle=False).restart_window_bits(w, 100.0, 0.1) == w


def test_slow_start_closed_form_rounds_by_hand():
    """Window 10 segments (121,120 bits), 10 Mbit/s, RTT 0.1 s (BDP 1e6 bits). 500,000
    bits: rounds of 121,120 and 242,240 (0.2 s), then the last 136,640 bits, which the
    window of 40 segments (below the BDP) still limits: that is the last round."""
    seg = (1448 + 66) * 8
    t, w, last = slow_start_s(500_000, 1e7, 0.1, 10 * seg, 1e9)
    assert t == pytest.approx(0.2 + (500_000 - 30 * seg) / 1e7, rel=1e-12) and w == 40 * seg
    assert last == pytest.approx(500_000 - 30 * seg, rel=1e-12)
    t, w, last = slow_start_s(10 * seg, 1e7, 0.1, 10 * seg, 1e9)  # one window: no round
    assert t == pytest.approx(10 * seg / 1e7, rel=1e-12) and w == last == 10 * seg
    t, _, last = slow_start_s(5e6, 1e6, 0.1, 10 * seg, 1e9)  # window above the BDP: rate
    assert t == pytest.approx(5.0, rel=1e-12) and last == 0.0


def test_above_the_threshold_a_round_adds_one_segment():
    """Slow-start threshold 25 segments, 10 Mbit/s, RTT 0.1 s (BDP 82.6 segments): 90
    segments go in rounds of 10, 20, 25 (the doubling stops at the threshold) and 26,
    then the last 9 in a window of 27, after four round trips."""
    seg = (1448 + 66) * 8
    t, w, last = slow_start_s(90 * seg, 1e7, 0.1, 10 * seg, 1e9, 25 * seg, seg)
    assert w == 27 * seg and last == 9 * seg
    assert t == pytest.approx(0.4 + 9 * seg / 1e7, rel=1e-12)


def test_a_continued_window_keeps_where_the_message_ahead_stands():
    w = Window(0.1, 8e5, 4e6, 1e5, 3.25, open=False, start_bits=2e5)
    c = w.continuation()
    assert (c.rtt_s, c.window_bits, c.cap_bits, c.left_bits, c.round_end_s, c.open,
            c.start_bits, c.ssthresh_bits, c.lost_segments) == (
        0.1, 8e5, 4e6, 8e5, 3.25, False, 8e5, math.inf, 0)
    w = Window(0.1, 8e5, 4e6, 1e5, 3.25, start_bits=2e5, ssthresh_bits=6e5,
               segment_bits=SEG, lost_segments=3)
    c = w.continuation()  # the threshold and step go on; a loss was the first burst's
    assert (c.ssthresh_bits, c.segment_bits, c.lost_segments) == (6e5, SEG, 0)
    w.open = True
    assert w.continuation().open is True

"""TCP beyond slow start: a burst the bottleneck's buffer cannot hold, Linux's recovery of
what it lost, HyStart, congestion avoidance, and the window a long transfer leaves.

Hand arithmetic as in ``test_tcp.py``: a segment is 1448 payload + 66 header bytes =
12,112 bits on the wire. At 20 Mbit/s one segment takes 0.6056 ms at the bottleneck; a
100,000-byte message is 69 full segments and a short 88-byte one (836,960 bits).
"""

from __future__ import annotations

import math

import pytest
import simpy
from helpers import cut_transfer, two_messages_at_once

from ecofed_sim.network import Capacity, DeviceLink, Network, TcpParams, time_messages
from ecofed_sim.network.burst import BurstLoss, burst_loss, probe_srtt_s, recovery_end_s

SEG = 12_112
S20 = SEG / 20e6  # one segment at 20 Mbit/s, 0.6056 ms


def test_a_warm_burst_beyond_the_buffer_loses_its_tail_and_recovers_as_linux_does():
    """20 Mbit/s, RTT 10 ms (5 ms each way), 100 KB on a warm window.

    The path holds 200,000 bits + a buffer of 64 packets (775,168 bits; one BDP is
    less): 975,168. The warm window is Cubic's mean, 0.925 of that, 902,030.4 bits (74
    segments): the message leaves in one burst. The buffer takes 64 full segments; 5 are
    lost; the short last one arrives after the hole. Its SACK is back at 5 ms + 65
    segments (39.364 ms) + 5 ms = 49.364 ms. One SACK is below the duplicate threshold:
    RACK waits a quarter RTT, 2.5 ms, on a timer of 1 + 2 ticks of 4 ms, 10 ms on average:
    the 5 are marked lost at 59.364 ms and resent 1, then 2 a round trip (10.6056 ms)
    later, then the last 2: sent at 80.5752 ms, they arrive 5 ms + 2 segments later,
    at 86.7864 ms. (Traced on the delay line: 5 lost, marked 9 ms after the SACK, resent
    1, 2, 2, last byte at 87 ms.)"""
    end_s = 0.080_5752 + 0.005 + 2 * S20
    assert time_messages(20, 10, 100_000, "warm") == [pytest.approx(end_s, abs=1e-12)]
    # the flow model has no window, no buffer, no loss: one way and the payload
    assert time_messages(20, 10, 100_000, "warm", transport="flow") == [
        pytest.approx(0.005 + 0.04, abs=1e-12)]


def test_a_burst_the_buffer_holds_loses_nothing():
    """90,000 bytes: 62 full segments and a short one, 753,264 bits; the 64-packet buffer
    holds them all: one way plus the wire bits at the rate."""
    assert time_messages(20, 10, 90_000, "warm") == [
        pytest.approx(0.005 + 753_264 / 20e6, abs=1e-12)]
    off = TcpParams(burst_loss=False)  # and the loss can be turned off
    assert time_messages(20, 10, 100_000, "warm", tcp=off) == [
        pytest.approx(0.005 + 836_960 / 20e6, abs=1e-12)]


def _warm_message(payload_bytes: int):
    """One message up a warm connection at 20 Mbit/s, RTT 10 ms: the connection after."""
    env = simpy.Environment()
    tcp = TcpParams()
    net = Network(env, Capacity("in", 1e9), Capacity("out", 1e9), tcp=tcp)
    link = DeviceLink.from_mbps("d", 20, 20, 5)
    link.rtt_s = 0.01
    link.connection.warm(net.tcp, "up", 902_030.4)
    env.run(until=env.process(net.transfer(link, "up", payload_bytes)))
    return env.now, link.connection


def test_after_a_loss_the_window_and_threshold_are_beta_times_the_window():
    """Cubic keeps 0.7 of the window it lost from: 631,421.28 bits for both, and the last
    send is the last resent segment's (one way before the arrival)."""
    end_s, conn = _warm_message(100_000)
    assert conn.window_bits["up"] == pytest.approx(0.7 * 902_030.4, rel=1e-12)
    assert conn.ssthresh_bits["up"] == pytest.approx(0.7 * 902_030.4, rel=1e-12)
    assert conn.last_send_end_s["up"] == pytest.approx(end_s - 0.005, rel=1e-12)
    _, kept = _warm_message(90_000)  # no loss: congestion avoidance would grow it
    assert kept.window_bits["up"] > 902_030.4 and math.isinf(kept.ssthresh("down"))


def test_what_a_burst_loses_in_segments():
    tcp = TcpParams()
    # 70 segments, window 74, buffer 64: 5 full lost, the short last one comes after
    assert burst_loss(tcp, 74 * SEG, 836_960, 775_168) == BurstLoss(64, 5, 1)
    # by default the burst arrives at once: nothing drains while it comes
    one_mb = 1e6 * 1514 / 1448 * 8
    assert burst_loss(tcp, 612 * SEG, one_mb, 4e6, rate_bps=100e6) == BurstLoss(330, 282, 79, 79)
    # from a 10 Gbit/s line, at 20 Mbit/s, 836,960 bits drain 1,673.92 bits as they come:
    # less than a segment, the same loss
    line = TcpParams(line_rate_mbps=10_000)
    assert burst_loss(line, 74 * SEG, 836_960, 775_168, rate_bps=20e6) == BurstLoss(64, 5, 1)
    # 612 full segments into 330.25 packets' room at 100 Mbit/s: 7,412,544 bits take
    # 741.25 us at 10 Gbit/s, in which 74,125.44 bits drain: room for 336 (330 + 6.12)
    assert burst_loss(line, 612 * SEG, one_mb, 4e6, rate_bps=100e6) == BurstLoss(336, 276, 79, 79)
    # a slower hop before the bottleneck lets in more: at 1 Gbit/s, 61.2 segments drain
    slow_hop = TcpParams(line_rate_mbps=1000)
    assert burst_loss(slow_hop, 612 * SEG, one_mb, 4e6,
                      rate_bps=100e6) == BurstLoss(391, 221, 79, 79)
    # exactly 70 full segments: the last is lost too, and nothing follows the hole
    assert burst_loss(tcp, 74 * SEG, 70 * SEG, 775_168) == BurstLoss(64, 6, 0)
    # a window of 50 below the message: 10 lost past a 40-packet buffer, then 20 more
    # segments are sent as acknowledgements return, and arrive after the hole
    assert burst_loss(tcp, 50 * SEG, 836_960, 40 * SEG) == BurstLoss(40, 10, 20, 20)
    # no room left by earlier bursts: the whole window is lost, 20 wait behind it
    assert burst_loss(tcp, 50 * SEG, 836_960, 0.0) == BurstLoss(0, 50, 20, 20)
    assert burst_loss(tcp, 64 * SEG, 836_960, 775_168) is None  # the buffer holds 64
    assert burst_loss(TcpParams(burst_loss=False), 74 * SEG, 836_960, 775_168) is None
    assert burst_loss(tcp, 74 * SEG, 0.0, 775_168) is None


def test_recovery_with_many_segments_after_the_hole_starts_at_once():
    """100 Mbit/s (0.12112 ms a segment), RTT 40 ms; a window of 609 segments into a
    330-packet buffer: 279 lost, 81 after the hole. The SACK of the first after it is back
    at 20 + 331 segments + 20 ms = 80.09072 ms; the third, two segments later, marks the
    hole lost at once (duplicate threshold 3). Rounds resend 81, 162, then the last 36,
    a round trip and a segment apart: sent at 160.5752 ms, they arrive at 184.93552 ms.
    (On the delay line, a window of 609-612 segments: last byte at 186.4-188.8 ms.)"""
    s = SEG / 100e6
    loss = BurstLoss(accepted=330, lost=279, after=81)
    detect_s = 0.02 + 331 * s + 0.02 + 2 * s
    last_round_s = detect_s + 2 * (0.04 + s)
    assert recovery_end_s(TcpParams(), loss, 100e6, 0.04, 0.02) == pytest.approx(
        last_round_s + 0.02 + 36 * s, rel=1e-12)


def test_a_whole_window_lost_waits_for_the_loss_probe_then_recovers_with_the_rest():
    """20 Mbit/s, RTT 40 ms; earlier bursts left 64 segments queued and no room, so all 33
    of this window are lost and nothing comes back to release the other 24 segments of
    the message. The tail loss probe sends the next one 2 RTTs after the burst, behind
    those 64 segments' drain: its SACK is back at 64 segments + 80 + 40 ms + a segment.
    RACK waits a quarter RTT, 10 ms, on 3 + 2 ticks of 4 ms less half a tick: 18 ms. The
    other 56 (33 lost and 23 never sent) go 1, 2, 4, 8, 16, then the last 25, each round
    a round trip and a segment after the last: they arrive 20 ms + 25 segments after
    the sixth round is sent. (Replayed on the delay line by ``round_replay.py``, five
    downloads from one server, started together: the last two arrived 220-350 ms after
    the first three.)"""
    tcp = TcpParams()
    detect_s = 64 * S20 + 0.08 + 0.04 + S20 + 0.018
    assert recovery_end_s(tcp, BurstLoss(0, 33, 24, 24), 20e6, 0.04, 0.02,
                          ahead_bits=64 * SEG) == pytest.approx(
        detect_s + 5 * (0.04 + S20) + 0.02 + 25 * S20, rel=1e-12)


def test_a_lost_tail_with_nothing_after_it_waits_for_the_loss_probe():
    """Nothing follows the hole: the tail loss probe resends the last segment 2 RTTs after
    the last acknowledgement (10 ms + 64 segments), at 68.7584 ms. Alone lost, it ends
    there, one way and a segment later; otherwise its SACK returns an RTT and a segment
    later (79.364 ms), RACK waits 10 ms, and the other 5 go 1, 2, 2 as above."""
    tcp = TcpParams()
    probe_s = 0.01 + 64 * S20 + 0.02
    assert recovery_end_s(tcp, BurstLoss(64, 1, 0), 20e6, 0.01, 0.005) == pytest.approx(
        probe_s + 0.005 + S20, rel=1e-12)
    detect_s = probe_s + 0.01 + S20 + 0.01
    assert recovery_end_s(tcp, BurstLoss(64, 6, 0), 20e6, 0.01, 0.005) == pytest.approx(
        detect_s + 2 * (0.01 + S20) + 0.005 + 2 * S20, rel=1e-12)


def test_rack_waits_a_quarter_rtt_in_whole_ticks():
    """RTT 40 ms: a quarter is 10 ms, 3 ticks of 4 ms, plus 2, less half a tick: 18 ms.
    Without a timer tick it is the quarter RTT itself."""
    loss = BurstLoss(accepted=10, lost=1, after=1)
    sack_s = 0.02 + 11 * S20 + 0.02
    assert recovery_end_s(TcpParams(), loss, 20e6, 0.04, 0.02) == pytest.approx(
        sack_s + 0.018 + 0.02 + S20, rel=1e-12)
    assert recovery_end_s(TcpParams(timer_tick_ms=0.0), loss, 20e6, 0.04,
                          0.02) == pytest.approx(sack_s + 0.01 + 0.02 + S20, rel=1e-12)


def test_hystart_ack_train_ends_slow_start_as_linux_did():
    """20 Mbit/s, RTT 10 ms, a 70-segment message from 10 segments. ACKs 0.6056 ms apart
    form a train; half the RTT is 8.256 of them. Round 1: 10 segments (below 16, no
    HyStart): 20. Round 2: 20 acknowledgements; after 8.256 the train ends slow start at
    28.256 (the threshold); the other 11.744 add 11.744 / 28.256. Then 40 left: a round of
    28 adds 28 / cwnd, and the last 12, 12 / cwnd. (Linux, traced: cwnd 32, threshold 30.)"""
    train = 0.005 / S20
    cwnd = 20 + train
    ssthresh = cwnd
    cwnd += (20 - train) / cwnd
    cwnd += 28 / cwnd
    cwnd += 12 / cwnd
    got = TcpParams().grow_bits(10 * SEG, 70 * SEG, math.inf, 1e12, 20e6, 0.01)
    assert got == (pytest.approx(cwnd * SEG, rel=1e-12), pytest.approx(ssthresh * SEG))


def test_hystart_delay_ends_slow_start_once_a_round_leaves_a_queue():
    """5 Mbit/s (2.4224 ms a segment: too far apart for a train), RTT 40 ms: the delay
    threshold is clamp(5 ms, 4, 16). Round 2's 20 segments take 48.4 ms to drain, more
    than 40 + 5: round 3's first 8 acknowledgements end slow start at 48; the other 32
    add 32 / 48. (Linux, traced: cwnd 50, threshold 49.)"""
    got = TcpParams().grow_bits(10 * SEG, 70 * SEG, math.inf, 1e12, 5e6, 0.04)
    assert got == (pytest.approx((48 + 32 / 48) * SEG, rel=1e-12), 48 * SEG)


def test_without_hystart_slow_start_grows_a_segment_per_segment():
    """100 Mbit/s, RTT 100 ms: half the RTT is 413 ACKs, no round is that long, and no
    queue is left: 10 + 70 = 80 segments, threshold unset. HyStart off, or once the
    threshold is set (it acts in the first slow start only), 20 Mbit/s grows the same."""
    assert TcpParams().grow_bits(10 * SEG, 70 * SEG, math.inf, 1e12, 100e6, 0.1) == (
        80 * SEG, math.inf)
    assert TcpParams(hystart=False).grow_bits(10 * SEG, 70 * SEG, math.inf, 1e12, 20e6,
                                              0.01) == (80 * SEG, math.inf)
    assert TcpParams().grow_bits(10 * SEG, 70 * SEG, 1000 * SEG, 1e12, 20e6, 0.01) == (
        80 * SEG, 1000 * SEG)


def test_congestion_avoidance_adds_a_segment_per_window():
    """Window 50 above a threshold of 40: 100 segments are two rounds of 50; the first adds
    one (51), the second 50 / 51. The cap bounds the result."""
    w, ss = TcpParams().grow_bits(50 * SEG, 100 * SEG, 40 * SEG, 1e12, 20e6, 0.01)
    assert (w, ss) == (pytest.approx((51 + 50 / 51) * SEG, rel=1e-12), 40 * SEG)
    assert TcpParams().grow_bits(50 * SEG, 100 * SEG, 40 * SEG, 51 * SEG, 20e6, 0.01)[0] == (
        51 * SEG)


def test_the_window_a_long_transfer_leaves():
    """Cubic climbs from 0.7 of what the path holds back to it along a cubic; its mean over
    the climb is 1 - 0.3 / 4 = 0.925 of it. A receive window below the path binds."""
    tcp = TcpParams()
    assert tcp.steady_window_bits(2e6, 2e6) == pytest.approx(1.85e6, rel=1e-12)
    assert tcp.steady_window_bits(1e6, 2e6) == 1e6
    assert TcpParams(beta=0.5).steady_window_bits(2e6, 2e6) == pytest.approx(1.75e6)


def test_the_rto_is_held_in_whole_ticks():
    tcp = TcpParams()
    assert tcp.rto_s(0.1) == pytest.approx(0.3, abs=1e-15)  # 75 ticks exactly
    assert tcp.rto_s(0.1011) == pytest.approx(0.304, abs=1e-15)  # 75.275: 76 ticks
    assert TcpParams(timer_tick_ms=0.0).rto_s(0.1011) == pytest.approx(0.3011, abs=1e-15)


def test_a_restart_keeps_three_quarters_of_the_window_as_threshold():
    """Window 80 segments, idle 10 s at RTT 0.1: restarted to 10 segments. The threshold
    becomes at least 60: a threshold of 40 is raised to 60, one of 70 stays, and an unset
    one stays unset (Linux's is "infinite", and the larger of the two)."""
    tcp = TcpParams()
    for before, after in [(40 * SEG, 60 * SEG), (70 * SEG, 70 * SEG), (None, math.inf)]:
        conn = DeviceLink.from_mbps("d", 10, 10, 50).connection
        conn.window_bits["up"], conn.last_send_end_s["up"] = 80 * SEG, 0.0
        if before is not None:
            conn.ssthresh_bits["up"] = before
        window, _ = conn.start(tcp, "up", 10.0, 0.1, 10e6, None)
        assert window == 10 * SEG and conn.ssthresh("up") == after


def test_the_scenario_sets_each_new_parameter():
    from ecofed_sim.scenario_network import NetworkSpec

    spec = NetworkSpec(hystart=False, burst_loss=False, cubic_beta=0.5, timer_tick_ms=1.0)
    assert spec.tcp_params() == TcpParams(hystart=False, burst_loss=False, beta=0.5,
                                          timer_tick_ms=1.0)


def test_bursts_into_one_bottleneck_share_its_buffer_in_the_order_they_leave():
    """A server egress of 20 Mbit/s, two devices with 100 Mbit/s downlinks, RTT 10 ms,
    100 KB to each at once on warm windows (74 segments). The egress is the bottleneck;
    its buffer is 64 packets (775,168 bits).

    - The first burst is the single case above: 5 lost, resent by 86.7864 ms. The egress
      serves the bursts first in, first out, so its bits are through alone at 5 ms +
      836,960 / 20e6 = 46.848 ms, and the resent segments end it.
    - The second finds the first's 64 segments queued (38.7584 ms) and no room: its 69
      full segments are lost. The short last one's SACK is back at 5 + 38.7584 + 0.6056
      + 5 = 49.364 ms; RACK marks the hole 10 ms later; rounds of 1, 2, 4, 8, 16, 32 and
      the last 6 go a round trip and a segment apart: sent at 59.364 + 6 x 10.6056 =
      122.9976 ms, they arrive at 131.6312 ms."""
    net = Network(simpy.Environment(), Capacity("in", 1e9), Capacity("out", 20e6),
                  tcp=TcpParams())
    ends = two_messages_at_once(net, "down", 100_000, 902_030.4)
    assert ends == {"a": pytest.approx(0.080_5752 + 0.005 + 2 * S20, abs=1e-12),
                    "b": pytest.approx(0.1229976 + 0.005 + 6 * S20, abs=1e-12)}


def test_a_message_cut_while_resending_delivered_all_but_its_lost_segments():
    """The warm 100 KB at 20 Mbit/s and 10 ms: its bits are through at 46.848 ms, its 5
    lost segments not until 86.79 ms. Cut at 60 ms it delivered 1 - 5 x 12,112 / 836,960
    of its wire bytes, and the connection booked the loss (0.7 of its window)."""
    env = simpy.Environment()
    net = Network(env, Capacity("in", 1e9), Capacity("out", 1e9), tcp=TcpParams())
    link = DeviceLink.from_mbps("d", 20, 20, 5)
    link.rtt_s = 0.01
    link.connection.warm(net.tcp, "up", 902_030.4)
    seen = cut_transfer(env, net, link, "up", 100_000, 0.06)
    assert seen == {"fraction": pytest.approx(1 - 5 * SEG / 836_960, rel=1e-12), "at": 0.06}
    assert link.connection.window_bits["up"] == pytest.approx(0.7 * 902_030.4, rel=1e-12)


def test_the_loss_probe_waits_two_smoothed_rtts():
    """A lost tail with nothing after it: the probe goes two smoothed RTTs after the last
    acknowledgement (Linux ``tcp_schedule_loss_probe``), not two of the path's. 20 Mbit/s,
    RTT 10 ms, 64 segments taken and one lost: at a smoothed RTT of 15 ms the probe is
    resent at 10 ms + 64 segments + 30 ms, and arrives one way and a segment later."""
    probe_s = 0.01 + 64 * S20 + 2 * 0.015
    assert recovery_end_s(TcpParams(), BurstLoss(64, 1, 0), 20e6, 0.01, 0.005,
                          srtt_s=0.015) == pytest.approx(probe_s + 0.005 + S20, rel=1e-12)


def test_the_probe_reads_the_rtts_of_the_segments_taken():
    """The segments the buffer took before the hole are acknowledged before the probe:
    22 of them, behind 502,176 bits of another burst, one acknowledgement per two, each
    moving the smoothed RTT an eighth of the way. The last waited behind 768,640 bits;
    the estimator lags that by 14 segments (169,568 bits): its target is 10 ms +
    599,072 / 20e6. None taken: the connection's smoothed RTT stays."""
    tcp, before = TcpParams(), 0.012
    kept = (7 / 8) ** 11
    target = 0.01 + (502_176 + 22 * SEG - 14 * SEG) / 20e6
    assert probe_srtt_s(tcp, before, 0.01, 20e6, BurstLoss(22, 20, 0), 502_176) == \
        pytest.approx(kept * before + (1 - kept) * target, rel=1e-12)
    assert probe_srtt_s(tcp, before, 0.01, 20e6, BurstLoss(0, 42, 0), 502_176) == before


def test_the_line_rate_is_a_scenario_field():
    from ecofed_sim.scenario_network import NetworkSpec

    assert math.isinf(NetworkSpec().tcp_params().line_rate_mbps)  # unset: at once
    assert NetworkSpec(line_rate_mbps=100).tcp_params().line_rate_bps == 100e6
    with pytest.raises(ValueError):
        NetworkSpec(line_rate_mbps=0)


def test_a_slower_hop_before_the_bottleneck_loses_less_of_a_burst():
    """A warm 100 KB message at 20 Mbit/s and 10 ms (70 segments, 836,960 bits): at once
    into a 64-packet buffer it loses 5 and ends after 86.8 ms (derived above). From a
    100 Mbit/s hop, a fifth of it (167,392 bits, 13.8 segments) drains as it comes: room
    for 77, nothing lost, and it ends after the one-way 5 ms and its time at the rate."""
    assert time_messages(20, 10, 100_000, "warm")[0] > 0.08
    slow_hop = TcpParams(line_rate_mbps=100)
    assert time_messages(20, 10, 100_000, "warm", tcp=slow_hop)[0] == pytest.approx(
        0.005 + 836_960 / 20e6, abs=1e-12)


def test_a_short_last_segment_behind_other_bursts_is_lost_too():
    """60,000 B: 41 full segments and a short one (632 B). Alone, the short one fits in
    what the full ones leave; behind other bursts (``tail_fits=False``) it is lost with
    them, and nothing follows the hole."""
    tcp = TcpParams()
    wire = 41 * SEG + (632 + 66) * 8
    assert burst_loss(tcp, 42 * SEG, wire, 22 * SEG) == BurstLoss(22, 19, 1)
    assert burst_loss(tcp, 42 * SEG, wire, 22 * SEG, tail_fits=False) == BurstLoss(22, 20, 0)


def test_a_burst_behind_another_loses_its_tail_and_waits_for_the_probe():
    """Two 60,000 B downloads at once through a 20 Mbit/s egress (RTT 10 ms, buffer 64
    packets), on windows of 42 segments. The first burst (502,176 bits) fits. The second
    finds it queued: room for 22 segments; the other 19 and its short last one are lost,
    so nothing follows the hole. Its 22 were acknowledged by 10 ms + the queue (502,176
    bits and 22 segments, 38.432 ms), with the smoothed RTT their samples leave
    (``probe_srtt_s``); the probe goes two of those later, its SACK an RTT and a segment
    after; RACK waits 10 ms; the other 19 go 1, 2, 4, 8, then the last 4, each round a
    round trip and a segment after the last, and arrive one way and 4 segments later.
    The first is through alone at 5 ms + 502,176 / 20e6."""
    tcp = TcpParams()
    net = Network(simpy.Environment(), Capacity("in", 1e9), Capacity("out", 20e6), tcp=tcp)
    ends = two_messages_at_once(net, "down", 60_000, 42 * SEG)
    ahead = 41 * SEG + (632 + 66) * 8
    srtt = probe_srtt_s(tcp, 0.01, 0.01, 20e6, BurstLoss(22, 20, 0), ahead)
    probe_s = 0.01 + ahead / 20e6 + 22 * S20 + 2 * srtt
    detect_s = probe_s + 0.01 + S20 + 0.010
    assert ends == {"a": pytest.approx(0.005 + ahead / 20e6, abs=1e-12),
                    "b": pytest.approx(detect_s + 4 * (0.01 + S20) + 0.005 + 4 * S20,
                                       abs=1e-12)}


def _upload_end_s(upload_segments: int, upload_start_s: float, with_download: bool) -> float:
    """When device ``a``'s upload ends: ``upload_segments`` on a warm window of 10 from
    ``upload_start_s``, and with ``with_download`` device ``b``'s download of 60 segments
    on a warm window of 60 from time 0. Server ingress 1 Gbit/s, egress 20 Mbit/s;
    devices at 100 Mbit/s, RTT 10 ms. ``a`` is set going first: at the same instant its
    steps come before ``b``'s."""
    net = Network(simpy.Environment(), Capacity("in", 1e9), Capacity("out", 20e6),
                  tcp=TcpParams())
    ends = {}

    def send(name, direction, segments, window_segments, start_s):
        link = DeviceLink.from_mbps(name, 100, 100, 5)
        link.rtt_s = 0.01
        link.connection.warm(net.tcp, direction, window_segments * SEG)
        if start_s > 0:
            yield net.env.timeout(start_s)
        yield from net.transfer(link, direction, segments * 1448)
        ends[name] = net.env.now

    net.env.process(send("a", "up", upload_segments, 10, upload_start_s))
    if with_download:
        net.env.process(send("b", "down", 60, 60, 0.0))
    net.env.run()
    return ends["a"]


@pytest.mark.parametrize("segments, start_s, round_end_s, waits_at_s, backlog_s", [
    (35, 0.0, 0.025, 0.015, 0.021336), (15, 0.001, 0.016, 0.006, 0.030336)],
    ids=["later flight", "first flight"])
def test_a_flight_waits_for_its_acknowledgements_behind_the_reverse_links_burst(
        segments, start_s, round_end_s, waits_at_s, backlog_s):
    """The acknowledgements of an upload's flight cross the server's egress, where a
    download's burst may be queued: the flight's round trip ends once that has drained.
    Device ``b`` downloads 60 segments at time 0: its burst (726,720 bits) queues at the
    egress at once and drains at 20 Mbit/s. Device ``a``'s upload, on a warm window of
    10, ends 5 segments at 100 Mbit/s after the round trip that sends its last flight.

    - Later flight: 35 segments from time 0. The first flight reaches the server at 5 ms,
      in the same instant as ``b``'s burst leaves but before it (``a`` goes first), so
      it finds the egress empty and its round ends at 15 ms (5 ms one way, then a round
      trip). The second flight of 20 then leaves, and its acknowledgements wait behind
      the 726,720 - 15 ms x 20 Mbit/s = 426,720 bits still queued (21.336 ms): the last
      round ends at 25 ms plus that.
    - First flight: 15 segments from 1 ms. The first flight reaches the server at 6 ms,
      when 606,720 bits are still queued (30.336 ms): its round ends at 1 + 5 + 10 ms
      plus that."""
    last_s = 5 * SEG / 100e6
    assert (60 * SEG - waits_at_s * 20e6) / 20e6 == pytest.approx(backlog_s)
    alone_s = _upload_end_s(segments, start_s, with_download=False)
    assert alone_s == pytest.approx(round_end_s + last_s, abs=1e-12)
    shared_s = _upload_end_s(segments, start_s, with_download=True)
    assert shared_s == pytest.approx(round_end_s + backlog_s + last_s, abs=1e-12)


def test_queue_flight_adds_both_directions_queues_to_the_round_trip():
    from ecofed_sim.network.burst import queue_flight
    from ecofed_sim.network.window import Window

    forward, reverse = Capacity("fwd", 20e6), Capacity("rev", 10e6)
    forward.queue_burst(0.0, 100 * SEG)
    reverse.queue_burst(0.0, 50 * SEG)
    window = Window(0.04, 20 * SEG, math.inf, 20 * SEG, 0.05)
    queue_flight(forward, window, 30 * SEG, 0.01, reverse)
    assert window.round_end_s == pytest.approx(
        0.05 + (100 * SEG - 0.01 * 20e6) / 20e6 + (50 * SEG - 0.01 * 10e6) / 10e6)
    assert forward.burst_backlog_bits(0.01) == pytest.approx(100 * SEG - 0.01 * 20e6 + 20 * SEG)
    alone = Window(0.04, 20 * SEG, math.inf, 20 * SEG, 0.05)
    queue_flight(Capacity("idle", 20e6), alone, 30 * SEG, 0.01)
    assert alone.round_end_s == 0.05  # nothing queued either way


def test_a_capacitys_standing_queue_leaves_out_the_bursts_of_the_same_instant():
    """What bursts from before an instant left queued: a burst of 100 segments at 0 s, then
    at 1 ms one of 50: the backlog is 100 segments less 1 ms at 20 Mbit/s, plus the 50;
    the standing part leaves the 50 out in that instant, and counts them after it."""
    c = Capacity("in", 20e6)
    c.queue_burst(0.0, 100 * SEG)
    assert c.standing_bits(0.0) == 0.0  # only that instant's own burst
    c.queue_burst(0.001, 50 * SEG)
    assert c.burst_backlog_bits(0.001) == pytest.approx(150 * SEG - 20_000)
    assert c.standing_bits(0.001) == pytest.approx(100 * SEG - 20_000)
    assert c.standing_bits(0.002) == pytest.approx(150 * SEG - 40_000)
    c.queue_burst(0.002, 10 * SEG)  # a new instant: only its own burst is left out
    assert c.standing_bits(0.002) == pytest.approx(150 * SEG - 40_000)
    c.queue_burst(0.0015, 5 * SEG)  # sent earlier, over a longer delay: not of 2 ms
    assert c.standing_bits(0.002) == pytest.approx(155 * SEG - 40_000)


def test_each_later_round_of_resends_waits_behind_the_standing_queue():
    """20 segments lost, 3 arriving after the hole: resent 3, then 6, then the last 11,
    so two rounds follow the first, and each waits behind the standing queue (here 25
    segments, 15.14 ms at 20 Mbit/s). The first resend, sent as the loss is detected,
    does not: its wait is in the detection's (``ahead_bits``)."""
    from ecofed_sim.network.burst import recovery_end_s

    tcp = TcpParams()
    loss = BurstLoss(accepted=10, lost=20, after=3, unsent=3)
    ahead_bits = standing_bits = 25 * SEG
    base_s = recovery_end_s(tcp, loss, 20e6, 0.04, 0.02, ahead_bits)
    waited_s = recovery_end_s(tcp, loss, 20e6, 0.04, 0.02, ahead_bits,
                              standing_bits=standing_bits)
    assert standing_bits / 20e6 == pytest.approx(0.01514)
    assert waited_s - base_s == pytest.approx(2 * 0.01514, abs=1e-12)
    single = BurstLoss(accepted=10, lost=3, after=3, unsent=3)  # resent in one round
    assert recovery_end_s(tcp, single, 20e6, 0.04, 0.02, ahead_bits,
                          standing_bits=standing_bits) == recovery_end_s(
        tcp, single, 20e6, 0.04, 0.02, ahead_bits)

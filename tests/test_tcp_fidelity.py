"""A small case of benchmarks/tcp_fidelity.py: real Linux TCP (Cubic) over a delay line
between two network namespaces, against the tcp and flow transports. Skipped, with the
reason, where namespaces, TUN or a compiler are missing."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from helpers import load_script, namespaces_unavailable

PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "tcp_fidelity.py"


def _why_not() -> str | None:
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun"
    return namespaces_unavailable("gcc")


@pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))
def test_tcp_model_is_nearer_real_tcp_than_the_flow_model_on_a_new_connection():
    tf = load_script("benchmarks/tcp_fidelity.py")
    path = None
    try:
        path = tf.Path_(20, 40)
        row = tf.run_case(path, 20, 40, 100_000, "fresh", 0.0, repeats=1, count=1)
    except tf.Unavailable as err:
        pytest.skip(f"delay line unavailable: {err}")
    finally:
        if path is not None:
            path.teardown()
    assert row["measured_s"] > 0.1  # handshake and slow start at 40 ms RTT are real
    assert abs(row["tcp_ratio"] - 1) < abs(row["flow_ratio"] - 1)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert tf.NS_DEV not in listed and tf.NS_SRV not in listed  # cleaned up


def _load(name: str):
    return load_script(f"benchmarks/{name}.py")


def test_a_replayed_message_follows_the_last_delivery_before_it_was_issued():
    import pandas as pd

    rr = _load("round_replay")
    rows = [  # client 0: weights down, then two uploads (the second issued mid-flight)
        (0, 0, "down", 100, 0.0, 0.3), (1, 0, "up", 50, 0.5, 0.7), (2, 0, "up", 50, 0.6, 0.9),
        (3, 1, "down", 100, 0.0, 0.4)]
    transfers = pd.DataFrame(rows, columns=["message_id", "client", "direction",
                                            "payload_bytes", "t_start_s", "t_end_s"])
    msgs = rr.client_messages(transfers, 0.0)
    first, up1, up2 = msgs[0]
    assert (first.after, first.delay_s) == (None, 0.0)
    assert (up1.after, up1.delay_s) == (0, pytest.approx(0.2))
    assert (up2.after, up2.delay_s) == (0, pytest.approx(0.3))  # up1 still in flight at 0.6
    assert [m.nbytes for m in msgs[1]] == [100]


@pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))
def test_a_replayed_fedavg_round_takes_about_its_simulated_time():
    rr = _load("round_replay")
    path = None
    try:
        path = rr.Path_(rr.RATE_MBPS, rr.RTT_MS)
        (row,) = rr.replay("fedavg", 1, out=lambda _line: None)
    except rr.Unavailable as err:
        pytest.skip(f"delay line unavailable: {err}")
    finally:
        if path is not None:
            path.teardown()
    assert row["messages"] == 2 * rr.CLIENTS  # weights down and up per client
    assert abs(row["tcp_ratio"] - 1) < abs(row["flow_ratio"] - 1)  # handshakes, slow start


def test_the_summary_lists_what_the_tcp_model_misses():
    tf = _load("tcp_fidelity")
    row = dict(rate_mbps=20, rtt_ms=40, bytes=100_000, pattern="warm", gap_s=0.0,
               measured_s=0.2, measured_min_s=0.15, tcp_s=0.1, flow_s=0.1,
               tcp_ratio=0.5, flow_ratio=0.5, disturbed=True)
    near = {**row, "pattern": "fresh", "tcp_s": 0.21, "tcp_ratio": 1.05, "disturbed": False}
    text = tf.summary([row, near])
    assert "beyond 10% under tcp (1):" in text
    (line,) = [x for x in text.splitlines() if "measured" in x]
    assert "warm" in line and "(min 150.0)" in line and "(0.50x)" in line
    assert line.endswith("DISTURBED")
    assert "beyond" not in tf.summary([near])


def test_the_summary_tells_a_case_with_two_real_outcomes_from_a_model_that_is_off():
    """A case beyond 25% whose repeats spread past 1.25 / 0.75 (no time within 25% of
    all) is marked, with the model's ratio to its nearest repeat; one whose repeats
    agree is not."""
    tf = _load("tcp_fidelity")
    base = dict(rate_mbps=100, rtt_ms=100, bytes=100_000, pattern="exchange", gap_s=0.1,
                tcp_s=0.1167, flow_s=0.1, flow_ratio=0.5, disturbed=False)
    split = {**base, "measured_runs_s": [0.212, 0.117, 0.212], "measured_s": 0.212,
             "measured_min_s": 0.117, "tcp_ratio": 0.1167 / 0.212}
    off = {**base, "gap_s": 0.5, "measured_runs_s": [0.2, 0.21, 0.19], "measured_s": 0.2,
           "measured_min_s": 0.19, "tcp_ratio": 0.1167 / 0.2}
    lines = tf.summary([split, off]).splitlines()
    (marked,) = [x for x in lines if "TWO OUTCOMES" in x]  # the 0.1 s case
    assert "gap 0.1" in marked and "repeats 212/117/212 ms, nearest 1.00x" in marked
    (plain,) = [x for x in lines if "gap 0.5" in x and "measured" in x]
    assert "nearest 0.61x" in plain and "TWO OUTCOMES" not in plain
    assert lines[-1] == ("beyond 25% under tcp: 2; of them, real TCP's repeats differ by "
                         "more than 1.67x (no time is within 25% of all) in 1, and tcp is "
                         "within 10% of one of their repeats in 1")
    assert not tf.two_outcomes([0.143, 0.231]) and tf.two_outcomes([0.117, 0.196])


def test_the_grid_can_be_cut_to_some_patterns():
    """``--patterns``: the full grid on one path has 4 sizes x (fresh, warm and exchanges
    after 0, 0.1 and 0.5 s), less the 10 MB exchanges below 20 Mbit/s; cut to fresh and
    warm, only those, in the grid's order."""
    tf = _load("tcp_fidelity")
    full = tf.cases(False, [5], [10])
    assert len(full) == 4 * 5 - 3
    some = tf.cases(False, [5], [10], ("fresh", "warm"))
    assert some == [c for c in full if c[3] in ("fresh", "warm")]
    assert [c[3] for c in some] == ["fresh", "warm"] * 4
    assert {c[3] for c in tf.cases(True, [5, 20], [10], ("exchange",))} == {"exchange"}


def test_the_breakdown_groups_messages_by_flights_and_loss():
    rb = _load("round_breakdown")
    real = [dict(segments=44, cwnd=49, resent=0, duration_s=0.05, srtt_s=0.06),
            dict(segments=44, cwnd=22, resent=0, duration_s=0.09, srtt_s=0.05),
            dict(segments=44, cwnd=20, resent=3, duration_s=0.25, srtt_s=0.07),
            dict(segments=4, cwnd=10, resent=0, duration_s=0.02,
                 srtt_s=0.01)]  # too small: left out
    model = [dict(segments=44, cwnd=10, resent=2, duration_s=0.2, srtt_s=0.04)]
    assert [rb.flights(r) for r in real] == [1, 2, 3, 1]
    lines = {line[:24].strip(): line[24:].split() for line in rb.table(real, model)[1:]}
    assert lines["window: one flight"] == ["1", "50.0", "50.0", "0"]
    assert lines["three flights"] == ["1", "250.0", "250.0", "0"]
    assert lines["four or more"] == ["0", "1", "200.0", "200.0"]
    assert lines["resent (model: lost)"] == ["1", "250.0", "250.0", "1", "200.0", "200.0"]
    assert lines["all"][:3] == ["3", "130.0", "90.0"]
    # the smoothed RTTs of the messages kept: median (10th-90th percentile), ms
    assert lines["smoothed RTT at start"] == ["60.0", "(50.0-70.0)", "40.0", "(40.0-40.0)"]


def test_the_breakdown_counts_each_directions_losses():
    rb = _load("round_breakdown")
    real = [dict(segments=44, cwnd=49, resent=31, direction="up"),
            dict(segments=44, cwnd=22, resent=17, direction="up"),
            dict(segments=44, cwnd=30, resent=0, direction="up"),
            dict(segments=4, cwnd=10, resent=2, direction="up"),  # too small: left out
            dict(segments=44, cwnd=40, resent=4, direction="down")]
    model = [dict(segments=44, cwnd=34.4, resent=34, direction="up"),
             dict(segments=44, cwnd=48, resent=0, direction="down")]
    lines = [line.split() for line in rb.losses(real, model)]
    assert lines[0][:10] == ["up", "real", "2", "of", "3", "messages", "lost", "48",
                             "segments;", "largest"]
    assert lines[0][-2:] == ["49:31,", "22:17"]
    assert lines[1][2:8] == ["1", "of", "1", "messages", "lost", "34"] and lines[1][-1] == "34:34"
    assert lines[2][2:8] == ["1", "of", "1", "messages", "lost", "4"]
    assert lines[3][2:8] == ["0", "of", "1", "messages", "lost", "0"]


def test_the_breakdown_sets_each_kind_of_message_real_against_the_model():
    rr = _load("round_replay")

    class Msg:
        def __init__(self, direction, nbytes, real_s, sim_s):
            self.direction, self.nbytes = direction, nbytes
            self.sent_s, self.real_end_s = 100.0, 100.0 + real_s
            self.sim_start_s, self.sim_end_s = 5.0, 5.0 + sim_s

    ups = [Msg("up", 62_880, 0.01 * (i + 1), 0.02 * (i + 1)) for i in range(10)]
    rounds = [{0: ups[:5] + [Msg("down", 62_720, 0.08, 0.07)],
               1: ups[5:] + [Msg("up", 5_184, 0.02, 0.02)]}]  # 4 segments: left out
    lines = rr.by_kind(rounds)
    assert len(lines) == 3 and "model" in lines[0]
    assert lines[1].split() == ["down", "62,720", "B", "1", "80.0", "80.0", "80.0",
                                "70.0", "70.0", "70.0"]
    # ten uploads of 10-100 ms real, 20-200 ms modelled: p10 the second, p90 the last
    assert lines[2].split() == ["up", "62,880", "B", "10", "20.0", "55.0", "100.0",
                                "40.0", "110.0", "200.0"]


def test_a_replayed_round_is_held_against_the_median_and_the_range_of_its_repeats():
    rr = _load("round_replay")
    repeats = [{"method": "splitfed", "round": 1, "real_s": s, "tcp_s": 2.8, "flow_s": 2.2}
               for s in (2.5, 2.6, 3.1)]
    row = rr.median_row(repeats)
    assert row["real_s"] == 2.6 and row["spread"] == pytest.approx(0.6 / 2.6)
    assert (row["real_min_s"], row["real_max_s"]) == (2.5, 3.1)
    assert row["tcp_ratio"] == pytest.approx(2.8 / 2.6)
    assert row["tcp_inside"] and not row["flow_inside"]


def test_the_breakdown_timeline_marks_resent_segments():
    rb = _load("round_breakdown")

    class Sent:
        device_port, sent_s, real_end_s = 5000, 10.0, 10.3

    seq0 = 1000
    packets = [(10.0001 + i * 1e-5, 4, 5000, 80, seq0 + i * 1448, 0, 1448) for i in range(3)]
    packets += [(10.08, 0, 80, 5000, 0, seq0 + 1448, 0),  # one acknowledged
                (10.2, 4, 5000, 80, seq0 + 1448, 0, 1448)]  # the second resent
    assert [line.split()[2:] for line in rb.timeline(Sent, packets)] == [
        ["sent", "0-2"], ["acked", "up", "to", "1.0"], ["resent", "1"]]


def test_a_second_delay_line_benchmark_is_refused_while_one_runs():
    """The namespaces' names are fixed: a second path would tear down the first's."""
    import fcntl

    tf = _load("tcp_fidelity")
    with tf.LOCK.open("w") as held:
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pytest.skip("a delay-line benchmark is running here")
        with pytest.raises(tf.Unavailable, match="another delay-line benchmark is running"):
            tf.Path_(20, 40)


def test_each_exchange_is_scored_on_its_own():
    tf = _load("tcp_fidelity")
    row = dict(rate_mbps=20, rtt_ms=40, bytes=100_000, pattern="exchange", gap_s=0.0,
               measured_exchanges_s=[[1.0, 2.0, 1.0], [1.0, 2.2, 1.0], [1.0, 1.8, 1.0]],
               tcp_exchanges_s=[1.05, 1.0, 1.0], flow_exchanges_s=[0.5, 2.0, 1.08])
    lines = tf.by_exchange([row, dict(row, pattern="warm", measured_exchanges_s=None)])
    table = {line.split()[0]: line.split()[1:] for line in lines.splitlines()[1:]}
    assert table == {"first": ["1/1", "0/1"], "second": ["0/1", "1/1"],
                     "later": ["1/1", "1/1"]}
    assert tf.by_exchange([dict(row, measured_exchanges_s=None)]) == ""


def test_a_rescored_exchange_row_is_simulated_with_its_own_count():
    from ecofed_sim.network import time_messages

    tf = _load("tcp_fidelity")
    base = dict(rate_mbps=20, rtt_ms=10, bytes=10_000, pattern="exchange", gap_s=0.0,
                measured_s=0.01)
    kept, old = tf.rescore([dict(base, count=4, measured_exchanges_s=[[0.01] * 4]),
                            base], count=3)
    assert kept["tcp_exchanges_s"] == time_messages(20, 10, 10_000, "exchange", count=4)
    assert len(kept["flow_exchanges_s"]) == 4 and "tcp_exchanges_s" not in old


def test_the_flights_of_each_reply_are_read_from_the_trace():
    import sys

    sys.path.insert(0, str(PATH.parent / "delayline"))
    ei = load_script("benchmarks/delayline/exchange_info.py")
    n, mss = 100_000, 1448

    def data(t: float, seq: int) -> tuple:  # (time, outgoing, sport, dport, seq, ack, size)
        return (t, 4, ei.PORT, 40000, 7 + seq, 0, mss)

    packets = [data(i * 1e-4, i * mss) for i in range(10)]  # reply 1: one flight of 10
    packets += [(0.5, 0, 40000, ei.PORT, 1, 7, 0)]  # an acknowledgement: not a send
    packets += [data(1.0 + i * 1e-5, n + i * mss) for i in range(59)]
    packets += [data(1.1 + i * 1e-5, n + (59 + i) * mss) for i in range(11)]
    packets += [data(1.3, n + 3 * mss)]  # a segment of reply 2 sent again
    assert ei.flights(packets, n, 3) == ["10", "59+11+1r", ""]
    assert ei.flights([], n, 2) == ["?", "?"]


def test_the_real_medians_interval_comes_from_order_statistics():
    rr = _load("round_replay")
    values = [float(v) for v in range(15, 0, -1)]  # 15 replays, in any order
    # P(Binomial(15, 1/2) <= 3) = 576/32768 <= 2.5% < P(<= 4): the 4th and 12th smallest
    assert rr.median_interval(values) == (4.0, 12.0)
    assert rr.median_interval(values[:6]) == (10.0, 15.0)  # 6: the extremes, 96.9%
    assert rr.median_interval(values[:5]) is None  # 5: 1/32 > 2.5% in each tail
    # 50%: P(<= 5) = 4944/32768 <= 25% < P(<= 6) = 9949/32768: the 6th and 10th
    assert rr.median_interval(values, confidence=0.5) == (6.0, 10.0)


def test_a_model_round_is_called_within_outside_or_undecided_against_that_interval():
    rr = _load("round_replay")
    assert rr.verdict(1.0, (0.96, 1.04)) == "within"  # 1.0 / 0.96 = 1.042, / 1.04 = 0.96
    assert rr.verdict(1.0, (0.90, 1.04)) == "undecided"  # 1.0 / 0.90 = 1.11
    assert rr.verdict(0.85, (0.90, 1.04)) == "outside"  # 0.85 / 0.90 = 0.944
    assert rr.verdict(1.0, None) == "undecided"
    repeats = [{"method": "splitfed", "round": 1, "real_s": s, "tcp_s": 2.39, "flow_s": 2.7}
               for s in (2.40, 2.51, 2.53, 2.60, 2.62, 2.64, 2.65, 2.66, 2.68, 2.70, 2.74,
                         2.77, 2.80, 3.00, 3.20)]
    row = rr.median_row(repeats)
    assert row["median_interval_s"] == (2.60, 2.77)
    assert row["tcp_verdict"] == "outside" and row["flow_verdict"] == "within"


def test_a_rounds_network_time_runs_from_its_start_to_its_last_arrival():
    from types import SimpleNamespace

    import pandas as pd

    rr = _load("round_replay")
    rounds = pd.DataFrame({"sim_time_s": [3.0, 5.0, 9.0], "round_time_s": [3.0, 2.0, 4.0]})
    transfers = pd.DataFrame({"round": [0, 0, 2], "t_end_s": [1.5, 2.25, 7.5]})
    times = rr.network_times_s(SimpleNamespace(rounds=rounds, transfers=transfers))
    assert times == {0: 2.25, 2: 2.5}  # round 1 sent nothing; round 2 started at 5 s


def test_the_models_draws_are_held_against_the_real_median():
    rr = _load("round_replay")
    repeats = [{"method": "splitfed", "round": 0, "real_s": s, "tcp_s": 2.0, "flow_s": 2.0}
               for s in (2.40, 2.51, 2.53, 2.60, 2.62, 2.64, 2.65, 2.66, 2.68, 2.70, 2.74,
                         2.77, 2.80, 3.00, 3.20)]  # median 2.66, interval 2.60-2.77
    row = rr.with_draws(rr.median_row(repeats), [2.9, 2.5, 2.7, 2.6, 2.8])
    assert (row["draws_s"], row["draws_min_s"], row["draws_max_s"]) == (2.7, 2.5, 2.9)
    assert row["draws_ratio"] == pytest.approx(2.7 / 2.66)
    assert row["draws_verdict"] == "within"  # 2.7 / 1.05 = 2.571 <= 2.60, 2.77 <= 2.842
    assert row["tcp_verdict"] == "outside"  # the single draw's 2.0 is kept beside it
    low = rr.with_draws(rr.median_row(repeats), [2.3, 2.4])
    assert low["draws_verdict"] == "outside"  # 2.35 / 0.95 = 2.474 < 2.60


def test_each_draw_of_the_model_is_a_timing_only_run_with_its_own_seed():
    rr = _load("round_replay")
    drawn = rr.model_draws("fedavg", 1, 2, 0.5)
    runs = [rr.simulate("fedavg", 1, "tcp", 0.5, seed) for seed in (0, 1)]
    assert drawn["rounds_s"] == {0: [rr.network_times_s(r)[0] for r in runs]}
    messages = [m for r in runs for m in rr.per_message(r.transfers).itertuples()]
    assert sorted(drawn["kinds"]) == sorted({(m.direction, int(m.nbytes)) for m in messages})
    for kind, durations in drawn["kinds"].items():
        assert sorted(durations) == sorted(m.end - m.start for m in messages
                                           if (m.direction, int(m.nbytes)) == kind)
    assert len(drawn["kinds"][("down", messages[0].nbytes)]) == 2 * rr.CLIENTS


def test_the_delay_lines_queue_log_gives_each_packets_wait(tmp_path):
    ql = load_script("benchmarks/delayline/queue_log.py")
    log = tmp_path / "queue.bin"
    records = [(1_000_000_000, 0, 1500, 0, 0),  # up, at 1 s, empty queue
               (1_000_100_000, 25_000, 1500, 0, 0),  # 25,000 B ahead: 10 ms at 20 Mbit/s
               (1_000_200_000, 124_000, 1500, 0, 1),  # dropped
               (1_002_000_000, 5_000, 52, 1, 0)]  # down: 2 ms
    log.write_bytes(b"".join(ql.RECORD.pack(*r) for r in records) + b"\0" * 7)  # cut short
    queues = ql.read(log, 20e6)
    up, down = queues["up"], queues["down"]
    assert up.times_s == [1.0, 1.0001, 1.0002] and up.dropped == [False, False, True]
    assert up.waits_s[1] == pytest.approx(0.010) and down.waits_s == [pytest.approx(0.002)]
    assert ql.wait_at_s(up, 0.5) == 0.0  # before the first packet
    assert ql.wait_at_s(up, 1.0003) == pytest.approx(0.0496 - 0.0001)  # drained since
    assert ql.wait_at_s(down, 1.01) == 0.0  # drained away
    lines = ql.summary(queues)
    assert lines[0].split()[:4] == ["up", "3", "packets,", "1"]
    assert lines[1].split()[:4] == ["down", "1", "packets,", "0"]
    assert ql.summary(queues, start_s=1.001) == [lines[1]]  # only what arrived in the window


@pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))
def test_the_delay_line_writes_its_queue_log_when_torn_down(tmp_path):
    tf, ql = _load("tcp_fidelity"), load_script("benchmarks/delayline/queue_log.py")
    path, log = None, tmp_path / "queue.bin"
    try:
        path = tf.Path_(20, 40, queue_log=log)
        before = time.monotonic()
        path.measure("warm", 100_000, 0.0, 1)
        after = time.monotonic()
    except tf.Unavailable as err:
        pytest.skip(f"delay line unavailable: {err}")
    finally:
        if path is not None:
            path.teardown()
    queues = ql.read(log, 20e6)
    up, down = queues["up"], queues["down"]  # the message goes device to server
    assert sum(1 for t in up.times_s if before <= t <= after) >= 70  # 100 KB of segments
    assert down.times_s  # its acknowledgements
    assert max(up.waits_s) > 0.010  # sent as a burst into 20 Mbit/s: a queue built up
    assert max(up.waits_s) <= 100_000 * 8 / 20e6  # no more than one BDP of buffer



@pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))
def test_a_first_hop_spaces_the_packets_before_the_bottleneck_buffer(tmp_path):
    """A first hop of 50 Mbit/s (a sender's network card) hands the 20 Mbit/s bottleneck
    each frame (bytes + 14) * 8 / 50e6 s after the one before it at the earliest, where
    the TUN device hands a burst over within microseconds."""
    tf, ql = _load("tcp_fidelity"), load_script("benchmarks/delayline/queue_log.py")
    path, log = None, tmp_path / "queue.bin"
    try:
        path = tf.Path_(20, 40, queue_log=log, line_rate_mbps=50.0)
        path.measure("fresh", 100_000, 0.0, 1)
    except tf.Unavailable as err:
        pytest.skip(f"delay line unavailable: {err}")
    finally:
        if path is not None:
            path.teardown()
    data = log.read_bytes()
    up = [r for r in ql.RECORD.iter_unpack(data[:len(data) - len(data) % ql.RECORD.size])
          if r[3] == 0]  # device to server: the message's segments
    assert sum(1 for r in up if r[2] > 1000) >= 69
    gaps_ns = [b[0] - a[0] - (b[2] + 14) * 8e9 / 50e6 for a, b in zip(up, up[1:], strict=False)]
    assert min(gaps_ns) >= -1  # each waited for the first hop (ns rounding)

def test_the_exchanges_are_also_scored_by_their_total():
    tf = _load("tcp_fidelity")
    # Linux's later exchanges flip between outcomes: the median of exchanges 2-4 is 0.23,
    # 0.136 and 0.225 in the three repeats, the total 0.834 in each
    row = dict(rate_mbps=20, rtt_ms=40, bytes=100_000, pattern="exchange", gap_s=0.0,
               measured_exchanges_s=[[0.25, 0.23, 0.232, 0.122], [0.25, 0.136, 0.322, 0.126],
                                     [0.25, 0.225, 0.232, 0.127]],
               tcp_exchanges_s=[0.247, 0.131, 0.321, 0.141],  # total 0.840: 1.01x
               flow_exchanges_s=[0.2, 0.1, 0.1, 0.1])  # total 0.5: 0.60x
    far = dict(row, rate_mbps=5, tcp_exchanges_s=[0.1, 0.1, 0.1, 0.1])  # 0.4: 0.48x
    lines = tf.by_total([row, dict(row, measured_exchanges_s=None), far]).splitlines()
    assert lines[1].split()[:7] == ["all", "1/2", "0/2", "0.48x", "(5", "Mb/s,", "40"]
    assert lines[1].endswith("beyond 25%: 1")
    assert tf.by_total([dict(row, measured_exchanges_s=None)]) == ""

"""Time-varying links: exact integration across rate changes, loops, offsets, framing."""

from __future__ import annotations

import pytest
import simpy
from conftest import tiny
from helpers import run_dict

from ecofed_sim.errors import ScenarioError
from ecofed_sim.network import Capacity, DeviceLink, Network
from ecofed_sim.traces import Trace, read_trace, segments


def _send(trace: Trace, nbytes: int, loop=True, offset=0.0, start=0.0, framing=(0, 0.0)):
    env = simpy.Environment()
    net = Network(env, Capacity("in", 1e12), Capacity("out", 1e12), *framing)
    link = DeviceLink.from_mbps("d", 1, 1, 0)
    net.drive(link.up, trace, loop, offset)
    done = []

    def proc():
        yield env.timeout(start)
        yield from net.transfer(link, "up", nbytes)
        done.append(env.now)

    env.process(proc())
    env.run(until=1000)
    return done[0]


def test_transfer_across_a_rate_change_ends_at_hand_computed_time():
    trace = Trace((0.0, 1.0), (8.0, 2.0))
    # 16e6 bits: 8e6 in the first second at 8 Mbit/s, the other 8e6 at 2 Mbit/s = 4 s more
    assert _send(trace, 2_000_000, loop=False) == pytest.approx(5.0, rel=1e-12)


def test_looping_trace_and_offset():
    trace = Trace((0.0, 1.0), (1.0, 4.0))  # period 2 s: 1 Mbit/s then 4 Mbit/s
    # from t=0: 1e6 bits in [0,1), 4e6 in [1,2), 1e6 in [2,3): 6e6 bits end at t=3
    assert _send(trace, 750_000) == pytest.approx(3.0, rel=1e-12)
    # offset 1 s: starts in the 4 Mbit/s part: 4e6 bits by t=1, 1e6 more by t=2, 1e6 by 2.25
    assert _send(trace, 750_000, offset=1.0) == pytest.approx(2.25, rel=1e-12)
    assert [s for s, _ in zip(segments(trace, 1.0, True), range(4), strict=False)] == [
        (4.0, 1.0), (1.0, 1.0), (4.0, 1.0), (1.0, 1.0)]


def test_framing_overhead_on_the_wire():
    trace = Trace((0.0,), (8.0,))
    # 1e6 payload bytes x 1.05 + 40 bytes = 1,050,040 bytes at 1 MB/s
    assert _send(trace, 1_000_000, framing=(40, 0.05)) == pytest.approx(1.05004, rel=1e-12)


def test_reader_layouts_and_errors(tmp_path):
    csv = tmp_path / "a.csv"
    csv.write_text("time_s,mbps\n0,1.5\n2.5,3\n")
    assert read_trace(csv, "x") == Trace((0.0, 2.5), (1.5, 3.0))
    txt = tmp_path / "b.log"
    txt.write_text("# norway-like\n0 1.2\n1 0.8\n")
    assert read_trace(txt, "x").rates_mbps == (1.2, 0.8)
    bad = tmp_path / "c.csv"
    bad.write_text("0,1\n0,2\n")
    with pytest.raises(ScenarioError, match="times must increase"):
        read_trace(bad, "x")
    with pytest.raises(ScenarioError, match="trace file not found"):
        read_trace(tmp_path / "nope.csv", "x")


def test_scenario_with_trace_and_jitter_is_deterministic(tiny_dir):
    (tiny_dir / "up.csv").write_text("0,0.5\n0.2,4\n")
    link = {"uplink_trace": "up.csv", "downlink_mbps": 2, "latency_ms": 10,
            "latency_jitter_ms": 5, "trace_offset_step_s": 0.1}
    raw = tiny(rounds=2, **{"population.devices.0.link": link})
    a, b = run_dict(raw, tiny_dir), run_dict(raw, tiny_dir)
    assert a.rounds.round_time_s.tolist() == b.rounds.round_time_s.tolist()
    fixed = run_dict(tiny(rounds=2), tiny_dir)
    assert a.rounds.round_time_s.iloc[0] != fixed.rounds.round_time_s.iloc[0]


def test_link_needs_rate_or_trace(tiny_dir):
    from ecofed_sim.scenario import scenario_from_dict

    with pytest.raises(ScenarioError, match="give exactly one of uplink_mbps or uplink_trace"):
        scenario_from_dict(tiny(**{"population.devices.0.link": {"downlink_mbps": 1}}), "t")

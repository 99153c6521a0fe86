"""Deadlines, over-selection, dropout and availability traces, on tiny scenarios.

Four devices with uplinks of 1, 2, 4 and 8 Mbit/s and a fast server, so clients finish in
a clear order. The oracle for each rule is a run without it: before a round closes,
nothing differs, so the times read off the full run are the times the rule acts on.
"""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import tiny
from helpers import run_dict

import ecofed_sim
from ecofed_sim.availability import NEVER, Availability, read_onoff_trace
from ecofed_sim.errors import ScenarioError
from ecofed_sim.resimulate import resimulate
from ecofed_sim.scenario import scenario_from_dict

EXACT = {"rel": 1e-12, "abs": 1e-12}


def four_devices(**changes) -> dict:
    return tiny(**{"population.clients": 4, "population.clients_per_round": 4,
                   "data.synthetic.train_samples": 80,
                   "server.link": {"ingress_mbps": 1000, "egress_mbps": 1000},
                   "population.devices": [
                       {"profile": "unit_dev", "count": 1,
                        "link": {"uplink_mbps": up, "downlink_mbps": 2, "latency_ms": 10}}
                       for up in (1, 2, 4, 8)], **changes})


def finish_times(res) -> pd.DataFrame:
    """Each client's finish time relative to its round's start."""
    start = (res.rounds.sim_time_s - res.rounds.round_time_s).set_axis(res.rounds["round"])
    p = res.participation.copy()
    p["finish_s"] = p.t_end_s - p["round"].map(start)
    return p


def test_over_selection_keeps_the_first_k_to_finish(tiny_dir):
    full = finish_times(run_dict(four_devices(), tiny_dir))
    raw = four_devices(**{"population.clients_per_round": 2,
                          "population.over_selection": 2.0})
    res = run_dict(raw, tiny_dir)
    assert (res.rounds.selected == 4).all() and (res.rounds.completed == 2).all()
    assert (res.rounds.stragglers == 2).all() and (res.rounds.dropped == 0).all()
    for r, row in res.rounds.set_index("round").iterrows():
        order = full[full["round"] == r].sort_values("finish_s")
        kept = res.participation.query("round == @r and outcome == 'completed'")
        assert set(kept.client) == set(order.client[:2])
        assert row.round_time_s == pytest.approx(order.finish_s.iloc[1], **EXACT)
        stragglers = res.participation.query("round == @r and outcome == 'straggler'")
        assert set(stragglers.client) == set(order.client[2:])
        # a straggler's upload is cut where it stood: fewer bytes than a full model
        ups = res.transfers.query("round == @r and direction == 'up'")
        full_bytes = ups[ups.client.isin(kept.client)].payload_bytes.max()
        assert (ups[ups.client.isin(stragglers.client)].payload_bytes < full_bytes).all()


def test_clients_finishing_together_past_k_are_not_kept(tiny_dir):
    same = [{"profile": "unit_dev", "count": 1, "link": {"uplink_mbps": 2, "downlink_mbps": 2}}
            for _ in range(4)]
    res = run_dict(four_devices(**{"population.devices": same,
                                   "population.clients_per_round": 2,
                                   "population.over_selection": 2.0}), tiny_dir)
    assert (res.rounds.completed == 2).all() and (res.rounds.stragglers == 2).all()
    ends = res.participation.groupby("round").t_end_s.nunique()
    assert (ends == 1).all()  # all four finished in the same instant


def test_deadline_closes_the_round_and_keeps_who_finished(tiny_dir):
    full = finish_times(run_dict(four_devices(rounds=1), tiny_dir))
    order = full.sort_values("finish_s")
    deadline_s = (order.finish_s.iloc[1] + order.finish_s.iloc[2]) / 2
    res = run_dict(four_devices(rounds=1, **{"population.deadline_s": deadline_s}), tiny_dir)
    row = res.rounds.iloc[0]
    assert row.round_time_s == pytest.approx(deadline_s, **EXACT)
    assert (row.completed, row.stragglers, row.dropped) == (2, 2, 0)
    kept = res.participation.query("outcome == 'completed'")
    assert set(kept.client) == set(order.client[:2])
    assert (res.timeline.t_end_s <= deadline_s + 1e-12).all()


def _onoff(tmp, name: str, client3: tuple[float, float]) -> str:
    rows = ["client,online_s,offline_s"] + [f"{c},0,1e6" for c in range(3)]
    rows.append(f"3,{float(client3[0])!r},{float(client3[1])!r}")
    (tmp / name).write_text("\n".join(rows) + "\n")
    return name


@pytest.mark.parametrize("method", [{"name": "fedavg"}, {"name": "splitfed", "split": 4},
                                    {"name": "ecofed", "split": 4}])
def test_a_client_that_drops_mid_round_contributes_nothing(tiny_dir, method):
    """Oracle: dropping mid-round learns exactly what never selecting the client does."""
    full = finish_times(run_dict(four_devices(rounds=1, method=method), tiny_dir))
    drop_s = full.set_index("client").finish_s[3] / 2
    loop = {"population.availability_trace_loop": False, "rounds": 2, "method": method}
    dropped = run_dict(four_devices(**loop, **{"population.availability_trace": _onoff(
        tiny_dir, "drop.csv", (0.0, drop_s))}), tiny_dir)
    absent = run_dict(four_devices(**loop, **{"population.availability_trace": _onoff(
        tiny_dir, "absent.csv", (1e6, 1e6 + 1))}), tiny_dir)
    assert dropped.rounds.test_loss.tolist() == absent.rounds.test_loss.tolist()
    assert dropped.rounds.test_accuracy.tolist() == absent.rounds.test_accuracy.tolist()
    first = dropped.rounds.iloc[0]
    assert (first.selected, first.completed, first.dropped) == (4, 3, 1)
    assert absent.rounds.selected.iloc[0] == 3
    who = dropped.participation.query("client == 3").iloc[0]
    assert who.outcome == "dropped" and who.t_end_s == pytest.approx(drop_s, **EXACT)
    offline = dropped.timeline.query("client == 3 and state == 'offline'")
    assert offline.t_start_s.tolist() == pytest.approx([drop_s], **EXACT)
    assert (dropped.timeline.query("client == 3 and state != 'offline'").t_end_s
            <= drop_s + 1e-12).all()


def test_churn_that_ends_every_session_at_once_learns_nothing(tiny_dir):
    res = run_dict(four_devices(rounds=3, **{"population.mean_online_s": 1e-9}), tiny_dir)
    assert (res.rounds.completed == 0).all() and (res.rounds.dropped == 4).all()
    assert res.rounds.test_loss.nunique() == 1  # the initial model, never updated
    again = run_dict(four_devices(rounds=3, **{"population.mean_online_s": 1e-9}), tiny_dir)
    pd.testing.assert_frame_equal(res.participation, again.participation)


def test_churn_drop_times_follow_the_seeded_draws(tiny_dir):
    raw = four_devices(rounds=2, **{"population.mean_online_s": 0.5})
    res = run_dict(raw, tiny_dir)
    avail = Availability(seed=raw["seed"], clients=4, mean_online_s=0.5)
    start = (res.rounds.sim_time_s - res.rounds.round_time_s).tolist()
    for row in res.participation.itertuples():
        off_s = avail.offline_at(row.round, row.client, start[row.round])
        if row.outcome == "dropped":
            assert row.t_end_s == pytest.approx(off_s, **EXACT)
        else:
            assert row.t_end_s <= off_s
    assert set(res.participation.outcome) == {"dropped", "completed"}


def test_a_round_waits_until_someone_is_online(tiny_dir):
    rows = "client,online_s,offline_s\n0,5,1e6\n1,7,1e6\n"
    (tiny_dir / "late.csv").write_text(rows)
    res = run_dict(tiny(rounds=1, **{"population.availability_trace": "late.csv"}), tiny_dir)
    busy = res.timeline[res.timeline.state != "idle"]
    assert busy.t_start_s.min() == pytest.approx(5.0, **EXACT)
    assert res.rounds.selected.iloc[0] == 1  # client 1 is not online yet at t = 5 s


def test_onoff_trace_intervals_loop_and_wrap(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("client,online_s,offline_s\n0,0,2\n0,5,10\n1,3,4\n")
    trace = read_onoff_trace(path, loop=True, where="x")
    assert trace.period_s == 10
    assert trace.online_until(0, 1.0) == 2.0
    assert trace.online_until(0, 6.0) == 12.0  # [5, 10) runs on into the next [0, 2)
    assert trace.online_until(0, 3.0) is None
    assert trace.online_until(0, 16.0) == 22.0
    assert trace.next_online_s(0, 3.0) == 5.0 and trace.next_online_s(1, 4.5) == 13.0
    assert trace.online_until(2, 6.0) == 12.0  # client 2 follows trace client 0
    once = read_onoff_trace(path, loop=False, where="x")
    assert once.online_until(0, 7.0) == 10.0 and once.next_online_s(1, 5.0) == NEVER
    path.write_text("0,0,1e9\n")
    assert read_onoff_trace(path, loop=True, where="x").online_until(0, 3.0) == NEVER


@pytest.mark.parametrize("text, message", [
    ("0,5,3\n", "line 1: need client >= 0 and 0 <= online_s < offline_s"),
    ("0,0,5\n0,4,8\n", "client 0: overlapping intervals"),
    ("client,on,off\n0,zero,1\n", "line 2: expected 'client, online_s, offline_s'"),
    ("# nothing\n", "no rows of 'client, online_s, offline_s'"),
])
def test_bad_onoff_traces_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=message):
        read_onoff_trace(path, loop=True, where="population.availability_trace")


def test_no_trace_reuse_when_timing_decides_what_is_learned(tiny_dir):

    sc = scenario_from_dict(four_devices(**{"population.deadline_s": 1.0}), "tiny.yaml")
    assert sc.population.timing_shapes_learning
    full = ecofed_sim.run(sc, base_dir=tiny_dir, record=True)
    with pytest.raises(ScenarioError, match="timing decides what is learned"):
        resimulate(sc, full.trace, base_dir=tiny_dir)
    assert not scenario_from_dict(four_devices(), "x").population.timing_shapes_learning


def test_a_wave_barrier_starts_each_wave_when_the_slowest_device_is_done(tiny_dir):
    """Two physical devices (uplinks 1 and 4 Mbit/s, a wide server link so they do not
    contend) play 4 clients in 2 waves. Back to back, each device runs its two clients in
    turn; with the barrier, the second wave starts when the slower device's first client
    ends: the round lasts the longer first-wave client plus the longer second-wave one."""
    devices = [{"profile": "unit_dev", "count": 1,
                "link": {"uplink_mbps": up, "downlink_mbps": 2, "latency_ms": 10}}
               for up in (1, 4)]
    raw = tiny(rounds=1, **{"population.clients": 4, "population.clients_per_round": 4,
                            "population.waves": True, "population.devices": devices,
                            "data.synthetic.train_samples": 80,
                            "server.link": {"ingress_mbps": 1000, "egress_mbps": 1000}})
    free = run_dict(raw, tiny_dir)
    p = free.participation.assign(d=lambda df: df.t_end_s - df.t_start_s)
    waves = p.sort_values("t_start_s").groupby("device").d.apply(list)
    first, second = zip(*waves.tolist(), strict=True)
    walled = run_dict({**raw, "population": {**raw["population"], "wave_barrier": True}},
                      tiny_dir)
    assert walled.rounds.round_time_s.iloc[0] == pytest.approx(max(first) + max(second),
                                                               rel=1e-12)
    assert free.rounds.round_time_s.iloc[0] == pytest.approx(
        max(a + b for a, b in zip(first, second, strict=True)), rel=1e-12)
    assert walled.rounds.test_loss.tolist() == free.rounds.test_loss.tolist()


def test_onoff_interval_edges_are_half_open(tmp_path):
    """[online_s, offline_s): online at its start, offline at its end."""
    path = tmp_path / "t.csv"
    path.write_text("0,1,2\n0,5,10\n")
    trace = read_onoff_trace(path, loop=False, where="x")
    assert trace.online_until(0, 1.0) == 2.0 and trace.online_until(0, 2.0) is None
    assert trace.online_until(0, 0.5) is None and trace.online_until(0, 10.0) is None
    assert trace.next_online_s(0, 2.0) == 5.0  # at an interval's end: the next one
    assert trace.next_online_s(0, 1.5) == 1.5 and trace.next_online_s(0, 0.0) == 1.0
    path.write_text("0,0,5\n0,5,8\n")  # touching intervals do not overlap
    assert read_onoff_trace(path, loop=False, where="x").online_until(0, 5.0) == 8.0


@pytest.mark.parametrize("text", ["-1,0,5\n", "0,-1,5\n", "0,5,5\n", "0,6,5\n"])
def test_bad_onoff_rows_name_the_line(tmp_path, text):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ScenarioError) as err:
        read_onoff_trace(path, loop=True, where="here")
    assert str(err.value) == (f"here: {path}: line 1: need client >= 0 and "
                              "0 <= online_s < offline_s")


def test_a_missing_availability_trace_is_named_as_such(tiny_dir):
    from ecofed_sim.availability import build_availability

    sc = scenario_from_dict(tiny(**{"population.availability_trace": "gone.csv"}), "t.yaml")
    with pytest.raises(ScenarioError) as err:
        build_availability(sc, tiny_dir, "t.yaml")
    assert str(err.value) == (f"t.yaml: population.availability_trace: availability trace "
                              f"not found: {tiny_dir / 'gone.csv'}")
    (tiny_dir / "once.csv").write_text("0,0,2\n1,0,4\n")
    for loop, period in ((True, 4.0), (False, None)):
        sc = scenario_from_dict(tiny(**{"population.availability_trace": "once.csv",
                                        "population.availability_trace_loop": loop}), "t")
        assert build_availability(sc, tiny_dir, "t").trace.period_s == period


def test_random_availability_is_keyed_by_seed_stream_and_round():
    """Who is online in a round: the draws of stream AVAILABILITY keyed by (seed, round),
    each client online with the given probability."""
    from ecofed_sim.seeding import AVAILABILITY, np_rng

    av = Availability(seed=4, clients=400, online_probability=0.3)
    rounds = [av.online(r, 0.0) for r in range(6)]
    for r, online in enumerate(rounds):
        draws = np_rng(4, AVAILABILITY, r).random(400)
        assert online == [c for c in range(400) if draws[c] < 0.3]
    assert all(80 < len(o) < 160 for o in rounds)  # about 30% of 400
    assert rounds[0] != rounds[1]  # a fresh draw every round
    assert av.online(0, 0.0) != Availability(5, 400, 0.3).online(0, 0.0)  # and seed
    assert Availability(4, 5, 1.0).online(3, 0.0) == [0, 1, 2, 3, 4]


def test_churn_is_keyed_by_seed_round_and_client():
    from ecofed_sim.seeding import CHURN, np_rng

    av = Availability(seed=2, clients=3, mean_online_s=10.0)
    for r, c in ((0, 0), (0, 1), (3, 2)):
        stay = float(np_rng(2, CHURN, r, c).exponential(10.0))
        assert av.offline_at(r, c, 100.0) == 100.0 + stay
    assert av.offline_at(0, 0, 0.0) != Availability(3, 3, mean_online_s=10.0).offline_at(
        0, 0, 0.0)
    assert Availability(2, 3).offline_at(0, 0, 5.0) == NEVER


# RoundPlay on its own: hand-made clients of known duration, outcomes worked out on paper.

def _play_round(schedule, durations, offline_at, keep, barrier=False):
    import simpy

    from ecofed_sim.ledger import Ledger
    from ecofed_sim.methods.base import ClientUpdate
    from ecofed_sim.participation import RoundPlay, WaveBarrier
    from ecofed_sim.population import Device

    env, ledger = simpy.Environment(), Ledger()
    selected = sum(len(c) for _, c in schedule)
    play = RoundPlay(env, 0, 0.0, keep, selected,
                     lambda c: offline_at.get(c, NEVER), ledger)

    def client_round(client, device):
        yield env.timeout(durations[client])
        return ClientUpdate(client, 1, f"update {client}")

    waves = WaveBarrier(env, [c for _, c in schedule]) if barrier else None
    procs = [env.process(play.device_process(Device(name, None, None), clients,
                                             client_round, waves))
             for name, clients in schedule]
    env.run(until=play.enough)
    play.close()
    env.run(until=env.all_of(procs))
    counts = play.finish(env.now)
    rows = sorted((p["client"], p["device"], p["outcome"], p["t_start_s"], p["t_end_s"])
                  for p in ledger.participation)
    offline = [(s["device"], s["client"], s["what"], s["t_start_s"], s["t_end_s"])
               for s in ledger.timeline if s["state"] == "offline"]
    return play, counts, rows, offline


def test_round_play_outcomes_offline_spans_and_kept_updates_by_hand():
    """d0 runs clients 0, 2, 4; d1 runs 1, 3; d2 runs 5. Client 1 goes offline at 0.5 and
    client 3 at 1.8; the round keeps 2: clients 0 (t=1) and 2 (t=2). Then it closes: 4
    (just started) and 5 (still at work) are stragglers."""
    play, counts, rows, offline = _play_round(
        [("d0", [0, 2, 4]), ("d1", [1, 3]), ("d2", [5])],
        {0: 1.0, 1: 2.0, 2: 1.0, 3: 1.5, 4: 1.0, 5: 5.0}, {1: 0.5, 3: 1.8}, keep=2)
    assert rows == [(0, "d0", "completed", 0.0, 1.0), (1, "d1", "dropped", 0.0, 0.5),
                    (2, "d0", "completed", 1.0, 2.0), (3, "d1", "dropped", 0.5, 1.8),
                    (4, "d0", "straggler", 2.0, 2.0), (5, "d2", "straggler", 0.0, 2.0)]
    assert counts == {"selected": 6, "completed": 2, "dropped": 2, "stragglers": 2}
    assert [(u.client, u.payload) for u in play.updates] == [(0, "update 0"),
                                                               (2, "update 2")]
    # d1 came back at once for client 3; client 3's device stayed offline to the end
    assert offline == [("d1", 1, "dropped", 0.5, 0.5), ("d1", 3, "dropped", 1.8, 2.0)]
    assert play.closed


def test_a_client_offline_before_its_turn_is_dropped_without_running():
    play, counts, rows, offline = _play_round([("d0", [0, 1])], {0: 1.0, 1: 1.0},
                                              {1: 0.5}, keep=2)
    assert rows == [(0, "d0", "completed", 0.0, 1.0), (1, "d0", "dropped", 1.0, 1.0)]
    assert offline == [("d0", 1, "dropped", 1.0, 1.0)]
    assert counts["dropped"] == 1 and [u.client for u in play.updates] == [0]


def test_with_a_wave_barrier_the_next_wave_waits_for_the_slowest_device():
    _, _, rows, _ = _play_round([("d0", [0, 2]), ("d1", [1])], {0: 1.0, 1: 3.0, 2: 1.0},
                                {}, keep=3, barrier=True)
    assert rows == [(0, "d0", "completed", 0.0, 1.0), (1, "d1", "completed", 0.0, 3.0),
                    (2, "d0", "completed", 3.0, 4.0)]
    _, _, rows, _ = _play_round([("d0", [0, 2]), ("d1", [1])], {0: 1.0, 1: 3.0, 2: 1.0},
                                {}, keep=3)
    assert rows[2] == (2, "d0", "completed", 1.0, 2.0)  # no barrier: no waiting


def test_wave_barrier_counts_each_waves_devices():
    import simpy

    from ecofed_sim.participation import WaveBarrier

    env = simpy.Environment()
    barrier = WaveBarrier(env, [[0, 2, 4], [1, 3], [5]])
    assert barrier.left == [3, 2, 1]
    barrier.arrive(1)
    assert not barrier.done[1].triggered
    barrier.arrive(1)
    assert barrier.done[1].triggered and not barrier.done[0].triggered
    assert WaveBarrier(env, []).left == [] and WaveBarrier(env, [[]]).left == []


@pytest.mark.parametrize("keep, selected, at_once", [(0, 3, True), (2, 0, True),
                                                      (1, 1, False)])
def test_a_round_with_nothing_to_wait_for_may_close_at_once(keep, selected, at_once):
    import simpy

    from ecofed_sim.ledger import Ledger
    from ecofed_sim.participation import RoundPlay

    play = RoundPlay(simpy.Environment(), 0, 0.0, keep, selected, lambda c: NEVER, Ledger())
    assert play.enough.triggered is at_once

"""The split planner against brute-force simulation, and per-class split points.

Two device classes that want different splits: a fast device on a slow uplink (small
activations pay) and a slow device on a fast uplink (little device compute pays). The
server has a worker per client and a wide link, so clients do not contend; then the
analytic time model must equal the simulation exactly, and its pick must be the minimum
of a simulation of every assignment.
"""

from __future__ import annotations

import itertools
import re

import pytest
import yaml
from conftest import UNIT_DEVICE, UNITS, tiny
from helpers import assert_same_state, final_state, run_dict

from ecofed_sim import planner
from ecofed_sim.cli import main
from ecofed_sim.errors import ScenarioError
from ecofed_sim.prepare import check
from ecofed_sim.scenario import scenario_from_dict

SLOW_DEV = {**UNIT_DEVICE, "name": "slow_dev", "latency_tables": [{
    "model": "small_cnn", "batch_size": 10,
    "layers": {u: {"forward_ms": 10.0, "backward_ms": 20.0} for u in UNITS}}]}


def two_classes(method: dict, **changes) -> dict:
    return tiny(**{
        "rounds": 1, "method": method, "server.workers": 2,
        "server.link": {"ingress_mbps": 1000, "egress_mbps": 1000},
        "population.devices": [
            {"profile": "unit_dev", "count": 1,
             "link": {"uplink_mbps": 0.5, "downlink_mbps": 2, "latency_ms": 5}},
            {"profile": "slow_dev", "count": 1,
             "link": {"uplink_mbps": 50, "downlink_mbps": 50, "latency_ms": 1}}],
        **changes})


@pytest.fixture
def plan_dir(tiny_dir):
    (tiny_dir / "profiles" / "slow_dev.yaml").write_text(yaml.safe_dump(SLOW_DEV))
    return tiny_dir


def simulated_round_s(raw: dict, splits: tuple[int, int], directory) -> float:
    raw = {**raw, "method": {**raw["method"], "split": splits[0]}}
    raw["population"] = {**raw["population"], "devices": [
        {**d, "split": k} if per_class else d
        for d, k, per_class in zip(raw["population"]["devices"], splits,
                                   [raw["method"]["name"] == "splitfed"] * 2, strict=True)]}
    return float(run_dict(raw, directory).rounds.round_time_s.iloc[0])


@pytest.mark.parametrize("method", [{"name": "splitfed", "split": "auto"},
                                    {"name": "local_loss", "split": "auto"}])
def test_planner_pick_is_the_brute_force_minimum(plan_dir, method):
    raw = two_classes(method)
    prep = check(scenario_from_dict(raw, "t"), "t", plan_dir)
    plan = planner.plan(prep)
    per_class = method["name"] == "splitfed"
    assert plan.per_class == per_class
    assignments = (itertools.product(range(1, 7), repeat=2) if per_class
                   else [(k, k) for k in range(1, 7)])
    simulated = {a: simulated_round_s(raw, a, plan_dir) for a in assignments}
    analytic = {c.splits: c.round_time_s for c in plan.candidates}
    assert set(analytic) == set(simulated)
    for a, seconds in simulated.items():
        assert analytic[a] == pytest.approx(seconds, rel=1e-9), a
    assert simulated[plan.best.splits] == pytest.approx(min(simulated.values()), rel=1e-12)
    if per_class:  # the two classes want different splits here
        assert len(set(plan.best.splits)) == 2


def test_split_auto_runs_the_plan_and_writes_it_out(plan_dir):
    raw = two_classes({"name": "splitfed", "split": "auto"})
    res = run_dict(raw, plan_dir)
    best = planner.plan(check(scenario_from_dict(raw, "t"), "t", plan_dir)).best
    assert [d.split for d in res.scenario.population.devices] == list(best.splits)
    assert res.rounds.round_time_s.iloc[0] == pytest.approx(best.round_time_s, rel=1e-9)
    sent = res.transfers[res.transfers.kind == "activations"].groupby("device").payload_bytes
    assert sent.first().nunique() == 2  # each class sends its own split's activation


def test_planner_bytes_equal_the_ledger(plan_dir):
    for method in ({"name": "splitfed", "split": 3}, {"name": "fedgkt", "split": 2},
                   {"name": "ecofed", "split": 4, "period": 1}):
        raw = two_classes(method)
        plan = planner.plan(check(scenario_from_dict(raw, "t"), "t", plan_dir))
        k = method["split"]
        res = run_dict(raw, plan_dir)
        assert plan.same_split(k).bytes_per_round == res.rounds.cum_bytes.iloc[0], method


def test_per_class_splits_learn_what_fedavg_learns(plan_dir):
    """SplitFed-V1 ends with FedAvg's weights at any split, so also with one per class."""
    fedavg = final_state(two_classes({"name": "fedavg"}, rounds=3), plan_dir)
    mixed = two_classes({"name": "splitfed", "split": 2}, rounds=3)
    mixed["population"]["devices"][1]["split"] = 5
    assert_same_state(fedavg, final_state(mixed, plan_dir))


@pytest.mark.parametrize("method, message", [
    ({"name": "ecofed", "split": 2}, "population.devices[1].split: ecofed uses one split"),
    ({"name": "splitfed", "split": 2, "freeze_device": True},
     "population.devices[1].split: splitfed uses one split"),
    ({"name": "splitfed", "split": 2, "x": 1}, "method.x: unknown field"),
])
def test_per_class_split_only_where_it_is_meaningful(plan_dir, method, message):
    raw = two_classes(method)
    raw["population"]["devices"][1]["split"] = 3
    with pytest.raises(ScenarioError, match=re.escape(message)):
        check(scenario_from_dict(raw, "t"), "t", plan_dir)


def test_class_split_out_of_range(plan_dir):
    raw = two_classes({"name": "splitfed", "split": 2})
    raw["population"]["devices"][0]["split"] = 7
    with pytest.raises(ScenarioError, match=r"population.devices\[0\].split: must be in 1..6"):
        check(scenario_from_dict(raw, "t"), "t", plan_dir)


def test_plan_command_prints_every_candidate(plan_dir, capsys):
    path = plan_dir / "two.yaml"
    path.write_text(yaml.safe_dump(two_classes({"name": "splitfed", "split": 2})))
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in out if line.split() and line.split()[0].isdigit()]
    assert [int(r[0]) for r in rows] == list(range(1, 7))
    assert all(len(r) == 5 for r in rows)  # split, 2 classes, same-split round, MiB
    assert out[-1].startswith("pick (a split per class): class 0:unit_dev -> ")
    assert main(["plan", str(plan_dir / "missing.yaml")]) == 2


def test_plan_for_a_method_without_a_split_is_an_error(plan_dir, capsys):
    path = plan_dir / "fedavg.yaml"
    path.write_text(yaml.safe_dump(two_classes({"name": "fedavg"})))
    assert main(["plan", str(path)]) == 2
    assert "fedavg has no split point to plan" in capsys.readouterr().err


@pytest.mark.parametrize("ingress_mbps", [1.0, 0.3])
def test_planner_under_contention_against_brute_force(plan_dir, ingress_mbps):
    """Both classes upload through one slow server link, so each slows the other. The
    planner's fixed point of the flows sharing the link counts the other class's flows
    at the share of its round it spends sending: it must never be far optimistic (as it
    would be ignoring the other class), stays within 30% (measured: 0.99-1.29x), and its
    pick must simulate within 2% of the best assignment."""
    raw = two_classes({"name": "local_loss", "split": "auto"},
                      **{"server.link": {"ingress_mbps": ingress_mbps, "egress_mbps": 1000}})
    plan = planner.plan(check(scenario_from_dict(raw, "t"), "t", plan_dir))
    simulated = {c.splits: simulated_round_s(raw, c.splits, plan_dir) for c in plan.candidates}
    for c in plan.candidates:
        ratio = c.round_time_s / simulated[c.splits]
        assert 0.98 <= ratio <= 1.30, (c.splits, ratio)
    assert simulated[plan.best.splits] <= 1.02 * min(simulated.values())


@pytest.mark.parametrize("method", [{"name": "splitfed", "split": "auto"},
                                    {"name": "ecofed", "split": "auto", "period": 1}])
def test_under_tcp_the_planner_times_a_first_round_as_the_simulation_does(plan_dir, method):
    """Without contention, the planner's closed-form slow start, restart after idle and
    handshake give the simulated first round exactly, at every split."""
    raw = two_classes(method, **{"network": {"transport": "tcp"}})
    plan = planner.plan(check(scenario_from_dict(raw, "t"), "t", plan_dir))
    flow = planner.plan(check(scenario_from_dict(two_classes(method), "t"), "t", plan_dir))
    for c in plan.candidates:
        assert c.round_time_s == pytest.approx(simulated_round_s(raw, c.splits, plan_dir),
                                               rel=1e-9), c.splits
    slower = {c.splits: c.round_time_s for c in flow.candidates}
    assert all(c.round_time_s > slower[c.splits] for c in plan.candidates)  # rounds, headers


def test_planner_times_fedgkt_two_phase_as_its_sums(plan_dir):
    """Sequential on one device: every local step, then per batch a forward, the upload,
    the server step and the logits down. Without contention the sums are exact (flow)."""
    raw = two_classes({"name": "fedgkt", "split": "auto", "mode": "two_phase"})
    plan = planner.plan(check(scenario_from_dict(raw, "t"), "t", plan_dir))
    for c in plan.candidates[:3]:
        assert c.round_time_s == pytest.approx(simulated_round_s(raw, c.splits, plan_dir),
                                               rel=1e-9), c.splits


def _hand_plan(per_class: bool) -> planner.Plan:
    """Two classes, splits 1 and 2, every number chosen by hand."""
    classes = [planner.ClassLink("a", None, 1e6, 1e6, 0.0, 1.0, 1),
               planner.ClassLink("b", None, 1e6, 1e6, 0.0, 1.0, 1)]
    times = {(0, 1): 1.5, (0, 2): 2.25, (1, 1): 3.0, (1, 2): 0.125}
    candidates = [planner.Candidate((1, 2), 1.5, 3 * 2**20),
                  planner.Candidate((1, 1), 3.0, 2**20),
                  planner.Candidate((2, 2), 2.25, 2**21)]
    return planner.Plan("splitfed", classes, [1, 2], times, candidates, per_class, [10, 10])


def test_the_plan_table_exactly():
    text = planner.format_plan(_hand_plan(per_class=True), "s.yaml")
    assert text.splitlines() == [
        "s.yaml: splitfed, 2 batches per client round; analytic expected times (s)",
        "split             class a             class b   round, same split   MiB/round",
        "    1                 1.5                   3                   3           1",
        "    2                2.25               0.125                2.25           2",
        "pick (a split per class): class a -> 1, class b -> 2; expected round time 1.5 s, "
        "3 MiB per round"]
    one = planner.format_plan(_hand_plan(per_class=False), "s.yaml").splitlines()[-1]
    assert one.startswith("pick (one split for every class): class a -> 1, class b -> 2;")


def test_resolve_writes_the_pick_into_the_method_and_each_class(plan_dir):
    sc = scenario_from_dict(two_classes({"name": "splitfed", "split": "auto"}), "t")
    out = planner.resolve(sc, _hand_plan(per_class=True))
    assert out.method.split == 1
    assert [d.split for d in out.population.devices] == [1, 2]
    same = planner.resolve(sc, _hand_plan(per_class=False))
    assert same.method.split == 1
    assert [d.split for d in same.population.devices] == [None, None]
    assert out.population.devices[0].profile == "unit_dev" and out.name == sc.name


def test_coordinate_descent_finds_the_separable_minimum_and_visits_from_the_common_best():
    """Round time = the slowest class; each class has its own best split. Starting from
    the best common split, one class at a time moves to its own best."""
    cost = [{1: 5.0, 2: 1.0, 3: 4.0}, {1: 2.0, 2: 6.0, 3: 3.0}, {1: 9.0, 2: 8.0, 3: 0.5}]

    def expected(a):
        return planner.Candidate(a, max(c[k] for c, k in zip(cost, a, strict=True)), 0.0)

    visited = planner._coordinate_descent(expected, [1, 2, 3], 3)
    assert visited[:3] == [(1, 1, 1), (2, 2, 2), (3, 3, 3)]  # every common split first
    best = min(visited, key=lambda a: expected(a).round_time_s)
    assert best == (2, 1, 3) and expected(best).round_time_s == 2.0
    brute = min(itertools.product([1, 2, 3], repeat=3), key=lambda a: expected(a).round_time_s)
    assert expected(brute).round_time_s == 2.0


@pytest.mark.parametrize("limit, descends", [(10, True), (12, True), (35, True), (36, False)])
def test_too_many_combinations_fall_back_to_coordinate_descent(plan_dir, monkeypatch, limit,
                                                               descends):
    """6 splits for each of 2 classes: 6 ** 2 = 36 combinations, tried one by one up to a
    limit of 36, by coordinate descent below it."""
    raw = two_classes({"name": "splitfed", "split": 2})
    prep = check(scenario_from_dict(raw, "t"), "t", plan_dir)
    full = planner.plan(prep)
    assert full.method == "splitfed" and full.per_class
    monkeypatch.setattr(planner, "MAX_COMBINATIONS", limit)
    searched = planner.plan(prep)
    assert (len(searched.candidates) < len(full.candidates) == 36) is descends
    assert searched.best == full.best  # two classes: the descent finds the minimum here


@pytest.mark.parametrize("changes, samples", [
    ({}, 40 // 2),  # synthetic: its training images over the clients
    ({"data": {"dataset": "embedded_mnist", "test_samples": 1000}}, (5000 - 1000) // 2),
    ({"data": {"dataset": "cifar10", "root": "x"}}, 50_000 // 2),
    ({"data": {"dataset": "mnist", "root": "x"}}, 60_000 // 2),
    ({"data.partition": {"kind": "shards", "shard_size": 4, "samples_per_client": 12}}, 12),
    ({"pretrain": {"source": "public_split", "public_fraction": 0.25, "units": 2}},
     (40 - 10) // 2),
    ({"training.local_epochs": 3}, 40 // 2),
])
def test_a_typical_clients_samples_known_without_the_data(changes, samples):
    sc = scenario_from_dict(tiny(**changes), "t")
    assert planner.mean_client_samples(sc) == samples
    size = sc.training.batch_size
    per_epoch = [size] * (samples // size) + ([samples % size] if samples % size else [])
    assert planner.round_batches(sc) == per_epoch * sc.training.local_epochs


def test_coordinate_descent_passes_until_nothing_improves():
    """A non-separable cost: class 1 must move before class 0 can. From the best common
    split (3, 3) = 9: class 0 finds nothing, class 1 moves to (3, 1) = 5; the second pass
    moves class 0 to (2, 1) = 2; the third pass finds nothing and stops."""
    cost = {(1, 1): 10.0, (2, 2): 10.0, (3, 3): 9.0, (3, 1): 5.0, (2, 1): 2.0}

    def expected(a):
        return planner.Candidate(a, cost.get(a, 20.0), 0.0)

    visited = planner._coordinate_descent(expected, [1, 2, 3], 2)
    assert visited == [(1, 1), (2, 2), (3, 3),
                       (1, 3), (2, 3), (3, 3), (3, 1), (3, 2), (3, 3),  # pass 1
                       (1, 1), (2, 1), (3, 1), (2, 1), (2, 2), (2, 3),  # pass 2
                       (1, 1), (2, 1), (3, 1), (2, 1), (2, 2), (2, 3)]  # pass 3


def test_a_traced_link_is_planned_at_its_time_weighted_mean_rate(plan_dir):
    """Uplink trace: 1 Mbit/s from 0 s, 4 Mbit/s from 1 s; the last step lasts as long as
    the one before, so the period is 2 s and the mean (1 x 1 + 4 x 1) / 2 = 2.5 Mbit/s.
    The trace's path resolves against the scenario's folder."""
    (plan_dir / "up.csv").write_text("time_s,mbps\n0,1\n1,4\n")
    (plan_dir / "down.csv").write_text("time_s,mbps\n0,3\n2,6\n")  # 2 s each: 4.5
    raw = two_classes({"name": "splitfed", "split": 2})
    raw["population"]["devices"][0]["link"] = {"uplink_trace": "up.csv",
                                               "downlink_trace": "down.csv", "latency_ms": 5}
    sc = scenario_from_dict(raw, "t")
    prep = check(sc, "t", plan_dir)
    links = planner.class_links(sc, prep.library, plan_dir, "t")
    assert (links[0].up_bps, links[0].down_bps) == (2.5e6, 4.5e6)
    assert (links[1].up_bps, links[1].down_bps) == (50e6, 50e6)
    assert planner.plan(prep).classes[0].up_bps == 2.5e6  # plan() reads it the same way
    with pytest.raises(ScenarioError, match=r"t: population\.devices\[0\]\.link: .*up\.csv"):
        planner.class_links(sc, prep.library, plan_dir / "elsewhere", "t")
    (plan_dir / "up2.csv").write_text("time_s,mbps\n0,1\n")
    raw["population"]["devices"][0]["link"]["uplink_trace"] = "up2.csv"
    raw["population"]["devices"][0]["link"]["downlink_trace"] = "gone.csv"
    with pytest.raises(ScenarioError, match=r"t: population\.devices\[0\]\.link: .*gone\.csv"):
        planner.class_links(scenario_from_dict(raw, "t"), prep.library, plan_dir, "t")


def test_class_links_by_hand_with_waves_a_named_link_and_an_inline_one(plan_dir):
    """Waves: 4 physical devices (3 + 1) play 8 clients per round, 2 each. Class 0 holds
    3/4 of them (6 per round) on the named ``wifi`` link (26 up, 35 down Mbit/s, RTT
    25 ms, one way 12.5 ms). Class 1 (2 per round) is inline: one way 10 ms plus half its
    6 ms jitter (the mean wait), RTT 30 ms, a 5,000-byte buffer."""
    raw = two_classes({"name": "splitfed", "split": 2})
    raw["population"].update({"clients": 8, "clients_per_round": 8, "waves": True})
    raw["population"]["devices"] = [
        {"profile": "unit_dev", "count": 3, "link": "wifi"},
        {"profile": "slow_dev", "count": 1,
         "link": {"uplink_mbps": 4, "downlink_mbps": 8, "latency_ms": 10,
                  "latency_jitter_ms": 6, "rtt_ms": 30, "buffer_bytes": 5000}}]
    sc = scenario_from_dict(raw, "t")
    prep = check(sc, "t", plan_dir)
    links = planner.class_links(sc, prep.library, plan_dir, "t")
    assert links == [
        planner.ClassLink("0:unit_dev", prep.library.devices["unit_dev"], 26e6, 35e6,
                          0.0125, 6.0, 2, 0.025, None),
        planner.ClassLink("1:slow_dev", prep.library.devices["slow_dev"], 4e6, 8e6,
                          0.013, 2.0, 2, 0.03, 5000)]
    shares = {**raw, "population": {**raw["population"], "waves": False, "devices": [
        {**d, "count": None, "share": s} for d, s in zip(raw["population"]["devices"],
                                                         (0.75, 0.25), strict=True)]}}
    by_share = planner.class_links(scenario_from_dict(shares, "t"), prep.library, plan_dir, "t")
    assert [(c.clients_per_round, c.waves) for c in by_share] == [(6.0, 1), (2.0, 1)]
    raw["population"]["devices"][0]["link"] = "nowhere"
    with pytest.raises(ScenarioError, match=r"t: population\.devices\[0\]\.link: .*nowhere"):
        planner.class_links(scenario_from_dict(raw, "t"), prep.library, plan_dir, "t")


class _Seconds:
    """A profile stand-in whose costs are already seconds."""

    @staticmethod
    def cost_s(cost) -> float:
        return float(cost or 0.0)


def _timer(plan_dir, **changes) -> planner.Timer:
    sc = scenario_from_dict(two_classes({"name": "splitfed", "split": 2}, **changes), "t")
    return planner.Timer(sc, _Seconds())


def test_flow_client_time_and_sending_time_by_hand(plan_dir):
    """Flow transport, down 2 Mbit/s, up 1 Mbit/s, 10 ms one way. Weights 4,000 bytes
    down: 0.01 + 0.016. Per batch: compute 0.5, 1,000 bytes up (0.018), server 0.25, 500
    bytes down (0.012), compute 0.125: 0.905. Two batches, then the weights up (0.042):
    1.878 s. Sending time: up 2 x 0.008 + 0.032, down 0.016 + 2 x 0.002. Streaming
    instead (no reply): the device sends both batches (0.518 each), the server works
    behind it and ends at 0.026 + 2 x 0.518 + 0.25 = 1.312, then the weights go up."""
    timer = _timer(plan_dir, network={"transport": "flow"})
    cls = planner.ClassLink("c", _Seconds(), 1e6, 2e6, 0.01, 1.0, 1)
    batch = dict(device_before=0.5, up_bytes=1000, server=0.25, down_bytes=500,
                 device_after=0.125, weights_down_bytes=4000, weights_up_bytes=4000)
    from ecofed_sim.methods.base import Sketch

    assert timer.client_s(cls, [Sketch(**batch)] * 2) == pytest.approx(1.878, rel=1e-12)
    assert timer.busy_s == {True: pytest.approx(0.048), False: pytest.approx(0.02)}
    streamed = Sketch(**{**batch, "down_bytes": 0, "device_after": 0.0, "waits": False})
    assert timer.client_s(cls, [streamed] * 2) == pytest.approx(1.312 + 0.042, rel=1e-12)
    assert timer.busy_s == {True: pytest.approx(0.048), False: pytest.approx(0.016)}
    assert timer.message_s(cls, 0, up=True) == 0.0
    assert timer.message_s(cls, 1, up=True) == pytest.approx(0.01 + 8 / 1e6, rel=1e-12)


@pytest.mark.parametrize("waves, rate_mbps", [(True, 2.0), (False, 0.5)])
def test_the_server_link_is_shared_by_the_clients_in_flight(plan_dir, waves, rate_mbps):
    """Server ingress 4 Mbit/s, 8 clients a round. With waves on 2 physical devices, 2
    are in flight (2 Mbit/s each); without, all 8 (0.5 Mbit/s). 10,000 bytes up."""
    raw = two_classes({"name": "splitfed", "split": 2}, network={"transport": "flow"})
    raw["server"]["link"] = {"ingress_mbps": 4, "egress_mbps": 1000}
    raw["population"].update({"clients": 8, "clients_per_round": 8, "waves": waves})
    if not waves:
        for d in raw["population"]["devices"]:
            del d["count"]
            d["share"] = 0.5
    timer = planner.Timer(scenario_from_dict(raw, "t"), _Seconds())
    cls = planner.ClassLink("c", _Seconds(), 10e6, 10e6, 0.0, 1.0, 1)
    assert timer.message_s(cls, 10_000, up=True) == pytest.approx(0.08 / rate_mbps)


def _planned_messages(timer, cls, plan) -> list[float]:
    expected, t = [], 0.0
    for gap_s, size, up in plan:
        t += gap_s
        took = timer.message_s(cls, size, up, start_s=t)
        expected.append(took)
        t += took
    return expected


@pytest.mark.parametrize("buffer_bytes", [None, 3000, 20_000])
def test_tcp_messages_are_timed_as_the_network_times_them(plan_dir, buffer_bytes):
    """Oracle: one connection, messages in lock step with gaps, some longer than the RTO
    (a restart), both directions, asymmetric rates, with and without a buffer that caps
    the window and loses what a burst puts beyond it (3,000 bytes: every burst; 20,000:
    the bursts of a grown window): the planner's closed form equals the simulated
    network message by message."""
    import dataclasses

    import simpy

    from ecofed_sim.network import Capacity, DeviceLink, Network, TcpParams

    timer = _timer(plan_dir, network={"transport": "tcp"})
    cls = planner.ClassLink("c", _Seconds(), 2e6, 20e6, 0.02, 1.0, 1, 0.04, buffer_bytes)
    plan = [(0.0, 100_000, False), (0.5, 50_000, True), (0.001, 20_000, False),
            (0.35, 200_000, True), (0.0, 1448, True), (1.2, 300_000, False),
            (0.0, 60_000, True), (0.3, 60_000, True), (0.0, 100_000, False),
            (0.05, 100_000, False)]
    if buffer_bytes is not None:  # bursts are lost here: the case is not vacuous
        lossless = _timer(plan_dir, network={"transport": "tcp"})
        lossless.tcp = dataclasses.replace(lossless.tcp, burst_loss=False)
        assert _planned_messages(lossless, cls, plan) != _planned_messages(
            _timer(plan_dir, network={"transport": "tcp"}), cls, plan)
    expected = _planned_messages(timer, cls, plan)
    env = simpy.Environment()
    net = Network(env, Capacity("in", 1e12), Capacity("out", 1e12),
                  tcp=timer.sc.network.tcp_params())
    link = DeviceLink.from_mbps("d", 2, 20, 20)
    link.rtt_s, link.buffer_bytes = 0.04, buffer_bytes
    simulated = []

    def play():
        for gap_s, size, up in plan:
            yield env.timeout(gap_s)
            t0 = env.now
            yield from net.transfer(link, "up" if up else "down", size)
            simulated.append(env.now - t0)

    env.run(until=env.process(play()))
    assert simulated == pytest.approx(expected, rel=1e-9)
    assert timer.connection.window_bits == pytest.approx(link.connection.window_bits)
    wire = {up: sum(TcpParams().wire_bytes(size) * 8 for _, size, u in plan if u == up)
            for up in (True, False)}
    assert timer.busy_s == {True: pytest.approx(wire[True] / 2e6),
                            False: pytest.approx(wire[False] / 20e6)}


def test_ecofed_plans_update_and_replay_rounds_as_simulated(plan_dir):
    """EcoFed, period 2: round 0 trains on the devices, round 1 replays the buffer on the
    server's 2 workers (one identical client each). The planner's round is their mean,
    at every split, exactly (one class, no contention, flow transport); a single class
    is planned as one split for all."""
    raw = two_classes({"name": "ecofed", "split": "auto", "period": 2}, rounds=2,
                      network={"transport": "flow"})
    raw["population"].update({"clients": 2, "clients_per_round": 2})
    raw["population"]["devices"] = [{"profile": "unit_dev", "count": 2, "link": {
        "uplink_mbps": 0.5, "downlink_mbps": 2, "latency_ms": 5}}]
    plan = planner.plan(check(scenario_from_dict(raw, "t"), "t", plan_dir))
    assert plan.method == "ecofed" and not plan.per_class
    for c in plan.candidates:
        run = {**raw, "method": {**raw["method"], "split": c.splits[0]}}
        rounds = run_dict(run, plan_dir).rounds.round_time_s
        assert c.round_time_s == pytest.approx(rounds.mean(), rel=1e-9), c.splits
        assert rounds[1] != rounds[0]  # a replay round is not an update round


def test_a_tcp_client_round_is_timed_as_the_network_plays_it(plan_dir):
    """Oracle: weights down on a new connection, two batches (0.4 s of compute, longer
    than the RTO: the window restarts; activations up, a server step, gradients down,
    more compute), weights up, played on the simulated network with timeouts for the
    compute. The planner's client time equals it."""
    import simpy

    from ecofed_sim.methods.base import Sketch
    from ecofed_sim.network import Capacity, DeviceLink, Network

    timer = _timer(plan_dir, network={"transport": "tcp"})
    cls = planner.ClassLink("c", _Seconds(), 2e6, 20e6, 0.02, 1.0, 1, 0.04, None)
    batch = Sketch(device_before=0.4, up_bytes=30_000, server=0.05, down_bytes=30_000,
                   device_after=0.1, weights_down_bytes=200_000, weights_up_bytes=200_000)
    expected = timer.client_s(cls, [batch, batch])
    env = simpy.Environment()
    net = Network(env, Capacity("in", 1e12), Capacity("out", 1e12),
                  tcp=timer.sc.network.tcp_params())
    link = DeviceLink.from_mbps("d", 2, 20, 20)
    link.rtt_s = 0.04

    def play():
        yield from net.transfer(link, "down", 200_000)
        for _ in range(2):
            yield env.timeout(0.4)
            yield from net.transfer(link, "up", 30_000)
            yield env.timeout(0.05)
            yield from net.transfer(link, "down", 30_000)
            yield env.timeout(0.1)
        yield from net.transfer(link, "up", 200_000)

    env.run(until=env.process(play()))
    assert env.now == pytest.approx(expected, rel=1e-9)

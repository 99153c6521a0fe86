"""Hierarchical FedAvg: edges between devices and the cloud, against flat FedAvg and
backhaul times worked out by hand."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch
from conftest import TINY_MODEL_PARAMS, tiny, write_scenario
from helpers import InProcessPool, plot_kind_of_run, run_dict

import ecofed_sim
from ecofed_sim.aggregation import fedavg
from ecofed_sim.cli import main
from ecofed_sim.engine import Engine
from ecofed_sim.hierarchy import HierarchicalEngine
from ecofed_sim.prepare import prepare
from ecofed_sim.scenario import scenario_from_dict

LINK = {"uplink_mbps": 1, "downlink_mbps": 2, "latency_ms": 10}
MODEL_BYTES = 4 * TINY_MODEL_PARAMS


def _flat(**changes) -> dict:
    return tiny(**{"population.clients": 4, "population.clients_per_round": 4,
                   "data.synthetic.train_samples": 47, "training.batch_size": 4,
                   "population.devices": [{"profile": "unit_dev", "count": 4, "link": LINK}],
                   "rounds": 3, **changes})


def _two_edges(raw: dict, backhaul=None, cloud_every: int = 1, access=None) -> dict:
    raw = copy.deepcopy(raw)
    raw["population"]["devices"] = [{"profile": "unit_dev", "count": 2, "link": LINK,
                                     "edge": "a"},
                                    {"profile": "unit_dev", "count": 2, "link": LINK,
                                     "edge": "b"}]
    access = access or {"ingress_mbps": 1000, "egress_mbps": 1000}
    raw["topology"] = {"cloud_every": cloud_every, "edges": [
        {"name": "a", "access": access, "backhaul": backhaul},
        {"name": "b", "access": access, "backhaul": backhaul}]}
    return raw


def _engine(raw: dict, tiny_dir, cls):
    return cls(prepare(scenario_from_dict(raw, "tiny.yaml"), "tiny.yaml", tiny_dir))


def test_one_edge_with_the_cloud_is_the_flat_run_exactly(tiny_dir):
    """One edge, no backhaul, its access link the server's: every table equal."""
    flat = _flat()
    raw = copy.deepcopy(flat)
    raw["population"]["devices"][0]["edge"] = "only"
    raw["topology"] = {"edges": [{"name": "only", "backhaul": None,
                                  "access": {"ingress_mbps": 1, "egress_mbps": 100}}]}
    a, b = run_dict(flat, tiny_dir), run_dict(raw, tiny_dir)
    assert (b.rounds.pop("edge_busy_s") == 0).all()  # fedavg computes nothing at edges
    for name in ("rounds", "transfers", "timeline", "participation"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))


def test_two_edges_aggregated_every_round_are_flat_fedavg(tiny_dir):
    """k2 = 1: the cloud's sample-weighted mean of the edges' sample-weighted means is
    FedAvg over the same clients (to float rounding: the edge means are rounded to fp32)."""
    flat, hier = _engine(_flat(), tiny_dir, Engine), _engine(
        _two_edges(_flat()), tiny_dir, HierarchicalEngine)
    for r in range(3):
        flat.run_round(r)
        hier.run_round(r)
    want = flat.method.global_model.state_dict()
    for key, value in hier.method.global_model.state_dict().items():
        torch.testing.assert_close(value, want[key], rtol=0, atol=1e-6, msg=key)


def test_between_cloud_rounds_edges_drift_then_the_cloud_averages_them(tiny_dir):
    engine = _engine(_two_edges(_flat(), cloud_every=2), tiny_dir, HierarchicalEngine)
    start = copy.deepcopy(engine.method.global_model.state_dict())
    engine.run_round(0)
    a, b = engine.edges["a"], engine.edges["b"]
    for key, value in engine.method.global_model.state_dict().items():
        assert torch.equal(value, start[key]), key  # the cloud has not moved yet
    assert not torch.equal(a.state["model.units.6.weight"], b.state["model.units.6.weight"])
    total = sum(len(i) for i in engine.prep.client_indices)  # every client trained
    assert a.samples_since_cloud + b.samples_since_cloud == total
    engine.run_round(1)  # a second edge round, then the cloud round
    samples = [a.samples_since_cloud, b.samples_since_cloud]
    assert samples == [0, 0]  # counted afresh after the cloud round
    # the cloud model is what both edges hold now
    for key, value in engine.method.learnable_state().items():
        assert torch.equal(a.state[key], value) and torch.equal(b.state[key], value)


def test_the_cloud_weights_edges_by_the_samples_trained_since_the_last_cloud_round(tiny_dir):
    engine = _engine(_two_edges(_flat(), cloud_every=2), tiny_dir, HierarchicalEngine)
    engine.run_round(0)
    a, b = engine.edges["a"], engine.edges["b"]
    real_cloud_round = engine._cloud_round
    seen = {}

    def spy(round_index, learns):
        seen["states"] = [copy.deepcopy(a.state), copy.deepcopy(b.state)]
        seen["weights"] = [a.samples_since_cloud, b.samples_since_cloud]
        real_cloud_round(round_index, learns)

    engine._cloud_round = spy
    engine.run_round(1)
    total = sum(len(i) for i in engine.prep.client_indices)
    assert sum(seen["weights"]) == 2 * total  # both rounds, every client
    want = fedavg(seen["states"], seen["weights"])
    for key, value in engine.method.learnable_state().items():
        assert torch.equal(value, want[key]), key


def test_backhaul_times_by_hand(tiny_dir):
    """Both edges upload at once over 5 Mbit/s backhauls into the cloud's 1 Mbit/s ingress:
    0.5 Mbit/s each, after 5 ms; then download over 5 Mbit/s backhauls from the cloud's
    100 Mbit/s egress, after 5 ms."""
    backhaul = {"uplink_mbps": 5, "downlink_mbps": 5, "latency_ms": 5}
    res = run_dict(_two_edges(_flat(), backhaul=backhaul), tiny_dir)
    edge = res.transfers[res.transfers.kind == "edge_model"]
    assert len(edge) == 3 * 4 and set(edge.device) == {"a", "b"}
    took = edge.t_end_s - edge.t_start_s
    up, down = edge.direction == "up", edge.direction == "down"
    assert list(took[up]) == pytest.approx([0.005 + MODEL_BYTES * 8 / 0.5e6] * 6, rel=1e-9)
    assert list(took[down]) == pytest.approx([0.005 + MODEL_BYTES * 8 / 5e6] * 6, rel=1e-9)
    rounds = res.rounds  # per-tier traffic: the edge-cloud tier in its own columns
    assert list(rounds.up_edge_model_bytes) == [2 * MODEL_BYTES] * 3
    assert list(rounds.down_edge_model_bytes) == [2 * MODEL_BYTES] * 3
    assert list(rounds.up_weights_bytes) == [4 * MODEL_BYTES] * 3  # the device-edge tier
    # the round ends when the cloud model is back at both edges
    ends = edge[down].groupby(edge["round"]).t_end_s.max()
    assert list(rounds.sim_time_s) == pytest.approx(list(ends), rel=1e-12)


def test_devices_share_only_their_own_edges_access_link(tiny_dir):
    """Two devices per edge upload at once into an edge ingress of 1 Mbit/s: each gets
    0.5; with one shared edge of the same ingress, four would get 0.25 each."""
    access = {"ingress_mbps": 1, "egress_mbps": 1000}
    res = run_dict(_two_edges(_flat(rounds=1), access=access), tiny_dir)
    first_up = res.transfers[(res.transfers.direction == "up")
                             & (res.transfers["round"] == 0)]
    flat = run_dict(_flat(rounds=1), tiny_dir)  # the server's ingress is 1 Mbit/s too
    flat_up = flat.transfers[(flat.transfers.direction == "up") & (flat.transfers["round"] == 0)]
    assert (first_up.t_end_s - first_up.t_start_s).max() < (
        flat_up.t_end_s - flat_up.t_start_s).max()


@pytest.mark.parametrize("change, expected", [
    ({"population.devices": [{"profile": "unit_dev", "count": 4, "link": LINK}]},
     "population.devices[0].edge: none; with a topology every device class names its edge"),
    ({"population.devices": [{"profile": "unit_dev", "count": 4, "link": LINK,
                              "edge": "c"}]}, "population.devices[0].edge: 'c'"),
    ({"method": {"name": "splitfed_v2", "split": 4}},
     "topology: method splitfed_v2 has no hierarchical mode"),
    ({"method": {"name": "splitfed", "split": 4}, "population.waves": True},
     "topology: splitfed at the edge needs one device per client"),
    ({"topology": {"edges": [{"name": "a"}, {"name": "a"}]}},
     "edge names must be unique: a repeated"),
])
def test_bad_topologies_are_one_line_errors(tiny_dir, capsys, change, expected):
    raw = _two_edges(_flat())
    for path, value in change.items():
        node = raw
        *head, last = path.split(".")
        for key in head:
            node = node[key]
        node[last] = value
    path = write_scenario(tiny_dir, raw)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err


def test_an_edge_without_a_topology_is_an_error(tiny_dir, capsys):
    raw = _flat()
    raw["population"]["devices"][0]["edge"] = "a"
    path = write_scenario(tiny_dir, raw)
    assert main(["validate", str(path)]) == 2
    assert "population.devices[0].edge: no topology section" in capsys.readouterr().err


def _split_at_edges(method: dict, profile_b: str | None = None) -> dict:
    raw = _two_edges(_flat(method=method))
    if profile_b is not None:
        raw["topology"]["edges"][1]["profile"] = profile_b
    return raw


def test_splitfed_at_two_edges_is_flat_splitfed(tiny_dir):
    """SplitFed-V1 averages whole models; edge means averaged at the cloud every round
    are the flat mean (to float rounding). Server steps run at the edges."""
    method = {"name": "splitfed", "split": 4}
    flat = _engine(_flat(method=method), tiny_dir, Engine)
    hier = _engine(_split_at_edges(method), tiny_dir, HierarchicalEngine)
    for r in range(3):
        flat.run_round(r)
        row = hier.run_round(r)
        assert row["server_busy_s"] == 0 and row["edge_busy_s"] > 0
    want = flat.method.global_model.state_dict()
    for key, value in hier.method.global_model.state_dict().items():
        torch.testing.assert_close(value, want[key], rtol=0, atol=1e-6, msg=key)
    tl = hier.ledger.frames()["timeline"]
    steps = tl[tl.what == "server_step"]
    assert set(steps.device) == {"a", "b"}


def test_each_edge_computes_with_its_own_profile(tiny_dir):
    """Edge b computes with the device profile: 10x the unit server's time per step."""
    res = run_dict(_split_at_edges({"name": "splitfed", "split": 4}, profile_b="unit_dev"),
                   tiny_dir)
    steps = res.timeline[res.timeline.what == "server_step"]
    took = (steps.t_end_s - steps.t_start_s).round(12).groupby(steps.device).unique()
    a, b = sorted(took["a"]), sorted(took["b"])  # full batches of 4 and a last one of 3
    assert len(a) == len(b) == 2
    assert b == pytest.approx([10 * t for t in a], rel=1e-6)


def test_ecofed_replays_at_the_edges(tiny_dir):
    res = run_dict(_split_at_edges({"name": "ecofed", "split": 4}), tiny_dir)
    replay = res.timeline[res.timeline.what == "replay_step"]
    assert len(replay) > 0 and set(replay.device) <= {"a", "b"}
    assert res.rounds.test_accuracy.notna().iloc[-1]


def test_local_loss_edges_keep_the_head_too(tiny_dir):
    """The edges average device part, head and server copies: with two edges and the
    cloud every round, the head equals the flat run's (to float rounding)."""
    method = {"name": "local_loss", "split": 3}
    flat = _engine(_flat(method=method), tiny_dir, Engine)
    hier = _engine(_split_at_edges(method), tiny_dir, HierarchicalEngine)
    for r in range(2):
        flat.run_round(r)
        hier.run_round(r)
    for key, value in flat.method.aux.state_dict().items():
        torch.testing.assert_close(hier.method.aux.state_dict()[key], value, rtol=0,
                                   atol=1e-6, msg=key)


def test_compare_labels_runs_by_the_list_items_that_differ():
    from ecofed_sim.compare import run_labels

    flat = scenario_from_dict(_flat(), "t").model_dump(mode="json")
    hier = scenario_from_dict(_two_edges(_flat(), cloud_every=2), "t").model_dump(mode="json")
    # the first device class differs in count and edge; the second exists in one run
    # only, which the classes' count says; the topology is left out of one run
    assert run_labels([flat, hier], ["f", "h"]) == [
        "fedavg devices#=1 count=4 edge=None topology=none",
        "fedavg devices#=2 count=2 edge=a cloud_every=2"]


def test_traffic_tiers_figure(tiny_dir, tmp_path):
    backhaul = {"uplink_mbps": 5, "downlink_mbps": 5, "latency_ms": 5}
    path = write_scenario(tiny_dir, _two_edges(_flat(), backhaul=backhaul))
    assert plot_kind_of_run(path, "tiers", tmp_path) == 0
    assert (tmp_path / "fig" / "tiers.png").stat().st_size > 0
    flat = write_scenario(tiny_dir, _flat(), "flat.yaml")
    assert plot_kind_of_run(flat, "tiers", tmp_path / "f") == 2


@pytest.mark.parametrize("method", [{"name": "splitfed", "split": 4},
                                    {"name": "local_loss", "split": 3},
                                    {"name": "ecofed", "split": 4}], ids=lambda m: m["name"])
def test_split_clients_start_from_their_edges_model_between_cloud_rounds(tiny_dir, method):
    """cloud_every 2: after round 0 the edges hold different models, and in round 1 each
    client starts from exactly its own edge's (model and head), not the cloud's."""
    engine = _engine(_two_edges(_flat(method=method), cloud_every=2), tiny_dir,
                     HierarchicalEngine)
    engine.run_round(0)
    held = {name: {k: v.clone() for k, v in e.state.items()}
            for name, e in engine.edges.items()}
    assert not torch.equal(held["a"]["model.units.6.weight"],
                           held["b"]["model.units.6.weight"])
    seen: dict[tuple[int, str], dict] = {}
    real_start = engine.method.start_module

    def spy(client, name="model"):
        module = real_start(client, name)
        seen.setdefault((client, name), {k: v.clone() for k, v in module.state_dict().items()})
        return module

    engine.method.start_module = spy
    engine.run_round(1)
    assert {c for c, _ in seen} == {0, 1, 2, 3}
    for (client, name), state in seen.items():
        edge = held[engine._home[client]]
        for key, value in state.items():
            assert torch.equal(value, edge[f"{name}.{key}"]), (client, key)


@pytest.mark.parametrize("method", [{"name": "splitfed", "split": 4},
                                    {"name": "local_loss", "split": 3},
                                    {"name": "ecofed", "split": 4, "period": 2}],
                         ids=lambda m: m["name"])
def test_split_methods_at_edges_train_apart_as_they_do_serially(tiny_dir, method):
    """cloud_every 2, so the edges' models differ in every other round: clients trained
    in two slices, each from its own edge's model (``start_states``), give the serial
    run's tables, edge models and cloud model, bit for bit."""
    prep = prepare(scenario_from_dict(_two_edges(_flat(method=method, rounds=4),
                                                 cloud_every=2), "tiny.yaml"),
                   "tiny.yaml", tiny_dir)
    serial, apart = HierarchicalEngine(prep), HierarchicalEngine(prep, pool=InProcessPool(prep))
    assert apart.timing is not apart.method
    for r in range(4):
        assert serial.run_round(r) == apart.run_round(r)
    ledgers = serial.ledger.frames(), apart.ledger.frames()
    for name in ledgers[0]:
        pd.testing.assert_frame_equal(ledgers[0][name], ledgers[1][name], obj=name)
    pairs = [(serial.method.learnable_state(), apart.method.learnable_state())]
    pairs += [(serial.edges[e].state, apart.edges[e].state) for e in ("a", "b")]
    for ours, theirs in pairs:
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(v, theirs[k]) for k, v in ours.items())
    assert len(apart.pool.asked) == 4 and all(apart.pool.asked)  # every round, apart


def test_split_at_edges_on_two_worker_processes_gives_the_serial_tables(tiny_dir):
    raw = _two_edges(_flat(method={"name": "splitfed", "split": 4}), cloud_every=2)
    raw.setdefault("evaluation", {})["batch_size"] = 6  # the cloud model, in slices
    sc = scenario_from_dict(raw, "tiny.yaml")
    serial = ecofed_sim.run(sc, source="tiny.yaml", base_dir=tiny_dir)
    parallel = ecofed_sim.run(sc, source="tiny.yaml", base_dir=tiny_dir, workers=2)
    assert parallel.manifest["workers"] == 2
    for name in ("rounds", "transfers", "timeline", "participation"):
        pd.testing.assert_frame_equal(getattr(serial, name), getattr(parallel, name),
                                      obj=name)

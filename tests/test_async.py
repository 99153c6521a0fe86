"""Asynchronous runs (FedAsync, FedBuff) against synchronous FedAvg and sequential SGD."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from conftest import tiny, write_scenario
from helpers import run_dict

from ecofed_sim.async_engine import AsyncEngine
from ecofed_sim.cli import main
from ecofed_sim.engine import Engine
from ecofed_sim.methods.base import sgd
from ecofed_sim.methods.fedavg import local_sgd
from ecofed_sim.prepare import prepare
from ecofed_sim.round_context import RoundContext
from ecofed_sim.scenario import scenario_from_dict

FOUR = {"data.synthetic.train_samples": 47, "population.clients": 4,
        "population.clients_per_round": 4,
        "population.devices": [{"profile": "unit_dev", "count": 4, "link": {
            "uplink_mbps": 1, "downlink_mbps": 2, "latency_ms": 10}}],
        "training.batch_size": 4, "training.shuffle": "fixed"}


def _engine(raw: dict, tiny_dir, cls=AsyncEngine):
    return cls(prepare(scenario_from_dict(raw, "tiny.yaml"), "tiny.yaml", tiny_dir))


def _state(engine) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in engine.method.global_model.state_dict().items()}


def test_fedbuff_of_every_client_at_once_is_a_fedavg_round(tiny_dir):
    """K = concurrency = clients, lr 1, sample weights: the first server update averages
    every client's training from the initial model, as a synchronous round does: the same
    model (to float64 rounding), at the same simulated time, after the same bytes."""
    raw = tiny(**FOUR, rounds=1)
    sync = _engine(raw, tiny_dir, Engine)
    sync_row = sync.run_round(0)
    buff = _engine({**raw, "asynchronous": {"aggregator": "fedbuff", "buffer_size": 4,
                                            "staleness": "constant"}}, tiny_dir)
    buff_row = buff.run_round(0)
    for key, value in _state(sync).items():
        torch.testing.assert_close(_state(buff)[key], value, rtol=0, atol=1e-6, msg=key)
    for col in ("sim_time_s", "bytes_up", "bytes_down", "completed"):
        assert buff_row[col] == sync_row[col], col
    assert buff_row["updates"] == 4 and buff_row["staleness_max"] == 0


def test_fedasync_one_at_a_time_with_mixing_one_is_sequential_sgd(tiny_dir):
    """Concurrency 1, alpha 1: each client trains from the previous one's model and
    replaces the global model: plain sequential SGD over the clients in arrival order,
    each on its job's batches. Exact. Each update then takes one client's whole round,
    alone on the network: k + 1 synchronous one-client rounds."""
    raw = tiny(**FOUR, rounds=5)
    raw["training"]["shuffle"] = "every_round"
    engine = _engine({**raw, "asynchronous": {"aggregator": "fedasync", "mixing": 1.0,
                                              "concurrency": 1}}, tiny_dir)
    rows = [engine.run_round(r) for r in range(5)]
    arrivals = engine.ledger.frames()["updates"]
    clients = arrivals.client.tolist()
    assert arrivals.job.tolist() == list(range(5))  # one client at a time: job k = update k
    ref = _engine(raw, tiny_dir, Engine)
    model = ref.method.global_model
    for job, client in enumerate(clients):
        local_sgd(model, sgd(model.parameters(), ref.scenario.training),
                  RoundContext(ref, job).batches(client))
    for key, value in model.state_dict().items():
        assert torch.equal(_state(engine)[key], value), key
    one = _engine(tiny(**{**FOUR, "population.clients_per_round": 1}, rounds=1), tiny_dir,
                  Engine).run_round(0)
    assert [r["round_time_s"] for r in rows] == pytest.approx([one["round_time_s"]] * 5,
                                                              rel=1e-12)
    assert len(set(clients)) > 1  # the draw moves between clients


def _async_raw(**spec) -> dict:
    raw = tiny(**FOUR, rounds=6)
    raw["population"]["devices"] = [  # two fast and two slow devices: real staleness
        {"profile": "unit_dev", "count": 3,
         "link": {"uplink_mbps": 1, "downlink_mbps": 2, "latency_ms": 10}},
        {"profile": "unit_dev", "count": 3,
         "link": {"uplink_mbps": 0.25, "downlink_mbps": 0.5, "latency_ms": 10}}]
    raw["population"]["clients"] = 6
    raw["asynchronous"] = {"concurrency": 3, **spec}
    return raw


def test_same_seed_same_tables_and_staleness_is_counted(tiny_dir):
    raw = _async_raw(aggregator="fedbuff", buffer_size=2)
    a, b = run_dict(raw, tiny_dir), run_dict(raw, tiny_dir)
    for name in ("rounds", "transfers", "timeline", "participation", "updates"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    up, rounds = a.updates, a.rounds
    assert len(up) == 2 * len(rounds) == 12
    assert (up.staleness == up["round"] - up.pulled_version).all()
    assert up.staleness.max() >= 1  # slow clients come back after updates were made
    assert list(up.staleness_factor) == pytest.approx((up.staleness + 1.0) ** -0.5)
    for _, u in up.iterrows():  # the version pulled is the number of updates made then
        made = rounds.sim_time_s
        assert (made < u.t_pull_s).sum() <= u.pulled_version <= (made <= u.t_pull_s).sum()
    spans = a.participation  # never more than `concurrency` clients at once
    for t in spans.t_start_s:
        assert ((spans.t_start_s <= t) & (spans.t_end_s > t)).sum() <= 3


def test_timing_only_gives_the_full_runs_clocks(tiny_dir):
    raw = _async_raw(aggregator="fedasync")
    full, timing = run_dict(raw, tiny_dir), run_dict({**raw, "learning": "none"}, tiny_dir)
    learned = ["test_accuracy", "test_loss"]
    pd.testing.assert_frame_equal(full.rounds.drop(columns=learned),
                                  timing.rounds.drop(columns=learned))
    pd.testing.assert_frame_equal(full.updates, timing.updates)
    assert full.rounds.test_accuracy.notna().all() and timing.rounds.test_accuracy.isna().all()


def test_deadline_cuts_slow_clients_and_until_s_stops_early(tiny_dir):
    raw = _async_raw(aggregator="fedasync")
    slow_s = run_dict(raw, tiny_dir).participation.eval("t_end_s - t_start_s").max()
    raw["population"]["deadline_s"] = slow_s * 0.9
    cut = run_dict(raw, tiny_dir)
    assert cut.rounds.stragglers.sum() > 0
    stragglers = cut.participation[cut.participation.outcome == "straggler"]
    assert not set(zip(stragglers.client, stragglers.t_start_s, strict=True)) & set(
        zip(cut.updates.client, cut.updates.t_pull_s, strict=True))
    raw["asynchronous"]["until_s"] = float(cut.rounds.sim_time_s.iloc[2]) + 1e-9
    early = run_dict(raw, tiny_dir)
    assert len(early.rounds) == 3
    pd.testing.assert_frame_equal(early.rounds, cut.rounds.iloc[:3])


@pytest.mark.parametrize("change, expected", [
    ({"method": {"name": "splitfed", "split": 2}},
     "asynchronous: method splitfed has no asynchronous mode"),
    ({"asynchronous": {"concurrency": 5}},
     "asynchronous.concurrency: 5 clients cannot train at once out of population.clients"),
    ({"asynchronous": {"aggregator": "fedprox"}}, "asynchronous.aggregator"),
])
def test_bad_asynchronous_scenarios_are_one_line_errors(tiny_dir, capsys, change, expected):
    path = write_scenario(tiny_dir, {**tiny(**FOUR), "asynchronous": {}, **change})
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and err.count("\n") == 1, err
    assert expected in err, err


def test_staleness_figure_and_labels_of_sync_against_async(tiny_dir, tmp_path):
    raw = _async_raw(aggregator="fedbuff", buffer_size=2)
    path = write_scenario(tiny_dir, raw)
    sync, buff = tmp_path / "sync", tmp_path / "buff"
    assert main(["run", str(path), "--out", str(buff), "--quiet"]) == 0
    assert main(["run", str(path), "--set", "asynchronous=null", "--out", str(sync),
                 "--quiet"]) == 0
    assert main(["plot", str(buff), "--kind", "staleness", "--format", "png",
                 "--out", str(tmp_path / "fig")]) == 0
    assert (tmp_path / "fig" / "staleness.png").stat().st_size > 0
    assert main(["plot", str(sync), "--kind", "staleness", "--out", str(tmp_path)]) == 2
    from ecofed_sim.compare import run_labels
    from ecofed_sim.strict import read_yaml

    labels = run_labels([read_yaml(d / "scenario.resolved.yaml") for d in (sync, buff)],
                        ["sync", "buff"])
    assert labels == ["fedavg asynchronous=none", "fedavg aggregator=fedbuff"]

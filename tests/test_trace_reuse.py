"""Learning-trace reuse: re-simulated tables equal full runs under other timing."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import tiny

import ecofed_sim
from ecofed_sim.errors import ScenarioError
from ecofed_sim.resimulate import resimulate
from ecofed_sim.scenario import scenario_from_dict
from ecofed_sim.trace import learning_key

METHODS = [{"name": "fedavg"}, {"name": "splitfed", "split": 4},
           {"name": "local_loss", "split": 3}, {"name": "fedgkt", "split": 4},
           {"name": "ecofed", "split": 4}]


def _sc(raw):
    return scenario_from_dict(raw, "tiny.yaml")


def _timing_variant(raw: dict) -> dict:
    """Other bandwidths, latency, device profile, device count, server workers and
    server memory."""
    raw = {**raw, "population": {**raw["population"], "devices": [
        {"profile": "rpi4b", "count": 1, "link": "4g"},
        {"profile": "unit_dev", "count": 1,
         "link": {"uplink_mbps": 7, "downlink_mbps": 3, "latency_ms": 2}}]},
           "server": {**raw["server"], "workers": 2, "profile": "server_cpu",
                      "link": {"ingress_mbps": 5, "egress_mbps": 50},
                      # one per-client server copy at a time (test_server_resources)
                      "memory_gb": 5e-5}}
    return raw


def _assert_same_tables(a: ecofed_sim.Results, b: ecofed_sim.Results) -> None:
    pd.testing.assert_frame_equal(a.rounds, b.rounds)
    pd.testing.assert_frame_equal(a.transfers, b.transfers)
    pd.testing.assert_frame_equal(a.timeline, b.timeline)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m["name"])
def test_resimulated_tables_equal_full_run(tiny_dir, method):
    base = tiny(rounds=3, method=method)
    recorded = ecofed_sim.run(_sc(base), base_dir=tiny_dir, record=True)
    other = _sc(_timing_variant(base))
    assert learning_key(other) == recorded.trace.learning_key
    full = ecofed_sim.run(other, base_dir=tiny_dir)
    _assert_same_tables(resimulate(other, recorded.trace, base_dir=tiny_dir), full)
    assert full.rounds.sim_time_s.iloc[-1] != recorded.rounds.sim_time_s.iloc[-1]
    if method["name"] != "fedavg":  # clients (and EcoFed's replays) queue for the copy
        assert (full.rounds.queue_wait_s > 0).all()


def test_recording_does_not_change_the_run(tiny_dir):
    raw = tiny(rounds=2, method={"name": "ecofed", "split": 4})
    _assert_same_tables(ecofed_sim.run(_sc(raw), base_dir=tiny_dir, record=True),
                        ecofed_sim.run(_sc(raw), base_dir=tiny_dir))


def test_waves_with_other_device_count_resimulate(tiny_dir):
    base = tiny(rounds=2, **{"population.waves": True, "population.devices.0.count": 1})
    recorded = ecofed_sim.run(_sc(base), base_dir=tiny_dir, record=True)
    two = _sc(tiny(rounds=2, **{"population.waves": True, "population.devices.0.count": 2}))
    _assert_same_tables(resimulate(two, recorded.trace, base_dir=tiny_dir),
                        ecofed_sim.run(two, base_dir=tiny_dir))


@pytest.mark.parametrize("change", [{"training.lr": 0.1}, {"seed": 4},
                                    {"method": {"name": "splitfed", "split": 3}},
                                    {"data.partition.kind": "dirichlet"}])
def test_learning_fields_change_the_key(tiny_dir, change):
    base = _sc(tiny())
    other = _sc(tiny(**change))
    assert learning_key(base) != learning_key(other)


def test_resimulate_refuses_a_scenario_that_learns_differently(tiny_dir):
    recorded = ecofed_sim.run(_sc(tiny(rounds=1)), base_dir=tiny_dir, record=True)
    with pytest.raises(ScenarioError, match="can change what is learned"):
        resimulate(_sc(tiny(rounds=1, seed=9)), recorded.trace, base_dir=tiny_dir)

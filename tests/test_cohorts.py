"""Cohorts: a timing-only run that plays alike clients as one process has the clocks,
bytes, energy and outcomes of the run that plays every client on its own."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import tiny

import ecofed_sim
from ecofed_sim.participation import RoundPlay
from ecofed_sim.scenario import scenario_from_dict

# what orders each table's rows for comparison (rows of one instant may come in another
# order; message ids number them in that order)
KEYS = {"transfers": ["round", "client", "t_start_s", "direction", "kind"],
        "timeline": ["round", "device", "client", "t_start_s", "state", "t_end_s"],
        "participation": ["round", "client"], "energy": ["round", "device"]}
POWER = {"idle": 1.0, "compute": 10.0, "transmit": 3.0, "receive": 2.0}


def _population(**changes) -> dict:
    """24 clients, 12 per round, three link classes under TCP (one with random loss):
    the links' windows and idle times differ from round to round, and batches are
    uneven (47 samples)."""
    raw = tiny(rounds=4, **{
        "learning": "none", "network.transport": "tcp",
        "data.synthetic.train_samples": 47, "training.batch_size": 4,
        "population.clients": 24, "population.clients_per_round": 12,
        "server.link": {"ingress_mbps": 6, "egress_mbps": 20}})
    raw["population"]["devices"] = [
        {"profile": "unit_dev", "count": 12,
         "link": {"uplink_mbps": 1, "downlink_mbps": 2, "rtt_ms": 30}},
        {"profile": "unit_dev", "count": 8,
         "link": {"uplink_mbps": 0.5, "downlink_mbps": 4, "rtt_ms": 60, "loss_rate": 0.01}},
        {"profile": "unit_dev_power", "count": 4,
         "link": {"uplink_mbps": 2, "downlink_mbps": 8, "rtt_ms": 20}}]
    for path, value in changes.items():
        *keys, last = path.split(".")
        node = raw
        for key in keys:
            node = node[int(key)] if key.isdigit() else node[key]
        node[last] = value
    return raw


def _run_both(raw: dict, tiny_dir, monkeypatch) -> tuple[ecofed_sim.Results, ...]:
    """The run with cohorts and without, and how many client processes each played."""
    import yaml
    from conftest import UNIT_DEVICE

    profile = {**UNIT_DEVICE, "name": "unit_dev_power", "power_w": POWER}
    (tiny_dir / "profiles" / "unit_dev_power.yaml").write_text(yaml.safe_dump(profile))
    played = []
    original = RoundPlay._play

    def counted(self, *args):
        played[-1] += 1
        return original(self, *args)

    monkeypatch.setattr(RoundPlay, "_play", counted)
    results = []
    for cohorts in (True, False):
        played.append(0)
        results.append(ecofed_sim.run(scenario_from_dict(raw, "tiny.yaml"), source="tiny.yaml",
                                      base_dir=tiny_dir, cohorts=cohorts))
    return (*results, *played)


def _assert_same_tables(a: ecofed_sim.Results, b: ecofed_sim.Results) -> None:
    pd.testing.assert_frame_equal(a.rounds, b.rounds, check_exact=False, rtol=1e-12)
    for name, keys in KEYS.items():
        x, y = (getattr(r, name).drop(columns=["message_id"], errors="ignore")
                .sort_values(keys).reset_index(drop=True) for r in (a, b))
        pd.testing.assert_frame_equal(x, y, check_exact=False, rtol=1e-12, obj=name)


def test_cohorts_play_fewer_processes_with_the_same_tables(tiny_dir, monkeypatch):
    cohort, alone, n_cohort, n_alone = _run_both(_population(), tiny_dir, monkeypatch)
    assert n_alone == 4 * 12  # one process per selected client and round
    assert n_cohort < n_alone
    _assert_same_tables(cohort, alone)
    assert cohort.energy.energy_j.sum() > 0
    assert cohort.rounds.round_time_s.nunique() > 1


def test_cohorts_under_a_deadline_jitter_and_a_shared_bottleneck(tiny_dir, monkeypatch):
    """The deadline cuts whole cohorts mid-transfer; jitter and a downlink faster than
    the server's egress (its bursts would share the server's buffer) keep their devices
    alone."""
    raw = _population(**{"population.deadline_s": 0.3,
                         "population.devices.0.link.latency_jitter_ms": 5,
                         "population.devices.2.link.downlink_mbps": 40})
    cohort, alone, n_cohort, n_alone = _run_both(raw, tiny_dir, monkeypatch)
    assert alone.participation.outcome.eq("straggler").sum() > 0
    assert n_cohort < n_alone
    _assert_same_tables(cohort, alone)


def test_cohorts_with_dropout(tiny_dir, monkeypatch):
    """Each client goes offline at its own time: a cohort holds only clients that drop
    at the same instant (in practice, each client alone)."""
    raw = _population(**{"population.mean_online_s": 2.0})
    cohort, alone, _, _ = _run_both(raw, tiny_dir, monkeypatch)
    assert alone.participation.outcome.eq("dropped").sum() > 0
    _assert_same_tables(cohort, alone)


@pytest.mark.parametrize("change", [{"learning": "real"},
                                    {"population.over_selection": 1.5}])
def test_cohorts_stay_off_where_a_client_must_play_alone(change, tiny_dir, monkeypatch):
    """Real training needs each client's update; with over-selection, which client of an
    instant is kept depends on event order."""
    raw = _population(**change)
    cohort, alone, n_cohort, n_alone = _run_both(raw, tiny_dir, monkeypatch)
    assert n_cohort == n_alone
    pd.testing.assert_frame_equal(cohort.timeline, alone.timeline)

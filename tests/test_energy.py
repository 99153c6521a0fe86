"""Energy equals power times time in each state, on the golden fedavg scenario."""

from __future__ import annotations

import pytest
import yaml
from conftest import TINY_MODEL_PARAMS, UNIT_DEVICE, tiny
from helpers import run_dict

from ecofed_sim.energy import device_energy

POWER = {"idle": 1.0, "compute": 10.0, "transmit": 3.0, "receive": 2.0}


def test_energy_per_state_on_golden_round(tiny_dir):
    profile = {**UNIT_DEVICE, "name": "unit_dev_power", "power_w": POWER}
    (tiny_dir / "profiles" / "unit_dev_power.yaml").write_text(yaml.safe_dump(profile))
    raw = tiny(rounds=2, **{"population.devices.0.profile": "unit_dev_power"})
    res = run_dict(raw, tiny_dir)
    model_bytes = TINY_MODEL_PARAMS * 4
    download_s = 0.010 + model_bytes * 8 / 2e6
    upload_s = 0.010 + model_bytes * 8 / 0.5e6
    per_device = download_s * 2.0 + 0.042 * 10.0 + upload_s * 3.0
    e = res.energy[res.energy["round"] == 0].sort_values("device")
    assert e.energy_j.tolist() == pytest.approx([per_device] * 2, rel=1e-12)
    assert e.receive_j.tolist() == pytest.approx([download_s * 2.0] * 2, rel=1e-12)
    assert res.rounds.energy_j.tolist() == pytest.approx([2 * per_device] * 2, rel=1e-12)
    assert res.rounds.cum_energy_j.iloc[-1] == pytest.approx(4 * per_device, rel=1e-12)


def test_idle_waiting_is_charged_at_idle_power():
    class P:
        idle, compute, transmit, receive = 1.5, 9.0, 4.0, 2.5

    spans = [("compute", 0.0, 2.0), ("idle", 2.0, 6.0)]
    out = device_energy(spans, P)
    assert out == {"compute_j": 18.0, "transmit_j": 0.0, "receive_j": 0.0, "idle_j": 6.0,
                   "energy_j": 24.0}


def test_offline_spans_draw_nothing():
    class P:
        idle, compute, transmit, receive = 1.0, 10.0, 3.0, 2.0

    spans = [("compute", 0.0, 0.5), ("offline", 0.5, 100.0),
             ("upload", 100.0, 101.0)]  # back online
    assert device_energy(spans, P) == {"compute_j": 5.0, "transmit_j": 3.0, "receive_j": 0.0,
                                       "idle_j": 0.0, "energy_j": 8.0}


def test_a_device_that_drops_out_is_charged_only_until_it_drops(tiny_dir):
    """Client 1 goes offline half-way through the download of the weights (sent at 2
    Mbit/s, one way 10 ms): it is charged receive power until then, nothing after, while
    client 0 finishes the round and waits, idle, for nobody."""
    profile = {**UNIT_DEVICE, "name": "unit_dev_power", "power_w": POWER}
    (tiny_dir / "profiles" / "unit_dev_power.yaml").write_text(yaml.safe_dump(profile))
    download_s = 0.010 + TINY_MODEL_PARAMS * 4 * 8 / 2e6
    drop_s = download_s / 2
    (tiny_dir / "onoff.csv").write_text(f"client,online_s,offline_s\n0,0,1e6\n"
                                        f"1,0,{drop_s!r}\n")
    raw = tiny(rounds=1, **{"population.devices.0.profile": "unit_dev_power",
                            "population.availability_trace": "onoff.csv",
                            "population.availability_trace_loop": False})
    res = run_dict(raw, tiny_dir)
    assert res.rounds.dropped.iloc[0] == 1
    dropped = res.participation.query("outcome == 'dropped'").iloc[0]
    row = res.energy[res.energy.device == dropped.device].iloc[0]
    assert row.energy_j == pytest.approx(drop_s * POWER["receive"], rel=1e-12)
    assert row.receive_j == pytest.approx(drop_s * POWER["receive"], rel=1e-12)

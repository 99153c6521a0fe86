"""ecofed-sim profile writes a profile the simulator uses directly."""

from __future__ import annotations

import pytest
import yaml
from conftest import tiny
from helpers import run_dict

from ecofed_sim.cli import main
from ecofed_sim.models import build_model, layer_stats
from ecofed_sim.profiles import DeviceProfile


def test_profile_writes_usable_tables_and_updates_in_place(tiny_dir):
    out = tiny_dir / "profiles" / "measured.yaml"
    args = ["profile", "small_cnn", "--shape", "1", "8", "8", "--classes", "2",
            "--batch-sizes", "10", "--threads", "1", "--warmup", "1", "--repeats", "3",
            "--name", "measured", "--out", str(out), "--max-spread", "1000"]
    assert main(args) == 0
    profile = DeviceProfile.model_validate(yaml.safe_load(out.read_text()))
    table = profile.latency_tables[0]
    assert (table.model, table.batch_size) == ("small_cnn", 10)
    assert set(table.layers) == {"conv1", "pool1", "conv2", "pool2", "flatten", "fc1", "fc2"}
    assert all(v.forward_ms > 0 for k, v in table.layers.items() if k != "flatten")
    # backward is timed on its own: never a clamped difference of two medians
    assert all(v.backward_ms > 0 for k, v in table.layers.items() if k != "flatten")
    assert all(v.forward_iqr_ms is not None and v.backward_iqr_ms is not None
               for v in table.layers.values())
    stats = layer_stats(build_model("small_cnn", (1, 8, 8), 2), (1, 8, 8))
    expected = sum(v.forward_ms for v in table.layers.values()) / 1e3
    assert profile.pass_s("small_cnn", stats, 10, backward=False) == pytest.approx(expected)
    # a second batch size is added, the first table is kept
    assert main([*args[:9], "20", *args[10:]]) == 0
    again = DeviceProfile.model_validate(yaml.safe_load(out.read_text()))
    assert sorted(t.batch_size for t in again.latency_tables) == [10, 20]
    # and a scenario simulates with it
    raw = tiny(rounds=1, **{"population.devices.0.profile": "measured"})
    res = run_dict(raw, tiny_dir)
    assert res.rounds.round_time_s.iloc[0] > 0


def test_profile_rejects_bad_arguments(capsys):
    assert main(["profile", "nope"]) == 2
    assert main(["profile", "small_cnn", "--batch-sizes", "1"]) == 2


def test_a_busy_machine_is_refused_and_nothing_is_written(tiny_dir, monkeypatch, capsys):
    from ecofed_sim import profiler

    # every unit: median 1 ms, interquartile range 0.8 ms, as on a machine that is busy
    monkeypatch.setattr(profiler, "_timed_ms", lambda fn, prepare, w, r: (1.0, 0.8))
    out = tiny_dir / "profiles" / "noisy.yaml"
    args = ["profile", "small_cnn", "--shape", "1", "8", "8", "--classes", "2",
            "--batch-sizes", "10", "--threads", "1", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: profile: conv1 forward at batch 10: repeats spread 0.8 ms around "
                          "a median of 1 ms (over 50%)") and "nothing written" in err
    assert not out.exists()
    assert main([*args, "--max-spread", "0.9"]) == 0 and out.exists()

"""The time-to-accuracy analysis composes rounds to a target with per-round costs; its
arithmetic is checked on hand-made tables."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from helpers import load_script

tta = load_script("analysis/time_to_accuracy.py")


def curve(variant: str, accuracies: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"variant": variant, "round": range(len(accuracies)),
                         "test_accuracy": accuracies})


def test_rounds_to_counts_rounds_run_until_the_first_hit():
    c = curve("x", [0.1, 0.5, 0.4, 0.7, 0.9])
    assert tta.rounds_to(c, 0.5) == 2  # reached at the end of the 2nd round
    assert tta.rounds_to(c, 0.1) == 1
    assert tta.rounds_to(c, 0.7) == 4  # not fooled by the dip
    assert math.isnan(tta.rounds_to(c, 0.95))


def test_cumulative_repeats_the_cycle():
    assert tta.cumulative([3.0, 1.0], 5) == 3 + 1 + 3 + 1 + 3
    assert tta.cumulative([2.0], 4) == 8
    assert math.isnan(tta.cumulative([1.0, 2.0], float("nan")))


def timing_rows() -> pd.DataFrame:
    point = {"devices": "d", "uplink_mbps": 1, "rtt_ms": 40, "transport": "tcp"}
    return pd.DataFrame([
        {"variant": "fedavg", **point, "times": [10.0, 10.0], "bytes": [100, 100]},
        {"variant": "splitfed", **point, "times": [4.0, 4.0], "bytes": [20, 20]},
        {"variant": "ecofed", **point, "times": [2.0, 1.0], "bytes": [5, 1]},
        {"variant": "ecofed streaming", **point, "times": [1.0, 0.5], "bytes": [5, 1]}])


def test_time_to_target_composes_learning_and_timing():
    curves = pd.concat([curve("fedavg", [0.2, 0.8]), curve("splitfed", [0.5, 0.6, 0.8]),
                        curve("ecofed", [0.1, 0.3, 0.5, 0.8])])
    table = tta.to_target(curves, timing_rows(), [0.8])
    by = table.set_index("variant")
    assert by.loc["fedavg", "rounds"] == 2 and by.loc["fedavg", "time_s"] == 20
    assert by.loc["ecofed", "time_s"] == 2 + 1 + 2 + 1
    assert by.loc["ecofed", "bytes"] == 5 + 1 + 5 + 1
    # the streaming variant learns as lock-step EcoFed does (same curve, own timing)
    assert by.loc["ecofed streaming", "rounds"] == 4
    assert by.loc["ecofed streaming", "time_s"] == 3.0
    f = tta.factors(table).set_index(["ecofed", "baseline"])
    assert f.loc[("ecofed", "fedavg"), "speedup"] == pytest.approx(20 / 6)
    assert f.loc[("ecofed", "fedavg"), "speedup_per_round"] == pytest.approx(10 / 1.5)
    assert f.loc[("ecofed", "splitfed"), "comm_reduction"] == pytest.approx(60 / 12)
    assert f.loc[("ecofed", "splitfed"), "rounds_ratio"] == pytest.approx(3 / 4)
    assert f.loc[("ecofed streaming", "splitfed"), "speedup"] == pytest.approx(12 / 3)


def test_claims_list_only_points_within_fifteen_percent():
    rows = [{"ecofed": "ecofed", "baseline": "fedavg", "devices": d, "uplink_mbps": u,
             "rtt_ms": 40, "transport": "tcp", "speedup": s, "speedup_per_round": s,
             "comm_reduction": 1.0, "comm_reduction_per_round": 1.0}
            for d, u, s in (("a", 1, 21 * 1.149), ("b", 5, 21 * 0.86), ("c", 25, 21 * 1.2))]
    found = tta.claims(pd.DataFrame(rows)).set_index(["claim", "basis"])
    hit = found.loc[("21x speedup vs fedavg", "to target")]
    assert hit.points_within_15pct == "2 of 3"
    assert hit.where_within_15pct == ("a 1 Mbit/s 40 ms tcp lock-step; "
                                      "b 5 Mbit/s 40 ms tcp lock-step")
    assert hit.simulated_max == pytest.approx(21 * 1.2)
    nowhere = found.loc[("133x comm reduction vs fedavg", "to target")]
    assert (nowhere.points_within_15pct, nowhere.where_within_15pct) == ("0 of 3", "nowhere")


def test_both_speedups_need_both_claims_at_one_point():
    point = {"ecofed": "ecofed", "rtt_ms": 40, "transport": "tcp", "uplink_mbps": 5}
    rows = [{**point, "devices": d, "baseline": b, "speedup": s}
            for d, b, s in (("a", "fedavg", 21.0), ("a", "splitfed", 2.9),  # both
                            ("b", "fedavg", 21.0), ("b", "splitfed", 4.0),  # one
                            ("c", "fedavg", 40.0), ("c", "splitfed", 2.86))]  # the other
    both = tta.both_speedups(pd.DataFrame(rows))
    assert both.devices.tolist() == ["a"]
    assert both.speedup_vs_splitfed.tolist() == [2.9]


def test_the_full_setting_is_the_learning_sweep_at_the_papers_scale(tmp_path):
    """``--full``: the same six methods at full width, 500 rounds, on the CIFAR-10 files
    and the chosen device; nothing else changes."""
    from ecofed_sim.sweep_spec import expand, load_sweep

    files = tmp_path / "cifar" / "cifar-10-batches-py"  # present; their sizes are not read
    files.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (files / name).write_bytes(b"")
    args = type("Args", (), {"data_root": tmp_path / "cifar", "device": "cuda",
                             "out": tmp_path / "out"})()
    path = tta.full_setting(args)
    full = expand(path, load_sweep(path))
    small_path = tta.SWEEPS / "paper_tta_learning.yaml"
    small = expand(small_path, load_sweep(small_path))
    assert [r.params for r in full] == [r.params for r in small]
    for big, narrow in zip(full, small, strict=True):
        sc = big.scenario
        assert (sc.rounds, sc.model.width, sc.data.dataset) == (500, 1.0, "cifar10")
        assert sc.data.root == str((tmp_path / "cifar").resolve())
        assert sc.training.device == "cuda" and sc.data.eval_samples == 10000
        assert sc.method == narrow.scenario.method and sc.fidelity == "paper"
        assert sc.pretrain == narrow.scenario.pretrain


def test_reusing_learning_results_that_are_not_there_is_a_clear_error(tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.setattr("sys.argv", ["time_to_accuracy.py", "--reuse-learning",
                                     "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as stop:
        tta.main()
    assert stop.value.code == 2
    assert f"no learning results in {tmp_path / 'tta_learning'}" in capsys.readouterr().err

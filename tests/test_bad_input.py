"""Malformed scenarios: exit status 2, one line naming file and field, no traceback, and
no results directory."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from conftest import tiny, write_scenario

from ecofed_sim.cli import main

CASES = {
    "unknown_key": (tiny(colour="red"), "colour: unknown field (accepted: name,"),
    "unknown_nested_key": (tiny(**{"training.lrr": 0.1}),
                           "training.lrr: unknown field (accepted: batch_size"),
    "wrong_type": (tiny(rounds="many"), "rounds: input should be a valid integer"),
    "negative_bandwidth": (tiny(**{"population.devices.0.link.uplink_mbps": -5}),
                           "population.devices[0].link.uplink_mbps: must be >= 0.001 (got -5)"),
    "zero_server_bandwidth": (tiny(**{"server.link.ingress_mbps": 0}),
                              "server.link.ingress_mbps: must be >= 0.001 (got 0)"),
    "unknown_profile": (tiny(**{"population.devices.0.profile": "rpi9"}),
                        "population.devices[0].profile: unknown profile 'rpi9' (accepted:"),
    "unknown_server_profile": (tiny(**{"server.profile": "cray"}),
                               "server.profile: unknown profile 'cray'"),
    "unknown_link": (tiny(**{"population.devices.0.link": "6g"}),
                     "population.devices[0].link: unknown link '6g' (accepted:"),
    "unknown_method": (tiny(method={"name": "fedprox"}),
                       "method.name: unknown method 'fedprox' (accepted: 'fedavg'"),
    "split_out_of_range": (tiny(method={"name": "splitfed", "split": 7}),
                           "method.split: must be in 1..6 for small_cnn (7 units) (got 7)"),
    "split_missing": (tiny(method={"name": "splitfed"}), "method.split: required field missing"),
    "split_on_fedavg": (tiny(method={"name": "fedavg", "split": 2}),
                        "method.split: unknown field (accepted: name)"),
    "unknown_model": (tiny(model={"name": "vgg99"}), "model.name: must be one of"),
    "missing_availability_trace": (
        tiny(**{"population.availability_trace": "gone.csv"}),
        "population.availability_trace: availability trace not found"),
    "under_selection": (tiny(**{"population.over_selection": 0.5}),
                        "population.over_selection: must be >= 1 (got 0.5)"),
    "zero_deadline": (tiny(**{"population.deadline_s": 0}),
                      "population.deadline_s: must be > 0 (got 0)"),
    "too_many_per_round": (tiny(**{"population.clients_per_round": 3}),
                           "population: clients_per_round (3) exceeds clients (2)"),
    "shares_not_one": (tiny(**{"population.devices": [
        {"profile": "unit_dev", "share": 0.5}]}), "population: device shares sum to 0.5"),
    "too_many_samples": (tiny(**{"data.partition.samples_per_client": 500}),
                         "data.partition: 2 clients x 500 samples exceeds"),
    # non-finite numbers: every float field is finite
    "infinite_latency": (tiny(**{"population.devices.0.link.latency_ms": float("inf")}),
                         "population.devices[0].link.latency_ms: input should be a finite "
                         "number (got inf)"),
    "infinite_jitter": (tiny(**{"population.devices.0.link.latency_jitter_ms": float("inf")}),
                        "latency_jitter_ms: input should be a finite number"),
    "infinite_framing": (tiny(**{"network.framing_fraction": float("inf")}),
                         "network.framing_fraction: input should be a finite number"),
    "infinite_over_selection": (tiny(**{"population.over_selection": float("inf")}),
                                "population.over_selection: input should be a finite"),
    "nan_lr": (tiny(**{"training.lr": float("nan")}),
               "training.lr: input should be a finite number (got nan)"),
    "infinite_weight_decay": (tiny(**{"training.weight_decay": float("inf")}),
                              "training.weight_decay: input should be a finite number"),
    # sizes of zero or below, impossible combinations
    "zero_channels": (tiny(**{"data.synthetic.shape": [0, 8, 8]}),
                      "data.synthetic.shape[0]: must be >= 1 (got 0)"),
    "negative_side": (tiny(**{"data.synthetic.shape": [1, -8, 8]}),
                      "data.synthetic.shape[1]: must be >= 1 (got -8)"),
    "aux_head_width_zero": (tiny(method={"name": "local_loss", "split": 2, "aux_hidden": [0]}),
                            "method.aux_hidden[0]: must be >= 1 (got 0)"),
    "negative_seed": (tiny(seed=-1), "seed: must be >= 0 (got -1)"),
    "test_takes_everything": (tiny(data={"dataset": "embedded_mnist", "test_samples": 5000}),
                              "data.test_samples: 5000 leaves no training data"),
    "dirichlet_cannot_fill": (
        tiny(**{"data.partition": {"kind": "dirichlet", "min_samples": 30}}),
        "data.partition: 2 clients x min_samples 30 exceeds the 40 samples"),
    "public_split_empty": (
        tiny(method={"name": "ecofed", "split": 2},
             pretrain={"source": "public_split", "public_fraction": 0.001}),
        "pretrain.public_fraction: 0.001 of 40 training samples is 0"),
    "synthetic_too_big": (tiny(**{"data.synthetic.shape": [64, 1024, 1024],
                                  "data.synthetic.train_samples": 100}),
                          "data.synthetic: 7.5 GiB of images; the limit is 2 GiB"),
    # nonsense accepted silently before
    "rounds_true": (tiny(rounds=True), "rounds: input should be a valid integer (got true)"),
    "rounds_1e12": (tiny(rounds=1e12), "rounds: must be <= 1e+06"),
    "lr_true": (tiny(**{"training.lr": True}), "training.lr: input should be a valid number"),
    # rates no run could finish with
    "uplink_1e-9": (tiny(**{"population.devices.0.link.uplink_mbps": 1e-9}),
                    "uplink_mbps: must be >= 0.001 (got 1e-09)"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_scenario(tiny_dir, capsys, case):
    raw, expected = CASES[case]
    path = write_scenario(tiny_dir, raw)
    out = tiny_dir / "out"
    assert main(["run", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"error: {path}: "), err
    assert expected in err, err
    assert not out.exists()
    assert [p.name for p in tiny_dir.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("content, expected", [
    ("rounds: [1, 2\nname: x\n", "invalid YAML"),
    ("", "empty file (expected a scenario mapping)"),
    ("- 1\n- 2\n", "expected a mapping at the top level, got list"),
])
def test_unreadable_file(tmp_path, capsys, content, expected):
    path = tmp_path / "s.yaml"
    path.write_text(content)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {path}: {expected}\n" or (expected in err and err.count("\n") == 1)


def test_missing_file(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'nope.yaml'}: file not found\n"


@pytest.mark.parametrize("override, expected", [
    ("rounds=0", "rounds: must be >= 1 (got 0)"),
    ("population.devices[5].profile=x", "no list item '5'"),
    ("rounds", "expected path=value"),
    ("method.split=3", "method.split: unknown field"),
    ("devices[0.link=3g", "malformed field path 'devices[0.link'"),
    ("population..clients=3", "malformed field path"),
    ("rounds=[1, 2", "invalid YAML value"),
    ("training.threads=true", "training.threads: input should be a valid integer (got true)"),
])
def test_bad_override(tiny_dir, capsys, override, expected):
    path = write_scenario(tiny_dir, tiny())
    assert main(["validate", str(path), "--set", override]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1, err


def test_validate_accepts_good_scenario_and_override(tiny_dir, capsys):
    path = write_scenario(tiny_dir, tiny())
    assert main(["validate", str(path), "--set", "population.devices[0].link=wifi",
                 "--print"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["population"]["devices"][0]["link"] == "wifi"
    assert resolved["training"]["batch_size"] == 10  # defaults written out


def test_real_process_exit_status_and_no_traceback(tiny_dir):
    path = write_scenario(tiny_dir, tiny(**{"population.devices.0.link.uplink_mbps": -5}))
    proc = subprocess.run([sys.executable, "-m", "ecofed_sim.cli", "run", str(path),
                           "--out", str(tiny_dir / "o")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert "uplink_mbps: must be >= 0.001 (got -5)" in proc.stderr
    assert not (tiny_dir / "o").exists()


def test_near_zero_compute_stops_at_the_simulated_time_limit(tiny_dir, capsys):
    """A FLOP/s typo would simulate for ever; the run stops at ``max_sim_time_s``."""
    crawl = {"name": "crawl", "kind": "device", "compute": {"flops_per_s": dict.fromkeys(
        ["conv", "linear", "norm", "pool", "act"], 1e-300)}}
    (tiny_dir / "profiles" / "crawl.yaml").write_text(yaml.safe_dump(crawl))
    path = write_scenario(tiny_dir, tiny(**{"population.devices.0.profile": "crawl"}))
    out = tiny_dir / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "max_sim_time_s: round 0 is still running at 1e+09 s" \
        in err, err
    assert not out.exists()


def test_clients_first_online_near_a_million_seconds_finish(tiny_dir, capsys):
    """The float clock near 1e6 s once stalled transfers for ever (issue: livelock)."""
    (tiny_dir / "late.csv").write_text("client,online_s,offline_s\n0,987654,9999999\n"
                                       "1,987654,9999999\n")
    path = write_scenario(tiny_dir, tiny(rounds=1, **{
        "population.availability_trace": "late.csv"}))
    assert main(["run", str(path), "--out", str(tiny_dir / "out"), "--quiet"]) == 0
    import pandas as pd

    rounds = pd.read_parquet(tiny_dir / "out" / "rounds.parquet")
    assert rounds.sim_time_s.iloc[0] > 987654 and rounds.completed.iloc[0] == 2


@pytest.mark.parametrize("target", ["nan", "1.5", "-0.1", "x"])
def test_bad_accuracy_targets(tiny_dir, capsys, target):
    with pytest.raises(SystemExit) as stop:
        main(["sweep", str(tiny_dir / "s.yaml"), "--target", target])
    assert stop.value.code == 2
    assert "expected an accuracy in [0, 1]" in capsys.readouterr().err

"""Tiny scenarios and profiles whose times and bytes can be worked out by hand."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

# small_cnn on 1x8x8 with 2 classes: 7 units, parameters counted by hand in test_models.
TINY_MODEL_PARAMS = 80 + 16 + 1168 + 32 + (64 * 24 + 24) + (24 * 2 + 2)
UNITS = ["conv1", "pool1", "conv2", "pool2", "flatten", "fc1", "fc2"]

# Every unit: 1 ms forward, 2 ms backward at batch 10 on the device; a tenth on the server.
UNIT_DEVICE = {
    "name": "unit_dev", "kind": "device",
    "compute": {"flops_per_s": dict.fromkeys(["conv", "linear", "norm", "pool", "act"], 1e9)},
    "latency_tables": [{"model": "small_cnn", "batch_size": 10, "layers": {
        u: {"forward_ms": 1.0, "backward_ms": 2.0} for u in UNITS}}],
}
UNIT_SERVER = {
    "name": "unit_srv", "kind": "server",
    "compute": {"flops_per_s": dict.fromkeys(["conv", "linear", "norm", "pool", "act"], 1e9)},
    "latency_tables": [{"model": "small_cnn", "batch_size": 10, "layers": {
        u: {"forward_ms": 0.1, "backward_ms": 0.2} for u in UNITS}}],
}

TINY = {
    "name": "tiny",
    "seed": 3,
    "rounds": 2,
    "model": {"name": "small_cnn"},
    "data": {"dataset": "synthetic",
             "synthetic": {"shape": [1, 8, 8], "classes": 2, "train_samples": 40,
                           "test_samples": 20, "noise": 0.3}},
    "training": {"batch_size": 10, "lr": 0.05, "momentum": 0.9},
    "method": {"name": "fedavg"},
    "population": {"clients": 2, "clients_per_round": 2, "devices": [
        {"profile": "unit_dev", "count": 2,
         "link": {"uplink_mbps": 1, "downlink_mbps": 2, "latency_ms": 10}}]},
    "server": {"profile": "unit_srv", "workers": 1,
               "link": {"ingress_mbps": 1, "egress_mbps": 100}},
    "profiles_dir": "profiles",
    # the flow transport keeps these times derivable by hand; the TCP transport (the
    # default) has its own golden tests in test_tcp.py
    "network": {"transport": "flow"},
}


@pytest.fixture(autouse=True)
def _own_user_profiles(tmp_path_factory, monkeypatch):
    """Tests never read or write the real user profile folder."""
    monkeypatch.setenv("ECOFED_SIM_PROFILES", str(tmp_path_factory.mktemp("user_profiles")))


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Path:
    """A directory with the unit profiles; scenarios written here find them."""
    prof = tmp_path / "profiles"
    prof.mkdir()
    (prof / "unit_dev.yaml").write_text(yaml.safe_dump(UNIT_DEVICE))
    (prof / "unit_srv.yaml").write_text(yaml.safe_dump(UNIT_SERVER))
    return tmp_path


def tiny(**changes) -> dict:
    """A deep copy of TINY with dotted-path changes, e.g. tiny(**{"method.name": "x"})."""
    raw = copy.deepcopy(TINY)
    for path, value in changes.items():
        node = raw
        *head, last = path.split(".")
        for key in head:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        node[last] = value
    return raw


def write_scenario(directory: Path, raw: dict, name: str = "tiny.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path

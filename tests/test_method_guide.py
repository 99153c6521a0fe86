"""The worked example of docs/adding_a_method.md (FedProx) registers through an entry
point, as a user's own package would, and behaves: with mu = 0 it is FedAvg exactly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from conftest import tiny, write_scenario

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "fedprox.py"


def _plugin_path(tmp: Path) -> str:
    """A folder that looks like an installed package registering the example method."""
    dist = tmp / "site" / "fedprox_example-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fedprox-example\n"
                                   "Version: 0.1\n")
    (dist / "entry_points.txt").write_text("[ecofed_sim.methods]\nfedprox = fedprox:FedProx\n")
    return os.pathsep.join([str(tmp / "site"), str(EXAMPLE.parent)])


def _cli(tmp: Path, pythonpath: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ecofed_sim.cli", *args], cwd=tmp,
                          env={**os.environ, "PYTHONPATH": pythonpath},
                          capture_output=True, text=True, timeout=300)


def test_the_example_is_short():
    assert len(EXAMPLE.read_text().splitlines()) <= 150


def test_a_plugin_method_registers_and_mu_zero_is_fedavg(tiny_dir):
    pythonpath = _plugin_path(tiny_dir)
    listed = _cli(tiny_dir, pythonpath, "list", "methods")
    assert listed.returncode == 0, listed.stderr
    assert any(line.startswith("fedprox ") for line in listed.stdout.splitlines())
    runs = {"fedavg": {"name": "fedavg"}, "prox0": {"name": "fedprox", "mu": 0.0},
            "prox": {"name": "fedprox", "mu": 0.5}}
    for name, method in runs.items():
        path = write_scenario(tiny_dir, tiny(method=method), f"{name}.yaml")
        done = _cli(tiny_dir, pythonpath, "run", str(path), "--out", name, "--quiet")
        assert done.returncode == 0, done.stderr
    tables = {n: pd.read_parquet(tiny_dir / n / "rounds.parquet") for n in runs}
    pd.testing.assert_frame_equal(tables["fedavg"], tables["prox0"])
    assert (tables["prox"].test_loss != tables["fedavg"].test_loss).any()  # mu matters
    assert tables["prox"].cum_bytes.tolist() == tables["fedavg"].cum_bytes.tolist()
    bad = write_scenario(tiny_dir, tiny(method={"name": "fedprox", "mu": -1}), "bad.yaml")
    refused = _cli(tiny_dir, pythonpath, "validate", str(bad))
    assert refused.returncode == 2 and "method.mu: must be >= 0 (got -1)" in refused.stderr


def test_a_trait_set_on_the_method_instead_of_its_config_is_an_error():
    """Checks read traits from the config without importing the method: a trait left on
    the Method class would be silently ignored, so defining the class fails instead."""
    import pytest

    from ecofed_sim.methods.base import Method
    from ecofed_sim.methods.configs import FedAvgConfig

    with pytest.raises(TypeError, match="per_class_split is a trait of its Config"):
        type("Misplaced", (Method,), {"name": "misplaced", "Config": FedAvgConfig,
                                      "per_class_split": True})
    from ecofed_sim.methods import CONFIGS

    assert CONFIGS["splitfed"].per_class_split and not CONFIGS["splitfed_v2"].per_class_split
    assert CONFIGS["ecofed"].uses_pretrained_device
    assert not CONFIGS["splitfed_v2"].timing_independent and CONFIGS["fedavg"].timing_independent

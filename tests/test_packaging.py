"""The package works outside its checkout: a built wheel, installed (not editable) into a
fresh virtual environment, lists its profiles and runs a shipped scenario from an empty
folder. Skipped where torch cannot come from a local wheel (it would download GBs)."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def _local_torch(python: str) -> str | None:
    """The pip requirement of this torch when pip can install it without an index."""
    wanted = f"torch=={torch.__version__.split('+')[0]}"
    probe = subprocess.run([python, "-m", "pip", "install", "-q", "--dry-run", "--no-deps",
                            "--no-index", wanted], capture_output=True)
    return wanted if probe.returncode == 0 else None


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    if os.environ.get("ECOFED_SIM_SKIP_WHEEL_TEST"):
        pytest.skip("ECOFED_SIM_SKIP_WHEEL_TEST is set")
    tmp = tmp_path_factory.mktemp("wheel")
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    torch_req = _local_torch(python)
    if torch_req is None:
        pytest.skip("no local torch wheel for pip (installing one would download GBs)")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp / "dist"), str(ROOT)], check=True)
    (wheel,) = (tmp / "dist").glob("ecofed_sim-*.whl")
    subprocess.run([python, "-m", "pip", "install", "-q", torch_req], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", str(wheel)], check=True)
    return env_dir


def _cli(env_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(env_dir / "bin" / "ecofed-sim"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_installed_wheel_lists_profiles_and_scenarios(installed, tmp_path):
    profiles = _cli(installed, tmp_path, "list", "profiles")
    assert profiles.returncode == 0 and "server_gpu" in profiles.stdout and "rpi4b" in \
        profiles.stdout
    scenarios = _cli(installed, tmp_path, "list", "scenarios")
    assert "quickstart" in scenarios.stdout and "sweeps/quickstart_uplink" in scenarios.stdout
    assert str(installed) in scenarios.stdout  # read from the installed package, not a checkout


def test_installed_wheel_runs_shipped_scenarios_from_any_folder(installed, tmp_path):
    done = _cli(installed, tmp_path, "run", "quickstart", "--set", "rounds=1", "--out", "qs")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "qs" / "rounds.csv").exists()
    # a shipped scenario that names a shipped trace file (relative to itself)
    done = _cli(installed, tmp_path, "validate", "stragglers")
    assert done.returncode == 0, done.stderr


def test_installed_core_is_lean_and_leaves_the_backend_alone(installed, tmp_path):
    code = ("import importlib.util, matplotlib, ecofed_sim, ecofed_sim.plots;"
            "print(matplotlib.get_backend(), importlib.util.find_spec('mlxtend') is None,"
            " importlib.util.find_spec('sklearn') is None)")
    out = subprocess.run([str(installed / "bin" / "python"), "-c", code], cwd=tmp_path,
                         capture_output=True, text=True, env={**os.environ,
                                                              "MPLBACKEND": "svg"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["svg", "True", "True"]

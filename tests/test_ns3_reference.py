"""``benchmarks/ns3_reference.py``: saved ns-3 runs held against the model as it is now
(no ns-3 needed), a bad file refused, and one real ns-3 case where ns-3 is installed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import load_script

PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "ns3_reference.py"


def _module():
    return load_script("benchmarks/ns3_reference.py")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PATH), *args], capture_output=True, text=True,
                          timeout=600)


def test_rescore_holds_saved_runs_against_the_model(tmp_path):
    ref = _module()
    clean = ref.model_runs(20, 40, 100_000, 0.0)[0]
    lossy = ref.model_runs(20, 40, 1_000_000, 0.01, "cubic", seeds=5)
    saved = {"cc": "cubic", "date": "2026-12-03", "ns3": "ns3 3.44", "seeds": 2, "cases": [
        {"rate_mbps": 20, "rtt_ms": 40, "bytes": 100_000, "loss": 0.0,
         "ns3_s": [clean * 1.05], "timeouts": 0, "episodes": 0},
        {"rate_mbps": 20, "rtt_ms": 40, "bytes": 1_000_000, "loss": 0.01,
         "ns3_s": [sum(lossy) / 5 * 2, sum(lossy) / 5 * 2], "timeouts": 1, "episodes": 9}]}
    path = tmp_path / "ns3.json"
    path.write_text(json.dumps(saved))
    done = _run("--rescore", str(path), "--model-seeds", "5")
    assert done.returncode == 0, done.stderr
    assert "ns-3 cubic, runs saved 2026-12-03 (ns3 3.44)" in done.stdout
    assert f"tcp {clean:9.4f} s ( 0.95x)" in done.stdout  # the model's time over ns-3's
    assert "( 0.50x)" in done.stdout  # the lossy case: the model's mean, half of ns-3's
    assert "timeouts 1/9 loss episodes" in done.stdout
    assert "no loss: 1/1 within 10%" in done.stdout
    assert "random loss, means: 0/1 within 10%; worst 0.50x" in done.stdout


def test_rescore_refuses_a_file_it_did_not_save(tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"cases": []}))
    done = _run("--rescore", str(path))
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {path}: not a file saved with --json")
    assert "Traceback" not in done.stderr


def test_newreno_grows_back_a_segment_a_round_trip():
    """The model's NewReno keeps half the window and grows along Reno's line, so it is
    slower than Cubic on a lossy long fat path."""
    ref = _module()
    reno = ref.model_runs(100, 100, 10_000_000, 0.001, "newreno", random_loss=False)[0]
    cubic = ref.model_runs(100, 100, 10_000_000, 0.001, "cubic", random_loss=False)[0]
    assert reno > 1.2 * cubic


def test_one_ns3_case_where_ns3_is_installed():
    ref = _module()
    try:
        ref.load_ns3()
    except ref.Unavailable as err:
        pytest.skip(f"ns-3 is an optional extra: {err}")
    run = ref.ns3_run(20, 40, 100_000, 0.0, "cubic")
    model = ref.model_runs(20, 40, 100_000, 0.0)[0]
    assert run.timeouts == 0
    assert run.seconds == pytest.approx(model, rel=0.10)

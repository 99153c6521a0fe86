"""A small case of benchmarks/network_fidelity.py: the framed link model against a real
tbf-shaped veth link between two network namespaces (skipped where they cannot be made)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers import load_script, namespaces_unavailable

PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "network_fidelity.py"


def _module():
    return load_script("benchmarks/network_fidelity.py")


def _can_make_namespaces() -> str | None:
    return namespaces_unavailable("tc")


@pytest.mark.skipif(_can_make_namespaces() is not None, reason=str(_can_make_namespaces()))
def test_framed_model_matches_a_shaped_link():
    nf = _module()
    try:
        rows = nf.report(20, 0.0, quick=True)
    except nf.NetnsUnavailable as err:
        pytest.skip(f"network namespaces unavailable: {err}")
    big = [r for r in rows if r["case"].startswith("message") and r["bytes"] >= 100_000]
    rounds = [r for r in rows if r["case"].startswith("round")]
    assert big and rounds
    assert all(abs(r["err_bucket"]) <= 0.05 for r in big), big
    assert all(abs(r["err_bucket"]) <= 0.10 for r in rounds), rounds
    # the payload-only model runs fast on a rate-limited link by about the header share
    assert all(r["payload_s"] < r["framed_s"] for r in big)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "efs_dev" not in listed and "efs_srv" not in listed  # cleaned up

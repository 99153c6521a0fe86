"""A small case of benchmarks/tcp_fidelity.py: real Linux TCP (Cubic) over a delay line
between two network namespaces, against the tcp and flow transports. Skipped, with the
reason, where namespaces, TUN or a compiler are missing."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

import pytest
from helpers import namespaces_unavailable

PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "tcp_fidelity.py"


def _why_not() -> str | None:
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun"
    return namespaces_unavailable("gcc")


@pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))
def test_tcp_model_is_nearer_real_tcp_than_the_flow_model_on_a_new_connection():
    spec = importlib.util.spec_from_file_location("tcp_fidelity", PATH)
    tf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tf)
    path = None
    try:
        path = tf.Path_(20, 40)
        row = tf.run_case(path, 20, 40, 100_000, "fresh", 0.0, repeats=1, count=1)
    except tf.Unavailable as err:
        pytest.skip(f"delay line unavailable: {err}")
    finally:
        if path is not None:
            path.teardown()
    assert row["measured_s"] > 0.1  # handshake and slow start at 40 ms RTT are real
    assert abs(row["tcp_ratio"] - 1) < abs(row["flow_ratio"] - 1)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert tf.NS_DEV not in listed and tf.NS_SRV not in listed  # cleaned up

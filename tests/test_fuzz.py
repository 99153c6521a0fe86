"""Property-based fuzzing of ``ecofed-sim run``: mutated scenario fields and trace files.

Whatever the input, the command ends with status 0 (a valid scenario ran) or 2 (one line
naming the problem), never a traceback, within a bounded time, and leaves either a
complete results folder or nothing at all. The CI budget is small and derandomised (the
same examples every run); set ECOFED_SIM_FUZZ_EXAMPLES for a longer hunt.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal

import pytest
import yaml
from conftest import tiny, write_scenario

from ecofed_sim.cli import main

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EXAMPLES = int(os.environ.get("ECOFED_SIM_FUZZ_EXAMPLES", "30"))
LIMIT_S = 120  # a hang detector, not a speed goal: a tiny scenario runs in about a second
RESULT_FILES = {"rounds.csv", "rounds.parquet", "transfers.parquet", "timeline.parquet",
                "energy.parquet", "participation.parquet", "updates.parquet",
                "scenario.resolved.yaml",
                "manifest.json", ".ecofed-sim-results"}

FIELDS = [
    "seed", "rounds", "name", "description", "max_sim_time_s", "model.name",
    "data.dataset", "data.test_samples", "data.split_seed", "data.eval_samples",
    "data.synthetic.shape", "data.synthetic.classes", "data.synthetic.train_samples",
    "data.synthetic.test_samples", "data.synthetic.noise", "data.partition.kind",
    "data.partition.alpha", "data.partition.samples_per_client", "data.partition.shard_size",
    "data.partition.min_samples", "training.batch_size", "training.local_epochs",
    "training.lr", "training.momentum", "training.weight_decay", "training.threads",
    "method", "method.name", "method.split", "population.clients",
    "population.clients_per_round", "population.online_probability",
    "population.over_selection", "population.deadline_s", "population.mean_online_s",
    "population.devices", "population.devices.0.count", "population.devices.0.profile",
    "population.devices.0.link", "population.devices.0.link.uplink_mbps",
    "population.devices.0.link.downlink_mbps", "population.devices.0.link.latency_ms",
    "population.devices.0.link.latency_jitter_ms", "population.devices.0.link.burst_bytes",
    "server.workers", "server.link.ingress_mbps", "server.link.egress_mbps",
    "network.framing_bytes", "network.framing_fraction", "evaluation.every",
    "evaluation.batch_size", "pretrain.source", "profiles_dir",
]
NUMBERS = st.sampled_from([-1, 0, 1, 2, 3, 7, 10**12, 2**64, -0.5, 0.0, 1e-300, 0.25, 0.999,
                           1.5, 1e300, math.inf, -math.inf, math.nan])
SCALARS = NUMBERS | st.booleans() | st.none() | st.sampled_from(
    ["", "x", "../../etc", "fedavg", "splitfed", "ecofed", "wifi", "unit_dev", "auto",
     "synthetic", "dirichlet", "small_cnn", "&*!"])
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(["name", "split", "x", "count",
                                                         "profile"]), inner, max_size=2),
                      max_leaves=4)
METHODS = st.sampled_from([{"name": "fedavg"}, {"name": "splitfed", "split": 2},
                           {"name": "local_loss", "split": 2}, {"name": "fedgkt", "split": 2},
                           {"name": "ecofed", "split": 2}])


def _set(raw: dict, path: str, value: object) -> None:
    node = raw
    *head, last = path.split(".")
    for key in head:
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                return
            node = node[int(key)]
        elif isinstance(node, dict):
            node = node.setdefault(key, {})
            if not isinstance(node, dict | list):
                return
        else:
            return
    if isinstance(node, dict):
        node[last] = value
    elif isinstance(node, list) and last.isdigit() and int(last) < len(node):
        node[int(last)] = value


@contextlib.contextmanager
def _time_limit(seconds: int):
    def expire(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s: a hang")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _run_and_check(directory, raw: dict, capsys) -> None:
    path = write_scenario(directory, raw, "fuzz.yaml")
    out = directory / "fuzz-out"
    shutil.rmtree(out, ignore_errors=True)  # examples share the folder
    before = {p.name for p in directory.iterdir()}
    with _time_limit(LIMIT_S):
        status = main(["run", str(path), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert status in (0, 2), err
    assert "Traceback" not in err
    leftovers = {p.name for p in directory.iterdir()} - before - {"fuzz-out"}
    assert not leftovers, f"half-written: {leftovers}"
    if status == 2:
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert not out.exists()
    else:
        assert {p.name for p in out.iterdir()} == RESULT_FILES


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(method=METHODS, changes=st.lists(st.tuples(st.sampled_from(FIELDS), VALUES),
                                        min_size=1, max_size=3))
def test_mutated_scenarios_end_in_0_or_one_line_2(tiny_dir, capsys, method, changes):
    raw = tiny(rounds=1, method=method)
    for path, value in changes:
        _set(raw, path, value)
    _run_and_check(tiny_dir, raw, capsys)


LINES = st.sampled_from(["0,1", "0 1", "1,2", "2,0.5", "time_s,mbps", "# c", "", "nan,1",
                         "1,inf", "-1,2", "3,-4", "1e308,1", "x,y", "0,1e-300", "1,1,1",
                         "0", ",,,", "\x00\x01", "5,1e9"])


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(lines=st.lists(LINES, max_size=6), junk=st.binary(max_size=8),
       kind=st.sampled_from(["uplink_trace", "availability_trace"]))
def test_mutated_trace_files_end_in_0_or_one_line_2(tiny_dir, capsys, lines, junk, kind):
    (tiny_dir / "trace.csv").write_bytes("\n".join(lines).encode() + junk)
    if kind == "uplink_trace":
        raw = tiny(rounds=1, **{"population.devices.0.link": {
            "uplink_trace": "trace.csv", "downlink_mbps": 2, "latency_ms": 10}})
    else:
        raw = tiny(rounds=1, **{"population.availability_trace": "trace.csv"})
    _run_and_check(tiny_dir, raw, capsys)


def test_yaml_alias_bomb_in_a_field_is_refused(tiny_dir, capsys):
    """A billion-laughs value stays small in the file; expanded it would exhaust memory."""
    layers = ["x-0: &a0 ['x','x','x','x','x','x','x','x','x','x']"]
    layers += [f"x-{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    text = yaml.safe_dump(tiny(rounds=1)) + "\n".join(layers) + "\ndescription: *a8\n"
    path = tiny_dir / "bomb.yaml"
    path.write_text(text)
    with _time_limit(LIMIT_S):
        assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "expands to more than 200,000 values" in err and err.count("\n") == 1
    bomb = "[" + ", ".join([f"&x{i} [" + ", ".join([f"*x{i - 1}"] * 10) + "]" if i
                            else "&x0 [1,1,1,1,1,1,1,1,1,1]" for i in range(9)]) + "]"
    with _time_limit(LIMIT_S):
        assert main(["validate", str(write_scenario(tiny_dir, tiny())), "--set",
                     f"description={bomb}"]) == 2
    err = capsys.readouterr().err
    assert "the value expands to more than 200,000 values" in err and len(err) < 500

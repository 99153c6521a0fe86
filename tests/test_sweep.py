"""Sweeps: expansion and ids, dry-run counts, reuse, resume after SIGKILL, Dask, failures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import tiny, write_scenario

from ecofed_sim.cli import main
from ecofed_sim.errors import ScenarioError
from ecofed_sim.sweep import dry_run, run_sweep
from ecofed_sim.sweep_spec import expand, load_sweep

LINK = "population.devices[0].link.uplink_mbps"


def _sweep(directory: Path, **changes) -> Path:
    write_scenario(directory, tiny(rounds=2), "base.yaml")
    spec = {"name": "s", "base": "base.yaml", "mode": "grid", "axes": [
        {"path": "method", "values": [{"name": "fedavg"}, {"name": "splitfed", "split": 4}],
         "labels": ["fedavg", "splitfed"]},
        {"path": LINK, "values": [1, 2, 4]}], "seeds": [0, 1], "targets": [0.5]}
    spec.update(changes)
    path = directory / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_grid_expansion_is_stable_and_unique(tiny_dir):
    path = _sweep(tiny_dir)
    runs = expand(path, load_sweep(path))
    assert len(runs) == 2 * 3 * 2
    assert len({r.run_id for r in runs}) == 12
    assert [r.run_id for r in runs] == [r.run_id for r in expand(path, load_sweep(path))]
    assert runs[0].params == {"method": "fedavg", LINK: 1, "seed": 0}
    assert runs[0].scenario.population.devices[0].link.uplink_mbps == 1
    # bandwidth is timing-only: 2 methods x 2 seeds learn differently, 3 bandwidths do not
    assert len({r.learning_key for r in runs}) == 4


def test_zip_mode_and_dry_run_counts(tiny_dir):
    path = _sweep(tiny_dir, mode="zip", axes=[
        {"path": "training.lr", "values": [0.1, 0.2]}, {"path": LINK, "values": [1, 2]}],
        seeds=[])
    assert [r.params for r in expand(path, load_sweep(path))] == [
        {"training.lr": 0.1, LINK: 1}, {"training.lr": 0.2, LINK: 2}]
    full = _sweep(tiny_dir)
    text = dry_run(full, tiny_dir / "out", reuse=True)
    assert text.splitlines()[-1] == "12 runs (0 done, 12 to do); 4 learning runs, 8 re-simulated"
    no_reuse = dry_run(full, tiny_dir / "out", reuse=False).splitlines()[-1]
    assert no_reuse.startswith("12 runs (0 done, 12 to do); 12 learning runs, 0 re-simulated")


def test_a_deadline_makes_every_run_learn_in_full(tiny_dir):
    """With a deadline, bandwidth decides which updates are kept: no trace reuse."""
    path = _sweep(tiny_dir, set={"population.deadline_s": 5.0})
    text = dry_run(path, tiny_dir / "out", reuse=True)
    assert text.splitlines()[-1] == "12 runs (0 done, 12 to do); 12 learning runs, 0 re-simulated"


@pytest.mark.parametrize("changes, expected", [
    ({"axes": [{"path": LINK, "values": [-1]}]},
     "population.devices[0].link.uplink_mbps: must be >= 0.001 (got -1)"),
    ({"axes": [{"path": "training.lrr", "values": [1]}]}, "training.lrr: unknown field"),
    ({"mode": "zip", "axes": [{"path": "seed", "values": [1, 2]},
                              {"path": "rounds", "values": [1]}]}, "zip mode needs axes"),
    ({"colour": 1}, "colour: unknown field (accepted: name, base,"),
    ({"base": "nope.yaml"}, "base: "),
    ({"targets": [float("nan")]}, "targets[0]: input should be a finite number (got nan)"),
    ({"targets": [1.5]}, "targets[0]: must be <= 1 (got 1.5)"),
    ({"seeds": [-3]}, "seeds[0]: must be >= 0 (got -3)"),
])
def test_bad_sweep_is_one_line_exit_2(tiny_dir, capsys, changes, expected):
    path = _sweep(tiny_dir, **changes)
    assert main(["sweep", str(path), "--out", str(tiny_dir / "out")]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1, err
    assert not (tiny_dir / "out").exists()


def _tables(out: Path) -> dict[str, pd.DataFrame]:
    runs = sorted(p.name for p in (out / "runs").iterdir())
    return {r: pd.read_csv(out / "runs" / r / "rounds.csv") for r in runs}


def test_reuse_equals_full_runs_and_summary(tiny_dir):
    path = _sweep(tiny_dir)
    tally = run_sweep(path, tiny_dir / "a", progress=False)
    assert (tally.done, tally.skipped, tally.failed) == (12, 0, 0)
    run_sweep(path, tiny_dir / "b", reuse=False, progress=False)
    a, b = _tables(tiny_dir / "a"), _tables(tiny_dir / "b")
    assert a.keys() == b.keys()
    for run_id in a:
        pd.testing.assert_frame_equal(a[run_id], b[run_id])
    summary = pd.read_parquet(tiny_dir / "a" / "summary.parquet")
    assert len(summary) == 12 * 2
    assert list(summary.columns[:5]) == ["run_id", "round", "method", LINK, "seed"]
    metrics = pd.read_csv(tiny_dir / "a" / "metrics.csv")
    assert {"time_to_0.5_s", "bytes_to_0.5", "final_accuracy", "total_bytes"} <= set(
        metrics.columns)
    again = run_sweep(path, tiny_dir / "a", progress=False)
    assert (again.done, again.skipped) == (0, 12)


def test_resume_after_sigkill(tiny_dir):
    path = _sweep(tiny_dir, seeds=[0, 1, 2])
    out = tiny_dir / "out"
    cmd = [sys.executable, "-m", "ecofed_sim.cli", "sweep", str(path), "--out", str(out),
           "--quiet", "--no-reuse"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:  # kill once some, but not all, runs are written
        done = len(list((out / "runs").glob("*/manifest.json"))) if out.exists() else 0
        if done >= 3:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished_before = {p.parent.name: p.stat().st_mtime_ns
                       for p in (out / "runs").glob("*/manifest.json")}
    assert 3 <= len(finished_before) < 18
    assert subprocess.run(cmd).returncode == 0
    runs = list((out / "runs").iterdir())
    assert len(runs) == 18 and all(not p.name.startswith(".") for p in runs)
    for run in runs:
        assert {p.name for p in run.iterdir()} == {
            "rounds.csv", "rounds.parquet", "transfers.parquet", "timeline.parquet",
            "energy.parquet", "participation.parquet", "updates.parquet",
            "scenario.resolved.yaml", "manifest.json", ".ecofed-sim-results"}
    for run_id, mtime in finished_before.items():  # never recomputed
        assert (out / "runs" / run_id / "manifest.json").stat().st_mtime_ns == mtime
    # no temporary leftovers: only the results markers and the sweep's lock file
    assert not [p for p in out.rglob(".*") if p.name not in (".ecofed-sim-results", ".lock")]
    assert len(pd.read_parquet(out / "summary.parquet")) == 18 * 2


def test_failing_run_is_recorded_and_others_finish(tiny_dir, capsys):
    path = _sweep(tiny_dir, axes=[{"path": "data.partition.samples_per_client",
                                   "values": [5, 500]}], seeds=[])
    assert main(["sweep", str(path), "--out", str(tiny_dir / "o")]) == 1
    out = capsys.readouterr().out
    assert "done 1, skipped 0, failed 1" in out
    failed = yaml.safe_load((tiny_dir / "o" / "failed.yaml").read_text())
    assert len(failed) == 1 and "exceeds" in next(iter(failed.values()))


def test_dask_local_cluster_matches_local_executor(tiny_dir):
    pytest.importorskip("dask.distributed")
    path = _sweep(tiny_dir, seeds=[0])
    run_sweep(path, tiny_dir / "local", progress=False)
    run_sweep(path, tiny_dir / "dask", executor="dask", workers=2, progress=False)
    a, b = _tables(tiny_dir / "local"), _tables(tiny_dir / "dask")
    assert a.keys() == b.keys() and len(a) == 6
    for run_id in a:
        pd.testing.assert_frame_equal(a[run_id], b[run_id])


def test_local_worker_processes_match_in_process(tiny_dir):
    path = _sweep(tiny_dir, seeds=[0])
    run_sweep(path, tiny_dir / "one", progress=False)
    run_sweep(path, tiny_dir / "two", workers=2, progress=False)
    a, b = _tables(tiny_dir / "one"), _tables(tiny_dir / "two")
    for run_id in a:
        pd.testing.assert_frame_equal(a[run_id], b[run_id])


def test_missing_base_is_scenario_error(tiny_dir):
    path = _sweep(tiny_dir, base="missing.yaml")
    with pytest.raises(ScenarioError, match="missing.yaml: file not found"):
        expand(path, load_sweep(path))


def test_time_and_bytes_to_accuracy():
    from ecofed_sim.sweep_summary import run_metrics, to_accuracy

    rounds = pd.DataFrame({"round": [0, 1, 2], "sim_time_s": [1.0, 2.5, 4.0],
                           "cum_bytes": [10, 20, 30],
                           "test_accuracy": [0.5, float("nan"), 0.8]})
    assert to_accuracy(rounds, 0.6) == (4.0, 30.0)
    assert to_accuracy(rounds, 0.5) == (1.0, 10.0)
    t, b = to_accuracy(rounds, 0.9)
    assert t != t and b != b  # NaN: never reached
    m = run_metrics(rounds, [0.6])
    assert m["final_accuracy"] == 0.8 and m["total_bytes"] == 30 and m["time_to_0.6_s"] == 4.0


def test_run_ids_change_with_the_simulator_version(tiny_dir, monkeypatch):
    """An upgrade never silently reuses results written by an older version."""
    import ecofed_sim
    from ecofed_sim.sweep_spec import run_id

    path = _sweep(tiny_dir, seeds=[0])
    scenario = expand(path, load_sweep(path))[0].scenario
    before = run_id(scenario)
    monkeypatch.setattr(ecofed_sim, "__version__", "99.0.0")
    assert run_id(scenario) != before


def test_two_configurations_of_one_method_get_labels_of_their_own(tiny_dir):
    path = _sweep(tiny_dir, axes=[{"path": "method", "values": [
        {"name": "fedavg"}, {"name": "splitfed", "split": 2}, {"name": "splitfed", "split": 4}]}],
        seeds=[])
    assert [r.params["method"] for r in expand(path, load_sweep(path))] == [
        "fedavg", "splitfed split=2", "splitfed split=4"]


def test_labels_that_would_draw_two_experiments_as_one_curve_fail_the_dry_run(tiny_dir,
                                                                              capsys):
    path = _sweep(tiny_dir, axes=[{"path": "method", "values": [
        {"name": "splitfed", "split": 2}, {"name": "splitfed", "split": 4}],
        "labels": ["splitfed", "splitfed"]}], seeds=[])
    assert main(["sweep", str(path), "--dry-run", "--out", str(tiny_dir / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "two different points share the labels method=splitfed" \
        in err, err


def test_plot_styles_keep_the_method_colour_and_tell_configurations_apart():
    from ecofed_sim.plots import style

    plain, two, four = style("splitfed"), style("splitfed split=2"), style("splitfed split=4")
    assert plain["color"] == two["color"] == four["color"]
    assert two["label"].endswith("split=2") and four["label"].endswith("split=4")
    assert "linestyle" not in plain and two["linestyle"] != four["linestyle"]


def test_summary_labels_each_runs_rounds_as_one_frame_per_run_would(tmp_path):
    """The summary adds each run's labels to its rows all at once; it must equal the
    plain construction, run by run (rounds of different lengths; an int, a float and a
    string label; an axis label that renames the method; a run not yet written skipped)."""
    from types import SimpleNamespace

    from ecofed_sim.sweep_summary import write_summary

    def run(run_id: str, name: str, **params):
        return SimpleNamespace(run_id=run_id, params=params,
                               scenario=SimpleNamespace(method=SimpleNamespace(name=name)))

    runs = [run("a", "fedavg", method="avg", uplink_mbps=1, lr=0.1, codec="none"),
            run("b", "splitfed", method="sfl-v1", uplink_mbps=2, lr=0.5, codec="int8"),
            run("missing", "fedavg", method="avg", uplink_mbps=3, lr=0.2, codec="none"),
            run("c", "ecofed", method="eco", uplink_mbps=4, lr=0.3, codec="int8")]
    lengths = {"a": 3, "b": 1, "c": 2}
    for r in runs:
        if r.run_id in lengths:
            n = lengths[r.run_id]
            (tmp_path / "runs" / r.run_id).mkdir(parents=True)
            pd.DataFrame({"round": range(n), "sim_time_s": [1.5 * (i + 1) for i in range(n)],
                          "cum_bytes": [100 * (i + 1) for i in range(n)],
                          "test_accuracy": [0.1 * (i + 1) for i in range(n)]}).to_parquet(
                tmp_path / "runs" / r.run_id / "rounds.parquet", index=False)
    summary = write_summary(tmp_path, runs, [0.15])
    plain = pd.concat([pd.read_parquet(tmp_path / "runs" / r.run_id / "rounds.parquet")
                       .assign(**{"run_id": r.run_id, "method": r.scenario.method.name,
                                  **r.params})
                       for r in runs if r.run_id in lengths], ignore_index=True)
    front = ["run_id", "round", "method", "uplink_mbps", "lr", "codec"]
    plain = plain[front + [c for c in plain.columns if c not in front]]
    pd.testing.assert_frame_equal(summary, plain)
    assert list(summary.method) == ["avg"] * 3 + ["sfl-v1", "eco", "eco"]
    assert list(summary.uplink_mbps) == [1, 1, 1, 2, 4, 4]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "summary.parquet"), plain)

"""Sweeps on a real Dask cluster: a scheduler and workers started as their own processes,
in another working folder, found through a scheduler file. Files a scenario names travel
with the tasks; a worker killed mid-sweep loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import tiny, write_scenario

from ecofed_sim.errors import ScenarioError
from ecofed_sim.sweep import run_sweep

pytest.importorskip("dask.distributed")
DASK = str(Path(sys.executable).with_name("dask"))


@pytest.fixture
def cluster(tmp_path):
    """A scheduler and two single-threaded workers, started in a folder of their own."""
    elsewhere = tmp_path / "worker_cwd"
    elsewhere.mkdir()
    sched_file = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([DASK, "scheduler", "--scheduler-file", str(sched_file),
                               "--port", "0", "--dashboard-address", ":0"], cwd=elsewhere,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    deadline = time.time() + 60
    while not sched_file.exists() and time.time() < deadline:
        time.sleep(0.1)
    for _ in range(2):
        procs.append(subprocess.Popen([DASK, "worker", "--scheduler-file", str(sched_file),
                                       "--nthreads", "1", "--nworkers", "1",
                                       "--no-nanny"], cwd=elsewhere,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    from dask.distributed import Client

    with Client(scheduler_file=str(sched_file), timeout=60) as client:
        client.wait_for_workers(2, timeout=60)
    yield sched_file, procs
    for p in procs:
        p.kill()
        p.wait()


def _sweep(directory: Path, seeds: list[int]) -> Path:
    (directory / "traces").mkdir()
    (directory / "traces" / "up.csv").write_text("time_s,mbps\n0,1\n2,0.5\n5,2\n")
    raw = tiny(rounds=2, **{"population.devices.0.link": {
        "uplink_trace": "traces/up.csv", "downlink_mbps": 2, "latency_ms": 10}})
    write_scenario(directory, raw, "base.yaml")
    spec = {"name": "c", "base": "base.yaml", "axes": [
        {"path": "method", "values": [{"name": "fedavg"}, {"name": "splitfed", "split": 4}]},
        {"path": "server.link.ingress_mbps", "values": [1, 10]}], "seeds": seeds}
    path = directory / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _tables(out: Path) -> dict[str, pd.DataFrame]:
    return {p.name: pd.read_parquet(p / "rounds.parquet") for p in (out / "runs").iterdir()}


def test_workers_elsewhere_get_the_trace_files_and_match_local(tiny_dir, cluster):
    sched_file, _ = cluster
    path = _sweep(tiny_dir, seeds=[0])
    local = run_sweep(path, tiny_dir / "local", progress=False)
    remote = run_sweep(path, tiny_dir / "remote", executor="dask", progress=False,
                       scheduler_file=str(sched_file), log=lambda m: None)
    assert (local.done, remote.done, remote.failed) == (4, 4, 0)
    a, b = _tables(tiny_dir / "local"), _tables(tiny_dir / "remote")
    assert a.keys() == b.keys()
    for run_id in a:
        pd.testing.assert_frame_equal(a[run_id], b[run_id])
    resolved = yaml.safe_load(next((tiny_dir / "remote" / "runs").iterdir())
                              .joinpath("scenario.resolved.yaml").read_text())
    assert resolved["population"]["devices"][0]["link"]["uplink_trace"] == "traces/up.csv"


def test_a_killed_worker_loses_nothing(tiny_dir, cluster):
    sched_file, procs = cluster
    path = _sweep(tiny_dir, seeds=[0, 1, 2])
    out = tiny_dir / "out"

    def kill_one_worker_after_the_first_result():
        deadline = time.time() + 120
        while time.time() < deadline:
            if list((out / "runs").glob("*/manifest.json")) if (out / "runs").exists() else []:
                os.kill(procs[1].pid, signal.SIGKILL)
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one_worker_after_the_first_result)
    killer.start()
    tally = run_sweep(path, out, executor="dask", progress=False, reuse=False,
                      scheduler_file=str(sched_file), log=lambda m: None)
    killer.join()
    assert procs[1].poll() is not None  # the worker did die mid-sweep
    assert (tally.done, tally.failed) == (12, 0)
    assert len(list((out / "runs").glob("*/manifest.json"))) == 12


def test_what_travels_with_a_task(tiny_dir):
    from ecofed_sim.sweep_files import SHIP_LIMIT_BYTES, absolutize, bundle, restore_paths

    (tiny_dir / "up.csv").write_text("0,1\n")
    raw = tiny(**{"population.devices.0.link": {"uplink_trace": "up.csv",
                                                  "downlink_mbps": 2}})
    shipped, files = bundle(absolutize(raw, tiny_dir), "s.yaml")
    assert files["f0-up.csv"] == b"0,1\n"  # the trace, under a bundle name
    profiles = {k.split("/", 1)[1] for k in files if k.endswith("-profiles/" + k.split("/")[-1])}
    assert {"unit_dev.yaml", "unit_srv.yaml"} <= profiles  # the profile folder's YAML files
    assert shipped["population"]["devices"][0]["link"]["uplink_trace"] == "f0-up.csv"
    assert restore_paths(shipped, raw) == raw
    with pytest.raises(ScenarioError, match="data.root: dataset folders are not shipped"):
        bundle(absolutize(tiny(data={"dataset": "mnist", "root": "data"}), tiny_dir), "s")
    (tiny_dir / "big.csv").write_bytes(b"0" * (SHIP_LIMIT_BYTES + 1))
    big = tiny(**{"population.availability_trace": "big.csv"})
    with pytest.raises(ScenarioError, match="availability_trace: .*big.csv takes the files "
                       "to ship past 64 MiB; put them on a shared filesystem"):
        bundle(absolutize(big, tiny_dir), "s")


def test_the_cluster_example_runs_as_written_on_its_local_stand_in(tiny_dir):
    example = Path(__file__).resolve().parent.parent / "docs" / "examples" / "dask_cluster.py"
    sched_file = tiny_dir / "scheduler.json"
    # Started as a script's background job is: with SIGINT ignored. It must stop anyway.
    proc = subprocess.Popen([sys.executable, str(example), "--local", "--jobs", "2",
                             "--scheduler-file", str(sched_file)], cwd=tiny_dir,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert "dashboard" in proc.stdout.readline()  # up, file written
        # Keep reading what it and its workers print: a full pipe would block a worker
        # mid-write, and then its shutdown would wait on that worker.
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        path = _sweep(tiny_dir, seeds=[0])
        done = subprocess.run([sys.executable, "-m", "ecofed_sim.cli", "sweep", str(path),
                               "--out", str(tiny_dir / "out"), "--executor", "dask",
                               "--scheduler-file", str(sched_file), "--quiet"],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "done 4, skipped 0, failed 0" in done.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(timeout=120) == 0  # under 1 s alone; longer on a busy machine
        finally:
            proc.kill()  # never left running (a no-op once it has exited)


@pytest.mark.parametrize("method", [{"name": "fedavg"}, {"name": "splitfed", "split": 2}])
def test_one_run_trains_its_clients_on_the_cluster_with_the_serial_tables(method, tiny_dir,
                                                                          cluster):
    """``run --scheduler-file``: the kept clients train on the cluster's workers (FedAvg's
    deferred training; SplitFed's clients, apart); every table equals the serial run's."""
    from ecofed_sim.run import run
    from ecofed_sim.scenario import scenario_from_dict

    sched_file, _ = cluster
    raw = tiny(rounds=2, method=method, **{
        "population.clients": 4, "population.clients_per_round": 3,
        "population.devices.0.count": 4, "evaluation.every": 1})
    sc = scenario_from_dict(raw, "tiny.yaml")
    serial = run(sc, source="tiny.yaml", base_dir=tiny_dir)
    remote = run(sc, source="tiny.yaml", base_dir=tiny_dir, scheduler_file=str(sched_file))
    for name in ("rounds", "transfers", "timeline"):
        pd.testing.assert_frame_equal(getattr(serial, name), getattr(remote, name))
    from dask.distributed import Client

    with Client(scheduler_file=str(sched_file), timeout=60) as client:
        prefixes = client.run_on_scheduler(lambda dask_scheduler: list(
            dask_scheduler.task_prefixes))
    assert "dask_work" in prefixes  # the training ran there (Dask drops the "_")

"""Cross-device scale: FedAvg's deferred training on one worker model, the running mean,
batch sizes known before the data is touched, and the timing-only mode."""

from __future__ import annotations

import copy
import subprocess
import sys

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny, write_scenario
from helpers import final_state, run_dict

from ecofed_sim.aggregation import WeightedMean, fedavg
from ecofed_sim.engine import Engine
from ecofed_sim.methods.base import sgd
from ecofed_sim.prepare import prepare
from ecofed_sim.round_context import RoundContext
from ecofed_sim.scenario import scenario_from_dict

UNEVEN = {"data.synthetic.train_samples": 47, "population.clients": 3,
          "population.clients_per_round": 3,
          "population.devices": [{"profile": "unit_dev", "count": 3, "link": {
              "uplink_mbps": 1, "downlink_mbps": 2, "latency_ms": 10}}],
          "training.local_epochs": 2, "training.batch_size": 4}


def test_running_mean_in_pieces_equals_fedavg_exactly():
    gen = torch.Generator().manual_seed(0)
    states = [{"w": torch.randn(5, 3, generator=gen), "b": torch.randn(3, generator=gen),
               "n": torch.tensor(7 + i)} for i in range(6)]
    weights = [3, 1, 4, 1, 5, 9]
    mean = WeightedMean(sum(weights))
    for s, w in zip(states, weights, strict=True):
        mean.add(s, w)
    out, ref = mean.result(), fedavg(states, weights)
    for key in ref:
        assert torch.equal(out[key], ref[key]), key
    assert out["n"] == 7  # integer tensors keep the first state's value
    expected = sum(s["w"].double() * w for s, w in zip(states, weights, strict=True)) / 23
    torch.testing.assert_close(out["w"], expected.float())
    with pytest.raises(ValueError, match="same keys"):
        mean.add({"w": states[0]["w"]}, 1)
    with pytest.raises(ValueError, match="positive"):
        WeightedMean(0)


def test_batch_sizes_are_the_sizes_batches_yields(tiny_dir):
    raw = tiny(**UNEVEN)
    engine = Engine(prepare(scenario_from_dict(raw, "tiny.yaml"), "tiny.yaml", tiny_dir))
    ctx = RoundContext(engine, 1)
    for client in range(3):
        sizes = [len(y) for _, y in ctx.batches(client)]
        assert ctx.batch_sizes(client) == sizes
        n = ctx.num_samples(client)
        assert sum(sizes) == 2 * n and sizes[0] == 4  # two epochs, uneven remainder


def _reference_fedavg_state(raw: dict, tiny_dir) -> dict[str, torch.Tensor]:
    """Every client on its own deep copy and fresh optimiser, averaged by ``fedavg``: the
    textbook FedAvg the deferred, reused-worker version must equal bit for bit."""
    engine = Engine(prepare(scenario_from_dict(raw, "tiny.yaml"), "tiny.yaml", tiny_dir))
    model = engine.method.global_model
    for r in range(engine.scenario.rounds):
        ctx = RoundContext(engine, r)
        states, weights = [], []
        for client in range(engine.scenario.population.clients):
            local = copy.deepcopy(model).train()
            opt = sgd(local.parameters(), engine.scenario.training)
            for x, y in ctx.batches(client):
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(local(x), y).backward()
                opt.step()
            states.append(local.state_dict())
            weights.append(ctx.num_samples(client))
        model.load_state_dict(fedavg(states, weights))
    return model.state_dict()


def test_deferred_training_on_one_worker_equals_a_copy_per_client(tiny_dir):
    raw = tiny(**UNEVEN, **{"model.name": "vgg5"})  # BatchNorm buffers too
    got, ref = final_state(raw, tiny_dir), _reference_fedavg_state(raw, tiny_dir)
    for key in ref:
        assert torch.equal(got[key], ref[key]), key


def test_timing_only_clocks_equal_the_full_runs(tiny_dir):
    slow = {"profile": "unit_dev", "count": 1,
            "link": {"uplink_mbps": 0.2, "downlink_mbps": 2, "latency_ms": 10}}
    raw = tiny(**UNEVEN, **{"population.deadline_s": 0.5, "rounds": 3})
    raw["population"]["devices"] = [{**raw["population"]["devices"][0], "count": 2}, slow]
    full = run_dict(raw, tiny_dir)
    timing = run_dict({**raw, "learning": "none"}, tiny_dir)
    learned = ["test_accuracy", "test_loss"]
    assert "stragglers" in full.rounds and full.rounds.stragglers.sum() > 0  # the deadline bites
    pd.testing.assert_frame_equal(full.rounds.drop(columns=learned),
                                  timing.rounds.drop(columns=learned))
    pd.testing.assert_frame_equal(full.transfers, timing.transfers)
    pd.testing.assert_frame_equal(full.timeline, timing.timeline)
    assert timing.rounds.test_accuracy.isna().all()
    assert full.rounds.test_accuracy.notna().iloc[-1]


SPLIT_TIMING = [
    {"name": "splitfed", "split": 2},
    {"name": "splitfed", "split": 2, "freeze_device": True,
     "activation_codec": {"kind": "uniform", "bits": 4, "rounding": "stochastic"},
     "gradient_codec": {"kind": "topk", "fraction": 0.1}},
    {"name": "splitfed_v2", "split": 3,
     "activation_codec": {"kind": "uniform", "scheme": "asymmetric", "granularity": "channel"}},
    {"name": "local_loss", "split": 2, "activation_codec": {"kind": "fp16"}},
    {"name": "fedgkt", "split": 2},
    {"name": "ecofed", "split": 2},
    {"name": "ecofed", "split": 2, "replay": "round", "lockstep": True, "period": 3,
     "buffer_cap_bytes": 3000, "eviction": "random"},
]


@pytest.mark.parametrize("method", SPLIT_TIMING,
                         ids=[f"{m['name']}-{i}" for i, m in enumerate(SPLIT_TIMING)])
def test_split_methods_timing_only_has_the_full_runs_clocks_and_bytes(method, tiny_dir):
    """A timing-only split method runs on tensors with shapes and no data (``meta``):
    every message keeps its size (codecs included), so clocks, traffic, energy and
    outcomes are the full run's, under TCP, with uneven batches and a deadline that
    cuts a slow client off."""
    slow = {"profile": "unit_dev", "count": 1,
            "link": {"uplink_mbps": 0.05, "downlink_mbps": 2, "rtt_ms": 40}}
    raw = tiny(**{**UNEVEN, "rounds": 4, "method": method, "network.transport": "tcp",
                  "training.local_epochs": 1})
    raw["population"]["devices"] = [{**raw["population"]["devices"][0], "count": 2}, slow]
    part = run_dict({**raw, "learning": "none"}, tiny_dir).participation  # no deadline yet
    done_s = part.t_end_s - part.groupby("round").t_start_s.transform("min")
    busy = part["round"].isin(done_s.groupby(part["round"]).max().loc[lambda s: s > 0].index)
    by_round = done_s[busy].groupby(part["round"][busy])  # (EcoFed's replay rounds: no work)
    fast_s = by_round.apply(lambda d: d.nlargest(2).iloc[-1]).max()  # the others, at worst
    slow_s = by_round.max().min()  # the slow client, at best
    assert fast_s < slow_s
    raw["population"]["deadline_s"] = float((fast_s + slow_s) / 2)
    full = run_dict(raw, tiny_dir)
    timing = run_dict({**raw, "learning": "none"}, tiny_dir)
    assert full.rounds.stragglers.sum() > 0  # the deadline bites
    learned = [c for c in ("test_accuracy", "test_loss") if c in full.rounds]
    pd.testing.assert_frame_equal(full.rounds.drop(columns=learned),
                                  timing.rounds.drop(columns=learned))
    for name in ("transfers", "timeline", "participation"):
        pd.testing.assert_frame_equal(getattr(full, name), getattr(timing, name), obj=name)
    assert timing.rounds.test_accuracy.isna().all()
    assert timing.manifest["compute_device"] == "meta"


def test_timing_only_refuses_a_period_that_follows_accuracy(tiny_dir):
    raw = tiny(**{"method": {"name": "ecofed", "split": 2, "adaptive": {"window": 2}}})
    path = write_scenario(tiny_dir, raw)
    done = subprocess.run([sys.executable, "-m", "ecofed_sim.cli", "run", str(path),
                           "--timing-only", "--out", str(tiny_dir / "out"), "--quiet"],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {path}: method.adaptive: the replay period follows test accuracy, which a "
        "timing-only run (learning: none) does not measure; set a fixed method.period"]
    assert not (tiny_dir / "out").exists()


def test_slices_are_contiguous_balanced_and_never_empty():
    from ecofed_sim.parallel import slices

    assert slices([1] * 10, 2) == [slice(0, 5), slice(5, 10)]
    assert slices([9, 1, 1, 1], 2) == [slice(0, 1), slice(1, 4)]
    assert slices([5], 4) == [slice(0, 1)]
    cut = slices([3, 1, 4, 1, 5, 9, 2, 6], 3)
    assert [c.start for c in cut] == [0, *[c.stop for c in cut[:-1]]] and cut[-1].stop == 8
    assert len(cut) == 3 and all(c.stop > c.start for c in cut)


def test_two_workers_give_the_serial_runs_tables(tiny_dir):
    """Run on 2 worker processes: every table (and so every accuracy), bit for bit."""
    from ecofed_sim.run import run

    raw = tiny(**{**UNEVEN, "rounds": 3, "population.clients": 5,
                  "population.clients_per_round": 4, "evaluation.every": 1,
                  "evaluation.batch_size": 3})  # 7 test batches, scored in two slices
    raw["population"]["devices"][0]["count"] = 5
    sc = scenario_from_dict(raw, "tiny.yaml")
    serial = run(sc, source="tiny.yaml", base_dir=tiny_dir)
    parallel = run(sc, source="tiny.yaml", base_dir=tiny_dir, workers=2)
    assert parallel.manifest["workers"] == 2
    for name in ("rounds", "transfers", "timeline"):
        pd.testing.assert_frame_equal(getattr(serial, name), getattr(parallel, name))
    assert serial.rounds.test_accuracy.notna().any()


def test_workers_fork_from_a_server_on_linux_and_are_spawned_elsewhere(monkeypatch):
    """Linux: forked from a server that imported the package once (fast to start and to
    end); elsewhere forking after system frameworks load is unsafe, so spawned."""
    from ecofed_sim import parallel

    monkeypatch.setattr(sys, "platform", "linux")
    assert parallel.worker_context().get_start_method() == "forkserver"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert parallel.worker_context().get_start_method() == "spawn"


def test_workers_started_before_inputs_that_fail_to_prepare_are_stopped(tiny_dir):
    """The workers start while the inputs are prepared; if preparing fails, the run's
    one-line error comes out and no worker is left waiting for inputs (nor the run
    hanging on one)."""
    import multiprocessing

    from ecofed_sim.errors import ScenarioError
    from ecofed_sim.run import run

    raw = tiny(**{"data": {"dataset": "mnist", "root": "no_such_folder"}})
    with pytest.raises(ScenarioError, match="data.root"):
        run(scenario_from_dict(raw, "tiny.yaml"), source="tiny.yaml", base_dir=tiny_dir,
            workers=2)
    assert multiprocessing.active_children() == []


def test_a_worker_that_dies_is_named_in_one_line_and_the_cli_writes_nothing(
        tiny_dir, monkeypatch, capsys):
    """A killed worker (out of memory, say) ends the run with the reason, not a hang or
    a pool's traceback; the CLI prints it on one line and exits 1."""
    from ecofed_sim import cli
    from ecofed_sim.errors import WorkerLost
    from ecofed_sim.parallel import TrainerPool

    raw = tiny()
    prep = prepare(scenario_from_dict(raw, "tiny.yaml"), "tiny.yaml", tiny_dir)
    pool = TrainerPool(1)
    pool.start(prep)
    try:
        state = Engine(prep).method.global_model.state_dict()
        assert len(list(pool.trained_states(state, 0, [0], [1]))) == 1  # alive
        for process in list(pool._pool._processes.values()):
            process.kill()
            process.join()
        with pytest.raises(WorkerLost, match="worker process ended abruptly"):
            list(pool.trained_states(state, 0, [0, 1], [1, 1]))
    finally:
        pool.close()

    def dies(args):
        raise WorkerLost

    monkeypatch.setitem(cli.COMMANDS, "run", dies)
    out = tiny_dir / "out"
    assert cli.main(["run", str(write_scenario(tiny_dir, raw)), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: a worker process ended abruptly")
    assert not out.exists()


def test_a_script_without_its_main_guard_gets_the_reason_and_exits(tiny_dir):
    """Workers import the caller's main module: a script that calls ``run(workers=2)``
    outside ``if __name__ == "__main__":`` kills them as they start. The run ends with
    the reason, and the process exits: the run's inputs, which no worker read, are left
    in their queue's pipe, and its thread must not wait for a reader at exit (it did,
    for ever). Two copies of these inputs (53 KB each) overfill a pipe's 64 KB."""
    scenario = write_scenario(tiny_dir, tiny(**{"data.synthetic.train_samples": 4000}))
    script = tiny_dir / "no_guard.py"
    script.write_text(
        "from pathlib import Path\n"
        "from ecofed_sim.run import run\n"
        "from ecofed_sim.scenario import load_scenario\n"
        f"run(load_scenario(Path({str(scenario)!r})), base_dir=Path({str(tiny_dir)!r}), "
        "workers=2)\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, cwd=tiny_dir)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(
        "ecofed_sim.errors.WorkerLost: a worker process ended abruptly")
    assert "__main__" in done.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("shipped, method", [
    ("hierarchy.yaml", {"name": "splitfed", "split": 2}),
    ("async_fedbuff.yaml", {"name": "ecofed", "split": 2})])
def test_split_timing_only_through_edges_and_asynchronous_updates(shipped, method):
    """The shipped hierarchical and FedBuff scenarios, small, with a split method: the
    timing-only run has the full run's clocks, bytes and updates."""
    import yaml

    from ecofed_sim.shipped import SCENARIOS_DIR

    raw = yaml.safe_load((SCENARIOS_DIR / shipped).read_text())
    raw.update(rounds=2, method=method, evaluation={"every": 100})
    raw["data"]["test_samples"] = 4600  # 400 training digits, 20 per client
    full, timing = (run_dict({**raw, "learning": learning}, SCENARIOS_DIR)
                    for learning in ("real", "none"))
    learned = ["test_accuracy", "test_loss"]
    pd.testing.assert_frame_equal(full.rounds.drop(columns=learned),
                                  timing.rounds.drop(columns=learned))
    for name in ("transfers", "timeline", "participation", "updates"):
        pd.testing.assert_frame_equal(getattr(full, name), getattr(timing, name), obj=name)
    assert len(full.transfers) > 0

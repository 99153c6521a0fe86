"""One run of a split method on worker processes: its round is played on meta tensors in
the main process, its kept clients train in the workers, and every table and every
weight is the serial run's, bit for bit (``ecofed_sim.parallel``, ``ecofed_sim.clockless``).
"""

from __future__ import annotations

import logging

import pandas as pd
import pytest
import torch
from conftest import tiny
from helpers import InProcessPool

from ecofed_sim.clockless import ClocklessContext, finish
from ecofed_sim.engine import Engine, score_test_batches
from ecofed_sim.methods import CONFIGS
from ecofed_sim.methods.configs import SplitConfigBase
from ecofed_sim.prepare import prepare
from ecofed_sim.run import run
from ecofed_sim.scenario import scenario_from_dict

SLOW = {"profile": "unit_dev", "count": 1,
        "link": {"uplink_mbps": 0.01, "downlink_mbps": 2, "rtt_ms": 40}}
SPLIT = {"profile": "unit_dev", "count": 2, "split": 3,
         "link": {"uplink_mbps": 1, "downlink_mbps": 2, "latency_ms": 10}}


def _scenario(method: dict, base_dir, **changes):
    """5 clients, all in every round, of three kinds of device: two at the method's split, two
    at split 3 (``per_class_split`` methods), one slow; uneven batches, two local epochs,
    tested every round. The deadline falls between the slow client's finish and the
    others' (taken from a timing-only run), so it is cut off whenever it plays. Three
    test batches (7, 7, 6): with workers, they score them in slices."""
    raw = tiny(**{"data.synthetic.train_samples": 57, "population.clients": 5,
                  "population.clients_per_round": 5, "rounds": 3, "method": method,
                  "evaluation.every": 1, "evaluation.batch_size": 7,
                  "training.local_epochs": 2,
                  "training.batch_size": 4, **changes})
    devices = raw["population"]["devices"]
    splits = CONFIGS[method["name"]].per_class_split and not method.get("freeze_device")
    raw["population"]["devices"] = [{**devices[0], "count": 2}, SLOW,
                                    SPLIT if splits else {**SPLIT, "split": None}]
    fixed = {k: v for k, v in method.items() if k != "adaptive"}  # (timing only: refused)
    part = run(scenario_from_dict({**raw, "learning": "none", "method": fixed}, "tiny.yaml"),
               base_dir=base_dir).participation
    took_s = part.t_end_s - part.groupby("round").t_start_s.transform("min")
    part, took_s = part[took_s > 0], took_s[took_s > 0]  # (EcoFed's replay rounds: idle)
    slow = part.client[took_s.idxmax()]
    fast_s, slow_s = took_s[part.client != slow].max(), took_s[part.client == slow].min()
    assert fast_s < slow_s
    raw["population"]["deadline_s"] = float((fast_s + slow_s) / 2)
    return scenario_from_dict(raw, "tiny.yaml")


TRAIN_APART = [
    {"name": "splitfed", "split": 2,
     "activation_codec": {"kind": "uniform", "bits": 4, "rounding": "stochastic"}},
    {"name": "splitfed", "split": 2, "freeze_device": True},
    {"name": "local_loss", "split": 2, "aux_hidden": [8]},
    {"name": "local_loss", "split": 2, "lockstep": True},
    {"name": "fedgkt", "split": 2},
    {"name": "fedgkt", "split": 2, "mode": "two_phase"},
    {"name": "ecofed", "split": 2},
    {"name": "ecofed", "split": 2, "lockstep": True, "buffer_cap_bytes": 3000,
     "eviction": "random", "replay": "round"},
    {"name": "ecofed", "split": 2, "period": 2,
     "adaptive": {"window": 1, "grow_above": -1.0, "min_period": 1, "max_period": 4}},
]


def _settings(method: dict) -> dict:
    """FedGKT two-phase finds its stored logits again only with batches fixed."""
    return {"training.shuffle": "fixed"} if method.get("mode") == "two_phase" else {}


def _assert_same_weights(a: Engine, b: Engine) -> None:
    ours, theirs = a.method.learnable_state(), b.method.learnable_state()
    assert ours.keys() == theirs.keys()
    for key, value in ours.items():
        assert torch.equal(value, theirs[key]), key


@pytest.mark.parametrize("method", TRAIN_APART,
                         ids=[f"{m['name']}-{i}" for i, m in enumerate(TRAIN_APART)])
def test_kept_clients_trained_apart_give_the_serial_runs_tables_and_weights(method, tiny_dir):
    """Serial, and with the round played on meta tensors and its kept clients trained
    in two slices from the global state: the same tables, bit for bit, and the same
    weights. The deadline cuts the slow client off, so what is kept comes from the
    clocks alone; the pool was asked for exactly the clients the serial run kept."""
    # EcoFed: update, replay, update, replay (the last replays the second update's epochs)
    sc = _scenario(method, tiny_dir, rounds=4 if method["name"] == "ecofed" else 3,
                   **_settings(method))
    prep = prepare(sc, "tiny.yaml", tiny_dir)
    serial, apart = Engine(prep), Engine(prep, pool=InProcessPool(prep))
    assert apart.timing is not apart.method and serial.timing is serial.method
    # all but EcoFed play the next round while the workers train this one
    assert apart.pipelined == (method["name"] != "ecofed") and not serial.pipelined
    for r in range(sc.rounds):
        assert serial.run_round(r) == apart.run_round(r)
        ahead = apart.pipelined and r + 1 < sc.rounds
        assert len(apart.ledger.rounds) == r + 1 + ahead
    ledgers = serial.ledger.frames(), apart.ledger.frames()
    for name in ledgers[0]:
        pd.testing.assert_frame_equal(ledgers[0][name], ledgers[1][name], obj=name)
    _assert_same_weights(serial, apart)
    part, rounds = ledgers[0]["participation"], ledgers[0]["rounds"]
    kept = part[part.outcome == "completed"].groupby("round").client.apply(sorted).tolist()
    assert any(len(k) < 5 for k in kept)  # someone was cut off
    assert rounds.test_accuracy.notna().all()
    assert apart.pool.scored == [3] * sc.rounds  # every round's test batches, apart
    batches = [(0, 7), (7, 14), (14, 20)]  # and each batch's score, in order
    assert (apart.pool.score_test_batches(apart.method.learnable_state(), batches)
            == score_test_batches(serial.method, prep, batches))
    if method.get("mode") == "two_phase":  # and the logits the cut-off client stored
        cut = [[c for c in range(5) if c not in k] for k in kept]
        assert apart.pool.asked == [[("client", c) for c in k] + [("cut", c) for c in d]
                                    for k, d in zip(kept, cut, strict=True)]
        ours, theirs = serial.method.stored, apart.method.stored
        assert ours.keys() == theirs.keys() == set(range(5))
        for client, logits in ours.items():
            assert logits.keys() == theirs[client].keys()
            assert all(torch.equal(v, theirs[client][k]) for k, v in logits.items())
        return
    if method["name"] != "ecofed":
        assert apart.pool.asked == [[("client", c) for c in k] for k in kept]
        return
    # EcoFed: update rounds train (at least) the kept clients; replay rounds replay
    update = rounds.update_round.tolist()
    assert True in update and False in update
    for r, jobs in enumerate(apart.pool.asked):
        assert {kind for kind, _ in jobs} <= {"client" if update[r] else "replay"}
        if update[r]:
            assert set(kept[r]) <= {client for _, client in jobs}


@pytest.mark.parametrize("method", [TRAIN_APART[0], TRAIN_APART[3], TRAIN_APART[5],
                                    TRAIN_APART[6]],
                         ids=["splitfed", "local_loss-lockstep", "fedgkt-two_phase", "ecofed"])
def test_two_worker_processes_give_the_serial_runs_tables(method, tiny_dir):
    """The same through spawned processes: what crosses them (state dicts, EcoFed's
    buffered epochs) arrives whole."""
    sc = _scenario(method, tiny_dir, rounds=4 if method["name"] == "ecofed" else 3,
                   **_settings(method))
    serial = run(sc, source="tiny.yaml", base_dir=tiny_dir)
    parallel = run(sc, source="tiny.yaml", base_dir=tiny_dir, workers=2)
    for name in ("rounds", "transfers", "timeline", "participation", "energy"):
        pd.testing.assert_frame_equal(getattr(serial, name), getattr(parallel, name),
                                      obj=name)
    assert parallel.manifest["workers"] == 2


@pytest.mark.parametrize("method, why", [({"name": "splitfed_v2", "split": 2}, "event order")])
def test_methods_whose_clients_share_state_run_serially(method, why, tiny_dir, caplog):
    """A shared server part learns from every client's work in event order, so
    ``--workers`` runs it serially, says so, and gives the serial run's tables."""
    sc = _scenario(method, tiny_dir, rounds=2)
    serial = run(sc, source="tiny.yaml", base_dir=tiny_dir)
    with caplog.at_level(logging.INFO, logger="ecofed_sim"):
        again = run(sc, source="tiny.yaml", base_dir=tiny_dir, workers=2)
    assert any(why in r.getMessage() and "serially" in r.getMessage()
               for r in caplog.records)
    pd.testing.assert_frame_equal(serial.rounds, again.rounds)
    assert again.manifest["workers"] == 1  # what ran, not what was asked for


def test_trains_apart_is_declared_by_the_methods_that_keep_no_shared_state():
    apart = {name for name, config in CONFIGS.items() if config.model_validate(
        {"name": name, **({"split": 2} if issubclass(config, SplitConfigBase) else {})}
    ).trains_apart()}
    assert apart == {"splitfed", "local_loss", "fedgkt", "ecofed"}
    two_phase = CONFIGS["fedgkt"].model_validate({"name": "fedgkt", "split": 2,
                                                  "mode": "two_phase"})
    assert two_phase.trains_apart()  # its stored logits travel with the jobs


def test_only_methods_whose_clocks_ignore_accuracy_play_ahead_of_their_workers():
    """A method pipelines (plays round r + 1 while round r trains) only if nothing it
    does on test metrics can change its clocks: a new ``observe`` must say otherwise."""
    from ecofed_sim.methods import REGISTRY
    from ecofed_sim.methods.base import Method

    ahead = {name for name, cls in REGISTRY.items() if cls.pipelines}
    assert all(REGISTRY[name].observe is Method.observe for name in ahead)
    assert "ecofed" not in ahead and {"splitfed", "local_loss", "fedgkt"} <= ahead


def test_a_clockless_round_refuses_a_fragment_that_asks_for_the_clock(tiny_dir):
    ctx = ClocklessContext(prepare(_scenario(TRAIN_APART[0], tiny_dir), "tiny.yaml", tiny_dir), 0)

    def waits():
        yield from ctx.compute(None, 0, (), "fwd")
        yield "an event"

    with pytest.raises(RuntimeError, match="yielded 'an event' in a clockless round"):
        finish(waits())
    handle = ctx.server_async(0, (), lambda: torch.ones(2), "server_step")
    assert torch.equal(finish(ctx.wait([handle]))[0], torch.ones(2))
    assert finish(ctx.server_work(0, (), lambda: 7, "server_step")) == 7

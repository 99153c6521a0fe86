"""Asynchronous split FL (local_loss): one shared server part trained in arrival order,
device parts and heads mixed by FedAsync or FedBuff."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny, write_scenario
from helpers import run_dict

from ecofed_sim.async_engine import AsyncEngine
from ecofed_sim.cli import main
from ecofed_sim.methods.base import sgd
from ecofed_sim.prepare import prepare
from ecofed_sim.round_context import RoundContext
from ecofed_sim.scenario import scenario_from_dict
from ecofed_sim.seeding import CODEC

LINK = {"uplink_mbps": 1, "downlink_mbps": 2, "latency_ms": 10}


def _raw(**spec) -> dict:
    raw = tiny(**{"data.synthetic.train_samples": 47, "population.clients": 4,
                  "population.clients_per_round": 4, "training.batch_size": 4,
                  "population.devices": [{"profile": "unit_dev", "count": 4, "link": LINK}],
                  "method": {"name": "local_loss", "split": 3}}, rounds=4)
    raw["asynchronous"] = spec
    return raw


def _engine(raw: dict, tiny_dir) -> AsyncEngine:
    return AsyncEngine(prepare(scenario_from_dict(raw, "tiny.yaml"), "tiny.yaml", tiny_dir))


def test_one_client_at_a_time_with_mixing_one_is_sequential_local_loss_sgd(tiny_dir):
    """Each client trains the device part and head it pulled (the previous client's) on
    its local loss; the shared server part takes every batch's activations in order, with
    one optimiser throughout. Exact."""
    raw = _raw(aggregator="fedasync", mixing=1.0, concurrency=1)
    engine = _engine(raw, tiny_dir)
    for r in range(4):
        engine.run_round(r)
    order = engine.ledger.frames()["updates"][["job", "client"]].to_numpy().tolist()
    assert [job for job, _ in order] == list(range(4))

    ref = _engine(raw, tiny_dir)  # a fresh run's initial model, head and codec
    method, k = ref.method, 3
    shared = method.global_model.part(k).train()
    shared_opt = sgd(shared.parameters(), ref.scenario.training)
    for job, client in order:
        dev = copy.deepcopy(method.global_model.part(0, k)).train()
        aux = copy.deepcopy(method.aux).train()
        opt = sgd([*dev.parameters(), *aux.parameters()], ref.scenario.training)
        ctx = RoundContext(ref, 0, data_round=job)
        for b, (x, y) in enumerate(ctx.batches(client)):
            opt.zero_grad(set_to_none=True)
            act = dev(x)
            F.cross_entropy(aux(act), y).backward()
            opt.step()
            a = method.codec.encode(act, ctx.generator(CODEC, client, b)).decoded
            shared_opt.zero_grad(set_to_none=True)
            F.cross_entropy(shared(a.requires_grad_(True)), y).backward()
            shared_opt.step()
        method.global_model.part(0, k).load_state_dict(dev.state_dict())
        method.aux.load_state_dict(aux.state_dict())
    for got, want in ((engine.method.global_model, method.global_model),
                      (engine.method.aux, method.aux)):
        for key, value in want.state_dict().items():
            assert torch.equal(got.state_dict()[key], value), key


def test_the_shared_server_part_serves_activations_in_arrival_order(tiny_dir):
    raw = _raw(aggregator="fedbuff", buffer_size=2, concurrency=3)
    raw["server"]["workers"] = 1
    raw["population"]["devices"] = [  # uneven links: arrivals interleave
        {"profile": "unit_dev", "count": 2, "link": LINK},
        {"profile": "unit_dev", "count": 2, "link": {**LINK, "uplink_mbps": 0.3}}]
    res = run_dict(raw, tiny_dir)
    acts = res.transfers[res.transfers.kind == "activations"].sort_values("message_id")
    steps = res.timeline[(res.timeline.device == "server")
                         & (res.timeline.state == "compute")].sort_values("t_start_s")
    n = len(steps)
    assert n > 0 and len(set(acts.client.iloc[:n])) > 1
    assert list(steps.client) == list(acts.client.iloc[:n])  # first come, first served
    assert (steps.t_start_s.to_numpy() >= acts.t_end_s.iloc[:n].to_numpy() - 1e-12).all()
    assert (steps.t_start_s.to_numpy()[1:] >= steps.t_end_s.to_numpy()[:-1] - 1e-12).all()
    assert "server_utilisation" in res.rounds and (res.rounds.server_busy_s > 0).all()


def test_same_seed_same_tables_and_staleness(tiny_dir):
    raw = _raw(aggregator="fedbuff", buffer_size=2, concurrency=3)
    a, b = run_dict(raw, tiny_dir), run_dict(raw, tiny_dir)
    for name in ("rounds", "transfers", "timeline", "updates"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    assert a.updates.staleness.max() >= 1
    assert a.rounds.test_accuracy.notna().all()


def test_lockstep_is_refused_asynchronously(tiny_dir, capsys):
    raw = _raw()
    raw["method"]["lockstep"] = True
    path = write_scenario(tiny_dir, raw)
    assert main(["validate", str(path)]) == 2
    assert "asynchronous: clients stream their activations" in capsys.readouterr().err


@pytest.mark.parametrize("fidelity", ["paper"])
def test_paper_fidelity_keeps_asynchronous_clients_streaming(tiny_dir, fidelity):
    sc = scenario_from_dict({**_raw(), "fidelity": fidelity}, "tiny.yaml")
    assert sc.method.lockstep is False


def _ordered(engine, rounds: int) -> list[list[int]]:
    for r in range(rounds):
        engine.run_round(r)
    return engine.ledger.frames()["updates"][["job", "client"]].to_numpy().tolist()


def test_asynchronous_splitfed_v2_is_sequential_split_training(tiny_dir):
    """Concurrency 1, alpha 1: each client trains the previous one's device part with
    gradients from the shared server part (one optimiser for the run). Exact."""
    raw = _raw(aggregator="fedasync", mixing=1.0, concurrency=1)
    raw["method"] = {"name": "splitfed_v2", "split": 3}
    engine = _engine(raw, tiny_dir)
    order = _ordered(engine, 4)
    ref = _engine(raw, tiny_dir)
    method, k = ref.method, 3
    shared = method.global_model.part(k).train()
    shared_opt = sgd(shared.parameters(), ref.scenario.training)
    for job, client in order:
        dev = copy.deepcopy(method.global_model.part(0, k)).train()
        opt = sgd(dev.parameters(), ref.scenario.training)
        ctx = RoundContext(ref, 0, data_round=job)
        for b, (x, y) in enumerate(ctx.batches(client)):
            opt.zero_grad(set_to_none=True)
            act = dev(x)
            a = method.act_codec.encode(act, ctx.generator(CODEC, client, b)).decoded
            shared_opt.zero_grad(set_to_none=True)
            a = a.requires_grad_(True)
            F.cross_entropy(shared(a), y).backward()
            shared_opt.step()
            g = method.grad_codec.encode(a.grad, ctx.generator(CODEC, client, b, 1)).decoded
            act.backward(g)
            opt.step()
        method.global_model.part(0, k).load_state_dict(dev.state_dict())
    for key, value in method.global_model.state_dict().items():
        assert torch.equal(engine.method.global_model.state_dict()[key], value), key


def test_asynchronous_ecofed_trains_only_the_shared_server_part(tiny_dir):
    raw = _raw(aggregator="fedbuff", buffer_size=2, concurrency=2)
    raw["method"] = {"name": "ecofed", "split": 3}
    engine = _engine(raw, tiny_dir)
    start = copy.deepcopy(engine.method.global_model.state_dict())
    order = _ordered(engine, 3)
    assert len(order) == 6
    now = engine.method.global_model.state_dict()
    device_keys = [k for k in start if int(k.split(".")[1]) < 3]
    assert device_keys and all(torch.equal(now[k], start[k]) for k in device_keys)
    assert any(not torch.equal(now[k], start[k]) for k in now if k not in device_keys)


@pytest.mark.parametrize("method", [{"name": "splitfed_v2", "split": 3},
                                    {"name": "ecofed", "split": 3}], ids=lambda m: m["name"])
def test_asynchronous_split_methods_are_deterministic(tiny_dir, method):
    raw = _raw(aggregator="fedbuff", buffer_size=2, concurrency=3)
    raw["method"] = method
    a, b = run_dict(raw, tiny_dir), run_dict(raw, tiny_dir)
    for name in ("rounds", "transfers", "timeline", "updates"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))

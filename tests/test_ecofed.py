"""EcoFed: bytes, frozen device part, replay buffer, period oracle, accuracy smoke test."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny
from helpers import assert_same_state, final_state, run_dict

from ecofed_sim.engine import Engine
from ecofed_sim.prepare import prepare
from ecofed_sim.replay_buffer import ReplayBuffer
from ecofed_sim.scenario import load_scenario, scenario_from_dict

ECOFED = {"name": "ecofed", "split": 4}
ACT_ELEMS = 16 * 2 * 2  # small_cnn on 1x8x8, after pool2


def _engine(raw, base_dir) -> Engine:
    return Engine(prepare(scenario_from_dict(raw, "tiny.yaml"), "tiny.yaml", base_dir))


def test_bytes_update_rounds_only_and_nothing_down(tiny_dir):
    res = run_dict(tiny(rounds=4, method=ECOFED), tiny_dir)
    rounds = res.rounds
    assert rounds.update_round.tolist() == [True, False, True, False]
    # per batch of 10: int8 codes (1 byte each) + one fp32 scale, and 10 int64 labels
    per_client = 2 * (10 * ACT_ELEMS + 4) + 2 * 10 * 8
    assert rounds.bytes_up.tolist() == [2 * per_client, 0, 2 * per_client, 0]
    assert rounds.bytes_down.tolist() == [0, 0, 0, 0]
    assert set(res.transfers.kind) == {"activations", "labels"}
    assert (res.transfers.direction == "up").all()
    replay = res.timeline[res.timeline["round"] == 1]
    assert set(replay[replay.device != "server"].state) == {"idle"}
    on_server = replay[replay.device == "server"]
    assert (on_server[on_server.state == "compute"].what == "replay_step").all()
    assert set(on_server.state) == {"compute", "hosting"}  # each replay holds a copy
    # the buffer holds both clients' latest epoch: codes + scales + labels
    assert rounds.buffer_bytes.tolist() == [2 * per_client] * 4


def test_frozen_device_part_is_bit_identical(tiny_dir):
    engine = _engine(tiny(rounds=3, method=ECOFED), tiny_dir)
    before = {k: v.clone() for k, v in engine.method.frozen.state_dict().items()}
    server_before = {k: v.clone() for k, v in
                     engine.method.global_model.part(4).state_dict().items()}
    for r in range(3):
        engine.run_round(r)
    after = engine.method.frozen.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    server_after = engine.method.global_model.part(4).state_dict()
    assert any(not torch.equal(server_before[k], server_after[k]) for k in server_before)


def _final(raw, base_dir):
    engine = _engine(raw, base_dir)
    for r in range(engine.scenario.rounds):
        engine.run_round(r)
    return engine.method.global_model.state_dict()


def test_period_one_fp32_equals_split_training_with_frozen_device(tiny_dir):
    eco = _final(tiny(rounds=3, method={**ECOFED, "period": 1,
                                        "activation_codec": {"kind": "fp32"}}), tiny_dir)
    frozen_split = _final(tiny(rounds=3, method={"name": "splitfed", "split": 4,
                                                 "freeze_device": True}), tiny_dir)
    for key in eco:
        torch.testing.assert_close(eco[key], frozen_split[key], rtol=1e-5, atol=1e-6)


def test_replay_rounds_change_the_model_and_quantization_matters(tiny_dir):
    fp32 = _final(tiny(rounds=2, method={**ECOFED, "activation_codec": {"kind": "fp32"}}),
                  tiny_dir)
    int8 = _final(tiny(rounds=2, method=ECOFED), tiny_dir)
    assert any(not torch.equal(fp32[k], int8[k]) for k in fp32)


def test_buffer_never_exceeds_its_cap_in_a_run(tiny_dir):
    per_client = 2 * (10 * ACT_ELEMS + 4) + 2 * 10 * 8
    raw = tiny(rounds=6, method={**ECOFED, "buffer_cap_bytes": per_client + 10},
               **{"population.clients": 4, "population.clients_per_round": 2,
                  "population.devices.0.count": 4, "data.synthetic.train_samples": 80})
    res = run_dict(raw, tiny_dir)
    assert (res.rounds.buffer_bytes <= per_client + 10).all()
    assert (res.rounds.buffer_bytes == per_client).all()


def test_replay_buffer_eviction_and_draws():
    class S:  # a stored batch of a given size
        def __init__(self, n):
            self.nbytes = n

    y = torch.zeros(1, dtype=torch.long)  # 8 label bytes per entry
    buf = ReplayBuffer(cap_bytes=100, eviction="oldest")
    for client in range(5):
        buf.put(client, [(S(22), y)])  # 30 bytes each
        assert buf.nbytes <= 100
    assert sorted(buf.entries) == [2, 3, 4]
    buf.put(9, [(S(200), y)])
    assert buf.dropped == 1 and 9 not in buf.entries
    rnd = ReplayBuffer(cap_bytes=100, eviction="random")
    gen = torch.Generator().manual_seed(0)
    for client in range(8):
        rnd.put(client, [(S(22), y)], gen)
    assert rnd.nbytes <= 100 and 7 in rnd.entries and sorted(rnd.entries) != [5, 6, 7]
    drawn = buf.draw(3, torch.Generator().manual_seed(1))
    assert sorted(drawn) == [2, 3, 4]  # without replacement when enough are stored
    assert len(buf.draw(5, torch.Generator().manual_seed(1))) == 5
    assert buf.draw(2, torch.Generator(), among=[7, 8]) == []


def test_a_buffer_filled_on_shapes_mirrors_with_the_real_epochs():
    """``mirror``: the played buffer's entries, order and counters; entries stored after
    ``since`` puts take the fresh epochs, the rest keep their own."""
    class S:
        def __init__(self, n):
            self.nbytes = n

    y = torch.zeros(1, dtype=torch.long)
    real, played = ReplayBuffer(cap_bytes=70), ReplayBuffer(cap_bytes=70)
    for buf in (real, played):
        buf.put(1, [(S(22), y)])
        buf.put(2, [(S(22), y)])
    since = played.puts
    played.put(3, [(S(22), y)])  # evicts 1 (oldest)
    played.put(2, [(S(12), y)])  # 2 again, smaller
    new3, new2 = [("three", y)], [("two", y)]
    old2 = real.entries[2].batches
    real.mirror(played, since, {3: new3, 2: new2})
    assert list(real.entries) == list(played.entries) == [3, 2]
    assert real.entries[3].batches is new3 and real.entries[2].batches is new2
    assert real.entries[2].batches is not old2 and real.nbytes == played.nbytes == 50
    assert real.puts == played.puts == 4 and real.dropped == played.dropped
    real.mirror(played, played.puts, {})  # nothing stored since: each keeps its epoch
    assert real.entries[3].batches is new3


def test_adaptive_period_grows_while_accuracy_gains(tiny_dir):
    raw = tiny(rounds=6, method={**ECOFED, "period": 1, "adaptive": {
        "window": 1, "grow_above": -1.0, "shrink_below": -2.0, "max_period": 4}})
    res = run_dict(raw, tiny_dir)
    # no gain is measurable after round 0 (window 1); then the period doubles to its cap
    assert res.rounds.period.tolist() == [1, 2, 4, 4, 4, 4]
    # an update when rounds since the last update reach the period in force
    assert res.rounds.update_round.tolist() == [True, True, False, False, False, True]


def test_adaptive_period_shrinks_when_gains_stall_and_stops_at_min_period(tiny_dir):
    """Every gain is below shrink_below (10: never reached) and above grow_above is
    impossible (10): from 8 the period halves each evaluated round after the first, down
    to min_period 2 and no lower."""
    raw = tiny(rounds=6, method={**ECOFED, "period": 8, "adaptive": {
        "window": 1, "grow_above": 10.0, "shrink_below": 10.0, "min_period": 2,
        "max_period": 8}})
    res = run_dict(raw, tiny_dir)
    assert res.rounds.period.tolist() == [8, 4, 2, 2, 2, 2]
    # round 0 updates; a round updates when the rounds since the last update reach the
    # period in force at its start (the one reported for the round before): round 1: 1 < 8,
    # round 2: 2 < 4, round 3: 3 >= 2, round 4: 1 < 2, round 5: 2 >= 2
    assert res.rounds.update_round.tolist() == [True, False, False, True, False, True]


def test_replay_from_this_rounds_clients_only(tiny_dir):
    raw = tiny(rounds=3, method={**ECOFED, "replay": "round"},
               **{"population.clients": 4, "population.clients_per_round": 2,
                  "population.devices.0.count": 4, "data.synthetic.train_samples": 80})
    engine = _engine(raw, tiny_dir)
    engine.run_round(0)
    engine.method.begin_round(1, [0, 1, 2, 3])
    assert set(engine.method.replay_targets) == set(engine.method.buffer.entries)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accuracy_pretrained_beats_random_frozen(seed, tmp_path, monkeypatch):
    """Embedded digits, small_cnn split after fc1 (device: both conv blocks and the 24-wide
    FC). Measured margins of pretrained (public split, 3 epochs) over random frozen at
    seeds 0-3: 0.527, 0.494, 0.642, 0.515; assert about half the smallest."""
    monkeypatch.setenv("ECOFED_SIM_CACHE", str(tmp_path))
    accuracy = {}
    for source in ("public_split", "none"):
        sc = load_scenario("scenarios/quickstart.yaml", [
            "method={name: ecofed, split: 6}", "rounds=8", "population.clients_per_round=5",
            "training.lr=0.02", f"seed={seed}", f"pretrain.source={source}",
            "pretrain.epochs=3"])
        engine = Engine(prepare(sc, "quickstart.yaml"))
        for r in range(sc.rounds):
            row = engine.run_round(r)
        accuracy[source] = row["test_accuracy"]
    assert accuracy["public_split"] - accuracy["none"] >= 0.25, accuracy


def test_frozen_cache_reuses_with_fixed_order_and_keeps_results(tiny_dir):
    raw = tiny(rounds=4, method={**ECOFED, "period": 1}, **{"training.shuffle": "fixed"})
    engine = _engine(raw, tiny_dir)
    rows = [engine.run_round(r) for r in range(4)]
    cache = engine.method.cache
    assert cache.misses == 2 * 2 + 1  # 2 clients x 2 batches + 1 test batch, then hits only
    assert cache.hits == 3 * 2 * 2 + 3
    no_reuse = _engine(tiny(rounds=4, method={**ECOFED, "period": 1, "reuse_frozen": False},
                            **{"training.shuffle": "fixed"}), tiny_dir)
    rows_no = [no_reuse.run_round(r) for r in range(4)]
    assert [r["test_accuracy"] for r in rows] == [r["test_accuracy"] for r in rows_no]
    assert [r["sim_time_s"] for r in rows] == [r["sim_time_s"] for r in rows_no]
    assert math.isclose(rows[-1]["test_loss"], rows_no[-1]["test_loss"], rel_tol=1e-6)


def test_lockstep_waits_for_each_server_step_and_its_release_message(tiny_dir):
    """One client, 20 samples (2 batches of 10), split 4, period 1. Per batch: frozen
    forward 4 x 1 ms; activation (10x16x2x2 int8 = 640 B + one 4 B scale) and labels
    (80 B) up at 1 Mbit/s after 10 ms; the server step (3 units, 0.3 ms each) 0.9 ms; the
    32-byte release down at 2 Mbit/s after 10 ms. Nothing else moves (frozen device
    part, no weights). What is learned is the same as streaming."""
    one = {"population.clients": 1, "population.clients_per_round": 1,
           "population.devices.0.count": 1, "data.synthetic.train_samples": 20, "rounds": 1}
    lock = {**ECOFED, "period": 1, "lockstep": True}
    res = run_dict(tiny(method=lock, **one), tiny_dir)
    per_batch = (0.004 + 0.010 + (644 + 80) * 8 / 1e6 + 0.0009 + 0.010 + 32 * 8 / 2e6)
    assert res.rounds.round_time_s.iloc[0] == pytest.approx(2 * per_batch, rel=1e-12)
    control = res.transfers[res.transfers.kind == "control"]
    assert control.payload_bytes.tolist() == [32, 32]
    streamed = {**lock, "lockstep": False}
    assert_same_state(final_state(tiny(method=lock, **one), tiny_dir),
                      final_state(tiny(method=streamed, **one), tiny_dir))


def test_replay_rounds_can_carry_the_reference_codes_control_messages(tiny_dir):
    """Period 2: round 1 is a replay round. With 32-byte control messages, 3 per batch
    (up, down, up), each of the 2 clients' 2 batches trades 64 bytes up and 32 down; with
    the default (none) a replay round moves nothing."""
    method = {**ECOFED, "period": 2}
    quiet = run_dict(tiny(method=method), tiny_dir)
    assert quiet.rounds.bytes_up.iloc[1] == 0 and quiet.rounds.bytes_down.iloc[1] == 0
    chatty = run_dict(tiny(method={**method, "replay_control_bytes": 32}), tiny_dir)
    replay = chatty.transfers[chatty.transfers["round"] == 1]
    assert (replay.kind == "control").all()
    assert replay.groupby("direction").payload_bytes.sum().to_dict() == {
        "up": 2 * 2 * 64, "down": 2 * 2 * 32}
    assert chatty.rounds.round_time_s.iloc[1] > quiet.rounds.round_time_s.iloc[1]
    assert chatty.rounds.test_accuracy.tolist() == quiet.rounds.test_accuracy.tolist()

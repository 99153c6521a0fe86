"""Local-loss DPFL and FedGKT: byte ledgers in closed form, and what they learn."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny
from helpers import assert_same_state, final_state, run_dict

FP32, INT64 = 4, 8
ACT = 16 * 2 * 2  # small_cnn on 1x8x8 after pool2
DEVICE_PARAMS = 80 + 16 + 1168 + 32
AUX_PARAMS = ACT * 2 + 2  # one linear layer: flattened activation -> 2 classes
SAMPLES = 2 * 20  # 2 clients x 20 samples per round


def test_local_loss_bytes_and_no_waiting(tiny_dir):
    res = run_dict(tiny(rounds=2, method={"name": "local_loss", "split": 4}), tiny_dir)
    row = res.rounds.iloc[0]
    weights = 2 * (DEVICE_PARAMS + AUX_PARAMS) * FP32
    assert row.down_weights_bytes == row.up_weights_bytes == weights
    assert row.up_activations_bytes == SAMPLES * ACT * FP32
    assert row.up_labels_bytes == SAMPLES * INT64
    assert row.bytes_down == weights  # nothing per batch comes down
    assert set(res.transfers.kind) == {"weights", "activations", "labels"}


def test_local_loss_hidden_head_and_int8_activations(tiny_dir):
    method = {"name": "local_loss", "split": 4, "aux_hidden": [5],
              "activation_codec": {"kind": "uniform", "bits": 4, "scheme": "unsigned"}}
    row = run_dict(tiny(rounds=1, method=method), tiny_dir).rounds.iloc[0]
    aux = ACT * 5 + 5 + 5 * 2 + 2
    assert row.down_weights_bytes == 2 * (DEVICE_PARAMS + aux) * FP32
    assert row.up_activations_bytes == 4 * (10 * ACT // 2 + 4)  # 4 batches, 4-bit codes


def test_fedgkt_bytes(tiny_dir):
    res = run_dict(tiny(rounds=1, method={"name": "fedgkt", "split": 4}), tiny_dir)
    row = res.rounds.iloc[0]
    assert row.up_logits_bytes == row.down_logits_bytes == SAMPLES * 2 * FP32
    assert row.up_activations_bytes == SAMPLES * ACT * FP32
    assert "down_gradients_bytes" not in res.rounds


def test_splitfed_codecs_shrink_activations_and_gradients(tiny_dir):
    method = {"name": "splitfed", "split": 4, "activation_codec": {"kind": "uniform"},
              "gradient_codec": {"kind": "fp16"}}
    row = run_dict(tiny(rounds=1, method=method), tiny_dir).rounds.iloc[0]
    assert row.up_activations_bytes == 4 * (10 * ACT + 4)
    assert row.down_gradients_bytes == SAMPLES * ACT * 2


def test_aux_methods_learn(tiny_dir):
    bigger = {"data.synthetic.train_samples": 400, "data.synthetic.test_samples": 200}
    for name in ("local_loss", "fedgkt"):
        res = run_dict(tiny(rounds=3, method={"name": name, "split": 4}, **bigger), tiny_dir)
        assert res.rounds.test_accuracy.iloc[-1] >= 0.85, name


def test_local_loss_lockstep_moves_the_backward_after_the_release(tiny_dir):
    """One client, 2 batches of 10, split 4 (the head: one linear layer on the 16x2x2
    activation, priced by FLOPs). Streaming: device step, then the upload; lockstep: the
    forward, the upload, the server's step, the 32-byte release, then the backward.
    Lockstep therefore adds per batch exactly the server step and the release message,
    and learns the same."""
    one = {"population.clients": 1, "population.clients_per_round": 1,
           "population.devices.0.count": 1, "data.synthetic.train_samples": 20, "rounds": 1}
    method = {"name": "local_loss", "split": 4}
    streamed = run_dict(tiny(method=method, **one), tiny_dir)
    lock = run_dict(tiny(method={**method, "lockstep": True}, **one), tiny_dir)
    extra_per_batch = 0.0009 + 0.010 + 32 * 8 / 2e6  # server step, then release down
    # streaming ends with the last server step (0.9 ms) after the last upload
    assert lock.rounds.round_time_s.iloc[0] == pytest.approx(
        streamed.rounds.round_time_s.iloc[0] + 2 * extra_per_batch - 0.0009, rel=1e-9)
    assert_same_state(final_state(tiny(method=method, **one), tiny_dir),
                      final_state(tiny(method={**method, "lockstep": True}, **one), tiny_dir))


def test_fedgkt_two_phase_moves_the_same_bytes_but_learns_and_times_otherwise(tiny_dir):
    """Bytes per round equal the lock-step variant's; the device's local epoch runs before
    any traffic (so the first upload waits for every local step), and the two variants
    learn different models."""
    lock = {"name": "fedgkt", "split": 4}
    two = {**lock, "mode": "two_phase"}
    fixed = {"training.shuffle": "fixed", "rounds": 2}
    a, b = run_dict(tiny(method=lock, **fixed), tiny_dir), run_dict(tiny(method=two, **fixed),
                                                                     tiny_dir)
    cols = [c for c in a.rounds if c.endswith("_bytes")]
    assert a.rounds[cols].equals(b.rounds[cols])
    ups = b.transfers[(b.transfers["round"] == 0) & (b.transfers.kind == "activations")]
    steps = b.timeline[(b.timeline["round"] == 0) & (b.timeline.what == "local_step")]
    for client, first_up in ups.groupby("client").t_start_s.min().items():
        assert (steps[steps.client == client].t_end_s <= first_up + 1e-12).all()
    sa = final_state(tiny(method=lock, **fixed), tiny_dir)
    sb = final_state(tiny(method=two, **fixed), tiny_dir)
    assert any(not torch.equal(sa[k], sb[k]) for k in sa)


def test_fedgkt_two_phase_distils_from_the_server_logits_stored_last_round(tiny_dir,
                                                                          monkeypatch):
    """Round 0 has no stored logits (cross-entropy alone); in round 1 every local batch
    finds the server's logits for its exact composition (fixed data order)."""
    from ecofed_sim.methods import fedgkt

    calls = []
    real = fedgkt.kd_loss
    monkeypatch.setattr(fedgkt, "kd_loss", lambda s, t, temp: calls.append(len(s)) or real(
        s, t, temp))
    raw = tiny(method={"name": "fedgkt", "split": 4, "mode": "two_phase"},
               **{"training.shuffle": "fixed", "rounds": 1})
    run_dict(raw, tiny_dir)
    server_only = len(calls)  # round 0: the server's distillation only, 2 clients x 2
    assert server_only == 4
    calls.clear()
    run_dict({**raw, "rounds": 2}, tiny_dir)
    assert len(calls) == 4 + 4 + 4  # round 1 adds the devices' 4 local batches

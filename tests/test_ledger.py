"""The byte ledger equals closed-form formulas from tensor shapes and dtypes."""

from __future__ import annotations

import math

from conftest import tiny
from helpers import run_dict

from ecofed_sim.models import build_model, layer_stats, state_bytes

FP32, INT64 = 4, 8


def _model(raw):
    shape = tuple(raw["data"]["synthetic"]["shape"])
    model = build_model("small_cnn", shape, raw["data"]["synthetic"]["classes"])
    return model, layer_stats(model, shape)


def test_fedavg_bytes_closed_form(tiny_dir):
    raw = tiny(rounds=3, **{"population.clients": 4, "population.clients_per_round": 3,
                            "population.devices.0.count": 4})
    res = run_dict(raw, tiny_dir)
    model, _ = _model(raw)
    model_bytes = sum(p.numel() for p in model.parameters()) * FP32
    assert state_bytes(model) == model_bytes  # no buffers: BatchNorm keeps no statistics
    per_round = 3 * model_bytes
    assert res.rounds.bytes_up.tolist() == [per_round] * 3
    assert res.rounds.bytes_down.tolist() == [per_round] * 3
    assert res.rounds.cum_bytes.tolist() == [2 * per_round * r for r in (1, 2, 3)]
    assert set(res.transfers.kind) == {"weights"}


def test_splitfed_bytes_closed_form(tiny_dir):
    split = 4
    raw = tiny(rounds=2, method={"name": "splitfed", "split": split},
               **{"training.batch_size": 8})
    res = run_dict(raw, tiny_dir)
    model, stats = _model(raw)
    device_bytes = sum(p.numel() for p in model.part(0, split).parameters()) * FP32
    act_per_sample = math.prod(stats[split - 1].out_shape) * FP32
    samples = 2 * 20  # 2 clients x 20 samples, every sample once per round
    row = res.rounds.iloc[0]
    assert row.up_activations_bytes == samples * act_per_sample
    assert row.up_labels_bytes == samples * INT64
    assert row.down_gradients_bytes == samples * act_per_sample
    assert row.up_weights_bytes == row.down_weights_bytes == 2 * device_bytes
    assert row.bytes_up == 2 * device_bytes + samples * (act_per_sample + INT64)
    # 20 samples at batch 8 = batches of 8, 8, 4: one activation message per batch
    acts = res.transfers[(res.transfers["round"] == 0) & (res.transfers.kind == "activations")]
    assert sorted(acts.payload_bytes.tolist()) == sorted(
        [b * act_per_sample for b in (8, 8, 4)] * 2)

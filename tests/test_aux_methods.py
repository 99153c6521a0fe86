"""Local-loss DPFL and FedGKT: byte ledgers in closed form, and what they learn."""

from __future__ import annotations

from conftest import tiny
from helpers import run_dict

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

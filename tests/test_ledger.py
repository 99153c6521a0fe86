"""The byte ledger equals closed-form formulas from tensor shapes and dtypes."""

from __future__ import annotations

import math

import pytest
from conftest import tiny
from helpers import run_dict

from ecofed_sim.models import build_model, layer_stats, state_bytes

FP32, INT64 = 4, 8


def _model(raw, width: float = 1.0):
    shape = tuple(raw["data"]["synthetic"]["shape"])
    model = build_model("small_cnn", shape, raw["data"]["synthetic"]["classes"], width)
    return model, layer_stats(model, shape)


@pytest.mark.parametrize("width", [1.0, 0.5])
def test_fedavg_bytes_closed_form(tiny_dir, width):
    raw = tiny(rounds=3, **{"population.clients": 4, "population.clients_per_round": 3,
                            "population.devices.0.count": 4, "model.width": width})
    res = run_dict(raw, tiny_dir)
    model, _ = _model(raw, width)
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


# The ledger on its own, fed by hand: every row and total worked out on paper.

def _power(idle, compute, transmit, receive):
    from ecofed_sim.profiles import PowerW

    return PowerW(idle=idle, compute=compute, transmit=transmit, receive=receive)


def test_a_message_is_one_row_per_kind_sharing_an_id_and_one_span():
    from ecofed_sim.ledger import Ledger

    led = Ledger()
    led.transfer(0, "d1", 7, "up", {"activations": 100, "labels": 8}, 1.0, 2.5)
    led.transfer(0, "d1", 7, "down", {"gradients": 50.0}, 2.5, 3.0)
    assert led.transfers == [
        {"round": 0, "message_id": 0, "t_start_s": 1.0, "t_end_s": 2.5, "client": 7,
         "device": "d1", "direction": "up", "kind": "activations", "payload_bytes": 100},
        {"round": 0, "message_id": 0, "t_start_s": 1.0, "t_end_s": 2.5, "client": 7,
         "device": "d1", "direction": "up", "kind": "labels", "payload_bytes": 8},
        {"round": 0, "message_id": 1, "t_start_s": 2.5, "t_end_s": 3.0, "client": 7,
         "device": "d1", "direction": "down", "kind": "gradients", "payload_bytes": 50}]
    assert type(led.transfers[2]["payload_bytes"]) is int
    assert led.timeline == [
        {"round": 0, "device": "d1", "client": 7, "state": "upload",
         "what": "activations+labels", "t_start_s": 1.0, "t_end_s": 2.5},
        {"round": 0, "device": "d1", "client": 7, "state": "download", "what": "gradients",
         "t_start_s": 2.5, "t_end_s": 3.0}]
    led.participant(0, 7, "d1", "completed", 1.0, 3.0)
    assert led.participation == [{"round": 0, "client": 7, "device": "d1",
                                  "outcome": "completed", "t_start_s": 1.0, "t_end_s": 3.0}]


def test_idle_spans_fill_each_listed_devices_gaps_in_this_round_only():
    from ecofed_sim.ledger import Ledger

    led = Ledger()
    led.span(0, "a", 1, "compute", "train", 0.0, 9.0)  # an earlier round's span
    led.close_round(0, 0.0, 9.0, {}, {})
    led.span(1, "a", 1, "compute", "train", 11.0, 12.0)
    led.span(1, "a", 1, "compute", "train", 11.5, 13.0)  # overlaps the first
    led.span(1, "a", 1, "upload", "weights", 14.0, 15.0)
    led.span(1, "c", 2, "compute", "train", 10.0, 16.0)  # not listed: left alone
    led.idle_spans(1, ["a", "b"], 10.0, 16.0)
    idle = [(r["device"], r["t_start_s"], r["t_end_s"]) for r in led.timeline
            if r["state"] == "idle"]
    assert idle == [("a", 10.0, 11.0), ("a", 13.0, 14.0), ("a", 15.0, 16.0), ("b", 10.0, 16.0)]
    assert all(r["client"] == -1 and r["what"] == "wait" and r["round"] == 1
               for r in led.timeline if r["state"] == "idle")
    led.idle_spans(1, ["c"], 10.0, 16.0)  # busy throughout: no idle span
    assert not [r for r in led.timeline if r["device"] == "c" and r["state"] == "idle"]


def test_round_rows_sum_this_rounds_bytes_by_direction_and_kind():
    from ecofed_sim.ledger import Ledger

    led = Ledger()
    led.transfer(0, "d", 0, "down", {"weights": 40}, 0.0, 1.0)
    led.transfer(0, "d", 0, "up", {"weights": 30, "labels": 2}, 1.0, 2.0)
    led.transfer(0, "d", 1, "up", {"weights": 30}, 1.0, 2.5)
    row0 = led.close_round(0, 0.0, 2.5, {"selected": 2, "completed": 2}, {"test_accuracy": .5})
    assert row0 == {"round": 0, "sim_time_s": 2.5, "round_time_s": 2.5, "bytes_up": 62,
                    "bytes_down": 40, "cum_bytes": 102, "test_accuracy": .5, "selected": 2,
                    "completed": 2, "down_weights_bytes": 40, "up_weights_bytes": 60,
                    "up_labels_bytes": 2}
    led.transfer(1, "d", 0, "up", {"activations": 5}, 3.0, 4.0)
    row1 = led.close_round(1, 2.5, 4.0, {}, {})
    assert (row1["bytes_up"], row1["bytes_down"], row1["cum_bytes"]) == (5, 0, 107)
    assert row1["round_time_s"] == 1.5 and row1["up_activations_bytes"] == 5
    assert "up_weights_bytes" not in row1 and "energy_j" not in row1  # no power: no energy
    led.transfer(2, "d", 0, "down", {"gradients": 9}, 4.0, 5.0)
    led.close_round(2, 4.0, 5.0, {}, {"buffer_bytes": 3.0})
    rounds = led.frames()["rounds"]
    assert rounds.up_weights_bytes.tolist() == [60, 0, 0]  # absent in a round: 0, not NaN
    assert rounds.up_activations_bytes.tolist() == [0, 5, 0]
    assert rounds.down_gradients_bytes.tolist() == [0, 0, 9]
    assert rounds.up_weights_bytes.dtype == rounds.down_gradients_bytes.dtype == "int64"
    assert rounds.test_accuracy.isna().tolist() == [False, True, True]  # metrics left alone
    assert rounds.buffer_bytes.isna().tolist() == [True, True, False]  # even named *_bytes
    assert led.frames()["transfers"].message_id.tolist() == [0, 1, 1, 2, 3, 4]


def test_energy_per_device_and_round_from_its_spans():
    from ecofed_sim.ledger import Ledger

    led = Ledger(power={"a": _power(1.0, 10.0, 5.0, 2.0), "b": _power(0.5, 4.0, 3.0, 1.0)})
    led.span(0, "a", 0, "compute", "train", 0.0, 2.0)  # 20 J
    led.transfer(0, "a", 0, "up", {"weights": 1}, 2.0, 3.0)  # 5 J
    led.span(0, "a", -1, "idle", "wait", 3.0, 5.0)  # 2 J
    led.span(0, "b", 1, "download", "weights", 0.0, 4.0)  # 4 J
    led.span(0, "b", 1, "offline", "gone", 4.0, 5.0)  # nothing
    led.span(0, "z", 2, "compute", "train", 0.0, 5.0)  # no power figures: not counted
    row0 = led.close_round(0, 0.0, 5.0, {}, {})
    assert (row0["energy_j"], row0["cum_energy_j"]) == (31.0, 31.0)
    assert led.frames()["energy"].to_dict("records") == [
        {"round": 0, "device": "a", "compute_j": 20.0, "transmit_j": 5.0, "receive_j": 0.0,
         "idle_j": 2.0, "energy_j": 27.0},
        {"round": 0, "device": "b", "compute_j": 0.0, "transmit_j": 0.0, "receive_j": 4.0,
         "idle_j": 0.0, "energy_j": 4.0}]
    led.span(1, "b", 1, "idle", "wait", 5.0, 7.0)  # 1 J
    row1 = led.close_round(1, 5.0, 7.0, {}, {})
    assert (row1["energy_j"], row1["cum_energy_j"]) == (1.0, 32.0)
    assert led.frames()["energy"].device.tolist() == ["a", "b", "b"]


def test_frames_have_fixed_columns_even_when_empty():
    from ecofed_sim.ledger import Ledger

    led = Ledger()
    led.close_round(0, 0.0, 1.0, {}, {})
    frames = led.frames()
    assert list(frames["transfers"].columns) == [
        "round", "message_id", "t_start_s", "t_end_s", "client", "device", "direction",
        "kind", "payload_bytes"]
    assert list(frames["timeline"].columns) == [
        "round", "device", "client", "state", "what", "t_start_s", "t_end_s"]
    assert list(frames["energy"].columns) == [
        "round", "device", "compute_j", "transmit_j", "receive_j", "idle_j", "energy_j"]
    assert list(frames["participation"].columns) == [
        "round", "client", "device", "outcome", "t_start_s", "t_end_s"]
    assert all(len(frames[k]) == 0 for k in ("transfers", "timeline", "energy",
                                              "participation"))
    full = Ledger(power={"d": _power(1.0, 1.0, 1.0, 1.0)})
    full.transfer(0, "d", 3, "up", {"weights": 8}, 0.0, 1.0)
    full.participant(0, 3, "d", "completed", 0.0, 1.0)
    full.close_round(0, 0.0, 1.0, {}, {})
    filled = full.frames()
    assert filled["transfers"].to_dict("records") == [
        {"round": 0, "message_id": 0, "t_start_s": 0.0, "t_end_s": 1.0, "client": 3,
         "device": "d", "direction": "up", "kind": "weights", "payload_bytes": 8}]
    assert filled["timeline"].to_dict("records") == [
        {"round": 0, "device": "d", "client": 3, "state": "upload", "what": "weights",
         "t_start_s": 0.0, "t_end_s": 1.0}]
    assert filled["energy"].to_dict("records") == [
        {"round": 0, "device": "d", "compute_j": 0.0, "transmit_j": 1.0, "receive_j": 0.0,
         "idle_j": 0.0, "energy_j": 1.0}]
    assert filled["participation"].to_dict("records") == [
        {"round": 0, "client": 3, "device": "d", "outcome": "completed", "t_start_s": 0.0,
         "t_end_s": 1.0}]
    assert frames["rounds"].to_dict("records") == [
        {"round": 0, "sim_time_s": 1.0, "round_time_s": 1.0, "bytes_up": 0, "bytes_down": 0,
         "cum_bytes": 0}]


def test_sealed_rounds_and_open_rows_make_one_table_in_order():
    """Each closed round's rows become a chunk; the tables are the chunks and the rows of
    the round still open, in order, with the dtypes one table of every row would have
    (int times in one round and float times in another give a float column)."""
    from ecofed_sim.ledger import Ledger

    led = Ledger()
    led.transfer(0, "a", 0, "down", {"weights": 40}, 0, 1)  # int times: SimPy starts at 0
    led.participant(0, 0, "a", "completed", 0, 1)
    led.close_round(0, 0, 1, {}, {})
    assert led.transfers == led.timeline == led.participation == []  # sealed
    led.transfer(1, "b", 1, "up", {"weights": 30, "labels": 2}, 1.5, 2.5)
    led.close_round(1, 1, 2.5, {}, {})
    led.span(2, "a", 0, "compute", "train", 2.5, 3.0)  # round 2 still open
    frames = led.frames()
    transfers = frames["transfers"]
    assert transfers.to_dict("records") == [
        {"round": 0, "message_id": 0, "t_start_s": 0.0, "t_end_s": 1.0, "client": 0,
         "device": "a", "direction": "down", "kind": "weights", "payload_bytes": 40},
        {"round": 1, "message_id": 1, "t_start_s": 1.5, "t_end_s": 2.5, "client": 1,
         "device": "b", "direction": "up", "kind": "weights", "payload_bytes": 30},
        {"round": 1, "message_id": 1, "t_start_s": 1.5, "t_end_s": 2.5, "client": 1,
         "device": "b", "direction": "up", "kind": "labels", "payload_bytes": 2}]
    assert transfers.index.tolist() == [0, 1, 2]
    assert str(transfers.t_start_s.dtype) == "float64"
    assert str(transfers.payload_bytes.dtype) == "int64"
    assert frames["timeline"].state.tolist() == ["download", "upload", "compute"]
    assert frames["timeline"].index.tolist() == [0, 1, 2]
    assert frames["participation"].outcome.tolist() == ["completed"]
    assert frames["energy"].empty and list(frames["energy"].columns) == [
        "round", "device", "compute_j", "transmit_j", "receive_j", "idle_j", "energy_j"]

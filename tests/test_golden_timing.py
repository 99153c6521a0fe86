"""Golden tests: exact simulated event times and bytes on tiny, hand-computed scenarios.

Links: device up 1 Mbit/s, down 2 Mbit/s, 10 ms one-way; server ingress 1 Mbit/s (shared),
egress 100 Mbit/s. Compute: every unit 1 ms forward, 2 ms backward (device), a tenth of
that on the server. small_cnn on 1x8x8, 2 classes: 2,906 parameters = 11,624 bytes.
"""

from __future__ import annotations

import pytest
from conftest import TINY_MODEL_PARAMS, tiny
from helpers import run_dict

EXACT = {"rel": 1e-12, "abs": 1e-12}
MODEL_BYTES = TINY_MODEL_PARAMS * 4


def test_fedavg_round_with_two_uploads_sharing_the_server_link(tiny_dir):
    res = run_dict(tiny(), tiny_dir)
    assert MODEL_BYTES == 11_624
    download_end = 0.010 + MODEL_BYTES * 8 / 2e6  # each device's own 2 Mbit/s downlink
    train_end = download_end + 2 * 0.021  # 2 steps x 7 units x (1 + 2) ms
    upload_end = train_end + 0.010 + MODEL_BYTES * 8 / 0.5e6  # 1 Mbit/s ingress shared by 2
    assert res.rounds.round_time_s.tolist() == pytest.approx([upload_end] * 2, **EXACT)
    assert res.rounds.sim_time_s.iloc[-1] == pytest.approx(2 * upload_end, **EXACT)
    ups = res.transfers[(res.transfers["round"] == 0) & (res.transfers.direction == "up")]
    assert ups.t_start_s.tolist() == pytest.approx([train_end] * 2, **EXACT)
    assert ups.t_end_s.tolist() == pytest.approx([upload_end] * 2, **EXACT)
    assert res.rounds.bytes_up.tolist() == [2 * MODEL_BYTES] * 2
    assert res.rounds.bytes_down.tolist() == [2 * MODEL_BYTES] * 2


def test_splitfed_batch_lockstep_times(tiny_dir):
    raw = tiny(**{"method": {"name": "splitfed", "split": 4}, "rounds": 1,
                  "population.clients": 1, "population.clients_per_round": 1,
                  "population.devices.0.count": 1, "data.synthetic.train_samples": 20})
    res = run_dict(raw, tiny_dir)
    device_bytes = (80 + 16 + 1168 + 32) * 4  # conv1, bn1, conv2, bn2
    act_bytes, label_bytes = 10 * 16 * 2 * 2 * 4, 10 * 8  # 16x2x2 fp32, int64 labels
    t_down = 0.010 + device_bytes * 8 / 2e6
    per_batch = (0.004  # device forward, 4 units
                 + 0.010 + (act_bytes + label_bytes) * 8 / 1e6  # activation + labels up
                 + 0.0009  # server forward + backward, 3 units
                 + 0.010 + act_bytes * 8 / 2e6  # gradient down
                 + 0.008)  # device backward
    t_up = 0.010 + device_bytes * 8 / 1e6
    assert res.rounds.round_time_s.iloc[0] == pytest.approx(t_down + 2 * per_batch + t_up,
                                                            **EXACT)
    acts = res.transfers[res.transfers.kind == "activations"]
    assert acts.t_start_s.iloc[0] == pytest.approx(t_down + 0.004, **EXACT)
    assert acts.t_end_s.iloc[0] == pytest.approx(
        t_down + 0.004 + 0.010 + (act_bytes + label_bytes) * 8 / 1e6, **EXACT)
    assert acts.payload_bytes.tolist() == [act_bytes] * 2


def test_waves_play_clients_one_after_another(tiny_dir):
    raw = tiny(**{"population.waves": True, "population.devices.0.count": 1, "rounds": 1})
    res = run_dict(raw, tiny_dir)
    one_client = (0.010 + MODEL_BYTES * 8 / 2e6) + 0.042 + (0.010 + MODEL_BYTES * 8 / 1e6)
    assert res.rounds.round_time_s.iloc[0] == pytest.approx(2 * one_client, **EXACT)
    assert res.transfers.device.nunique() == 1


def test_server_workers_queue_requests(tiny_dir):
    """Two clients in lock-step on one server worker: the second waits for the first."""
    raw = tiny(**{"method": {"name": "splitfed", "split": 4}, "rounds": 1})
    res = run_dict(raw, tiny_dir)
    tl = res.timeline
    spans = tl[(tl.device == "server") & (tl.state == "compute")].sort_values("t_start_s")
    starts, ends = spans.t_start_s.to_numpy(), spans.t_end_s.to_numpy()
    assert (starts[1:] >= ends[:-1] - 1e-12).all()  # never two at once with 1 worker
    assert spans.t_end_s.sub(spans.t_start_s).tolist() == pytest.approx(
        [0.0009] * len(spans), **EXACT)


def test_timeline_covers_each_device_round_without_gaps(tiny_dir):
    res = run_dict(tiny(), tiny_dir)
    for (rnd, _device), spans in res.timeline[res.timeline.device != "server"].groupby(
            ["round", "device"]):
        spans = spans.sort_values("t_start_s")
        total = (spans.t_end_s - spans.t_start_s).sum()
        row = res.rounds.set_index("round").loc[rnd]
        assert total == pytest.approx(row.round_time_s, rel=1e-9)
        assert set(spans.state) <= {"compute", "upload", "download", "idle"}


def test_a_message_envelope_is_counted_as_traffic_and_sent(tiny_dir):
    """930 bytes per message: each of the 2 clients' download and upload carries them, so
    each round moves 4 x 930 bytes more, and each message takes 930 x 8 bits longer at its
    rate (2 Mbit/s down; 0.5 Mbit/s each up, sharing the 1 Mbit/s ingress)."""
    plain = run_dict(tiny(), tiny_dir)
    env = run_dict(tiny(**{"network.message_overhead_bytes": 930}), tiny_dir)
    assert (env.rounds.cum_bytes.diff().fillna(env.rounds.cum_bytes)
            - plain.rounds.cum_bytes.diff().fillna(plain.rounds.cum_bytes)).tolist() == [
        4 * 930] * 2
    assert env.rounds.up_overhead_bytes.tolist() == [2 * 930] * 2
    extra_s = 930 * 8 / 2e6 + 930 * 8 / 0.5e6
    assert env.rounds.round_time_s.tolist() == pytest.approx(
        (plain.rounds.round_time_s + extra_s).tolist(), **EXACT)
    assert env.rounds.test_loss.tolist() == plain.rounds.test_loss.tolist()

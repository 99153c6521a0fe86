"""The server's memory for per-client copies: sizes by hand, admission, queue order, and
the bound at every instant of a golden run."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import tiny, write_scenario
from helpers import plot_kind_of_run, run_dict

from ecofed_sim.checks import model_stats
from ecofed_sim.cli import main
from ecofed_sim.server_resources import GB, copy_capacity, server_copy_bytes

STATS = model_stats("small_cnn", (1, 8, 8), 2)  # the tiny scenarios' model
MODEL_BYTES = 384 + 4800 + 6240 + 200  # conv1, conv2, fc1, fc2 (fp32 parameters)
# split 4: the server trains fc1 + fc2 (1,560 + 50 parameters = 6,440 bytes), with their
# gradients and momentum; autograd keeps its input (64) and the outputs of flatten (64),
# fc1 (24) and fc2 (2) per sample, in fp32.
COPY_AT_4 = 3 * 6440 + 10 * (64 + 64 + 24 + 2) * 4


def test_copy_bytes_and_capacity_by_hand():
    assert server_copy_bytes(STATS, 4, batch=10, momentum=0.9) == COPY_AT_4 == 25_480
    assert server_copy_bytes(STATS, 4, batch=10, momentum=0.0) == COPY_AT_4 - 6440
    assert server_copy_bytes(STATS, 6, batch=1, momentum=0.9) == 3 * 200 + (24 + 2) * 4
    assert copy_capacity((MODEL_BYTES + 3 * COPY_AT_4) / GB, COPY_AT_4, MODEL_BYTES) == 3
    assert copy_capacity((MODEL_BYTES + 3 * COPY_AT_4 - 1) / GB, COPY_AT_4, MODEL_BYTES) == 2
    assert copy_capacity(MODEL_BYTES / 2 / GB, COPY_AT_4, MODEL_BYTES) == 0


def _splitfed(copies: int | None, clients: int = 4, **changes) -> dict:
    raw = tiny(**{"population.clients": clients, "population.clients_per_round": clients,
                  "population.devices": [{"profile": "unit_dev", "count": clients, "link": {
                      "uplink_mbps": 1, "downlink_mbps": 2, "latency_ms": 10}}],
                  "method": {"name": "splitfed", "split": 4}, **changes})
    if copies is not None:
        raw["server"]["memory_gb"] = (MODEL_BYTES + (copies + 0.5) * COPY_AT_4) / GB
    return raw


def _admissions(res) -> pd.DataFrame:
    """Per client and round: when it asked for a copy, when it got it, when it let go."""
    part = res.participation[res.participation.outcome == "completed"]
    queued = res.timeline[res.timeline.state == "queued"].groupby(
        ["round", "client"]).t_end_s.max()
    rows = []
    for _, p in part.iterrows():
        admitted = queued.get((p["round"], p.client), p.t_start_s)
        rows.append({"round": p["round"], "client": p.client, "asked": p.t_start_s,
                     "admitted": admitted, "done": p.t_end_s})
    return pd.DataFrame(rows)


def _most_live(adm: pd.DataFrame) -> int:
    return max(((adm.admitted <= t) & (adm.done > t)).sum() for t in adm.admitted)


def test_the_memory_bound_holds_at_every_instant(tiny_dir):
    free = run_dict(_splitfed(None), tiny_dir)
    bound = run_dict(_splitfed(2), tiny_dir)
    adm = _admissions(bound)
    assert _most_live(adm) == 2 == bound.rounds.server_copies_peak.max()
    assert _most_live(_admissions(free)) == 4 == free.rounds.server_copies_peak.max()
    waits = bound.timeline[bound.timeline.state == "queued"]
    assert len(waits) == 2 * 2  # two clients wait in each of the two rounds
    assert bound.rounds.queue_wait_s.sum() == pytest.approx(
        (waits.t_end_s - waits.t_start_s).sum(), rel=1e-12)
    # a waiting client is admitted the instant another lets go of its copy
    for _, w in waits.iterrows():
        same_round = adm[adm["round"] == w["round"]]
        assert (same_round.done == w.t_end_s).any()
    assert bound.rounds.sim_time_s.iloc[-1] > free.rounds.sim_time_s.iloc[-1]
    # the memory bound only delays: what is learned is the same
    assert list(bound.rounds.test_accuracy) == list(free.rounds.test_accuracy)


def test_fifo_admits_in_order_of_asking_and_shortest_first_the_fewest_steps(tiny_dir):
    """Clients of uneven sizes (a Dirichlet partition), one copy at a time. All ask at the
    round's start, in the order they were sampled (their processes' order): FIFO admits
    them in that order; shortest-first admits the first, then the fewest server steps
    first."""
    changes = {"data.synthetic.train_samples": 47, "data.partition":
               {"kind": "dirichlet", "alpha": 0.3, "min_samples": 1}}
    fifo = _admissions(run_dict(_splitfed(1, **changes), tiny_dir))
    srf = _admissions(run_dict(_splitfed(1, **changes, **{"server.queue": "shortest_first"}),
                               tiny_dir))
    for adm in (fifo, srf):
        assert _most_live(adm) == 1
    from ecofed_sim.population import sample_clients
    from ecofed_sim.prepare import prepare
    from ecofed_sim.scenario import scenario_from_dict

    prep = prepare(scenario_from_dict(_splitfed(1, **changes), "tiny.yaml"), "tiny.yaml",
                   tiny_dir)
    steps = {c: -(-len(idx) // 10) for c, idx in enumerate(prep.client_indices)}
    assert len(set(steps.values())) > 1  # the partition makes the clients differ
    differ = []
    for r in (0, 1):
        asked = sample_clients(3, r, [0, 1, 2, 3], 4, 4)
        assert list(fifo[fifo["round"] == r].sort_values("admitted").client) == asked
        order = list(srf[srf["round"] == r].sort_values("admitted").client)
        assert order[0] == asked[0]  # admitted before anyone queues
        assert [steps[c] for c in order[1:]] == sorted(steps[c] for c in order[1:])
        differ.append(order != asked)
    assert any(differ)  # the two policies really order these clients differently


def test_a_server_that_cannot_hold_one_copy_is_a_one_line_error(tiny_dir, capsys):
    raw = _splitfed(None)
    raw["server"]["memory_gb"] = MODEL_BYTES / GB
    path = write_scenario(tiny_dir, raw)
    for command in (["validate", str(path)],
                    ["run", str(path), "--out", str(tiny_dir / "r"), "--quiet"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {path}: server.memory_gb: ") and err.count("\n") == 1
        assert "cannot hold the model" in err and "one server copy" in err
    assert not (tiny_dir / "r").exists()


def test_server_utilisation_is_its_compute_share(tiny_dir):
    res = run_dict(_splitfed(None, **{"server.workers": 2}), tiny_dir)
    tl = res.timeline[(res.timeline.device == "server") & (res.timeline.state == "compute")]
    busy = (tl.t_end_s - tl.t_start_s).groupby(tl["round"]).sum()
    assert list(res.rounds.server_busy_s) == pytest.approx(list(busy), rel=1e-12)
    assert list(res.rounds.server_utilisation) == pytest.approx(
        list(busy / (2 * res.rounds.round_time_s)), rel=1e-12)
    fedavg = run_dict(tiny(), tiny_dir)
    assert (fedavg.rounds.server_busy_s == 0).all()
    assert "server_copies_peak" not in fedavg.rounds


def test_ecofed_replay_rounds_hold_copies_too(tiny_dir):
    raw = _splitfed(1, **{"method": {"name": "ecofed", "split": 4}, "rounds": 2})
    res = run_dict(raw, tiny_dir)
    assert list(res.rounds.server_copies_peak) == [1, 1]
    replay = res.rounds.iloc[1]
    assert not replay.update_round and replay.queue_wait_s > 0


def test_load_curves_by_hand():
    from ecofed_sim.plot_server import binned_mean, in_progress

    spans = pd.DataFrame({"t_start_s": [0.0, 1.0, 1.0, 3.0], "t_end_s": [2.0, 3.0, 1.5, 4.0]})
    times, counts = in_progress(spans)
    # one to 1 s, three to 1.5, two to 2, one to 3 (one ends as another starts), none at 4
    assert list(times) == [0.0, 1.0, 1.5, 2.0, 3.0, 4.0]
    assert list(counts) == [1, 3, 2, 1, 1, 0]
    edges, mean = binned_mean(times, counts, bins=2)  # [0, 2] and [2, 4]
    assert list(edges) == [0.0, 2.0, 4.0]
    assert list(mean) == pytest.approx([(1 + 1.5 + 1) / 2, (1 + 1) / 2])


def test_server_figure_of_a_bounded_run(tiny_dir, tmp_path):
    path = write_scenario(tiny_dir, _splitfed(2))
    assert plot_kind_of_run(path, "server", tmp_path) == 0
    assert (tmp_path / "fig" / "server.png").stat().st_size > 0
    fed = write_scenario(tiny_dir, tiny(), "fedavg.yaml")
    assert plot_kind_of_run(fed, "server", tmp_path / "f") == 2  # no server work

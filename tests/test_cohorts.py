"""Cohorts: a timing-only run that plays alike clients as one process has the clocks,
bytes, energy and outcomes of the run that plays every client on its own."""

from __future__ import annotations

import pandas as pd
import pytest
import simpy
from conftest import tiny

import ecofed_sim
from ecofed_sim import cohorts
from ecofed_sim.cohorts import link_key
from ecofed_sim.network import Capacity, DeviceLink, Network, TcpParams
from ecofed_sim.participation import RoundPlay
from ecofed_sim.scenario import scenario_from_dict

# what orders each table's rows for comparison (rows of one instant may come in another
# order; message ids number them in that order)
KEYS = {"transfers": ["round", "client", "t_start_s", "direction", "kind"],
        "timeline": ["round", "device", "client", "t_start_s", "state", "t_end_s"],
        "participation": ["round", "client"], "energy": ["round", "device"]}
POWER = {"idle": 1.0, "compute": 10.0, "transmit": 3.0, "receive": 2.0}


def _population(**changes) -> dict:
    """24 clients, 12 per round, three link classes under TCP (one with random loss):
    the links' windows and idle times differ from round to round, and batches are
    uneven (47 samples)."""
    raw = tiny(rounds=4, **{
        "learning": "none", "network.transport": "tcp",
        "data.synthetic.train_samples": 47, "training.batch_size": 4,
        "population.clients": 24, "population.clients_per_round": 12,
        "server.link": {"ingress_mbps": 6, "egress_mbps": 20}})
    raw["population"]["devices"] = [
        {"profile": "unit_dev", "count": 12,
         "link": {"uplink_mbps": 1, "downlink_mbps": 2, "rtt_ms": 30}},
        {"profile": "unit_dev", "count": 8,
         "link": {"uplink_mbps": 0.5, "downlink_mbps": 4, "rtt_ms": 60, "loss_rate": 0.01}},
        {"profile": "unit_dev_power", "count": 4,
         "link": {"uplink_mbps": 2, "downlink_mbps": 8, "rtt_ms": 20}}]
    for path, value in changes.items():
        *keys, last = path.split(".")
        node = raw
        for key in keys:
            node = node[int(key)] if key.isdigit() else node[key]
        node[last] = value
    return raw


def _run_both(raw: dict, tiny_dir, monkeypatch) -> tuple[ecofed_sim.Results, ...]:
    """The run with cohorts and without, and how many client processes each played."""
    import yaml
    from conftest import UNIT_DEVICE

    profile = {**UNIT_DEVICE, "name": "unit_dev_power", "power_w": POWER}
    (tiny_dir / "profiles" / "unit_dev_power.yaml").write_text(yaml.safe_dump(profile))
    played = []
    original = RoundPlay._play

    def counted(self, *args):
        played[-1] += 1
        return original(self, *args)

    monkeypatch.setattr(RoundPlay, "_play", counted)
    results = []
    for with_cohorts in (True, False):
        played.append(0)
        results.append(ecofed_sim.run(scenario_from_dict(raw, "tiny.yaml"), source="tiny.yaml",
                                      base_dir=tiny_dir, cohorts=with_cohorts))
    return (*results, *played)


def _assert_same_tables(a: ecofed_sim.Results, b: ecofed_sim.Results) -> None:
    pd.testing.assert_frame_equal(a.rounds, b.rounds, check_exact=False, rtol=1e-12)
    for name, keys in KEYS.items():
        x, y = (getattr(r, name).drop(columns=["message_id"], errors="ignore")
                .sort_values(keys).reset_index(drop=True) for r in (a, b))
        pd.testing.assert_frame_equal(x, y, check_exact=False, rtol=1e-12, obj=name)


def test_cohorts_play_fewer_processes_with_the_same_tables(tiny_dir, monkeypatch):
    cohort, alone, n_cohort, n_alone = _run_both(_population(), tiny_dir, monkeypatch)
    assert n_alone == 4 * 12  # one process per selected client and round
    assert n_cohort < n_alone
    _assert_same_tables(cohort, alone)
    assert cohort.energy.energy_j.sum() > 0
    assert cohort.rounds.round_time_s.nunique() > 1


def test_cohorts_under_a_deadline_jitter_and_a_shared_bottleneck(tiny_dir, monkeypatch):
    """The deadline cuts whole cohorts mid-transfer; jitter and a downlink faster than
    the server's egress (its bursts would share the server's buffer) keep their devices
    alone. Losses every 1/p segments leave the lossy class's devices alike (random
    losses would keep each alone: ``test_random_losses_keep_each_device_alone``)."""
    raw = _population(**{"population.deadline_s": 0.3, "network.loss_gaps": "regular",
                         "population.devices.0.link.latency_jitter_ms": 5,
                         "population.devices.2.link.downlink_mbps": 40})
    cohort, alone, n_cohort, n_alone = _run_both(raw, tiny_dir, monkeypatch)
    assert alone.participation.outcome.eq("straggler").sum() > 0
    assert n_cohort < n_alone
    _assert_same_tables(cohort, alone)


def test_random_losses_keep_each_device_alone(tiny_dir, monkeypatch):
    """Each lossy device draws its own losses, so none shares a cohort; the others
    still do, and the tables are those of every client alone."""
    cohort, alone, n_cohort, n_alone = _run_both(_population(), tiny_dir, monkeypatch)
    regular = _population(**{"network.loss_gaps": "regular"})
    cohort_r, alone_r, n_cohort_r, _ = _run_both(regular, tiny_dir, monkeypatch)
    assert n_cohort_r < n_cohort < n_alone
    _assert_same_tables(cohort, alone)
    _assert_same_tables(cohort_r, alone_r)


def test_cohorts_with_dropout(tiny_dir, monkeypatch):
    """Each client goes offline at its own time: a cohort holds only clients that drop
    at the same instant (in practice, each client alone)."""
    raw = _population(**{"population.mean_online_s": 2.0})
    cohort, alone, _, _ = _run_both(raw, tiny_dir, monkeypatch)
    assert alone.participation.outcome.eq("dropped").sum() > 0
    _assert_same_tables(cohort, alone)


@pytest.mark.parametrize("change", [{"learning": "real"},
                                    {"population.over_selection": 1.5}])
def test_cohorts_stay_off_where_a_client_must_play_alone(change, tiny_dir, monkeypatch):
    """Real training needs each client's update; with over-selection, which client of an
    instant is kept depends on event order."""
    raw = _population(**change)
    cohort, alone, n_cohort, n_alone = _run_both(raw, tiny_dir, monkeypatch)
    assert n_cohort == n_alone
    pd.testing.assert_frame_equal(cohort.timeline, alone.timeline)


SEG = 12_112  # wire bits of a full segment (MSS 1448 + 66 header bytes)


def _link_after_a_round(window_segments: int, last_send_s: float, segments: float = 100.0,
                        loss_rate: float = 0.0) -> DeviceLink:
    """A 10 Mbit/s link (100 ms RTT) whose connection ended a round with this window."""
    link = DeviceLink.from_mbps("d", 10, 10, 50)
    link.loss_rate = loss_rate
    conn = link.connection
    conn.open = True
    for direction in ("up", "down"):
        conn.window_bits[direction] = window_segments * SEG
        conn.ssthresh_bits[direction] = 64 * SEG
        conn.last_send_end_s[direction] = last_send_s
        conn.segments_sent[direction] = segments
    return link


def _tcp_network() -> Network:
    return Network(simpy.Environment(), Capacity("in", 1e9), Capacity("out", 1e9),
                   tcp=TcpParams())


def test_a_links_key_leaves_out_the_last_send_once_restart_reaches_the_initial_window():
    net = _tcp_network()
    assert net.tcp.rto_s(0.1) == pytest.approx(0.3)
    recent, earlier = _link_after_a_round(40, 0.9), _link_after_a_round(40, 0.0)
    # at 1.0 s: 0.1 s idle keeps the recent window (40 segments); 1.0 s halves the earlier
    # one three times (once per RTO beyond the first), 40 -> 5, floored at 10
    assert link_key(net, recent, 1.0) != link_key(net, earlier, 1.0)
    # at 1.5 s the recent one has halved once (20): still apart
    assert link_key(net, recent, 1.5) != link_key(net, earlier, 1.5)
    # at 2.5 s both restart from the initial window: when they sent no longer matters
    assert link_key(net, recent, 2.5) == link_key(net, earlier, 2.5)
    # a window at the initial one or below never restarts lower
    small = [_link_after_a_round(8, t) for t in (0.9, 0.0)]
    assert link_key(net, small[0], 1.0) == link_key(net, small[1], 1.0)


def test_a_links_key_keeps_segments_sent_only_under_random_loss():
    net = _tcp_network()
    assert (link_key(net, _link_after_a_round(40, 0.0, segments=100), 5.0)
            == link_key(net, _link_after_a_round(40, 0.0, segments=300), 5.0))
    assert (link_key(net, _link_after_a_round(40, 0.0, 100, loss_rate=0.001), 5.0)
            != link_key(net, _link_after_a_round(40, 0.0, 300, loss_rate=0.001), 5.0))


def test_a_links_key_keeps_its_send_buffer():
    """A grown send buffer lets a later message's first flight out whole: links that
    differ only there play differently."""
    net = _tcp_network()
    grown = _link_after_a_round(80, 0.0)
    grown.connection.grow_send_buffer(net.tcp, "up", 80 * SEG)
    assert link_key(net, grown, 5.0) != link_key(net, _link_after_a_round(80, 0.0), 5.0)


def test_a_links_key_under_random_losses_is_its_own():
    """Two links in the same state draw different losses: their keys differ, unless
    losses fall every 1/p segments (no draws)."""
    from ecofed_sim.seeding import LOSS, np_rng

    def pair(draws: bool) -> list[DeviceLink]:
        links = [_link_after_a_round(40, 0.0, 100, loss_rate=0.001) for _ in range(2)]
        for i, link in enumerate(links):
            if draws:
                link.loss_rngs = {"up": np_rng(0, LOSS, i, 0), "down": np_rng(0, LOSS, i, 1)}
        return links

    net = _tcp_network()
    plain, drawn = pair(False), pair(True)
    assert link_key(net, plain[0], 5.0) == link_key(net, plain[1], 5.0)
    assert link_key(net, drawn[0], 5.0) != link_key(net, drawn[1], 5.0)
    regular = Network(simpy.Environment(), Capacity("in", 1e9), Capacity("out", 1e9),
                      tcp=TcpParams(random_loss=False))
    drawn = pair(True)
    assert link_key(regular, drawn[0], 5.0) == link_key(regular, drawn[1], 5.0)


def test_a_links_key_leaves_out_a_token_bucket_once_full_and_a_burst_queue_once_drained():
    net = _tcp_network()
    links = [_link_after_a_round(40, 0.0) for _ in range(2)]
    for link, idle_since_s in zip(links, (0.9, 0.0), strict=True):
        link.set_burst(15_000)  # 120,000 bits: 12 ms to refill at 10 Mbit/s
        link.up.idle_since_s = link.down.idle_since_s = idle_since_s
    assert link_key(net, links[0], 0.905) != link_key(net, links[1], 0.905)
    assert link_key(net, links[0], 1.0) == link_key(net, links[1], 1.0)
    links = [_link_after_a_round(40, 0.0) for _ in range(2)]  # (keys stay with a link)
    for link, queued_at_s in zip(links, (0.99, 0.5), strict=True):
        link.up.burst_queue_bits, link.up.burst_queue_at_s = 200_000, queued_at_s
    assert link_key(net, links[0], 1.0) != link_key(net, links[1], 1.0)  # 20 ms to drain
    assert link_key(net, links[0], 1.1) == link_key(net, links[1], 1.1)


def test_clients_from_different_rounds_join_once_their_restart_is_complete(tiny_dir,
                                                                           monkeypatch):
    """One link class, 4 of 12 clients per round, a 100 KB model over a 100 ms RTT: a
    client back from the round just before restarts from a window halved fewer times than
    one back from earlier, and plays apart from it; clients whose restart reaches the
    initial window play as one, whichever round they last played in."""
    raw = _population(**{"rounds": 8, "data.synthetic.train_samples": 48,
                         "data.synthetic.shape": [1, 32, 32],
                         "population.clients": 12, "population.clients_per_round": 4,
                         "server.link": {"ingress_mbps": 100, "egress_mbps": 100}})
    raw["population"]["devices"] = [
        {"profile": "unit_dev", "count": 12,
         "link": {"uplink_mbps": 10, "downlink_mbps": 20, "rtt_ms": 100}}]
    groups: list[list[list[int]]] = []  # per round, its cohorts' clients
    original = cohorts.group

    def recorded(schedule, key_of):
        out = original(schedule, key_of)
        groups.append([[client for _, client in group] for group in out])
        return out

    monkeypatch.setattr(cohorts, "group", recorded)
    cohort, alone, n_cohort, n_alone = _run_both(raw, tiny_dir, monkeypatch)
    _assert_same_tables(cohort, alone)
    assert n_cohort < n_alone == 8 * 4
    seconds = alone.transfers.t_end_s - alone.transfers.t_start_s
    assert seconds.round(6).nunique() > 3  # a message's time depends on its link's past
    played = alone.participation.groupby("client")["round"].apply(list)

    def last_round(client: int, before: int) -> int:
        return max((r for r in played[client] if r < before), default=-1)

    assert any(len({last_round(c, r) for c in group}) > 1 and -1 not in
               {last_round(c, r) for c in group}
               for r, round_groups in enumerate(groups) for group in round_groups)

from __future__ import annotations

from collections import Counter

from conftest import tiny

from ecofed_sim.population import build_population, class_counts, sample_clients
from ecofed_sim.profiles import load_library
from ecofed_sim.scenario import scenario_from_dict


def test_shares_round_by_largest_remainder_and_deal_seeded():
    raw = tiny(**{"population.clients": 10, "population.clients_per_round": 4,
                  "population.devices": [
                      {"profile": "rpi4b", "share": 0.65, "link": "wifi"},
                      {"profile": "jetson_nano", "share": 0.35, "link": "4g"}]})
    raw.pop("profiles_dir")
    raw["server"]["profile"] = "server_gpu"
    sc = scenario_from_dict(raw, "x")
    assert class_counts(sc.population, 10) == [7, 3]  # 6.5 and 3.5: tie to the first
    pop = build_population(sc, load_library(), "x")
    assert Counter(pop.device_class) == {"rpi4b": 7, "jetson_nano": 3}
    jetson = [d for d in pop.devices if d.profile.name == "jetson_nano"]
    assert all(d.link.up.rate_bps == 12.6e6 for d in jetson)  # the named 4g link
    assert pop.device_class != sorted(pop.device_class, key=lambda c: c != "rpi4b")


def test_sampling_is_keyed_by_seed_and_round():
    everyone = list(range(100))
    a = sample_clients(7, 3, everyone, 100, 20)
    assert a == sample_clients(7, 3, everyone, 100, 20)
    assert len(set(a)) == 20
    assert a != sample_clients(7, 4, everyone, 100, 20)
    assert a != sample_clients(8, 3, everyone, 100, 20)


def test_offline_clients_are_never_selected():
    from ecofed_sim.availability import Availability

    avail = Availability(seed=3, clients=50, online_probability=0.3)
    for r in range(20):
        online = avail.online(r, 0.0)
        assert 0 < len(online) < 50
        picked = sample_clients(3, r, online, 50, 10)
        assert set(picked) <= set(online)
        assert len(picked) == min(10, len(online)) == len(set(picked))
    assert Availability(3, 50).online(0, 0.0) == list(range(50))


def test_availability_in_a_run(tiny_dir):
    from helpers import run_dict

    raw = tiny(rounds=6, **{"population.clients": 4, "population.clients_per_round": 4,
                            "population.devices.0.count": 4,
                            "population.online_probability": 0.5,
                            "data.synthetic.train_samples": 80})
    res = run_dict(raw, tiny_dir)
    assert res.rounds.selected.max() <= 4 and res.rounds.selected.min() < 4
    assert (res.rounds.completed == res.rounds.selected).all()
    for r, row in res.rounds.set_index("round").iterrows():
        served = set(res.transfers[res.transfers["round"] == r].client)
        assert len(served) == row.selected


def test_a_round_with_nobody_online_passes_and_resimulates(tiny_dir):
    import pandas as pd

    import ecofed_sim
    from ecofed_sim.resimulate import resimulate

    raw = tiny(rounds=8, **{"population.online_probability": 0.2})
    sc = scenario_from_dict(raw, "tiny.yaml")
    full = ecofed_sim.run(sc, base_dir=tiny_dir, record=True)
    assert (full.rounds.selected == 0).any()
    assert (full.rounds.round_time_s[full.rounds.selected == 0] == 0).all()
    pd.testing.assert_frame_equal(resimulate(sc, full.trace, base_dir=tiny_dir).rounds,
                                  full.rounds)

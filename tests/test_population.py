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
    a = sample_clients(7, 3, 100, 20)
    assert a == sample_clients(7, 3, 100, 20)
    assert len(set(a)) == 20
    assert a != sample_clients(7, 4, 100, 20) and a != sample_clients(8, 3, 100, 20)

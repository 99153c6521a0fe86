"""The heap-based max-min solver against the reference scan, and against the definition of
max-min fairness itself, on random stars and device-edge-cloud trees."""

from __future__ import annotations

import random

import pytest

from ecofed_sim.network import Capacity
from ecofed_sim.network.fairshare import max_min_rates, progressive_filling


def _tree(rng: random.Random, devices: int, edges: int) -> list[tuple[Capacity, ...]]:
    """One path per device: its own link, its edge's backhaul, the cloud's ingress."""
    cloud = Capacity("cloud", rng.uniform(10, 1000))
    backhauls = [Capacity(f"edge{e}", rng.uniform(5, 500)) for e in range(edges)]
    paths = []
    for d in range(devices):
        own = Capacity(f"dev{d}", rng.choice([1.0, 2.0, 5.0, rng.uniform(0.5, 100)]))
        hops = [own, backhauls[rng.randrange(edges)], cloud][: rng.choice([1, 2, 3, 3])]
        paths.append(tuple(hops))
    return paths


def _is_max_min_fair(paths, rates, rel=1e-9) -> None:
    """Feasible, and every flow crosses a full capacity on which no flow gets more."""
    load: dict[int, float] = {}
    for path, rate in zip(paths, rates, strict=True):
        assert rate > 0
        for c in path:
            load[id(c)] = load.get(id(c), 0.0) + rate
    caps = {id(c): c for path in paths for c in path}
    for key, used in load.items():
        assert used <= caps[key].rate_bps * (1 + rel)
    for path, rate in zip(paths, rates, strict=True):
        assert any(load[id(c)] >= c.rate_bps * (1 - rel)
                   and all(r <= rate * (1 + rel) for p, r in zip(paths, rates, strict=True)
                           if c in p)
                   for c in path), "a flow without a bottleneck could go faster"


@pytest.mark.parametrize("seed", range(40))
def test_heap_solver_equals_the_scan_on_random_trees(seed):
    rng = random.Random(seed)
    paths = _tree(rng, devices=rng.randint(1, 60), edges=rng.randint(1, 5))
    rates = max_min_rates(paths)
    assert rates == pytest.approx(progressive_filling(paths), rel=1e-12)
    _is_max_min_fair(paths, rates)


def test_random_arrivals_and_departures_keep_both_solvers_equal():
    rng = random.Random(7)
    universe = _tree(rng, devices=200, edges=4)
    active: list[tuple[Capacity, ...]] = []
    for _ in range(300):
        if active and rng.random() < 0.4:
            active.pop(rng.randrange(len(active)))
        else:
            active.append(universe[rng.randrange(len(universe))])
        if active:
            assert max_min_rates(active) == pytest.approx(progressive_filling(active),
                                                          rel=1e-12)


def test_equal_shares_on_a_star_and_a_slow_device_by_hand():
    """Server 12 bit/s, devices 1, 20, 20: the slow one keeps 1, the others split 11."""
    server = Capacity("s", 12.0)
    paths = [(Capacity(str(i), c), server) for i, c in enumerate([1.0, 20.0, 20.0])]
    assert max_min_rates(paths) == [1.0, 5.5, 5.5]
    edge = Capacity("edge", 4.0)  # one more hop for the last two: the edge is now the limit
    paths = [paths[0], (*paths[1], edge), (*paths[2], edge)]
    assert max_min_rates(paths) == [1.0, 2.0, 2.0]


@pytest.mark.parametrize("seed", range(20))
def test_a_weighted_path_fills_like_that_many_copies_of_it(seed):
    """A cohort of k alike devices: one path that counts k times on the shared
    capacities and once on the device's own. Each copy stands on a device link of its
    own, so the reference gets k devices with that link's rate."""
    rng = random.Random(seed)
    paths = _tree(rng, devices=rng.randint(1, 30), edges=rng.randint(1, 4))
    counts = [rng.choice([1, 1, 2, 5, 40]) for _ in paths]
    weights = [(1, *[k] * (len(p) - 1)) for p, k in zip(paths, counts, strict=True)]
    copies, owner = [], []
    for i, (path, k) in enumerate(zip(paths, counts, strict=True)):
        for j in range(k):
            own = Capacity(f"{path[0].name}#{j}", path[0].rate_bps)
            copies.append((own, *path[1:]))
            owner.append(i)
    rates = max_min_rates(paths, weights)
    reference = progressive_filling(copies)
    assert [rates[i] for i in owner] == pytest.approx(reference, rel=1e-12)
    assert max_min_rates(paths, [None] * len(paths)) == max_min_rates(paths)


def test_a_cohort_of_three_on_a_star_by_hand():
    """Server 12 bit/s; a cohort of 3 devices of 20 and one device of 1: the slow one
    keeps 1, the three share 11 (11/3 each)."""
    server = Capacity("s", 12.0)
    paths = [(Capacity("slow", 1.0), server), (Capacity("cohort", 20.0), server)]
    assert max_min_rates(paths, [None, (1, 3)]) == [1.0, 11 / 3]

"""Who plays which client: device classes, their links, and the wave schedule.

Without waves every logical client is its own device (its class fixed for the whole run).
With waves (the EcoFed testbed: 5 physical devices x 4 waves for 20 sampled clients), the
sampled clients are dealt to the physical devices in order: client k of the round runs on
device k mod P, after the clients dealt to that device before it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ecofed_sim.errors import ScenarioError
from ecofed_sim.methods.base import Device
from ecofed_sim.network import DeviceLink
from ecofed_sim.profiles import LinkProfile, ProfileLibrary
from ecofed_sim.seeding import BINDING, SAMPLING, np_rng


def class_counts(pop, total: int) -> list[int]:
    """Devices per class: the counts given, or shares rounded by largest remainder."""
    if pop.devices[0].count is not None:
        return [d.count for d in pop.devices]
    exact = [d.share * total for d in pop.devices]
    counts = [int(e) for e in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def resolve_link(spec, library: ProfileLibrary, where: str) -> LinkProfile:
    if isinstance(spec, str):
        if spec not in library.links:
            raise ScenarioError(f"{where}: unknown link {spec!r} "
                                f"(accepted: {', '.join(sorted(library.links))})")
        return library.links[spec]
    return LinkProfile(uplink_mbps=spec.uplink_mbps, downlink_mbps=spec.downlink_mbps,
                       latency_ms=spec.latency_ms)


@dataclass(frozen=True)
class Population:
    devices: list[Device]
    device_class: list[str]  # profile name per device
    waves: bool

    def schedule(self, selected: list[int]) -> list[tuple[Device, list[int]]]:
        """(device, clients it plays in order) for one round's sampled clients."""
        if not self.waves:
            return [(self.devices[c], [c]) for c in selected]
        p = len(self.devices)
        return [(d, selected[i::p]) for i, d in enumerate(self.devices) if selected[i::p]]


def build_population(scenario, library: ProfileLibrary, source: str) -> Population:
    pop = scenario.population
    total = sum(d.count for d in pop.devices) if pop.waves else pop.clients
    counts = class_counts(pop, total)
    classes = [i for i, n in enumerate(counts) for _ in range(n)]
    if not pop.waves:  # a seeded deal so shares do not line up with partition order
        classes = [classes[i] for i in np_rng(scenario.seed, BINDING).permutation(total)]
    devices, names = [], []
    for idx, cls in enumerate(classes):
        spec = pop.devices[cls]
        where = f"{source}: population.devices[{cls}]"
        if spec.profile not in library.devices:
            raise ScenarioError(f"{where}.profile: unknown profile {spec.profile!r} "
                                f"(accepted: {', '.join(sorted(library.devices))})")
        link = resolve_link(spec.link, library, where + ".link")
        name = f"{spec.profile}-{idx}"
        devices.append(Device(name, library.devices[spec.profile], DeviceLink.from_mbps(
            name, link.uplink_mbps, link.downlink_mbps, link.latency_ms)))
        names.append(spec.profile)
    return Population(devices, names, pop.waves)


def sample_clients(seed: int, round_index: int, clients: int, per_round: int) -> list[int]:
    """K distinct clients, in an order keyed by (seed, round): the order sets the waves."""
    rng = np_rng(seed, SAMPLING, round_index)
    return [int(c) for c in rng.choice(clients, size=per_round, replace=False)]


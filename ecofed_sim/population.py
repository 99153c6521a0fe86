"""Who plays which client: device classes, their links, and the wave schedule.

Without waves every logical client is its own device (its class fixed for the whole run).
With waves (the EcoFed testbed: 5 physical devices x 4 waves for 20 sampled clients), the
sampled clients are dealt to the physical devices in order: client k of the round runs on
device k mod P, after the clients dealt to that device before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ecofed_sim.errors import ScenarioError
from ecofed_sim.network import DeviceLink
from ecofed_sim.paths import scenario_path
from ecofed_sim.profiles import DeviceProfile, ProfileLibrary, one_way_ms, round_trip_ms
from ecofed_sim.seeding import BINDING, JITTER, LOSS, SAMPLING, np_rng
from ecofed_sim.traces import read_trace


@dataclass(frozen=True)
class Device:
    """A (physical or logical) device: its profile's time model and its access link."""

    name: str
    profile: DeviceProfile
    link: DeviceLink
    split: int | None = None  # its class's own split point (None: the method's)
    edge: str | None = None  # with a topology: the edge server it attaches to


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


def resolve_link(spec, library: ProfileLibrary, where: str):
    """A named link from links.yaml, or the scenario's inline LinkSpec as is."""
    if isinstance(spec, str):
        if spec not in library.links:
            raise ScenarioError(f"{where}: unknown link {spec!r} "
                                f"(accepted: {', '.join(sorted(library.links))})")
        return library.links[spec]
    return spec


@dataclass(frozen=True)
class LinkClass:
    """What every device of one class shares about its link, read from the scenario once
    (a population of 100,000 devices has a handful of classes)."""

    spec: object  # profiles.LinkProfile or scenario.LinkSpec
    traces: dict  # "up"/"down" -> Trace (each file read once)
    one_way_ms: float
    rtt_ms: float
    loss_rate: float
    buffer_bytes: float | None
    jitter_s: float
    burst_bytes: float

    @classmethod
    def of(cls, spec, base_dir: Path | None, where: str) -> LinkClass:
        traces = {}
        for d in ("up", "down"):
            path = getattr(spec, f"{d}link_trace", None)
            if path:
                traces[d] = read_trace(scenario_path(path, base_dir), f"{where}.{d}link_trace")
        return cls(spec, traces, one_way_ms(spec), round_trip_ms(spec),
                   getattr(spec, "loss_rate", 0.0), getattr(spec, "buffer_bytes", None),
                   getattr(spec, "latency_jitter_ms", 0.0) / 1e3,
                   getattr(spec, "burst_bytes", 0.0))


def make_link(name: str, shared: LinkClass, index_in_class: int, seed: int,
              device_index: int) -> DeviceLink:
    """A device's link: fixed rates or traces, latency and seeded jitter (its generator
    keyed by the device, made only when there is jitter to draw)."""
    spec, traces = shared.spec, {}
    for d, trace in shared.traces.items():
        offset = spec.trace_offset_s + index_in_class * spec.trace_offset_step_s
        traces[d] = (trace, spec.trace_loop, offset)
    up = getattr(spec, "uplink_mbps", None) or traces["up"][0].rates_mbps[0]
    down = getattr(spec, "downlink_mbps", None) or traces["down"][0].rates_mbps[0]
    link = DeviceLink.from_mbps(name, up, down, shared.one_way_ms)
    link.rtt_s = shared.rtt_ms / 1e3
    link.loss_rate = shared.loss_rate
    link.buffer_bytes = shared.buffer_bytes
    link.jitter_s = shared.jitter_s
    link.set_burst(shared.burst_bytes)
    if link.jitter_s > 0:
        link.rng = np_rng(seed, JITTER, device_index)
    if link.loss_rate > 0:
        link.loss_rngs = {d: np_rng(seed, LOSS, device_index, i)
                          for i, d in enumerate(("up", "down"))}
    link.traces = traces
    return link


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


def build_population(scenario, library: ProfileLibrary, source: str,
                     base_dir: Path | None = None) -> Population:
    """Every device with its profile and link."""
    pop = scenario.population
    total = sum(d.count for d in pop.devices) if pop.waves else pop.clients
    counts = class_counts(pop, total)
    classes = [i for i, n in enumerate(counts) for _ in range(n)]
    if not pop.waves:  # a seeded deal so shares do not line up with partition order
        classes = [classes[i] for i in np_rng(scenario.seed, BINDING).permutation(total)]
    links = device_classes(scenario, library, source, base_dir)
    devices, names = [], []
    seen: dict[int, int] = {}
    for idx, cls in enumerate(classes):
        seen[cls] = seen.get(cls, -1) + 1
        spec = pop.devices[cls]
        name = f"{spec.profile}-{idx}"
        devices.append(Device(name, library.devices[spec.profile], make_link(
            name, links[cls], seen[cls], scenario.seed, idx), spec.split, spec.edge))
        names.append(spec.profile)
    return Population(devices, names, pop.waves)


def device_classes(scenario, library: ProfileLibrary, source: str,
                   base_dir: Path | None = None) -> list[LinkClass]:
    """Each device class's link, its profile and link checked: one-line errors naming the
    field (unknown profiles and links, bad traces). All that ``validate`` needs of the
    population, whatever its size."""
    out = []
    for cls, spec in enumerate(scenario.population.devices):
        where = f"{source}: population.devices[{cls}]"
        if spec.profile not in library.devices:
            raise ScenarioError(f"{where}.profile: unknown profile {spec.profile!r} "
                                f"(accepted: {', '.join(sorted(library.devices))})")
        link = resolve_link(spec.link, library, where + ".link")
        if getattr(link, "loss_rate", 0.0) > 0 and scenario.network.transport != "tcp":
            raise ScenarioError(f"{where}.link.loss_rate: random loss is a tcp model; set "
                                "network.transport: tcp")
        out.append(LinkClass.of(link, base_dir, where + ".link"))
    return out


def sample_clients(seed: int, round_index: int, online: list[int], clients: int,
                   count: int) -> list[int]:
    """``count`` distinct clients drawn from those ``online`` (all of them when fewer are),
    in an order keyed by (seed, round): the order sets the waves. Offline clients are never
    selected."""
    rng = np_rng(seed, SAMPLING, round_index)
    if len(online) == clients:
        return [int(c) for c in rng.choice(clients, size=count, replace=False)]
    picked = rng.choice(len(online), size=min(count, len(online)), replace=False)
    return [online[int(i)] for i in picked]

"""The scenario schema (typed, frozen pydantic models), loading and ``--set`` overrides.

Unknown keys are errors; every error is one line naming the file, the field path, what was
given and what is accepted (see ``errors.format_validation_error``). Fields that can only
change timing, never what is learned, carry ``timing_only`` in their schema metadata.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, PositiveFloat, ValidationError, model_validator

from ecofed_sim.errors import ScenarioError, format_validation_error
from ecofed_sim.methods import MethodConfig
from ecofed_sim.overrides import (  # noqa: F401 - re-exported
    PATH_FIELDS,
    _from_working_folder,
    apply_override,
    deep_merge,
    parse_override,
    read_raw,
)
from ecofed_sim.scenario_async import ASYNC_METHODS, AsyncSpec
from ecofed_sim.scenario_learning import (  # noqa: F401 - re-exported
    MAX_CLASSES,
    MAX_SAMPLES,
    DataSpec,
    EvaluationSpec,
    FractalSpec,
    ModelSpec,
    PartitionSpec,
    PretrainSpec,
    SyntheticSpec,
    TrainingSpec,
)
from ecofed_sim.scenario_network import (  # noqa: F401 - re-exported
    TIMING,
    LinkSpec,
    NetworkSpec,
    ServerLinkSpec,
)
from ecofed_sim.scenario_topology import HIERARCHY_METHODS, TopologySpec
from ecofed_sim.strict import (
    Seed,
    StrictModel,
)

LABEL = {"label_only": True}  # names and notes
# Bounds far above any real use, as those of ``scenario_learning`` (the README lists them).
MAX_CLIENTS = 10_000_000
MAX_ROUNDS = 1_000_000


class DeviceClassSpec(StrictModel):
    """A class of devices: a profile name, how many, and their access link."""

    profile: str = Field(json_schema_extra=TIMING)
    """device profile name (ecofed-sim list profiles)"""
    count: int | None = Field(None, ge=1, json_schema_extra=TIMING)
    """devices in this class (counts sum to clients, or are physical devices with waves)"""
    share: float | None = Field(None, gt=0, le=1, json_schema_extra=TIMING)
    """fraction of clients in this class (shares sum to 1; rounded by largest remainder)"""
    link: str | LinkSpec = Field("wifi", json_schema_extra=TIMING)
    """a named link (ecofed-sim list links) or an inline link"""
    split: int | None = Field(None, ge=1, description="this class's split point (methods "
                              "that allow one per class); default: method.split")
    edge: str | None = None
    """with a topology: the edge server these devices attach to (topology.edges[].name)"""

    @model_validator(mode="after")
    def _count_or_share(self) -> DeviceClassSpec:
        if (self.count is None) == (self.share is None):
            raise ValueError("give exactly one of count or share")
        return self


class PopulationSpec(StrictModel):
    clients: int = Field(10, ge=1, le=MAX_CLIENTS)
    """logical clients N"""
    clients_per_round: int = Field(10, ge=1, le=MAX_CLIENTS)
    """clients K kept per round"""
    waves: bool = Field(False, json_schema_extra=TIMING)
    """devices are physical devices that play the sampled clients in sequence (client k on
    device k mod P)"""
    wave_barrier: bool = Field(False, json_schema_extra=TIMING)
    """waves: every device finishes its client of a wave before any starts the next, as
    the EcoFed code's loop (default: each device plays its clients back to back)"""
    online_probability: float = Field(1.0, gt=0, le=1, description="chance a client is "
                                      "online in a round; only online clients are sampled")
    availability_trace: str | None = Field(
        None, description="CSV of client, online_s, offline_s (relative to the scenario "
        "file): clients are sampled only while online and drop out when their interval ends")
    availability_trace_loop: bool = True
    """repeat the availability trace with the period of its last offline_s"""
    mean_online_s: PositiveFloat | None = Field(
        None, description="churn: a sampled client stays online for an exponential time "
        "with this mean from the round's start, and drops out if its work is not done")
    over_selection: float = Field(1.0, ge=1, description="sample ceil(factor x "
                                  "clients_per_round) clients; keep the first "
                                  "clients_per_round to finish (FedScale)")
    deadline_s: PositiveFloat | None = Field(
        None, description="a round closes this long after it starts at the latest; clients "
        "still working then are stragglers and their work is discarded")
    devices: list[DeviceClassSpec] = Field(min_length=1, json_schema_extra=TIMING)
    """device classes: profile, count or share, link and split"""

    @property
    def select_count(self) -> int:
        """Clients sampled per round: ``clients_per_round`` times the over-selection."""
        return min(self.clients, math.ceil(self.over_selection * self.clients_per_round - 1e-9))

    @property
    def timing_shapes_learning(self) -> bool:
        """Whether simulated time decides which updates are kept (then timing-only fields
        can change what is learned, and a learning trace must not be reused)."""
        return (self.deadline_s is not None or self.over_selection > 1
                or self.availability_trace is not None or self.mean_online_s is not None)

    @model_validator(mode="after")
    def _consistent(self) -> PopulationSpec:
        if self.clients_per_round > self.clients:
            raise ValueError(f"clients_per_round ({self.clients_per_round}) exceeds "
                             f"clients ({self.clients})")
        counts = [d.count for d in self.devices if d.count is not None]
        if self.waves and len(counts) != len(self.devices):
            raise ValueError("with waves, every device class gives a count of physical devices")
        if len(counts) == len(self.devices) and not self.waves and sum(counts) != self.clients:
            raise ValueError(f"device counts sum to {sum(counts)}, not clients ({self.clients})")
        if counts and len(counts) != len(self.devices):
            raise ValueError("use count for every device class or share for every one")
        shares = [d.share for d in self.devices if d.share is not None]
        if shares and abs(sum(shares) - 1.0) > 1e-6:
            raise ValueError(f"device shares sum to {sum(shares):g}, not 1")
        return self


class ServerSpec(StrictModel):
    profile: str = Field("server_gpu", json_schema_extra=TIMING)
    """server profile name"""
    workers: int = Field(1, ge=1, le=100_000, json_schema_extra=TIMING)
    """parallel server compute workers (a SimPy resource)"""
    link: ServerLinkSpec = ServerLinkSpec()
    """the server's access link, shared max-min fairly"""
    memory_gb: PositiveFloat | None = Field(None, json_schema_extra=TIMING)
    """memory for per-client server copies (splitfed, local_loss, ecofed), decimal GB;
    default: the server profile's memory_gb; in neither: unbounded"""
    queue: Literal["fifo", "shortest_first"] = Field("fifo", json_schema_extra=TIMING)
    """order in which clients waiting for a server copy are admitted: first come first
    served, or the fewest server steps first"""


class Scenario(StrictModel):
    """One simulated experiment; see README 'Scenario schema' for every field and unit."""

    name: str = Field(json_schema_extra=LABEL)
    """run name; the default output folder is results/<name>-<method> (made one safe path
    component)"""
    description: str = Field("", json_schema_extra=LABEL)
    """free text, kept with the results"""
    seed: Seed = 0
    """seeds every random stream (initialisation, sampling, data order, devices), keyed by
    (seed, stream, round, client)"""
    rounds: int = Field(ge=1, le=MAX_ROUNDS)
    """number of FL rounds"""
    model: ModelSpec
    """the model of the zoo (ecofed-sim list models; ecofed-sim layers NAME shows its split
    points)"""
    data: DataSpec = DataSpec()
    """the dataset and how it is partitioned over clients"""
    training: TrainingSpec = TrainingSpec()
    """local training of every method"""
    method: MethodConfig
    """the method and its own fields, chosen by method.name (ecofed-sim list methods)"""
    population: PopulationSpec
    """clients, how many train per round, their devices and links, and when they are online"""
    server: ServerSpec = ServerSpec()
    """the server's compute profile, parallel workers and access link"""
    evaluation: EvaluationSpec = EvaluationSpec()
    """when and how the global model is tested"""
    network: NetworkSpec = Field(NetworkSpec(), json_schema_extra=TIMING)
    """protocol overhead added to every message on the wire"""
    pretrain: PretrainSpec = PretrainSpec()
    """pre-trained initialisation of the device-side units (EcoFed)"""
    profiles_dir: str | None = Field(None, json_schema_extra=TIMING)
    """an extra folder of device, server and link profiles (relative to the scenario file);
    its profiles override the shipped and the user's"""
    max_sim_time_s: PositiveFloat = Field(
        1e9, json_schema_extra=TIMING, description="stop with an error when the simulated "
        "clock would pass this (about 32 years): catches rates and FLOP/s near zero")
    learning: Literal["real", "none"] = "real"
    """real: the methods train with PyTorch and accuracy is measured; none: timing only,
    clocks, traffic and energy from the profiles with no training and no accuracy, for
    capacity planning of large populations (fedavg computes nothing; the split methods
    run on tensors that have shapes and no data, so every message keeps its size)"""
    asynchronous: AsyncSpec | None = None
    """run asynchronously (FedAsync or FedBuff) instead of in synchronous rounds; then
    ``rounds`` counts server updates"""
    topology: TopologySpec | None = None
    """edge servers between the devices and the cloud (hierarchical FedAvg); the
    ``server`` section is the cloud"""
    fidelity: Literal["default", "paper"] = "default"
    """paper: run the methods as the EcoFed reference code does, wherever the scenario does
    not say otherwise: training.augment on; EcoFed and local loss in lock-step with a
    release message per batch; EcoFed's replay rounds with 3 control messages of 32 bytes
    per batch; FedGKT in two phases on a fixed data order; baselines initialised from the
    pre-trained model (pretrain.init_baselines); with waves, a barrier between them; a
    930-byte envelope per message counted as traffic, as its pickled messages"""

    @model_validator(mode="after")
    def _asynchronous_fits(self) -> Scenario:
        spec, pop = self.asynchronous, self.population
        if spec is None:
            return self
        if self.method.name not in ASYNC_METHODS:
            raise ValueError(f"asynchronous: method {self.method.name} has no asynchronous "
                             f"mode (methods with one: {', '.join(ASYNC_METHODS)})")
        if pop.waves:
            raise ValueError("asynchronous: needs one device per client (population.waves: "
                             "false)")
        if getattr(self.method, "lockstep", False):
            raise ValueError("asynchronous: clients stream their activations "
                             "(method.lockstep: false)")
        if spec.concurrency is not None and spec.concurrency > pop.clients:
            raise ValueError(f"asynchronous.concurrency: {spec.concurrency} clients cannot "
                             f"train at once out of population.clients = {pop.clients}")
        return self

    @model_validator(mode="after")
    def _topology_fits(self) -> Scenario:
        topo, classes = self.topology, self.population.devices
        named = [(i, d.edge) for i, d in enumerate(classes) if d.edge is not None]
        if topo is None:
            if named:
                raise ValueError(f"population.devices[{named[0][0]}].edge: no topology "
                                 "section names any edge")
            return self
        if self.method.name not in HIERARCHY_METHODS:
            raise ValueError(f"topology: method {self.method.name} has no hierarchical mode "
                             f"(methods with one: {', '.join(HIERARCHY_METHODS)})")
        if self.asynchronous is not None:
            raise ValueError("topology: asynchronous runs are flat (drop one of the two)")
        if self.method.name != "fedavg" and self.population.waves:
            raise ValueError(f"topology: {self.method.name} at the edge needs one device "
                             "per client (population.waves: false)")
        edges = [e.name for e in topo.edges]
        for i, d in enumerate(classes):
            if d.edge not in edges:
                got = "none" if d.edge is None else repr(d.edge)
                raise ValueError(f"population.devices[{i}].edge: {got}; with a topology every "
                                 f"device class names its edge ({', '.join(edges)})")
        return self

    @model_validator(mode="after")
    def _paper_fidelity(self) -> Scenario:
        if self.fidelity != "paper":
            return self
        name = self.method.name
        streams = self.asynchronous is not None  # asynchronous clients never wait
        method = {"ecofed": {} if streams else {"lockstep": True, "replay_control_bytes": 32},
                  "local_loss": {} if streams else {"lockstep": True},
                  "fedgkt": {"mode": "two_phase"}}.get(name, {})
        training = {"augment": True, **({"shuffle": "fixed"} if name == "fedgkt" else {})}
        return self.model_copy(update={
            "population": _unless_set(self.population, {"wave_barrier": self.population.waves}),
            "network": _unless_set(self.network, {"message_overhead_bytes": 930}),
            "method": _unless_set(self.method, method),
            "training": _unless_set(self.training, training),
            "pretrain": _unless_set(self.pretrain, {"init_baselines": True})})


def _unless_set(model: StrictModel, values: dict) -> StrictModel:
    """``model`` with ``values`` for the fields its source did not set."""
    return model.model_copy(update={k: v for k, v in values.items()
                                    if k not in model.model_fields_set})


def scenario_from_dict(raw: dict, source: str, overrides: list[str] = ()) -> Scenario:
    """Validate a scenario mapping after its ``--set`` overrides (paths in those are
    relative to the working folder)."""
    for text in overrides:
        parts, value = parse_override(text)
        apply_override(raw, parts, _from_working_folder(value, parts[-1]), text)
    try:
        return Scenario.model_validate(raw)
    except ValidationError as err:
        raise ScenarioError(format_validation_error(source, err, Scenario)) from None


def load_scenario(path: str | Path, overrides: list[str] = ()) -> Scenario:
    """Read, override and validate a scenario file (shape only; see ``validate.check``)."""
    path = Path(path)
    return scenario_from_dict(read_raw(path), str(path), list(overrides))


_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def to_yaml(scenario: Scenario) -> str:
    """The fully resolved scenario, every default written out (through libyaml when
    PyYAML has it: the same text, four times faster, which a sweep writing many runs
    notices)."""
    return yaml.dump(scenario.model_dump(mode="json"), Dumper=_DUMPER, sort_keys=False)


def timing_shapes_learning(scenario: Scenario) -> bool:
    """Whether timing-only fields can change what this scenario learns: through the
    population's deadline or dropout, through a split planned from the time model, or
    through the order in which asynchronous updates arrive."""
    return (scenario.population.timing_shapes_learning
            or getattr(scenario.method, "split", None) == "auto"
            or scenario.asynchronous is not None  # arrival order is what is learned
            or scenario.topology is not None)  # re-simulation has no backhaul phase

"""Hierarchical FL (HierFAVG: Liu, Zhang, Song and Letaief, "Client-Edge-Cloud
Hierarchical Federated Learning", ICC 2020) on the simulated world, for FedAvg and for
split methods with their server part at the edge.

Devices attach to edge servers (``population.devices[i].edge``); an edge's access link is
where its devices' transfers end, and its backhaul carries its model to the cloud (the
scenario's ``server``). Each round:

1. clients are sampled from the whole population, as in flat FedAvg; each downloads its
   edge's model from its edge, trains ``training.local_epochs`` (HierFAVG's k1, counted
   in epochs) and uploads to its edge;
2. every edge averages its kept clients' models (weighted by samples), starting from its
   own model; an edge with no kept client keeps its model;
3. every ``topology.cloud_every`` rounds (k2), the edges whose clients trained since the
   last cloud round send their models up their backhauls, the cloud averages them
   (weighted by the samples their clients trained on since then: with every client in
   every round, HierFAVG's edge data sizes), and every edge downloads the result. The
   uploads share the cloud's ingress and the downloads its egress, max-min fairly.

Edges run in lock step: a round ends when every edge has aggregated (and, in a cloud
round, when the cloud model is back at every edge). The model evaluated is the cloud's.
With one edge whose backhaul is null, or with ``cloud_every`` 1 and every client in one
edge, this is flat FedAvg (tested).

Split methods (splitfed, local_loss, ecofed) put their server part at the edge: a client's
server steps (and EcoFed's replay of a client's buffer) run on its edge's workers with the
edge's profile, on the edge's row of the timeline. Each edge averages everything its
clients trained (device parts, heads and server copies: the method's own aggregation, on
the edge's clients only), and the cloud averages the edges. Their clients start each round
from their edge's model (``Method.client_starts``: the edge keeps a copy), so between
cloud rounds the edges drift apart as with FedAvg. The server memory bound
(``server_resources``) is not applied at edges.
"""

from __future__ import annotations

import copy
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import simpy
import torch
from torch import nn

from ecofed_sim.aggregation import WeightedMean
from ecofed_sim.checks import Prepared
from ecofed_sim.engine import Engine
from ecofed_sim.errors import ScenarioError
from ecofed_sim.methods.base import ClientUpdate, load_modules_state, modules_state
from ecofed_sim.models import state_bytes
from ecofed_sim.network import MBPS, Capacity, DeviceLink
from ecofed_sim.population import Device, LinkClass, make_link, resolve_link
from ecofed_sim.round_context import RoundContext

EDGE_MODEL = "edge_model"  # payload kind of edge-cloud messages (per-tier traffic)


@dataclass
class Edge:
    name: str
    backhaul: DeviceLink | None  # to the cloud; None: with the cloud
    workers: simpy.Resource  # its compute, for split methods' server part
    profile: Any  # profiles.DeviceProfile of that compute
    modules: dict[str, nn.Module] = field(default_factory=dict)  # its copy of all the
    samples_since_cloud: int = 0  # method learns (model, head), by name

    @property
    def state(self) -> dict[str, torch.Tensor]:
        return modules_state(self.modules)

    def load(self, state: dict[str, torch.Tensor]) -> None:
        load_modules_state(self.modules, state)


class HierarchicalEngine(Engine):
    """A run with edge servers: the round loop of ``Engine``, with aggregation at the
    edges and, every ``cloud_every`` rounds, at the cloud over the backhauls."""

    pipelines_rounds = False  # a round's jobs start from edge models its cloud round sets

    def __init__(self, prep: Prepared, pool=None) -> None:
        super().__init__(prep, pool=pool)
        sc = self.scenario
        self.cloud_every = sc.topology.cloud_every
        self.edges: dict[str, Edge] = {}
        for i, spec in enumerate(sc.topology.edges):
            access = (Capacity(f"{spec.name}/in", spec.access.ingress_mbps * MBPS),
                      Capacity(f"{spec.name}/out", spec.access.egress_mbps * MBPS))
            for device in self.population.devices:
                if device.edge == spec.name:
                    device.link.server = access
            profile = self.prep.library.devices.get(spec.profile or sc.server.profile)
            if profile is None:
                raise ScenarioError(f"{self.prep.source}: topology.edges[{i}].profile: "
                                    f"unknown profile {spec.profile!r}")
            self.edges[spec.name] = Edge(spec.name, self._backhaul(i, spec),
                                         simpy.Resource(self.env, spec.workers), profile)
        learnable = self.method.learnable_modules()
        self.model_bytes = sum(state_bytes(m) for m in learnable.values())
        for edge in self.edges.values():
            edge.modules = {n: copy.deepcopy(m) for n, m in learnable.items()}
        # split methods train as they run, from their edge's model (fedavg trains at
        # aggregation, with the edge's model loaded)
        self._starts_at_edges = not type(sc.method).defers_training
        # without waves a client is always played by its own device (as split methods at
        # the edge require); with waves, by the device the round's schedule gives it
        self._home = {c: d.edge for c, d in enumerate(self.population.devices)}
        self._edge_of: dict[int, str] = {}

    def run_round(self, round_index: int) -> dict:
        """Split methods' clients start from their edge's model: each edge's copy holds
        its state, and the method is told which client starts from which."""
        if self._starts_at_edges:
            self.method.client_starts = {c: self.edges[e].modules
                                         for c, e in self._home.items()}
        return super().run_round(round_index)

    def start_states(self) -> dict[str, dict[str, torch.Tensor]]:
        """Split methods' clients start from their edge's model (workers get each)."""
        if not self._starts_at_edges:
            return super().start_states()
        return {name: edge.state for name, edge in self.edges.items()}

    def start_key(self, client: int) -> str:
        return self._home[client] if self._starts_at_edges else ""

    def _edge(self, client: int) -> str:
        return self._edge_of.get(client) or self._home[client]

    def server_for(self, client: int):
        edge = self.edges[self._edge(client)]
        return edge.workers, edge.profile, edge.name

    def server_load(self, t0_s: float) -> dict[str, float]:
        """The cloud's figures, and the edges' compute-busy seconds."""
        return {**super().server_load(t0_s),
                "edge_busy_s": sum(self.ledger.busy_s(e, "compute") for e in self.edges)}

    def _backhaul(self, index: int, spec) -> DeviceLink | None:
        if spec.backhaul is None:
            return None
        where = f"{self.prep.source}: topology.edges[{index}].backhaul"
        link = resolve_link(spec.backhaul, self.prep.library, where)
        # edges get their own jitter streams, after every device's
        return make_link(spec.name, LinkClass.of(link, self.prep.base_dir, where), 0,
                         self.scenario.seed, len(self.population.devices) + index)

    def aggregate(self, round_index: int, selected: list[int], updates: list[ClientUpdate],
                  learns: bool) -> None:
        """Edge aggregation, then (every ``cloud_every`` rounds) the cloud round."""
        self._edge_of = {c: d.edge for d, clients in self.population.schedule(selected)
                         for c in clients}
        method = self.method
        cloud_state = {k: v.clone() for k, v in method.learnable_state().items()}
        for edge in self.edges.values():
            mine = [u for u in updates if self._edge(u.client) == edge.name]
            edge.samples_since_cloud += sum(u.num_samples for u in mine)
            if mine and learns:  # the method averages from (and into) the edge's model
                method.load_learnable_state(edge.state)
                method.end_round(mine)
                edge.load(method.learnable_state())
        method.load_learnable_state(cloud_state)
        if (round_index + 1) % self.cloud_every == 0:
            self._cloud_round(round_index, learns)

    def _cloud_round(self, round_index: int, learns: bool) -> None:
        senders = [e for e in self.edges.values() if e.samples_since_cloud > 0]
        if not senders:
            return
        if learns:
            mean = WeightedMean(sum(e.samples_since_cloud for e in senders))
            for edge in senders:  # in the topology's order
                mean.add(edge.state, edge.samples_since_cloud)
            cloud = mean.result()
            self.method.load_learnable_state(cloud)
            for edge in self.edges.values():
                edge.load(cloud)
        for edge in self.edges.values():
            edge.samples_since_cloud = 0
        env = self.env
        ups = [env.process(self._backhaul_transfer(round_index, e, "up")) for e in senders]
        self.run_until(env.all_of(ups), round_index)
        downs = [env.process(self._backhaul_transfer(round_index, e, "down"))
                 for e in self.edges.values()]
        self.run_until(env.all_of(downs), round_index)

    def _backhaul_transfer(self, round_index: int, edge: Edge, direction: str) -> Generator:
        """An edge's model over its backhaul, to or from the cloud's access link: a
        message like any device's (envelope, ledger), from the edge as a device."""
        if edge.backhaul is None:
            return
        sender = Device(edge.name, edge.profile, edge.backhaul)
        yield from RoundContext(self, round_index).transfer(
            sender, -1, direction, {EDGE_MODEL: self.model_bytes})

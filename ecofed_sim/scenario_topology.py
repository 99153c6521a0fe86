"""The ``topology`` section of a scenario: edge servers between the devices and the cloud
(see ``ecofed_sim.hierarchy``)."""

from __future__ import annotations

from pydantic import Field, model_validator

from ecofed_sim.scenario_network import TIMING, LinkSpec, ServerLinkSpec
from ecofed_sim.strict import StrictModel

HIERARCHY_METHODS = ("fedavg", "splitfed", "local_loss", "ecofed")  # with edges


class EdgeSpec(StrictModel):
    """One edge server: the devices that name it reach it over their own links and its
    access link; it reaches the cloud (the ``server``) over its backhaul."""

    name: str = Field(min_length=1, max_length=100)
    """the edge's name, as population.devices[i].edge gives it"""
    access: ServerLinkSpec = Field(ServerLinkSpec(), json_schema_extra=TIMING)
    """the edge's access link, shared max-min fairly by its devices' transfers"""
    profile: str | None = Field(None, json_schema_extra=TIMING)
    """the edge server's compute profile, for split methods' server part at the edge
    (default: server.profile)"""
    workers: int = Field(1, ge=1, le=100_000, json_schema_extra=TIMING)
    """the edge server's parallel compute workers"""
    backhaul: str | LinkSpec | None = Field("ethernet", json_schema_extra=TIMING)
    """the edge's link to the cloud: a named link (ecofed-sim list links) or an inline
    one, its uplink towards the cloud; null: the edge sits with the cloud (no backhaul
    traffic)"""


class TopologySpec(StrictModel):
    """Hierarchical FL (HierFAVG, Liu et al. 2020): each round, every edge averages its
    clients' models (clients train ``training.local_epochs`` between edge aggregations);
    every ``cloud_every`` rounds the edges send their models to the cloud, which averages
    them and sends the result back."""

    edges: list[EdgeSpec] = Field(min_length=1)
    """the edge servers"""
    cloud_every: int = Field(1, ge=1, le=1_000_000)
    """edge rounds between cloud aggregations (k2)"""

    @model_validator(mode="after")
    def _unique_names(self) -> TopologySpec:
        names = [e.name for e in self.edges]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"edge names must be unique: {', '.join(twice)} repeated")
        return self

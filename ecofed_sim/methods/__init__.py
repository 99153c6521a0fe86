"""Method registry. Adding a method = one module + one line in ``REGISTRY``."""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from ecofed_sim.methods.base import Method
from ecofed_sim.methods.ecofed import EcoFed
from ecofed_sim.methods.fedavg import FedAvg
from ecofed_sim.methods.fedgkt import FedGKT
from ecofed_sim.methods.local_loss import LocalLoss
from ecofed_sim.methods.splitfed import SplitFed
from ecofed_sim.methods.splitfed_v2 import SplitFedV2

REGISTRY: dict[str, type[Method]] = {m.name: m for m in (
    FedAvg, SplitFed, SplitFedV2, LocalLoss, FedGKT, EcoFed)}

MethodConfig = Annotated[
    Union[tuple(m.Config for m in REGISTRY.values())],  # noqa: UP007 (built at runtime)
    Field(discriminator="name"),
]
"""The scenario's ``method`` section: a tagged union over every registered method."""

__all__ = ["REGISTRY", "MethodConfig", "Method"]

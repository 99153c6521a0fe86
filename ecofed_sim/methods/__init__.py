"""Method registry: the built-in methods, then any that installed packages register under
the ``ecofed_sim.methods`` entry-point group (docs/adding_a_method.md). Adding a built-in
method = one module + one line in ``BUILT_IN``."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Annotated, Union

from pydantic import Field

from ecofed_sim.methods.base import Method
from ecofed_sim.methods.ecofed import EcoFed
from ecofed_sim.methods.fedavg import FedAvg
from ecofed_sim.methods.fedgkt import FedGKT
from ecofed_sim.methods.local_loss import LocalLoss
from ecofed_sim.methods.splitfed import SplitFed
from ecofed_sim.methods.splitfed_v2 import SplitFedV2

BUILT_IN: tuple[type[Method], ...] = (FedAvg, SplitFed, SplitFedV2, LocalLoss, FedGKT, EcoFed)
ENTRY_POINT_GROUP = "ecofed_sim.methods"


def _plugins() -> list[type[Method]]:
    """Methods other packages register; a broken one is an error naming its entry point."""
    found = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            method = ep.load()
        except Exception as err:  # noqa: BLE001 (any failure names the plugin)
            raise ImportError(f"ecofed_sim method plugin {ep.name!r} ({ep.value}) does not "
                              f"load: {err}") from err
        if not (isinstance(method, type) and issubclass(method, Method)):
            raise ImportError(f"ecofed_sim method plugin {ep.name!r} ({ep.value}) is not a "
                              "subclass of ecofed_sim.methods.base.Method")
        found.append(method)
    return found


def _registry(methods: list[type[Method]]) -> dict[str, type[Method]]:
    registry: dict[str, type[Method]] = {}
    for m in methods:
        if m.name in registry:
            raise ImportError(f"two ecofed_sim methods are named {m.name!r}")
        registry[m.name] = m
    return registry


REGISTRY: dict[str, type[Method]] = _registry([*BUILT_IN, *_plugins()])

MethodConfig = Annotated[
    Union[tuple(m.Config for m in REGISTRY.values())],  # noqa: UP007 (built at runtime)
    Field(discriminator="name"),
]
"""The scenario's ``method`` section: a tagged union over every registered method."""

__all__ = ["REGISTRY", "MethodConfig", "Method"]

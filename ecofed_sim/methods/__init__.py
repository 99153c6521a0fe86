"""Method registry: the built-in methods, then any that installed packages register under
the ``ecofed_sim.methods`` entry-point group (docs/adding_a_method.md). Adding a built-in
method = one module, its config in ``configs``, and one line in ``BUILT_IN``.

``CONFIGS`` (name -> the method's scenario section and traits) is all that reading and
checking a scenario needs, and imports no torch. ``REGISTRY`` (name -> Method class)
imports the built-in methods on first use.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field

from ecofed_sim.methods.configs import BUILT_IN_CONFIGS, MethodConfigBase

if TYPE_CHECKING:
    from ecofed_sim.methods.base import Method

BUILT_IN = {  # name -> "module:Class", imported when REGISTRY is first used
    "fedavg": "ecofed_sim.methods.fedavg:FedAvg",
    "splitfed": "ecofed_sim.methods.splitfed:SplitFed",
    "splitfed_v2": "ecofed_sim.methods.splitfed_v2:SplitFedV2",
    "local_loss": "ecofed_sim.methods.local_loss:LocalLoss",
    "fedgkt": "ecofed_sim.methods.fedgkt:FedGKT",
    "ecofed": "ecofed_sim.methods.ecofed:EcoFed",
}
ENTRY_POINT_GROUP = "ecofed_sim.methods"


def _config_name(config: type[MethodConfigBase]) -> str:
    return config.model_fields["name"].annotation.__args__[0]


def _plugins() -> list[type[Method]]:
    """Methods other packages register; a broken one is an error naming its entry point."""
    found = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            method = ep.load()
        except Exception as err:  # noqa: BLE001 (any failure names the plugin)
            raise ImportError(f"ecofed_sim method plugin {ep.name!r} ({ep.value}) does not "
                              f"load: {err}") from err
        from ecofed_sim.methods.base import Method

        if not (isinstance(method, type) and issubclass(method, Method)):
            raise ImportError(f"ecofed_sim method plugin {ep.name!r} ({ep.value}) is not a "
                              "subclass of ecofed_sim.methods.base.Method")
        found.append(method)
    return found


def _configs(plugins: list[type[Method]]) -> dict[str, type[MethodConfigBase]]:
    configs = {_config_name(c): c for c in BUILT_IN_CONFIGS}
    assert set(configs) == set(BUILT_IN), "every built-in method has one config"
    for m in plugins:
        if m.name in configs:
            raise ImportError(f"two ecofed_sim methods are named {m.name!r}")
        if _config_name(m.Config) != m.name:
            raise ImportError(f"ecofed_sim method {m.name!r}: its Config's name is "
                              f"{_config_name(m.Config)!r}")
        configs[m.name] = m.Config
    return configs


PLUGINS = _plugins()
CONFIGS: dict[str, type[MethodConfigBase]] = _configs(PLUGINS)

MethodConfig = Annotated[
    Union[tuple(CONFIGS.values())],  # noqa: UP007 (built at runtime)
    Field(discriminator="name"),
]
"""The scenario's ``method`` section: a tagged union over every registered method."""


def _registry() -> dict[str, type[Method]]:
    registry = {}
    for name, where in BUILT_IN.items():
        module, cls = where.split(":")
        method = getattr(importlib.import_module(module), cls)
        assert method.name == name and method.Config is CONFIGS[name], where
        registry[name] = method
    return {**registry, **{m.name: m for m in PLUGINS}}


def __getattr__(name: str) -> Any:
    """``REGISTRY`` and ``Method`` on first use (they import torch)."""
    if name == "REGISTRY":
        globals()["REGISTRY"] = value = _registry()
        return value
    if name == "Method":
        from ecofed_sim.methods.base import Method

        return Method
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CONFIGS", "REGISTRY", "MethodConfig", "Method"]

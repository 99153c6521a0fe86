"""The scenarios and sweeps shipped inside the package, runnable from any folder by name.

``ecofed-sim run quickstart`` finds ``ecofed_sim/scenarios/quickstart.yaml`` (through
``importlib.resources``, so an installed wheel has it too); a path that exists always wins
over a shipped name. Files a shipped scenario names (traces, bases) sit beside it in the
package, so its relative paths hold wherever it is run from.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SCENARIOS_DIR = Path(str(resources.files("ecofed_sim") / "scenarios"))


def shipped() -> dict[str, Path]:
    """Shipped scenario and sweep files by name (``quickstart``, ``paper/ecofed``,
    ``sweeps/quickstart_uplink``); bases that only exist to be extended start with ``_``."""
    return {str(p.relative_to(SCENARIOS_DIR).with_suffix("")): p
            for p in sorted(SCENARIOS_DIR.rglob("*.yaml")) if not p.name.startswith("_")}


def resolve(arg: Path) -> Path:
    """``arg`` if that file exists, else the shipped file of that name (with or without
    ``.yaml``, with or without a leading ``scenarios/``), else ``arg`` unchanged (the caller
    then reports it missing)."""
    if arg.exists():
        return arg
    name = arg.as_posix().removesuffix(".yaml").removeprefix("scenarios/")
    return shipped().get(name, arg)


def describe(path: Path) -> str:
    """A shipped file's ``description`` (or its first comment line), for listings."""
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return ""
    if isinstance(doc, dict) and doc.get("description"):
        return str(doc["description"])
    first = path.read_text().splitlines()[:1]
    return first[0].lstrip("# ").strip() if first and first[0].startswith("#") else ""

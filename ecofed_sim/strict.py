"""The one base of every user-facing config model, and safe reading of user YAML.

Every config (scenario, method, codec, profile, sweep) is frozen, rejects unknown keys,
rejects infinite and NaN numbers (``.inf`` in YAML would otherwise hang a run or exhaust
memory) and rejects booleans where a number belongs (pydantic's lax mode reads
``rounds: true`` as 1). YAML is read with ``safe_load`` (no objects are ever constructed
from tags) and its expanded size is bounded: aliases can make a small file stand for an
exponentially large value (a "billion laughs"), which would otherwise grow until killed.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ecofed_sim.errors import ScenarioError

Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]  # numpy's seeding takes no negatives
# Link rates below 1 kbit/s (slower than GPRS) are typos: they would make a run simulate
# for years, one event per trace step, and so never end on the wall clock.
MIN_RATE_MBPS = 1e-3
RateMbps = Annotated[float, Field(ge=MIN_RATE_MBPS)]
MAX_YAML_NODES = 200_000  # scalars, list items and mapping entries after expanding aliases
MAX_YAML_BYTES = 16 * 2**20  # scenario, sweep and profile files are a few KB

def _numeric_only(annotation: object) -> bool:
    """Whether a field holds numbers and never a bool (``int``, ``float | None``...)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _numeric_only(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return bool(args) and all(_numeric_only(a) for a in args)
    return annotation in (int, float)


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False,
                              use_attribute_docstrings=True)

    @model_validator(mode="before")
    @classmethod
    def _no_bools_for_numbers(cls, data: Any) -> Any:
        """A bool given for a number is swapped for a token no number type accepts, so
        pydantic reports it at the field as usual: ``rounds: input should be a valid
        integer (got true)``."""
        if not isinstance(data, dict):
            return data
        swapped = {name: _YamlBool(value) for name, value in data.items()
                   if isinstance(value, bool) and name in cls.model_fields
                   and _numeric_only(cls.model_fields[name].annotation)}
        return {**data, **swapped} if swapped else data


class _YamlBool:
    """A boolean where a number belongs; shows as YAML wrote it."""

    def __init__(self, value: bool) -> None:
        self.value = value

    def __repr__(self) -> str:
        return str(self.value).lower()


class YamlTooLarge(ValueError):
    """The document expands (through aliases) to more than ``MAX_YAML_NODES`` values."""


def check_size(value: object, limit: int = MAX_YAML_NODES) -> None:
    """Count values as if aliases were copied out; stop as soon as ``limit`` is passed
    (so the count itself costs at most ``limit`` steps)."""
    stack, seen = [value], 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > limit:
            raise YamlTooLarge(f"expands to more than {limit:,} values (aliases?)")
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            stack.extend(node)


def load_yaml(text: str) -> object:
    """``yaml.safe_load`` plus the size bound; raises ``yaml.YAMLError`` or
    ``YamlTooLarge``."""
    value = yaml.safe_load(text)
    check_size(value)
    return value


def read_yaml(path: Path) -> object:
    """The YAML document in ``path``, or a one-line ``ScenarioError`` naming the file (and
    the line of a syntax error): missing, a folder, too big, binary, or malformed."""
    if not path.exists():
        raise ScenarioError(f"{path}: file not found")
    if not path.is_file():
        raise ScenarioError(f"{path}: not a regular file")
    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            raise ScenarioError(f"{path}: larger than {MAX_YAML_BYTES // 2**20} MiB; not a "
                                "scenario, sweep or profile file")
        return load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or "parse error"
        raise ScenarioError(f"{path}: {where}invalid YAML ({problem})") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{path}: not a text file (invalid UTF-8)") from None
    except YamlTooLarge as err:
        raise ScenarioError(f"{path}: {err}") from None
    except OSError as err:
        raise ScenarioError(f"{path}: cannot read ({err.strerror or err.__class__.__name__})"
                            ) from None

"""The scenario and profile schema as a Markdown reference, generated from the pydantic
models (their field docstrings, defaults and bounds), so the docs cannot drift from the
code: ``docs/scenario_schema.md`` is this module's output, and a test keeps it so.

    python -m ecofed_sim.schema_doc > docs/scenario_schema.md
"""

from __future__ import annotations

import types
import typing

import annotated_types as at
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

_BOUNDS = ((at.Ge, "ge", ">="), (at.Gt, "gt", ">"), (at.Le, "le", "<="), (at.Lt, "lt", "<"),
           (at.MinLen, "min_length", "items >="))


def _members(annotation: object) -> list[object]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(annotation) for m in _members(a)]
    return [annotation]


def _models(annotation: object) -> list[type[BaseModel]]:
    found = []
    for m in _members(annotation):
        inner = typing.get_args(m) if typing.get_origin(m) in (list, tuple, dict) else (m,)
        found += [c for c in inner if isinstance(c, type) and issubclass(c, BaseModel)]
    return found


def _type(annotation: object) -> str:
    parts = []
    for m in _members(annotation):
        origin = typing.get_origin(m)
        if origin is typing.Literal:
            parts.append(" \\| ".join(f"`{v}`" for v in typing.get_args(m)))
        elif m is type(None):
            parts.append("none")
        elif origin in (list, tuple):
            parts.append(f"{origin.__name__} of {', '.join(map(_type, typing.get_args(m)))}")
        elif isinstance(m, type) and issubclass(m, BaseModel):
            parts.append("section")
        else:
            parts.append(getattr(m, "__name__", str(m)))
    return " or ".join(dict.fromkeys(parts))


def _bounds(field) -> str:
    out = []
    for meta in field.metadata:
        for kind, attr, sign in _BOUNDS:
            if isinstance(meta, kind):
                value = getattr(meta, attr)
                out.append(f"{sign} {value:g}" if isinstance(value, float) else
                           f"{sign} {value:,}")
    return ", ".join(out)


def _default(field) -> str:
    if field.is_required():
        return "required"
    value = field.default if field.default is not PydanticUndefined else field.default_factory()
    if isinstance(value, BaseModel):
        return "(section)"
    return f"`{value!r}`" if value not in (None, [], {}) else ("none" if value is None
                                                               else f"`{value!r}`")


def rows(model: type[BaseModel], prefix: str = "", skip: tuple = ()) -> list[str]:
    """One Markdown table row per field, sections followed by their own fields."""
    out = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        extra = field.json_schema_extra or {}
        tag = " *(timing only)*" if isinstance(extra, dict) and extra.get("timing_only") else ""
        text = " ".join((field.description or "").split())
        out.append(f"| `{path}` | {_type(field.annotation)} | {_default(field)} | "
                   f"{_bounds(field)} | {text}{tag} |")
        for sub in _models(field.annotation):
            if sub not in skip:
                kind = _type(field.annotation)
                mark = "[]" if kind.startswith("list") else "{}" if kind == "dict" else ""
                out += rows(sub, f"{path}{mark}.", skip)
    return out


HEADER = "| field | type | default | bounds | meaning |\n|---|---|---|---|---|"


def render() -> str:
    from ecofed_sim.methods import REGISTRY
    from ecofed_sim.profiles import DeviceProfile, LinkProfile
    from ecofed_sim.scenario import Scenario

    configs = tuple(m.Config for m in REGISTRY.values())
    parts = ["# Scenario schema reference", "",
             "Generated from the code by `python -m ecofed_sim.schema_doc`; a test keeps this "
             "file in sync. Unknown keys are errors, every number must be finite, and fields "
             "marked *timing only* can change simulated time but never what is learned (runs "
             "that differ only in them share one learning run in a sweep).", "",
             "## Scenario", "", HEADER, *rows(Scenario, skip=configs), ""]
    for method in REGISTRY.values():
        doc = (method.__doc__ or "").strip().splitlines()
        parts += [f"## `method` for `{method.name}`", "", *(doc[:1] + [""] if doc else []),
                  HEADER, *rows(method.Config, "method."), ""]
    parts += ["## Device and server profiles (`device_profiles/*.yaml`)", "", HEADER,
              *rows(DeviceProfile), "", "## Links (`device_profiles/links.yaml`, by name)", "",
              HEADER, *rows(LinkProfile, "<name>."), ""]
    return "\n".join(parts)


if __name__ == "__main__":
    print(render(), end="")

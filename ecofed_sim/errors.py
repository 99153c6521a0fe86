"""User-facing errors: one line naming the file, the field path, what was given and what
is accepted. The CLI prints them without a traceback and exits with status 2."""

from __future__ import annotations

import types
import typing

from pydantic import BaseModel, ValidationError


class ScenarioError(ValueError):
    """Bad user input (scenario, override, profile); ``str()`` is the one-line message."""


_COMPARISONS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
                "less_than_equal": "<="}


def _members(annotation: object) -> list[object]:
    """The classes an annotation may hold (unwrapping Optional, Union, list, Annotated)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, list, tuple, dict):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [annotation]


def _model_at(root: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model class addressed by a validation-error location, if any."""
    current: list[object] = [root]
    for part in loc:
        nxt: list[object] = []
        for cls in current:
            if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
                continue
            if part in cls.model_fields:
                nxt += _members(cls.model_fields[part].annotation)
            else:  # a union tag or a list index: stay on the matching member
                tag = cls.model_fields.get("name")
                if isinstance(part, int) or (tag and part in typing.get_args(tag.annotation)):
                    nxt.append(cls)
        current = nxt
    models = [c for c in current if isinstance(c, type) and issubclass(c, BaseModel)]
    return models[0] if models else None


def _loc_text(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _clean_loc(loc: tuple, root: type[BaseModel]) -> tuple:
    """Drop union tags and validator pseudo-locations that users never wrote."""
    kept: list = []
    for i, part in enumerate(loc):
        if isinstance(part, str) and ("[" in part or "function-after" in part):
            continue
        parent = _model_at(root, tuple(loc[:i]))
        if parent is not None and isinstance(part, str) and part not in parent.model_fields \
                and part in typing.get_args(getattr(parent.model_fields.get("name"),
                                                    "annotation", None)):
            continue
        kept.append(part)
    return tuple(kept)


def describe_error(err: dict, root: type[BaseModel]) -> tuple[str, str]:
    """(field path, message) for one pydantic error dict."""
    kind, loc, given = err["type"], err["loc"], err.get("input")
    path = _loc_text(_clean_loc(loc, root)) or "(top level)"
    if kind == "extra_forbidden":
        parent = _model_at(root, loc[:-1])
        accepted = ", ".join(parent.model_fields) if parent else "?"
        return path, f"unknown field (accepted: {accepted})"
    if kind == "missing":
        return path, "required field missing"
    if kind == "union_tag_invalid":
        tags = err.get("ctx", {}).get("expected_tags", "")
        return path + ".name", f"unknown method {err['ctx']['tag']!r} (accepted: {tags})"
    if kind == "literal_error":
        return path, f"must be one of {err['ctx']['expected']} (got {given!r})"
    if kind in _COMPARISONS:
        bound = next(iter(err["ctx"].values()))
        return path, f"must be {_COMPARISONS[kind]} {bound} (got {given!r})"
    if kind == "value_error":
        return path, str(err["ctx"]["error"])
    msg = err["msg"][0].lower() + err["msg"][1:]
    return path, f"{msg} (got {given!r})"


def format_validation_error(source: str, error: ValidationError, root: type[BaseModel]) -> str:
    errs = error.errors()
    path, msg = describe_error(errs[0], root)
    more = f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""
    return f"{source}: {path}: {msg}{more}"

"""User-facing errors: one line naming the file, the field path, what was given and what
is accepted. The CLI prints them without a traceback and exits with status 2."""

from __future__ import annotations

import reprlib
import types
import typing

from pydantic import BaseModel, ValidationError


class ScenarioError(ValueError):
    """Bad user input (scenario, override, profile); ``str()`` is the one-line message."""


class WorkerLost(RuntimeError):
    """A worker process of a run ended abruptly; ``str()`` is the one-line message."""

    def __init__(self) -> None:
        super().__init__(
            "a worker process ended abruptly: killed, out of memory, or started from a "
            "script that calls ecofed_sim.run(workers=...) outside "
            "'if __name__ == \"__main__\":' (each worker imports that script)")


MAX_MESSAGE_CHARS = 400
_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict, _REPR.maxlevel = 60, 60, 6, 4, 3


def short_repr(value: object) -> str:
    """A bounded ``repr`` for error messages (bounded in time too: never walks it all)."""
    return _REPR.repr(value)


def one_line(message: str) -> str:
    """A user error as printed: one line, at most ``MAX_MESSAGE_CHARS`` characters."""
    text = " ".join(str(message).split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS - 3] + "..."


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


def _is_model(cls: object) -> bool:
    return isinstance(cls, type) and issubclass(cls, BaseModel)


def _walk(root: type[BaseModel], loc: tuple) -> tuple[tuple, type[BaseModel] | None]:
    """The location as the user wrote it (union-branch tags dropped), and the pydantic
    model class it ends in, if any."""
    current: list[object] = [root]
    kept: list = []
    for part in loc:
        models = [c for c in current if _is_model(c)]
        owners = [c for c in models if part in c.model_fields]
        if owners:
            kept.append(part)
            current = _members(owners[0].model_fields[part].annotation)
        elif isinstance(part, int):
            kept.append(part)
        else:  # a union branch ("LinkSpec", "str") or a discriminator tag ("fedavg")
            narrowed = [c for c in models if c.__name__ == part or part in typing.get_args(
                getattr(c.model_fields.get("name"), "annotation", None))]
            current = narrowed or current
    models = [c for c in current if _is_model(c)]
    return tuple(kept), (models[0] if models else None)


def _loc_text(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def describe_error(err: dict, root: type[BaseModel]) -> tuple[str, str]:
    """(field path, message) for one pydantic error dict."""
    kind, loc, given = err["type"], err["loc"], err.get("input")
    clean, _ = _walk(root, loc)
    path = _loc_text(clean) or "(top level)"
    if kind == "extra_forbidden":  # the unknown key is not a field: keep it in the path
        head, parent = _walk(root, loc[:-1])
        path = _loc_text((*head, loc[-1]))
        accepted = ", ".join(parent.model_fields) if parent else "?"
        return path, f"unknown field (accepted: {accepted})"
    if kind == "missing":
        return path, "required field missing"
    if kind == "union_tag_invalid":
        tags = err.get("ctx", {}).get("expected_tags", "")
        return path + ".name", f"unknown method {err['ctx']['tag']!r} (accepted: {tags})"
    if kind == "literal_error":
        return path, f"must be one of {err['ctx']['expected']} (got {short_repr(given)})"
    if kind in _COMPARISONS:
        bound = next(iter(err["ctx"].values()))
        return path, f"must be {_COMPARISONS[kind]} {bound:g} (got {short_repr(given)})"
    if kind == "value_error":
        return path, str(err["ctx"]["error"])
    msg = err["msg"][0].lower() + err["msg"][1:]
    return path, f"{msg} (got {short_repr(given)})"


def format_validation_error(source: str, error: ValidationError, root: type[BaseModel]) -> str:
    # The deepest error first: for a union such as ``str | LinkSpec`` given a mapping, the
    # mapping's own field error says more than "not a string".
    # (and a branch's own complaint before another branch's "not a string"):
    errs = sorted(error.errors(), key=lambda e: (e["type"].endswith("_type"), -len(e["loc"])))
    path, msg = describe_error(errs[0], root)
    chosen = _walk(root, errs[0]["loc"])[0]
    others = {_walk(root, e["loc"])[0] for e in errs[1:]}
    others = {o for o in others if o != chosen[: len(o)]}  # union alternatives of the same
    more = f" (+{len(others)} more)" if others else ""
    return f"{source}: {path}: {msg}{more}"

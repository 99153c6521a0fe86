"""Scenario files and ``--set`` overrides as plain mappings, before validation: reading
(with ``extends:``), field paths (``population.devices[0].link``), and where the paths a
value names are relative to."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ecofed_sim.errors import ScenarioError, short_repr
from ecofed_sim.strict import YamlTooLarge, load_yaml, read_yaml

_FIELD_PATH = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\.\d+|\[\d+\])*")


def parse_override(text: str) -> tuple[list[str], object]:
    """``a.b[0].c=value`` -> (['a', 'b', '0', 'c'], YAML-parsed value)."""
    label = short_repr(text)
    if "=" not in text:
        raise ScenarioError(f"--set {label}: expected path=value")
    path, value = text.split("=", 1)
    if not _FIELD_PATH.fullmatch(path.strip()):
        raise ScenarioError(f"--set {label}: malformed field path {short_repr(path)} "
                            "(expected e.g. population.devices[0].link)")
    parts = re.findall(r"\w+", path)
    try:
        return parts, load_yaml(value) if value else ""
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or "parse error"
        raise ScenarioError(f"--set {label}: invalid YAML value ({problem})") from None
    except YamlTooLarge as err:
        raise ScenarioError(f"--set {label}: the value {err}") from None


def apply_override(raw: dict, parts: list[str], value: object, label: str) -> None:
    node: object = raw
    for i, key in enumerate(parts[:-1]):
        nxt = _child(node, key, create=True, label=label, path=parts[: i + 1])
        node = nxt
    last = parts[-1]
    if isinstance(node, list):
        node[_index(node, last, label, parts)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ScenarioError(f"--set {label}: {'.'.join(parts[:-1])} is not a section")


def _index(node: list, key: str, label: str, path: list[str]) -> int:
    if not key.isdigit() or int(key) >= len(node):
        raise ScenarioError(f"--set {label}: {'.'.join(path)}: no list item {key!r} "
                            f"(the list has {len(node)})")
    return int(key)


def _child(node: object, key: str, create: bool, label: str, path: list[str]) -> object:
    if isinstance(node, list):
        return node[_index(node, key, label, path)]
    if isinstance(node, dict):
        if key not in node or node[key] is None:
            node[key] = {}
        return node[key]
    raise ScenarioError(f"--set {label}: {'.'.join(path[:-1])} is not a section")


def deep_merge(base: dict, child: dict) -> dict:
    """``child`` over ``base``: mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_raw(path: Path, _seen: tuple[Path, ...] = ()) -> dict:
    """The YAML mapping in ``path`` (with ``extends: base.yaml`` merged under it, the
    base's path relative to this file), or a one-line ScenarioError."""
    raw = _read_mapping(path)
    base = raw.pop("extends", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise ScenarioError(f"{path}: extends: expected a file path (got {base!r})")
    base_path = (path.parent / base).resolve()
    if base_path in _seen or base_path == path.resolve():
        raise ScenarioError(f"{path}: extends: circular ({base})")
    return deep_merge(read_raw(base_path, (*_seen, path.resolve())), raw)


def _read_mapping(path: Path) -> dict:
    raw = read_yaml(path)
    if raw is None:
        raise ScenarioError(f"{path}: empty file (expected a scenario mapping)")
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: expected a mapping at the top level, "
                            f"got {type(raw).__name__}")
    return raw


PATH_FIELDS = frozenset({"root", "uplink_trace", "downlink_trace", "availability_trace",
                         "profiles_dir", "checkpoint"})
"""Fields that name files: relative to the scenario file when written there, relative to
the working folder when given with ``--set`` (where the user typed them)."""


def _from_working_folder(value: object, key: str) -> object:
    """An override's relative paths, made absolute against the working folder."""
    if isinstance(value, dict):
        return {k: _from_working_folder(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_working_folder(v, key) for v in value]
    if key in PATH_FIELDS and isinstance(value, str) and value and not Path(value).is_absolute():
        return str(Path.cwd() / value)
    return value

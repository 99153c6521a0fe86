"""Sweep files: a base scenario plus axes, expanded into runs with stable ids.

```yaml
name: bandwidth
base: ../quickstart.yaml          # relative to the sweep file
set: {rounds: 10}                 # fixed overrides, any field path
mode: grid                        # grid (product of axes) or zip (axes side by side)
axes:
  - path: method
    values: [{name: fedavg}, {name: ecofed, split: 4}]
    labels: [fedavg, ecofed]      # optional column values for the summary
  - path: population.devices[0].link.uplink_mbps
    values: [1, 10, 100]
seeds: [0, 1, 2]                  # repeated as an axis of their own
targets: [0.9, 0.95]              # accuracies for time- and bytes-to-accuracy
```
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from ecofed_sim.checks import check
from ecofed_sim.errors import ScenarioError, format_validation_error
from ecofed_sim.progress import bar
from ecofed_sim.scenario import (
    Scenario,
    apply_override,
    parse_override,
    read_raw,
    scenario_from_dict,
    timing_shapes_learning,
)
from ecofed_sim.strict import Seed, StrictModel
from ecofed_sim.trace import learning_key

MAX_RUNS = 10_000  # a larger grid is refused unless forced: it is nearly always a typo
Accuracy = Annotated[float, Field(ge=0, le=1)]


class Axis(StrictModel):
    path: str | list[str] = Field(description="a field path, or several set to one value")
    values: list[Any] = Field(min_length=1)
    labels: list[str | int | float] | None = None
    label: str | None = Field(None, description="column name (default: the path)")

    @model_validator(mode="after")
    def _labels_match(self) -> Axis:
        if self.labels is not None and len(self.labels) != len(self.values):
            raise ValueError(f"{len(self.labels)} labels for {len(self.values)} values")
        return self

    @property
    def paths(self) -> list[str]:
        return [self.path] if isinstance(self.path, str) else list(self.path)

    @property
    def column(self) -> str:
        return self.label or self.paths[0]


class SweepSpec(StrictModel):
    name: str
    base: str
    set: dict[str, Any] = Field(default_factory=dict)
    mode: Literal["grid", "zip"] = "grid"
    axes: list[Axis] = Field(default_factory=list)
    seeds: list[Seed] = Field(default_factory=list)
    targets: list[Accuracy] = Field(default_factory=list)

    @model_validator(mode="after")
    def _zip_lengths(self) -> SweepSpec:
        if self.mode == "zip" and len({len(a.values) for a in self.axes}) > 1:
            raise ValueError("zip mode needs axes of equal length, got "
                             f"{[len(a.values) for a in self.axes]}")
        return self


@dataclass(frozen=True)
class RunSpec:
    """One point of a sweep: its resolved scenario and the swept values."""

    run_id: str
    scenario: Scenario
    params: dict[str, Any]
    learning_key: str
    reusable: bool  # may share a learning trace with runs of the same learning_key


def _label(axis: Axis, index: int) -> Any:
    """An axis value's label: the given one; a mapping by its ``name`` plus the fields in
    which it differs from the axis's other values of that name (``splitfed split=2``),
    so that two configurations of one method never share a label."""
    if axis.labels is not None:
        return axis.labels[index]
    value = axis.values[index]
    if not isinstance(value, dict):
        return value
    if not value.get("name"):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    same = [v for v in axis.values if isinstance(v, dict) and v.get("name") == value["name"]]
    differing = sorted({k for v in same for k in set(v) | set(value)
                        if k != "name" and v.get(k) != value.get(k)})
    return " ".join([value["name"], *(f"{k}={_short(value.get(k))}" for k in differing)])


def _short(value: Any) -> str:
    if isinstance(value, dict | list):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    return "default" if value is None else str(value)


def run_id(scenario: Scenario) -> str:
    """Stable id from the resolved scenario (every default written out) and the simulator
    version, so an upgrade never silently reuses results of an older version."""
    from ecofed_sim import __version__

    blob = json.dumps({"scenario": scenario.model_dump(mode="json"),
                       "ecofed_sim": __version__}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def load_sweep(path: Path) -> SweepSpec:
    raw = read_raw(path)
    try:
        return SweepSpec.model_validate(raw)
    except ValidationError as err:
        raise ScenarioError(format_validation_error(str(path), err, SweepSpec)) from None


def count_runs(spec: SweepSpec) -> int:
    """How many runs the sweep expands to, without expanding it."""
    if spec.mode == "zip":
        points = len(spec.axes[0].values) if spec.axes else 1
    else:
        points = math.prod(len(a.values) for a in spec.axes)
    return points * max(1, len(spec.seeds))


def _points(spec: SweepSpec) -> Iterator[list[int]]:
    sizes = [range(len(a.values)) for a in spec.axes]
    if spec.mode == "zip":
        yield from ([[i] * len(spec.axes) for i in range(len(spec.axes[0].values))]
                    if spec.axes else [[]])
        return
    yield from (list(p) for p in itertools.product(*sizes))


def expand(path: Path, spec: SweepSpec, force: bool = False,
           progress: bool = False) -> list[RunSpec]:
    """Every run of the sweep, validated like ``ecofed-sim validate`` (one-line errors).
    More than ``MAX_RUNS`` runs are refused unless ``force``."""
    total = count_runs(spec)
    if total > MAX_RUNS and not force:
        raise ScenarioError(f"{path}: axes: the sweep expands to {total:,} runs, more than "
                            f"{MAX_RUNS:,}; pass --force if that is meant")
    base_path = (path.parent / spec.base)
    try:
        base_raw = read_raw(base_path)
    except ScenarioError as err:
        raise ScenarioError(f"{path}: base: {err}") from None
    runs: list[RunSpec] = []
    checked = bar(total, f"checking {spec.name}", "run", progress and total > 100)
    for point in _points(spec):
        for seed in spec.seeds or [None]:
            raw = copy.deepcopy(base_raw)
            params: dict[str, Any] = {}
            overrides = [(f"set.{k}", k, v) for k, v in spec.set.items()]
            overrides += [(f"axes[{i}]", p, a.values[j])
                          for i, (a, j) in enumerate(zip(spec.axes, point, strict=True))
                          for p in a.paths]
            if seed is not None:
                overrides.append(("seeds", "seed", seed))
            for where, field_path, value in overrides:
                parts, _ = parse_override(f"{field_path}=0")
                try:
                    apply_override(raw, parts, copy.deepcopy(value), field_path)
                except ScenarioError as err:
                    raise ScenarioError(f"{path}: {where}: {err}") from None
            for axis, j in zip(spec.axes, point, strict=True):
                params[axis.column] = _label(axis, j)
            if seed is not None:
                params["seed"] = seed
            where = f"{path} ({_describe(params)})"
            scenario = scenario_from_dict(raw, where)
            check(scenario, where, base_path.parent)
            reusable = (type(scenario.method).timing_independent
                        and not timing_shapes_learning(scenario))
            runs.append(RunSpec(run_id(scenario), scenario, params, learning_key(scenario),
                                reusable))
            checked.update(1)
    checked.close()
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        raise ScenarioError(f"{path}: axes: two points resolve to the same scenario")
    _check_labels_unique(path, runs)
    return runs


def _check_labels_unique(path: Path, runs: list[RunSpec]) -> None:
    """Two different scenarios with the same labels would be drawn as one curve (the mean
    of two experiments): refused, naming both."""
    seen: dict[tuple, RunSpec] = {}
    for r in runs:
        labels = {"method": r.scenario.method.name, **r.params}
        key = tuple(sorted((k, str(v)) for k, v in labels.items()))
        if key in seen:
            raise ScenarioError(f"{path}: axes: two different points share the labels "
                                f"{_describe(labels)} (runs {seen[key].run_id} and "
                                f"{r.run_id}); give the axis distinct labels")
        seen[key] = r


def _describe(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "base"


def learning_groups(runs: list[RunSpec], reuse: bool) -> list[list[RunSpec]]:
    """Runs that can share one learning run, in sweep order; singletons otherwise."""
    if not reuse:
        return [[r] for r in runs]
    groups: dict[str, list[RunSpec]] = {}
    out: list[list[RunSpec]] = []
    for r in runs:
        if not r.reusable:
            out.append([r])
        elif r.learning_key in groups:
            groups[r.learning_key].append(r)
        else:
            groups[r.learning_key] = [r]
            out.append(groups[r.learning_key])
    return out

"""Learning-trace reuse: record what a run did, re-play it under other timing.

When runs differ only in fields that cannot change what is learned (the schema marks them
``timing_only``: bandwidths, latencies, device and server profiles, device counts, server
workers), the real training needs to run once. The ``Recorder`` logs, per client round
and per server process, every compute (as profile-independent ``Pass`` costs), transfer,
server step, process start and wait. The ``Replayer`` plays those logs in a new world and
copies the recorded metrics, so only the clocks are simulated again. This is valid for
methods whose learning does not depend on arrival order (its config's ``timing_independent``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel


@dataclass
class RoundTrace:
    selected: list[int]
    logs: dict[tuple, list[tuple]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    hosted: dict[int, int] = field(default_factory=dict)  # client -> server steps


@dataclass
class Trace:
    learning_key: str
    rounds: list[RoundTrace] = field(default_factory=list)


class Recorder:
    """Logs each process's operations; owned by one environment."""

    def __init__(self, env) -> None:
        self.env = env
        self.rounds: list[RoundTrace] = []
        self.owner: dict[object, tuple] = {}
        self._children = 0

    def begin_round(self, selected: list[int]) -> None:
        self.rounds.append(RoundTrace(list(selected)))
        self.owner.clear()

    def own(self, process, key: tuple) -> None:
        self.owner[process] = key
        self.rounds[-1].logs.setdefault(key, [])

    def op(self, op: tuple) -> None:
        key = self.owner.get(self.env.active_process)
        if key is not None:
            self.rounds[-1].logs[key].append(op)

    def child(self, process, hosting: tuple[int, int] | None = None) -> None:
        self._children += 1
        key = ("child", self._children)
        self.op(("start", key, hosting))
        self.own(process, key)

    def host(self, client: int, server_steps: int) -> None:
        self.rounds[-1].hosted[client] = server_steps

    def waits(self, processes: list) -> None:
        self.op(("wait", [self.owner[p] for p in processes]))

    def end_round(self, metrics: dict[str, Any]) -> None:
        self.rounds[-1].metrics = dict(metrics)


def _nothing() -> None:
    return None


def interpret(ctx, logs: dict[tuple, list[tuple]], key: tuple, device) -> Generator:
    """Re-play one recorded process: same operations, same order, new timing."""
    handles: dict[tuple, object] = {}
    for op in logs.get(key, []):
        kind = op[0]
        if kind == "compute":
            yield from ctx.compute(device, op[1], op[2], op[3])
        elif kind == "transfer":
            yield from ctx.transfer(device, op[1], op[2], op[3])
        elif kind == "server":
            yield from ctx.server_work(op[1], op[2], _nothing, op[3])
        elif kind == "start":
            handles[op[1]] = ctx.start(interpret(ctx, logs, op[1], device), op[2])
        elif kind == "wait":
            yield from ctx.wait([handles[k] for k in op[1]])
    return None


def _strip(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return learning_fields(value)
    if isinstance(value, list | tuple):
        return [_strip(v) for v in value]
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items()}
    return value


def learning_fields(model: BaseModel) -> dict[str, Any]:
    """The model's fields minus those its schema marks as unable to change learning."""
    out = {}
    for name, info in type(model).model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if extra.get("timing_only") or extra.get("label_only"):
            continue
        out[name] = _strip(getattr(model, name))
    return out


def learning_key(scenario: BaseModel) -> str:
    """Equal for scenarios that learn exactly the same things (see module docstring)."""
    blob = json.dumps(learning_fields(scenario), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]

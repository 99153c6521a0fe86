"""Bandwidth traces: piecewise-constant rates read from plain text.

Accepted layouts, one sample per line: ``time_s,mbps`` (CSV, optional header) or
``time_s mbps`` (whitespace, the layout of published mobile bandwidth datasets such as the
Norway HSDPA traces as packaged with Pensieve). Rate ``mbps_i`` holds on
``[time_i, time_{i+1})``; the last holds for one more step, and a looped trace then starts
again. Lines that are empty, comments (#) or a non-numeric header are skipped.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ecofed_sim.errors import ScenarioError
from ecofed_sim.strict import MIN_RATE_MBPS


@dataclass(frozen=True)
class Trace:
    times_s: tuple[float, ...]
    rates_mbps: tuple[float, ...]

    @property
    def period_s(self) -> float:
        step = self.times_s[-1] - self.times_s[-2] if len(self.times_s) > 1 else 1.0
        return self.times_s[-1] + step


def numeric_rows(path: Path, where: str, what: str, columns: str,
                 types: tuple[type, ...]) -> Iterator[tuple[int, tuple]]:
    """(line number, values) of a plain-text table: comma- or space-separated cells; blank
    lines, # comments and a non-numeric first line (a header) are skipped. Numbers must be
    finite. A missing, unreadable or binary file, a bad line, or a table with no rows is a
    one-line ScenarioError naming ``where``, the file and the line."""
    rows = 0
    for n, line in enumerate(_lines(path, where, what), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        cells = text.replace(",", " ").split()
        try:
            if len(cells) < len(types):
                raise ValueError
            values = tuple(kind(cell) for kind, cell in zip(types, cells, strict=False))
        except ValueError:
            if n == 1:
                continue  # a header
            raise ScenarioError(f"{where}: {path}: line {n}: expected '{columns}'") from None
        if not all(math.isfinite(v) for v in values):
            raise ScenarioError(f"{where}: {path}: line {n}: numbers must be finite "
                                f"(got {text[:60]!r})")
        rows += 1
        yield n, values
    if rows == 0:
        raise ScenarioError(f"{where}: {path}: no rows of '{columns}'")


def _lines(path: Path, where: str, what: str) -> list[str]:
    if not path.exists():
        raise ScenarioError(f"{where}: {what} not found: {path}")
    if not path.is_file():
        raise ScenarioError(f"{where}: {path}: not a regular file")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ScenarioError(f"{where}: {path}: not a text file (invalid UTF-8)") from None
    except OSError as err:
        raise ScenarioError(f"{where}: {path}: cannot read ({err.strerror})") from None


def read_trace(path: Path, where: str) -> Trace:
    times, rates = [], []
    for n, (t, r) in numeric_rows(path, where, "trace file", "time_s, mbps", (float, float)):
        if r < MIN_RATE_MBPS or (times and t <= times[-1]) or t < 0:
            raise ScenarioError(f"{where}: {path}: line {n}: times must increase from 0 and "
                                f"rates be >= {MIN_RATE_MBPS:g} Mbit/s")
        times.append(t)
        rates.append(r)
    if not times or times[0] != 0:
        raise ScenarioError(f"{where}: {path}: the trace must start at time 0")
    return Trace(tuple(times), tuple(rates))


def rate_at(trace: Trace, t_s: float, loop: bool) -> tuple[float, float]:
    """(Mbit/s at trace time ``t_s``, seconds until the next change; inf if none)."""
    if loop:
        t_s %= trace.period_s
    i = max(k for k, start in enumerate(trace.times_s) if start <= t_s)
    if i + 1 < len(trace.times_s):
        return trace.rates_mbps[i], trace.times_s[i + 1] - t_s
    return trace.rates_mbps[i], (trace.period_s - t_s) if loop else float("inf")


def segments(trace: Trace, offset_s: float, loop: bool):
    """(Mbit/s, duration_s) from trace time ``offset_s`` on; the last is infinite unless
    the trace loops. Walks breakpoints by index, so no floating-point drift accumulates."""
    mbps, wait = rate_at(trace, offset_s, loop)
    yield mbps, wait
    t = offset_s % trace.period_s if loop else offset_s
    i = max(k for k, start in enumerate(trace.times_s) if start <= t)
    n = len(trace.times_s)
    while True:
        i += 1
        if i == n:
            if not loop:
                return
            i = 0
        end = trace.times_s[i + 1] if i + 1 < n else (trace.period_s if loop else float("inf"))
        yield trace.rates_mbps[i], end - trace.times_s[i]

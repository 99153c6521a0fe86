"""The delay line's queue, packet by packet: what each packet found queued ahead of it.

``delayline.c`` given a QUEUE_LOG writes one record per packet it reads: when
(``CLOCK_MONOTONIC``, the clock ``time.monotonic`` reads, shared by the namespaces), the
bytes waiting for the serialiser ahead of it, its length, its direction, and whether the
drop-tail buffer dropped it. A packet's wait is those bytes at the path's rate. This is
the queue that Linux's round trips at a shared bottleneck wait in, which the simulator's
flow model has no direct counterpart of.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass, field
from pathlib import Path

RECORD = struct.Struct("=qihbb")  # t_ns, backlog_bytes, len, direction, dropped
DIRECTIONS = ("up", "down")  # 0: the devices' namespace to the server's


@dataclass
class Direction:
    times_s: list[float] = field(default_factory=list)
    waits_s: list[float] = field(default_factory=list)  # queued ahead, at the rate
    dropped: list[bool] = field(default_factory=list)


def read(path: Path, rate_bps: float) -> dict[str, Direction]:
    """Each direction's packets in arrival order: when, the wait they found, dropped."""
    out = {name: Direction() for name in DIRECTIONS}
    data = Path(path).read_bytes()
    usable = len(data) - len(data) % RECORD.size  # a record cut short by a kill: left out
    for t_ns, backlog, _length, direction, dropped in RECORD.iter_unpack(data[:usable]):
        d = out[DIRECTIONS[direction]]
        d.times_s.append(t_ns / 1e9)
        d.waits_s.append(backlog * 8 / rate_bps)
        d.dropped.append(bool(dropped))
    return out


def wait_at_s(d: Direction, t_s: float) -> float:
    """The wait a packet arriving at ``t_s`` would find: the last arrival's before it
    (with that packet, if it was kept), drained since. 0 before the first."""
    i = bisect.bisect_right(d.times_s, t_s) - 1
    if i < 0:
        return 0.0
    return max(d.waits_s[i] - (t_s - d.times_s[i]), 0.0)


def summary(queues: dict[str, Direction], start_s: float = float("-inf"),
            end_s: float = float("inf")) -> list[str]:
    """Per direction, between two times: packets, dropped, and the wait they found (10th
    percentile, median, 90th, ms)."""
    lines = []
    for name, d in queues.items():
        kept = [(w, x) for t, w, x in zip(d.times_s, d.waits_s, d.dropped, strict=True)
                if start_s <= t <= end_s]
        if not kept:
            continue
        waits = sorted(w * 1e3 for w, _ in kept)
        p10, p50, p90 = (waits[min(int(q * len(waits)), len(waits) - 1)]
                         for q in (0.1, 0.5, 0.9))
        lines.append(f"{name:<5} {len(kept):>6} packets, {sum(x for _, x in kept):>4} dropped;"
                     f" queue ahead of each: {p10:5.1f} / {p50:5.1f} / {p90:5.1f} ms "
                     "(10th percentile / median / 90th)")
    return lines

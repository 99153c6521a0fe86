"""Max-min fair rates of flows that each cross a set of capacities.

Progressive filling (as in SimGrid's flow model): raise every unfixed flow's rate
together; the capacity that fills first (the least ``left / unfixed users``) fixes its
users at that share; repeat. ``max_min_rates`` keeps the candidates in a heap keyed by
that share, so one solve costs O(F·k·log C) for F flows crossing k capacities each out of
C, not the O(F·C) per step of a scan; any topology works (a star, or the device-edge-cloud
trees of hierarchical runs, where a flow crosses one capacity per hop).
``progressive_filling`` is the plain scan, kept as the reference the tests hold the heap
version against.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Protocol


class Capacity(Protocol):
    rate_bps: float


def max_min_rates(paths: Sequence[Sequence[Capacity]]) -> list[float]:
    """Max-min fair rate of each path (the capacities one flow crosses), bits per second."""
    left: dict[int, float] = {}
    unfixed: dict[int, int] = {}
    users: dict[int, list[int]] = {}
    for i, path in enumerate(paths):
        for c in path:
            key = id(c)
            if key not in left:
                left[key], unfixed[key], users[key] = c.rate_bps, 0, []
            unfixed[key] += 1
            users[key].append(i)
    order = {key: n for n, key in enumerate(left)}  # ties: first seen first, as the scan
    heap = [(left[k] / unfixed[k], order[k], k) for k in left]
    heapq.heapify(heap)
    rates: list[float | None] = [None] * len(paths)
    while heap:
        share, _, key = heapq.heappop(heap)
        if unfixed[key] == 0 or share != left[key] / unfixed[key]:
            continue  # already filled, or an entry from before its last change
        for i in users[key]:
            if rates[i] is not None:
                continue
            rates[i] = share
            for c in paths[i]:
                other = id(c)
                left[other] -= share
                unfixed[other] -= 1
                if other != key and unfixed[other] > 0:
                    heapq.heappush(heap, (left[other] / unfixed[other], order[other], other))
    return rates  # type: ignore[return-value]  (every path crosses some capacity)


def progressive_filling(paths: Sequence[Sequence[Capacity]]) -> list[float]:
    """The reference: the same filling by a full scan of the capacities at every step."""
    rates: dict[int, float] = {}
    left = {id(c): c.rate_bps for path in paths for c in path}
    active = set(range(len(paths)))
    while active:
        users: dict[int, list[int]] = {}
        for i in sorted(active):
            for c in paths[i]:
                users.setdefault(id(c), []).append(i)
        bottleneck = min(users, key=lambda c: left[c] / len(users[c]))
        share = left[bottleneck] / len(users[bottleneck])
        for i in users[bottleneck]:
            rates[i] = share
            active.discard(i)
            for c in paths[i]:
                left[id(c)] -= share
    return [rates[i] for i in range(len(paths))]

"""Max-min fair rates of flows that each cross a set of capacities.

Progressive filling (as in SimGrid's flow model): raise every unfixed flow's rate
together; the capacity that fills first (the least ``left / unfixed users``) fixes its
users at that share; repeat. ``max_min_rates`` keeps the candidates in a heap keyed by
that share, so one solve costs O(F·k·log C) for F flows crossing k capacities each out of
C, not the O(F·C) per step of a scan; any topology works (a star, or the device-edge-cloud
trees of hierarchical runs, where a flow crosses one capacity per hop).
``progressive_filling`` is the plain scan, kept as the reference the tests hold the heap
version against.

A path may stand for several identical flows (a cohort of clients in lock-step, see
``ecofed_sim.cohorts``): its ``weights`` say how many of them cross each capacity (all
of them the shared server link, one each its own device's link). Such a path fills like
that many paths, each getting the share.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Protocol


class Capacity(Protocol):
    rate_bps: float


def max_min_rates(paths: Sequence[Sequence[Capacity]],
                  weights: Sequence[Sequence[int] | None] | None = None) -> list[float]:
    """Max-min fair rate of each path (the capacities one flow crosses), bits per second.
    ``weights[i][j]``: how many identical flows path ``i`` stands for on its ``j``-th
    capacity (None, or a None entry: one on each). Each path's (capacity, count) pairs
    are looked up once, before the filling: this runs at every rate change of a
    split-learning round that the network's memo has not seen."""
    crossings = [[(id(c), 1) for c in path] if weights is None or weights[i] is None
                 else [(id(c), n) for c, n in zip(path, weights[i], strict=True)]
                 for i, path in enumerate(paths)]
    left: dict[int, float] = {}
    unfixed: dict[int, int] = {}
    users: dict[int, list[int]] = {}
    for i, path in enumerate(paths):
        for c, (key, n) in zip(path, crossings[i], strict=True):
            if key in users:
                unfixed[key] += n
                users[key].append(i)
            else:
                left[key], unfixed[key], users[key] = c.rate_bps, n, [i]
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
            for other, n in crossings[i]:
                left[other] -= share * n  # exact for n = 1
                unfixed[other] -= n
                if other != key and unfixed[other] > 0:
                    heapq.heappush(heap, (left[other] / unfixed[other], order[other], other))
    return rates  # type: ignore[return-value]  (every path crosses some capacity)


def progressive_filling(paths: Sequence[Sequence[Capacity]]) -> list[float]:
    """The reference: the same filling by a full scan of the capacities at every step
    (one flow per path: a weighted path is that many copies of it)."""
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

"""EcoFed's server-side replay buffer (Wu et al., IEEE TPDS 2024).

Per client it keeps the latest full local epoch of encoded activations and their labels.
Optional memory cap in bytes with an eviction policy: ``oldest`` (the entry stored longest
ago goes first) or ``random`` (seeded). The cap is never exceeded: an entry larger than
the whole cap is not stored. Pure data structure: tested without any simulation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Entry:
    batches: list  # [(codecs.Stored, labels)]
    nbytes: int
    stored_at: int  # insertion counter, for oldest-first eviction


@dataclass
class ReplayBuffer:
    cap_bytes: int | None = None
    eviction: str = "oldest"
    entries: dict[int, Entry] = field(default_factory=dict)
    dropped: int = 0  # entries refused because they alone exceed the cap
    _counter: int = 0

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self.entries.values())

    def put(self, client: int, batches: list, gen: torch.Generator | None = None) -> None:
        """Replace ``client``'s epoch, evicting others while the cap would be exceeded."""
        nbytes = sum(s.nbytes + y.numel() * y.element_size() for s, y in batches)
        self.entries.pop(client, None)
        if self.cap_bytes is not None and nbytes > self.cap_bytes:
            self.dropped += 1
            return
        while self.cap_bytes is not None and self.nbytes + nbytes > self.cap_bytes:
            self._evict(gen)
        self._counter += 1
        self.entries[client] = Entry(batches, nbytes, self._counter)

    @property
    def puts(self) -> int:
        """How many entries have been stored so far (evicted ones included)."""
        return self._counter

    def mirror(self, played: ReplayBuffer, since: int, fresh: dict[int, list]) -> None:
        """Become ``played``: its entries, in its order, with its counters. An entry it
        stored after its first ``since`` puts holds ``fresh[client]``; the others keep
        this buffer's batches. ``run --workers`` fills a buffer on shapes alone, in
        event order, then gives it the epochs the workers encoded."""
        self.entries = {client: Entry(fresh[client] if e.stored_at > since
                                      else self.entries[client].batches,
                                      e.nbytes, e.stored_at)
                        for client, e in played.entries.items()}
        self._counter, self.dropped = played._counter, played.dropped

    def _evict(self, gen: torch.Generator | None) -> None:
        if self.eviction == "oldest":
            victim = min(self.entries, key=lambda c: self.entries[c].stored_at)
        else:
            keys = sorted(self.entries)
            victim = keys[int(torch.randint(len(keys), (1,), generator=gen))]
        del self.entries[victim]

    def draw(self, k: int, gen: torch.Generator, among: list[int] | None = None) -> list[int]:
        """k clients to replay: without replacement when enough are stored, else with."""
        pool = sorted(self.entries if among is None else
                      [c for c in among if c in self.entries])
        if not pool:
            return []
        if len(pool) >= k:
            return [pool[i] for i in torch.randperm(len(pool), generator=gen)[:k].tolist()]
        return [pool[i] for i in torch.randint(len(pool), (k,), generator=gen).tolist()]

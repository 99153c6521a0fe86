"""A round context without a clock: a method's client round run for its learning alone.

``run --workers`` plays a round's clocks on meta tensors (``Prepared.shapes_view``) in
the main process, then trains the kept clients in worker processes. There, a method's
own ``client_round`` runs against this context: the same batches and seeded generators
as ``round_context.RoundContext`` gives (both draw from ``client_batches`` and
``torch_gen`` keyed by seed, round and client), while compute and transfers take no
time and server work runs at once. A client whose method ``trains_apart`` (its config:
a per-client server copy, nothing kept between rounds) learns exactly what it learns
in the simulated round: the same operations on the same tensors in the same order per
module, whatever the clock interleaved between clients.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import Any, TypeVar

import torch

from ecofed_sim.checks import Prepared
from ecofed_sim.methods.base import Cost, Device
from ecofed_sim.round_context import client_batches
from ecofed_sim.seeding import torch_gen

T = TypeVar("T")


class Done:
    """The handle of work that has already run: ``wait`` returns its value."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def finish(fragment: Generator[Any, Any, T]) -> T:
    """Run a process fragment that never waits to its end; returns its value. A fragment
    that yields asked for the clock, which this context does not have."""
    try:
        event = next(fragment)
    except StopIteration as stop:
        return stop.value
    fragment.close()
    raise RuntimeError(f"a fragment yielded {event!r} in a clockless round")


class ClocklessContext:
    """``methods.base.RoundContext`` for learning only (see the module docstring)."""

    def __init__(self, prep: Prepared, round_index: int) -> None:
        self.prep = prep
        self.round = self.data_round = round_index

    def num_samples(self, client: int) -> int:
        return len(self.prep.client_indices[client])

    def indexed_batches(self, client: int) -> Iterator[tuple[torch.Tensor, ...]]:
        return client_batches(self.prep, self.data_round, client)

    def batch_sizes(self, client: int) -> list[int]:
        return self.prep.scenario.training.batch_sizes(self.num_samples(client))

    def batches(self, client: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _, x, y in self.indexed_batches(client):
            yield x, y

    def generator(self, stream: int, *parts: int, round_index: int | None = None
                  ) -> torch.Generator:
        rnd = self.data_round if round_index is None else round_index
        return torch_gen(self.prep.scenario.seed, stream, rnd, *parts)

    def compute(self, device: Device, client: int, cost: Cost, what: str) -> Generator:
        return iter(())

    def transfer(self, device: Device, client: int, direction: str,
                 parts: dict[str, int]) -> Generator:
        return iter(())

    def server_work(self, client: int, cost: Cost, work: Callable[[], T],
                    what: str) -> Generator[Any, Any, T]:
        return work()
        yield  # a generator, run where the method ``yield from``s it

    def server_async(self, client: int, cost: Cost, work: Callable[[], T],
                     what: str) -> Done:
        return Done(work())

    def start(self, fragment: Generator, hosting: tuple[int, int] | None = None) -> Done:
        return Done(finish(fragment))

    def wait(self, handles: list[Done]) -> Generator[Any, Any, list]:
        return [h.value for h in handles]
        yield  # a generator, as ``RoundContext.wait``


"""A round context without a clock: a method's client round run for its learning alone.

``run --workers`` plays a round's clocks on meta tensors (``Prepared.shapes_view``) in
the main process, then trains the round's clients in worker processes. There, a
method's own client code runs against this context. It draws the same batches and
seeded generators as ``round_context.RoundContext`` (both are ``RoundData``), while
compute and transfers take no time and server work runs at once. A client of a method
whose config ``trains_apart`` (a per-client server copy; anything else it needs is
shipped to it) learns exactly what it learns in the simulated round: the same
operations on the same tensors in the same order per module, whatever the clock
interleaved between clients.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypeVar

from ecofed_sim.checks import Prepared
from ecofed_sim.methods.base import Cost, Device
from ecofed_sim.round_context import RoundData

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


class ClocklessContext(RoundData):
    """``methods.base.RoundContext`` for learning only (see the module docstring)."""

    def __init__(self, prep: Prepared, round_index: int) -> None:
        self.batch_prep = prep
        self.round = self.data_round = round_index

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


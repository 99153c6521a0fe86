"""The split-learning server's memory: how many per-client server copies fit at once.

Methods that give each client its own copy of the server part (SplitFed-V1, local-loss
DPFL, FedGKT as averaged here, EcoFed; the ``server_copies: per_client`` trait of their
config) hold that copy from the moment the server admits the client until the client's
round ends (EcoFed's replay: until the client's replay ends). The server's memory bounds
how many can be live at once; further clients wait for admission in a queue, served
first come first served (``fifo``) or fewest server steps first (``shortest_first``).
SplitFed-V2's one shared server part needs one copy; FedAvg none.

A copy costs, in fp32 training with SGD (the simulator's optimiser):

- its parameters, their gradients, and a momentum buffer when momentum > 0;
- the activations autograd keeps for the backward pass: the server part's input and each
  server unit's output, at the batch size.

This is the steady-state footprint PyTorch needs to train the part; allocator slack,
CUDA context and framework overhead are left out, so the bound is optimistic, and a
scenario can lower ``server.memory_gb`` to leave room for them. The global model the
server keeps between rounds is counted once before any copy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence

import simpy

from ecofed_sim.errors import ScenarioError
from ecofed_sim.models import LayerStats

FP32_BYTES = 4
GB = 1e9  # memory_gb is in decimal gigabytes, as vendors state memory


def server_copy_bytes(stats: Sequence[LayerStats], split: int, batch: int,
                      momentum: float) -> int:
    """Bytes one per-client copy of units [split, n) needs while it trains."""
    server = stats[split:]
    params = sum(s.param_bytes for s in server)
    optimiser_state = params if momentum > 0 else 0
    kept = stats[split - 1].out_elements + sum(s.out_elements for s in server)
    return 2 * params + optimiser_state + batch * kept * FP32_BYTES


def copy_capacity(memory_gb: float, copy_bytes: int, model_bytes: int) -> int:
    """How many copies fit in ``memory_gb`` beside the global model (0: not even one)."""
    return max(0, math.floor((memory_gb * GB - model_bytes) / copy_bytes))


class ServerCopies:
    """Admission to per-client server copies: at most ``capacity`` live at once (None:
    unbounded, only counted). Tallies per round: the most copies live at once and the
    time clients spent waiting for one."""

    def __init__(self, env: simpy.Environment, capacity: int | None, queue: str) -> None:
        self.env = env
        self.capacity = capacity
        self.slots = None if capacity is None else simpy.PriorityResource(env, capacity)
        self.shortest_first = queue == "shortest_first"
        self.live = 0
        self.peak = 0
        self.wait_s = 0.0

    def new_round(self) -> None:
        self.peak, self.wait_s = self.live, 0.0

    def host(self, fragment: Generator, server_steps: int,
             waited: Callable[[float, float], None], held: Callable[[float, float], None]
             ) -> Generator:
        """Run ``fragment`` holding one copy, admitted in queue order; ``waited(t0, t1)``
        is told of any wait (also when cut off while waiting), ``held(t0, t1)`` of the
        time the copy was held."""
        if self.slots is None:
            return (yield from self._live(fragment, held))
        t0 = self.env.now
        with self.slots.request(priority=server_steps if self.shortest_first else 0) as req:
            try:
                yield req
            finally:
                if self.env.now > t0:
                    self.wait_s += self.env.now - t0
                    waited(t0, self.env.now)
            return (yield from self._live(fragment, held))

    def _live(self, fragment: Generator, held: Callable[[float, float], None]) -> Generator:
        self.live += 1
        self.peak = max(self.peak, self.live)
        t0 = self.env.now
        try:
            return (yield from fragment)
        finally:
            self.live -= 1
            held(t0, self.env.now)


def copies_kind(sc) -> str:
    """The run's server copies: the method's trait, except that asynchronous split FL
    shares one server part, and that a topology's edges are not bounded (``none``)."""
    if sc.topology is not None:
        return "none"
    kind = type(sc.method).server_copies
    return "shared" if sc.asynchronous is not None and kind != "none" else kind


def copy_slots(prep, source: str) -> int | None:
    """How many per-client server copies the run's server holds (None: unbounded, or
    the run keeps none per client). A server that cannot hold the model and one copy is
    a one-line ScenarioError naming the field."""
    sc = prep.scenario
    kind = copies_kind(sc)
    memory_gb = sc.server.memory_gb or prep.server_profile.memory_gb
    if kind == "none" or memory_gb is None:
        return None
    splits = {d.split or sc.method.split for d in sc.population.devices}
    copy_bytes = max(server_copy_bytes(prep.stats, k, sc.training.batch_size,
                                       sc.training.momentum) for k in splits)
    model_bytes = sum(s.param_bytes for s in prep.stats)
    capacity = copy_capacity(memory_gb, copy_bytes, model_bytes)
    if capacity < 1:
        field = "server.memory_gb" if sc.server.memory_gb else (
            f"server.profile ({prep.server_profile.name}: memory_gb)")
        raise ScenarioError(f"{source}: {field}: {memory_gb:g} GB cannot hold the model "
                            f"({model_bytes / GB:.3g} GB) and one server copy "
                            f"({copy_bytes / GB:.3g} GB)")
    return capacity if kind == "per_client" else None


def build_server_copies(env: simpy.Environment, prep, source: str) -> ServerCopies | None:
    """The run's server copies; None for runs without per-client copies."""
    capacity = copy_slots(prep, source)
    if copies_kind(prep.scenario) != "per_client":
        return None
    return ServerCopies(env, capacity, prep.scenario.server.queue)

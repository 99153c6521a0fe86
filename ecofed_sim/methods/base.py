"""The small interface every method implements, and the engine services it may use.

A method never touches SimPy or the results format: it gets a ``RoundContext`` whose
``compute``, ``transfer`` and ``server_work`` are process fragments to ``yield from``.
The engine drives ``begin_round`` -> ``client_round`` (one per sampled client, as a SimPy
process on that client's device) -> ``end_round``, and evaluates ``eval_model()``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

import torch
from torch import nn

from ecofed_sim.methods.configs import MethodConfigBase, SplitConfigBase  # noqa: F401
from ecofed_sim.models import LayerModel, LayerStats
from ecofed_sim.population import Device  # noqa: F401 - re-exported for methods
from ecofed_sim.shapes_only import ShapesOnlySGD

T = TypeVar("T")


@dataclass(frozen=True)
class Pass:
    """One forward or backward pass over some units at a batch size.

    Methods describe compute this way and the engine prices it with the device's or the
    server's profile, so the same description can be re-priced for other hardware (the
    learning-trace reuse of sweeps) without running the torch work again.
    """

    model: str  # latency-table key ("aux" for auxiliary heads)
    layers: tuple[LayerStats, ...]
    batch: int
    backward: bool

    @property
    def key(self) -> tuple:
        """What the price depends on (besides the profile), hashable (built on each use: a
        cached_property's lock costs more than these five fields)."""
        return (self.model, self.layers[0].index, len(self.layers), self.batch, self.backward)


Cost = tuple[Pass, ...]


def forward(model: str, layers, batch: int) -> Cost:
    return (Pass(model, tuple(layers), batch, False),)


def backward(model: str, layers, batch: int) -> Cost:
    return (Pass(model, tuple(layers), batch, True),)


def train_step(model: str, layers, batch: int) -> Cost:
    return forward(model, layers, batch) + backward(model, layers, batch)


@dataclass(frozen=True)
class Sketch:
    """One batch of one client's round at a split, as the planner's analytic time model
    sees it (``ecofed_sim.planner``): device compute, one message up, server compute, one
    message down, device compute; plus the weights moved once per round."""

    device_before: Cost
    up_bytes: int
    server: Cost
    down_bytes: int = 0
    device_after: Cost = ()
    waits: bool = True  # the device waits for the server's step (else it streams on)
    weights_down_bytes: int = 0
    weights_up_bytes: int = 0
    device_round_share: float = 1.0  # share of rounds in which devices work
    """EcoFed: 1 / period; the other rounds are server-only replay of ``server`` steps."""


LABEL_BYTES = 8  # int64 class labels, per sample


def tensor_bytes(t: torch.Tensor) -> int:
    """Payload bytes of a tensor from its shape and dtype."""
    return t.numel() * t.element_size()


@dataclass(frozen=True)
class Setup:
    """What a method needs to build its state; handed over once per run."""

    model_name: str
    new_model: Callable[[], LayerModel]  # seeded: same initial weights every call
    stats: list[LayerStats]
    training: Any  # scenario.TrainingSpec
    num_clients: int
    clients_per_round: int
    seed: int
    pool: Any = None  # parallel.TrainerPool of ``run --workers`` (defers_training methods)
    device: Any = "cpu"  # torch.device of the real computation (``training.device``)


@dataclass
class ClientUpdate:
    client: int
    num_samples: int
    payload: Any


class RoundContext(Protocol):
    round: int

    def batches(self, client: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def batch_sizes(self, client: int) -> list[int]: ...

    def indexed_batches(self, client: int) -> Iterator[tuple[torch.Tensor, ...]]: ...

    def generator(self, stream: int, *parts: int) -> torch.Generator: ...

    def num_samples(self, client: int) -> int: ...

    def compute(self, device: Device, client: int, cost: Cost, what: str) -> Generator: ...

    def transfer(self, device: Device, client: int, direction: str,
                 parts: dict[str, int]) -> Generator: ...

    def server_work(self, client: int, cost: Cost, work: Callable[[], T],
                    what: str) -> Generator[Any, Any, T]: ...

    def server_async(self, client: int, cost: Cost, work: Callable[[], T],
                     what: str) -> object: ...

    def start(self, fragment: Generator, hosting: tuple[int, int] | None = None
              ) -> object: ...

    def wait(self, handles: list) -> Generator[Any, Any, list]: ...


TRAITS = ("uses_pretrained_device", "timing_independent", "per_class_split", "defers_training",
          "server_copies")


class Method:
    """Base class: subclasses set ``name`` and ``Config`` and implement the hooks."""

    name: ClassVar[str]
    Config: ClassVar[type[MethodConfigBase]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Traits live on the config (read without torch); here they would be ignored."""
        super().__init_subclass__(**kwargs)
        misplaced = [t for t in TRAITS if t in cls.__dict__]
        if misplaced:
            raise TypeError(f"method {cls.__name__}: {', '.join(misplaced)} is a trait of "
                            "its Config (a ClassVar there), not of the Method")

    # ``run --workers``: whether the next round may be played on meta tensors while the
    # workers train this one. True unless taking the workers' results in reads the
    # state of the instance that played the round, or its clocks follow test metrics.
    pipelines: ClassVar[bool] = True

    def __init__(self, config: MethodConfigBase, setup: Setup) -> None:
        self.config = config
        self.setup = setup
        # client -> the learnable modules it starts its round from (a topology's edge
        # copies); clients not in it start from the method's own (the global model)
        self.client_starts: dict[int, dict[str, nn.Module]] = {}

    def begin_round(self, round_index: int, clients: list[int]) -> None:
        """Called before any client of the round starts."""

    def client_round(self, ctx: RoundContext, client: int, device: Device) -> Generator:
        """One client's work in a round, as a process fragment; returns a ClientUpdate."""
        raise NotImplementedError

    @classmethod
    def sketch(cls, config: Any, model: str, stats: list[LayerStats], split: int,
               batch: int) -> Sketch:
        """What one batch at ``split`` costs and sends (split methods; for the planner)."""
        raise NotImplementedError(f"{cls.name} has no split point to plan")

    def uses_server_copies(self) -> bool:
        """Whether this round's clients each train on their own server copy (the config's
        ``server_copies`` trait; EcoFed: in update rounds only)."""
        return type(self.config).server_copies == "per_client"

    def server_round(self, ctx: RoundContext) -> Generator | None:
        """Server-only work of a round (e.g. EcoFed's replay), run beside the devices'
        processes; returns a list of ClientUpdates. None: nothing to do."""
        return None

    def end_round(self, updates: list[ClientUpdate]) -> None:
        """Aggregate; called once every client of the round has finished."""
        raise NotImplementedError

    # -- training apart (``run --workers``; the config's ``trains_apart``)
    def apart_jobs(self, kept: list[int]) -> list[tuple[str, int]]:
        """On the instance that played the round on meta tensors: the (kind, client) jobs
        worker processes must run for its learning, in order. Default: each kept
        client's round."""
        return [("client", client) for client in kept]

    device_jobs: tuple[str, ...] = ("client",)  # job kinds run on the client's device

    def apart_input(self, kind: str, client: int, timing: Method) -> Any:
        """On the real instance: what a job needs beyond the global state (None), given
        ``timing``, the instance that played the round."""
        return None

    def run_apart(self, ctx: RoundContext, kind: str, client: int, device: Device | None,
                  shipped: Any) -> Generator:
        """In a worker, without a clock: one job; returns (its update, what else it
        leaves behind for ``take_apart``)."""
        return (yield from self.client_round(ctx, client, device)), None

    def take_apart(self, timing: Method, kept: list[int], jobs: list[tuple[str, int]],
                   results: list[tuple[ClientUpdate | None, Any]]) -> list[ClientUpdate]:
        """On the real instance: the jobs' results in; the updates to aggregate out (the
        kept clients', in client order)."""
        return [update for update, _ in results]

    def eval_model(self) -> nn.Module:
        raise NotImplementedError

    def learnable_modules(self) -> dict[str, nn.Module]:
        """Everything the method learns, by name (what an edge server keeps between
        rounds): the model, and an auxiliary head where there is one."""
        return {"model": self.eval_model()}

    def learnable_state(self) -> dict[str, torch.Tensor]:
        return modules_state(self.learnable_modules())

    def load_learnable_state(self, state: dict[str, torch.Tensor]) -> None:
        load_modules_state(self.learnable_modules(), state)

    def start_module(self, client: int, name: str = "model") -> nn.Module:
        """What ``client`` starts its round from: the global model (or head), or with a
        topology its edge's copy."""
        return self.client_starts.get(client, self.learnable_modules())[name]

    def eval_logits(self, model: nn.Module, x: torch.Tensor, batch_start: int) -> torch.Tensor:
        """Test logits of one fixed test batch; EcoFed reuses frozen-layer outputs here."""
        return model(x)

    def observe(self, round_index: int, metrics: dict[str, float]) -> None:
        """Sees each round's test metrics (NaN when not evaluated), e.g. to adapt."""

    def round_metrics(self) -> dict[str, Any]:
        """Extra per-round columns (e.g. EcoFed's buffer_bytes, update_round)."""
        return {}


def modules_state(modules: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """One state dict of named modules, keys prefixed by the names."""
    return {f"{name}.{k}": v for name, m in modules.items() for k, v in m.state_dict().items()}


def load_modules_state(modules: dict[str, nn.Module], state: dict[str, torch.Tensor]) -> None:
    for name, m in modules.items():
        m.load_state_dict({k[len(name) + 1:]: v for k, v in state.items()
                           if k.startswith(name + ".")})


def sgd(params, training) -> torch.optim.SGD:
    """The paper's optimiser; created per client per round, so its momentum starts at 0.
    On meta parameters (a timing-only or worker-planned round), a step does nothing."""
    params = list(params)
    kind = ShapesOnlySGD if params and params[0].is_meta else torch.optim.SGD
    return kind(params, lr=training.lr, momentum=training.momentum,
                weight_decay=training.weight_decay)

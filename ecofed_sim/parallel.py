"""One run's training spread over worker processes (``ecofed-sim run --workers N``).

A method that defers its training (its config's ``defers_training``: FedAvg) knows at the
end of each simulated round which clients are kept. Their training is independent, so it
splits into one contiguous slice of clients per worker. The global model ships once per
worker and round, each worker trains its slice on one reused model, and only the trained
state dicts come back, in client order, to be added to the running mean as they arrive.
Every worker holds the run's ``Prepared`` inputs (sent once, at start) and uses the run's
``training.threads``, so the result is bit-identical to a serial run on the same machine.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import TYPE_CHECKING

import torch

from ecofed_sim.compute import on_cpu

if TYPE_CHECKING:
    from ecofed_sim.checks import Prepared

_WORKER: dict = {}  # this worker process's inputs and its reused model and optimiser


def _start(prep: Prepared) -> None:
    from ecofed_sim.compute import deterministic_cuda
    from ecofed_sim.methods.base import sgd

    torch.set_num_threads(prep.scenario.training.threads)
    if prep.compute_device.type == "cuda":
        deterministic_cuda()
    model = prep.build_model().to(prep.compute_device)
    _WORKER.update(prep=prep, model=model, opt=sgd(model.parameters(), prep.scenario.training))


def _ready() -> bool:
    return bool(_WORKER)


def _train_slice(global_state: dict[str, torch.Tensor], round_index: int,
                 clients: list[int]) -> list[dict[str, torch.Tensor]]:
    from ecofed_sim.methods.fedavg import local_sgd
    from ecofed_sim.round_context import client_batches

    prep, model, opt = _WORKER["prep"], _WORKER["model"], _WORKER["opt"]
    torch.set_num_threads(prep.scenario.training.threads)
    states = []
    for client in clients:
        model.load_state_dict(global_state)
        local_sgd(model, opt, ((x, y) for _, x, y in client_batches(prep, round_index, client)))
        states.append(on_cpu(model.state_dict()))  # host memory travels between processes
    return states


def _dask_train_slice(prep: Prepared, global_state: dict[str, torch.Tensor],
                      round_index: int, clients: list[int]) -> list[dict[str, torch.Tensor]]:
    """On a Dask worker: ``prep`` arrives once (scattered); the model is built on first
    use and kept for the run's later rounds."""
    if _WORKER.get("prep") is not prep:
        _start(prep)
    return _train_slice(global_state, round_index, clients)


def slices(weights: list[int], parts: int) -> list[slice]:
    """Contiguous slices of about equal total weight (sample counts: the training work),
    at most ``parts``, none empty."""
    total, bounds, acc = sum(weights), [0], 0
    for i, w in enumerate(weights):
        acc += w
        if len(bounds) < parts and acc * parts >= total * len(bounds) and i + 1 < len(weights):
            bounds.append(i + 1)
    bounds.append(len(weights))
    return [slice(a, b) for a, b in itertools.pairwise(bounds) if b > a]


class TrainerPool:
    """Worker processes that train kept clients for ``defers_training`` methods."""

    def __init__(self, workers: int, prep: Prepared) -> None:
        self.workers = workers
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                         initializer=_start, initargs=(prep,))
        for _ in range(workers):  # start them now: they load while round 0 is simulated
            self._pool.submit(_ready)

    def trained_states(self, global_state: dict[str, torch.Tensor], round_index: int,
                       clients: list[int], weights: list[int]
                       ) -> Iterator[dict[str, torch.Tensor]]:
        """Each client's trained state, in the order of ``clients``."""
        global_state = on_cpu(global_state)
        futures = [self._pool.submit(_train_slice, global_state, round_index, clients[s])
                   for s in slices(weights, self.workers)]
        for future in futures:
            yield from future.result()

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)


class DaskTrainerPool:
    """The same on a Dask cluster (``ecofed-sim run --scheduler ADDRESS``): the run's
    inputs are broadcast to every worker once, then each round sends one slice of kept
    clients, with the global model, to each worker."""

    def __init__(self, prep: Prepared, scheduler: str | None = None,
                 scheduler_file: str | None = None) -> None:
        from ecofed_sim.errors import ScenarioError

        try:
            from dask.distributed import Client
        except ImportError:
            raise ScenarioError("--scheduler: dask.distributed is not installed "
                                "(pip install 'ecofed_sim[dask]')") from None
        self.client = (Client(scheduler_file=scheduler_file) if scheduler_file
                       else Client(scheduler))
        self.workers = max(1, len(self.client.scheduler_info().get("workers", {})))
        self._prep = self.client.scatter(prep, broadcast=True)

    def trained_states(self, global_state: dict[str, torch.Tensor], round_index: int,
                       clients: list[int], weights: list[int]
                       ) -> Iterator[dict[str, torch.Tensor]]:
        global_state = on_cpu(global_state)
        futures = [self.client.submit(_dask_train_slice, self._prep, global_state,
                                      round_index, clients[s], pure=False)
                   for s in slices(weights, self.workers)]
        for future in futures:
            yield from future.result()

    def close(self) -> None:
        self.client.close()

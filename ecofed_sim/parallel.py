"""One run's training spread over worker processes (``ecofed-sim run --workers N``).

The simulated schedule needs no real computation: who is kept, and when, follows from
profiles and links. So a round is played first, then its kept clients are trained in
parallel, then aggregated in client order.

- A method that defers its training (its config's ``defers_training``: FedAvg) plays its
  round without tensors. Each worker trains its slice of the kept clients on one reused
  model; only the trained state dicts come back, added to the running mean as they arrive.
- A split method whose clients train apart (its config's ``trains_apart``: SplitFed-V1,
  local loss, FedGKT lock-step, EcoFed) plays its round on meta tensors (shapes, no
  data) in the main process (``Engine.timing``). That instance names the jobs
  (``Method.apart_jobs``: the kept clients' rounds; EcoFed's replays); each worker runs
  its slice of them with the method's own code, without a clock
  (``ecofed_sim.clockless``), and sends back the updates and what else they leave
  (EcoFed's buffered epochs), which the real method takes in (``Method.take_apart``).

- Evaluation too: each worker scores a contiguous slice of the test batches under the
  global model, and the main process sums the batches' scores in order, as a serial run
  does (``Engine.evaluate``).

The kept clients split into one contiguous slice per worker, balanced by sample count.
The global state ships once per worker and round. Every worker holds the run's
``Prepared`` inputs (sent once, at start) and uses the run's ``training.threads``, so the
result is bit-identical to a serial run on the same machine.

The workers start before the run's inputs are prepared: starting them (importing
PyTorch, once per process on Linux: ``worker_context``) takes seconds, which they spend
while the main process renders or loads the data. Each then waits for the inputs
(``TrainerPool.start``).
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from multiprocessing.context import BaseContext
from multiprocessing.reduction import ForkingPickler
from typing import TYPE_CHECKING, Any

import torch

from ecofed_sim.compute import on_cpu
from ecofed_sim.errors import WorkerLost
from ecofed_sim.methods.base import ClientUpdate

if TYPE_CHECKING:
    from ecofed_sim.checks import Prepared

_WORKER: dict = {}  # this worker process's inputs and its reused model and optimiser


def _start(prep: Prepared) -> None:
    from ecofed_sim.compute import deterministic_cuda
    from ecofed_sim.methods.base import sgd

    torch.set_num_threads(prep.scenario.training.threads)
    if prep.compute_device.type == "cuda":
        deterministic_cuda()
    _WORKER.clear()
    _WORKER["prep"] = prep
    if type(prep.scenario.method).defers_training:
        model = prep.build_model().to(prep.compute_device)
        _WORKER.update(model=model, opt=sgd(model.parameters(), prep.scenario.training))
    else:
        from ecofed_sim.engine import build_method
        from ecofed_sim.population import build_population

        sc = prep.scenario
        _WORKER.update(method=build_method(prep, prep.compute_device), devices=build_population(
            sc, prep.library, prep.source, prep.base_dir).devices)


def _boot(inputs, threads: int) -> None:
    """A new worker process: its imports are done by now; it waits for the run's inputs
    (None: the run ended before they were ready, so there is nothing to hold)."""
    torch.set_num_threads(threads)
    pickled = inputs.get()
    if pickled is not None:
        _start(ForkingPickler.loads(pickled))


def worker_context() -> BaseContext:
    """How worker processes start. On Linux, forked from a server process that imported
    this module (and so PyTorch) once (``forkserver``): a worker then starts without
    importing them again and exits without tearing an interpreter down. On a 2-core
    machine a 2-worker run's first round took 2.7-2.9 s instead of 3.4-3.8 s and closing
    the pool 0.04 s instead of 1.2 s (VGG-5 FedAvg, 10 clients a round; scratch timing,
    2026-12-04). The server only imports: it has started none of PyTorch's thread pools
    when it forks. As with ``spawn``, each worker still imports the caller's main module
    (a script needs its ``if __name__ == "__main__":`` guard). Elsewhere forking a
    process that has loaded system frameworks is not safe: a fresh interpreter each
    (``spawn``)."""
    if not sys.platform.startswith("linux"):
        return get_context("spawn")
    context = get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


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


def _learn_slice(start_states: dict[str, dict[str, torch.Tensor]], round_index: int,
                 jobs: list[tuple[str, int, int, Any, str]]
                 ) -> list[tuple[ClientUpdate | None, Any]]:
    """A split method's jobs (``trains_apart``): (kind, client, index of the device that
    played it or -1, what the job needs, the key of the state in ``start_states`` it
    starts from: the global model, or with edge servers its edge's); returns each job's
    (update, or None for a job that updates nothing, such as FedGKT's ``cut``; what
    else it left), in host memory."""
    from ecofed_sim.clockless import ClocklessContext, finish

    prep, method, devices = _WORKER["prep"], _WORKER["method"], _WORKER["devices"]
    torch.set_num_threads(prep.scenario.training.threads)
    ctx = ClocklessContext(prep, round_index)
    results, loaded = [], None
    for kind, client, device, shipped, start in jobs:
        if start != loaded:  # jobs copy what they start from, so it stays loaded
            method.load_learnable_state(start_states[start])
            loaded = start
        update, left = finish(method.run_apart(ctx, kind, client,
                                               devices[device] if device >= 0 else None,
                                               shipped))
        results.append((update and ClientUpdate(update.client, update.num_samples,
                                                _on_host(update.payload)), _on_host(left)))
    return results


def _on_host(value: Any) -> Any:
    """Tensors (in state dicts, tuples, lists, dataclasses such as a codec's stored
    form) copied to host memory, which is what travels between processes."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _on_host(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_on_host(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: _on_host(getattr(value, f.name))
                                             for f in dataclasses.fields(value) if f.init})
    return value


def _test_slice(state: dict[str, torch.Tensor], round_index: int,
                batches: list[tuple[int, int]]) -> list[tuple[float, int]]:
    """Scores of test batches under the global model ``state`` (``Engine.evaluate``).
    FedAvg's workers hold a bare model, so they build the method once to score with."""
    from ecofed_sim.engine import build_method, score_test_batches

    prep = _WORKER["prep"]
    torch.set_num_threads(prep.scenario.training.threads)
    method = _WORKER.get("method")
    if method is None:
        method = _WORKER["scorer"] = (_WORKER.get("scorer")
                                      or build_method(prep, prep.compute_device))
    method.load_learnable_state(state)
    return score_test_batches(method, prep, batches)


_WORK = {"states": _train_slice, "jobs": _learn_slice, "test": _test_slice}


def _dask_work(prep: Prepared, kind: str, global_state: dict[str, torch.Tensor],
               round_index: int, clients: list) -> list:
    """On a Dask worker: ``prep`` arrives once (scattered); the model is built on first
    use and kept for the run's later rounds."""
    if _WORKER.get("prep") is not prep:
        _start(prep)
    return _WORK[kind](global_state, round_index, clients)


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


def _results(futures: list) -> Iterator:
    """The slices' results, in order, as each arrives; a worker that died: WorkerLost."""
    try:
        for future in futures:
            yield from future.result()
    except BrokenProcessPool as dead:
        raise WorkerLost from dead


class TrainerPool:
    """Worker processes that train a round's kept clients (see the module docstring).
    They start at once, and work once given the run's inputs (``start``)."""

    def __init__(self, workers: int, threads: int = 1) -> None:
        self.workers = workers
        context = worker_context()
        # Inputs go through a queue, not the processes' arguments: a process's arguments
        # are written to it as it starts, and that write waits for the child to import
        # PyTorch, one worker after the other.
        self._inputs = context.Queue()
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                         initializer=_boot, initargs=(self._inputs, threads))
        for _ in range(workers):  # one process each (they are started as work comes)
            self._pool.submit(_ready)

    def start(self, prep: Prepared) -> None:
        """Hand every worker the run's inputs. Each is pickled here, as it stands now
        (the queue's own thread would pickle it later, while the run goes on and fills
        its caches), and once per worker: a tensor goes through shared memory as a file
        descriptor that one process can take."""
        for _ in range(self.workers):
            self._inputs.put(bytes(ForkingPickler.dumps(prep)))

    def trained_states(self, global_state: dict[str, torch.Tensor], round_index: int,
                       clients: list[int], weights: list[int]
                       ) -> Iterator[dict[str, torch.Tensor]]:
        """Each client's trained state, in the order of ``clients`` (FedAvg)."""
        return self._spread("states", global_state, round_index, clients, weights)

    def run_jobs(self, start_states: dict[str, dict[str, torch.Tensor]], round_index: int,
                 jobs: list[tuple[str, int, int, Any, str]], weights: list[int]
                 ) -> Iterator[tuple[ClientUpdate | None, Any]]:
        """Each job's (update, what else it left), in the order of ``jobs`` (see
        ``_learn_slice``), for ``trains_apart`` methods; ``start_states``: the
        ``learnable_state`` each job starts from, by key. A slice gets the ones its
        jobs name."""
        return self._spread("jobs", start_states, round_index, jobs, weights)

    def score_test_batches(self, state: dict[str, torch.Tensor],
                           batches: list[tuple[int, int]]) -> list[tuple[float, int]]:
        """Each test batch's (summed loss, correct), in order (``Engine.evaluate``):
        contiguous slices of the batches, one per worker."""
        return list(self._spread("test", state, -1, batches,
                                 [stop - start for start, stop in batches]))

    def _spread(self, kind: str, state: dict, round_index: int, clients: list,
                weights: list[int]) -> Iterator:
        """Send the slices now; the iterator yields their results in order."""
        parts = [clients[s] for s in slices(weights, self.workers)]
        if kind == "jobs":  # each slice gets the start states its jobs name
            states = {key: on_cpu(v) for key, v in state.items()}
            shipped = [{job[4]: states[job[4]] for job in part} for part in parts]
        else:
            shipped = [on_cpu(state)] * len(parts)
        try:
            futures = [self._submit(kind, st, round_index, part)
                       for st, part in zip(shipped, parts, strict=True)]
        except BrokenProcessPool as dead:
            raise WorkerLost from dead
        return _results(futures)

    def _submit(self, kind: str, global_state: dict[str, torch.Tensor], round_index: int,
                clients: list):
        return self._pool.submit(_WORK[kind], global_state, round_index, clients)

    def close(self) -> None:
        """Stop the workers. Inputs no worker took stay behind: a worker that died before
        reading its copy (killed, or a script without its ``__main__`` guard) leaves it in
        the queue's pipe, and the queue's thread would wait, at this process's exit, for a
        reader that never comes."""
        for _ in range(self.workers):  # for any still waiting: the run ended without inputs
            self._inputs.put(None)
        self._pool.shutdown(cancel_futures=True)
        self._inputs.close()
        self._inputs.cancel_join_thread()


class DaskTrainerPool(TrainerPool):
    """The same on a Dask cluster (``ecofed-sim run --scheduler ADDRESS``): the run's
    inputs are broadcast to every worker once, then each round sends one slice of kept
    clients, with the global model, to each worker."""

    def __init__(self, scheduler: str | None = None,
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

    def start(self, prep: Prepared) -> None:
        self._prep = self.client.scatter(prep, broadcast=True)

    def _submit(self, kind: str, global_state: dict[str, torch.Tensor], round_index: int,
                clients: list):
        return self.client.submit(_dask_work, self._prep, kind, global_state, round_index,
                                  clients, pure=False)

    def close(self) -> None:
        self.client.close()

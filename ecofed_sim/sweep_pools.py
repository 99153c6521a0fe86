"""Where a sweep's tasks run: in this process, in local worker processes, or on Dask.

Each pool takes tasks as they become ready (a re-simulation is ready once its learning
run's trace exists) and hands back finished ones in completion order, a failure as the
exception it raised. Only the sweep's own process writes files.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from typing import Any

from ecofed_sim.errors import ScenarioError

# A task whose worker dies is rescheduled by Dask itself (its ``allowed-failures``); a task
# that raises is tried again this many times before it counts as failed.
DASK_RETRIES = 2


class InProcess:
    """Runs each task at once, in this process (``--workers 1``)."""

    ships_files = False

    def __init__(self) -> None:
        self._done: list[tuple[int, Any, BaseException | None]] = []
        self._next = 0

    def submit(self, fn: Callable, *args: Any) -> int:
        key, self._next = self._next, self._next + 1
        try:
            self._done.append((key, fn(*args), None))
        except Exception as err:  # noqa: BLE001 (handed back as the task's outcome)
            self._done.append((key, None, err))
        return key

    def share(self, value: Any) -> Any:
        return value

    def next_done(self) -> tuple[int, Any, BaseException | None]:
        return self._done.pop(0)

    def close(self) -> None:
        pass


class Processes:
    """Spawned worker processes on this machine (``--workers N``)."""

    ships_files = False

    def __init__(self, workers: int) -> None:
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
        self._pending: set[Future] = set()

    def submit(self, fn: Callable, *args: Any) -> Future:
        fut = self._pool.submit(fn, *args)
        self._pending.add(fut)
        return fut

    def share(self, value: Any) -> Any:
        return value

    def next_done(self) -> tuple[Future, Any, BaseException | None]:
        done, _ = wait(self._pending, return_when=FIRST_COMPLETED)
        fut = min(done, key=id)
        self._pending.discard(fut)
        err = fut.exception()
        return fut, (None if err else fut.result()), err

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)


class Dask:
    """A Dask cluster: ``--scheduler ADDRESS``, ``--scheduler-file FILE``, the
    ``DASK_SCHEDULER_ADDRESS`` variable, or else a LocalCluster of ``workers`` processes.
    Lost workers' tasks are rescheduled; small files travel with the tasks unless the
    cluster is local or ``shared_fs`` says the workers see the same files."""

    def __init__(self, workers: int, scheduler: str | None, scheduler_file: str | None,
                 shared_fs: bool) -> None:
        try:
            from dask.distributed import Client, LocalCluster, as_completed
        except ImportError:
            raise ScenarioError("--executor dask: dask.distributed is not installed "
                                "(pip install 'ecofed_sim[dask]')") from None
        address = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
        self._cluster = None
        if scheduler_file:
            self.client = Client(scheduler_file=scheduler_file)
        elif address:
            self.client = Client(address)
        else:
            self._cluster = LocalCluster(n_workers=workers, threads_per_worker=1,
                                         processes=True, dashboard_address=":0")
            self.client = Client(self._cluster)
        # a LocalCluster shares this machine's files; a named cluster only if declared
        self.ships_files = self._cluster is None and not shared_fs
        logging.getLogger("ecofed_sim").info(
            f"dask: {len(self.client.scheduler_info().get('workers', {}))} workers; "
            f"dashboard {self.client.dashboard_link}")
        self._completed = as_completed(with_results=False)

    def submit(self, fn: Callable, *args: Any):
        fut = self.client.submit(fn, *args, pure=False, retries=DASK_RETRIES)
        self._completed.add(fut)
        return fut

    def share(self, value: Any) -> Any:
        """Sent to the cluster once, whatever number of tasks read it (a trace)."""
        return self.client.scatter(value, broadcast=False)

    def next_done(self):
        fut = next(self._completed)
        err = fut.exception() if fut.status == "error" else None
        if fut.status == "cancelled":
            err = RuntimeError("task cancelled (its workers were lost)")
        return fut, (None if err else fut.result()), err

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def make_pool(executor: str, workers: int, scheduler: str | None = None,
              scheduler_file: str | None = None, shared_fs: bool = False):
    if executor == "dask":
        return Dask(workers, scheduler, scheduler_file, shared_fs)
    return InProcess() if workers <= 1 else Processes(workers)

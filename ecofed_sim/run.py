"""The Python API: ``run(scenario)`` plays every round and returns the tables."""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib.metadata
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from ecofed_sim.async_engine import AsyncEngine
from ecofed_sim.engine import Engine
from ecofed_sim.errors import ScenarioError
from ecofed_sim.hierarchy import HierarchicalEngine
from ecofed_sim.prepare import prepare
from ecofed_sim.progress import bar, log
from ecofed_sim.scenario import Scenario, load_scenario
from ecofed_sim.spill import TableSpill
from ecofed_sim.trace import RoundTrace, Trace, learning_key


@dataclass
class Results:
    """What one run produced: tidy tables plus the scenario and a manifest."""

    scenario: Scenario
    rounds: pd.DataFrame
    transfers: pd.DataFrame
    timeline: pd.DataFrame
    energy: pd.DataFrame = field(default_factory=pd.DataFrame)
    manifest: dict = field(default_factory=dict)
    trace: Trace | None = None  # set when run with record=True
    participation: pd.DataFrame = field(default_factory=pd.DataFrame)
    updates: pd.DataFrame = field(default_factory=pd.DataFrame)  # asynchronous arrivals
    files: dict[str, Path] = field(default_factory=dict)  # tables written as it ran (empty above)

    @classmethod
    def from_frames(cls, scenario: Scenario, frames: dict[str, pd.DataFrame], manifest: dict,
                    trace: Trace | None = None) -> Results:
        return cls(scenario, frames["rounds"], frames["transfers"], frames["timeline"],
                   frames["energy"], manifest, trace, frames["participation"],
                   frames["updates"])


PROVENANCE_PACKAGES = ("ecofed_sim", "torch", "numpy", "simpy", "pandas", "pyarrow",
                       "pydantic")


@functools.lru_cache(maxsize=1)
def _installed_versions() -> tuple[tuple[str, str | None], ...]:
    """Looked up once per process: a sweep's re-simulations each write a manifest, and
    reading package metadata took a few percent of one."""
    versions: list[tuple[str, str | None]] = [("python", platform.python_version())]
    for name in PROVENANCE_PACKAGES:
        try:
            versions.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            versions.append((name, None))
    return tuple(versions)


def package_versions() -> dict[str, str | None]:
    """Installed versions from package metadata (not from ``git`` in the install folder,
    which a wheel does not have), plus Python's."""
    return dict(_installed_versions())


def manifest(scenario: Scenario, started: float, resimulated: bool = False,
             workers: int = 1, device: str | None = None) -> dict:
    from ecofed_sim import __version__

    where = {} if device is None else {"compute_device": device}
    return {**where, "ecofed_sim_version": __version__, "versions": package_versions(),
            "seed": scenario.seed, "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": scenario.training.threads,
            "resimulated": resimulated, "workers": workers,
            "wall_clock_s": round(time.perf_counter() - started, 3)}


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the learning computation on exactly ``threads`` intra-op threads (results
    depend on the count: a parallel float sum rounds differently), then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Python's cyclic garbage collector, told about a run's long-lived objects: they are
    frozen out of its scans (data, population, models), and it runs on every 100,000 new
    objects rather than 700. A round of 10,000 clients makes millions of short-lived
    events; with the defaults, rescanning the heap took over half of its time. Restored
    afterwards."""
    gc.collect()
    gc.freeze()
    before = gc.get_threshold()
    gc.set_threshold(100_000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def _trainer_pool(sc: Scenario, workers: int, scheduler: str | None,
                  scheduler_file: str | None, stack: contextlib.ExitStack):
    """Worker processes (or a Dask cluster) for the run's training, closed with
    ``stack``, to be given the run's inputs once prepared (``start``); None: train
    serially. Local workers start now, and import while the inputs are prepared."""
    remote = scheduler or scheduler_file
    if (workers <= 1 and not remote) or sc.learning == "none":
        return None
    if sc.asynchronous is not None:
        log.info("asynchronous runs train each update as it arrives: running serially")
        return None
    if not type(sc.method).defers_training:
        if not sc.method.trains_apart():
            log.info("%s: what a client learns depends on other clients' work in event "
                     "order (a shared server part): running serially", sc.method.name)
            return None
    from ecofed_sim.parallel import DaskTrainerPool, TrainerPool

    pool = (DaskTrainerPool(scheduler, scheduler_file) if remote
            else TrainerPool(workers, sc.training.threads))
    stack.callback(pool.close)
    return pool


def run(scenario: Scenario | str | Path, *, progress: bool = False,
        source: str | None = None, base_dir: Path | None = None,
        record: bool = False, workers: int = 1, scheduler: str | None = None,
        scheduler_file: str | None = None, cohorts: bool = True,
        tables_dir: Path | None = None,
        on_round: Callable[[RoundTrace], None] | None = None) -> Results:
    """Simulate a scenario (object or YAML path); raises ``ScenarioError`` on bad input.

    With ``record=True`` the result carries a trace that ``resimulate`` can re-play under
    other timing parameters (see ``ecofed_sim.trace``). With ``workers > 1``, each round's
    kept clients train in that many worker processes (or on the Dask cluster at
    ``scheduler``/``scheduler_file``), with results identical to ``workers=1`` on the same
    machine: for fedavg, and for splitfed, local_loss, fedgkt lock-step and ecofed in a
    synchronous run without a topology (``ecofed_sim.parallel``); other runs are
    serial.
    ``cohorts=False`` plays every client of a timing-only run as its own process (the
    reference the cohorts are tested against; ``ecofed_sim.cohorts``). With
    ``tables_dir``, the transfers, timeline, energy, participation and updates tables are
    written there as Parquet files while the rounds close (``ecofed_sim.spill``):
    ``Results.files`` names them, and those tables are empty in the ``Results``. With
    ``record``, ``on_round`` gets each round's trace as the round closes (a sweep streams
    it to the re-simulations of its other runs: ``ecofed_sim.sweep_stream``)."""
    if not isinstance(scenario, Scenario):
        path = Path(scenario)
        scenario, source, base_dir = load_scenario(path), str(path), path.parent
    started = time.perf_counter()
    with torch_threads(scenario.training.threads), contextlib.ExitStack() as stack:
        pool = _trainer_pool(scenario, workers, scheduler, scheduler_file, stack)
        prep = prepare(scenario, source or scenario.name, base_dir, progress)
        if pool is not None:
            pool.start(prep)
        if record and (scenario.asynchronous or scenario.topology):
            raise ScenarioError(f"{source or scenario.name}: asynchronous runs and "
                                "topologies cannot be recorded for re-simulation")
        if scenario.asynchronous is not None:
            engine = AsyncEngine(prep)
        elif scenario.topology is not None:
            engine = HierarchicalEngine(prep, pool=pool)
        else:
            engine = Engine(prep, record=record, pool=pool)
        engine.cohorts_on = cohorts
        if tables_dir is not None:
            engine.ledger.spill = TableSpill(tables_dir)
        stack.enter_context(fewer_collections())
        unit = "round" if scenario.asynchronous is None else "update"
        shown = bar(scenario.rounds, f"{scenario.name} [{scenario.method.name}]", unit,
                    progress)
        for r in range(scenario.rounds):
            row = engine.run_round(r)
            if row is None:  # asynchronous.until_s came first
                break
            if on_round is not None and record:
                on_round(engine.recorder.rounds[-1])
            accuracy = ({} if scenario.learning == "none"
                        else {"acc": f"{row['test_accuracy']:.3f}"})
            shown.set_postfix(**accuracy, sim_s=f"{row['sim_time_s']:.2f}")
            shown.update(1)
        shown.close()
    frames = engine.ledger.frames()
    trace = None
    if record:
        trace = Trace(learning_key(scenario), engine.recorder.rounds)
    # the scenario as run: with any ``split: auto`` replaced by the planner's pick
    results = Results.from_frames(engine.scenario, frames,
                                  manifest(scenario, started,
                                           workers=1 if pool is None else pool.workers,
                                           device=str(prep.compute_device)), trace)
    results.files = engine.ledger.files
    return results

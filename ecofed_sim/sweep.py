"""Running a sweep: local worker processes or Dask, resumable, with learning-trace reuse.

Each task is one learning group (runs that differ only in timing-only fields): its first
pending run trains for real and records a trace, the others are re-simulated from it.
Workers return tables; only this process writes, atomically (temporary directory, then
rename), so a sweep killed at any moment and started again loses and duplicates nothing.
"""

from __future__ import annotations

import shutil
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import yaml
from tqdm import tqdm

from ecofed_sim.errors import ScenarioError
from ecofed_sim.outdir import locked, open_sweep_dir
from ecofed_sim.results import write_results
from ecofed_sim.sweep_spec import RunSpec, SweepSpec, expand, learning_groups, load_sweep
from ecofed_sim.sweep_summary import write_summary


@dataclass
class Task:
    """What a worker needs: scenarios (as plain data) and where their files are."""

    runs: list[tuple[str, dict]]  # (run_id, resolved scenario as a dict)
    base_dir: str


@dataclass
class Outcome:
    run_id: str
    results: object | None = None  # ecofed_sim.Results without its trace
    error: str | None = None


@dataclass
class Tally:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    errors: dict[str, str] = field(default_factory=dict)


def run_task(task: Task) -> list[Outcome]:
    """Worker side: one learning run (recorded) and re-simulations of the rest. Torch
    threads come from each scenario's ``training.threads``, never from the worker's cores,
    so a run id means one result on any executor."""
    from ecofed_sim.resimulate import resimulate
    from ecofed_sim.run import run
    from ecofed_sim.scenario import Scenario

    base_dir = Path(task.base_dir)
    outcomes, trace = [], None
    for run_id, raw in task.runs:
        try:
            scenario = Scenario.model_validate(raw)
            if trace is None:
                res = run(scenario, base_dir=base_dir, record=len(task.runs) > 1)
                trace, res.trace = res.trace, None
            else:
                res = resimulate(scenario, trace, base_dir=base_dir)
            outcomes.append(Outcome(run_id, res))
        except Exception:  # noqa: BLE001 (a failing run is recorded, the sweep goes on)
            outcomes.append(Outcome(run_id, error=traceback.format_exc(limit=8)))
    return outcomes


def local_executor(tasks: list[Task], workers: int) -> Iterator[list[Outcome]]:
    if workers <= 1:
        for task in tasks:
            yield run_task(task)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(run_task, t) for t in tasks]
        for fut in as_completed(futures):
            yield fut.result()


def dask_executor(tasks: list[Task], workers: int, scheduler: str | None
                  ) -> Iterator[list[Outcome]]:
    try:
        from dask.distributed import Client, LocalCluster
        from dask.distributed import as_completed as dask_completed
    except ImportError:
        raise ScenarioError("--executor dask: dask.distributed is not installed "
                            "(pip install 'ecofed_sim[dask]')") from None
    cluster = None if scheduler else LocalCluster(n_workers=workers, threads_per_worker=1,
                                                  processes=True, dashboard_address=None)
    with Client(scheduler or cluster) as client:
        futures = client.map(run_task, tasks, pure=False)
        for fut in dask_completed(futures):
            yield fut.result()
    if cluster is not None:
        cluster.close()


def is_done(out: Path, run_id: str) -> bool:
    return (out / "runs" / run_id / "manifest.json").exists()


def clean_partial(out: Path) -> None:
    """Remove temporary directories a killed sweep may have left behind."""
    runs = out / "runs"
    if runs.is_dir():
        for tmp in runs.glob(".*"):
            shutil.rmtree(tmp, ignore_errors=True)


def plan(runs: list[RunSpec], out: Path, reuse: bool) -> tuple[list[list[RunSpec]], int]:
    """Learning groups of the runs still to do, and how many runs are already done."""
    pending = [r for r in runs if not is_done(out, r.run_id)]
    return learning_groups(pending, reuse), len(runs) - len(pending)


def write_resolved(path: Path, spec: SweepSpec, runs: list[RunSpec], out: Path) -> None:
    doc = {"sweep": spec.model_dump(mode="json"), "source": str(path),
           "runs": [{"run_id": r.run_id, "params": r.params, "learning_key": r.learning_key}
                    for r in runs]}
    tmp = out / ".sweep.resolved.yaml.tmp"
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    tmp.replace(out / "sweep.resolved.yaml")


def run_sweep(path: Path, out: Path, executor: str = "local", workers: int = 1,
              scheduler: str | None = None, reuse: bool = True, targets: list[float] = (),
              progress: bool = True, log: Callable[[str], None] = print,
              force: bool = False) -> Tally:
    spec = load_sweep(path)
    runs = expand(path, spec, force=force, progress=progress)
    open_sweep_dir(out)
    with locked(out):
        return _run_locked(path, spec, runs, out, executor, workers, scheduler, reuse,
                           targets, progress, log)


def _run_locked(path: Path, spec: SweepSpec, runs: list[RunSpec], out: Path, executor: str,
                workers: int, scheduler: str | None, reuse: bool, targets: list[float],
                progress: bool, log: Callable[[str], None]) -> Tally:
    clean_partial(out)
    (out / "runs").mkdir(exist_ok=True)
    write_resolved(path, spec, runs, out)
    groups, skipped = plan(runs, out, reuse)
    base_dir = str((path.parent / spec.base).parent)
    tasks = [Task([(r.run_id, r.scenario.model_dump(mode="json")) for r in g], base_dir)
             for g in groups]
    tally = Tally(skipped=skipped)
    bar = tqdm(total=len(runs), initial=skipped, desc=spec.name, unit="run",
               disable=not progress)
    stream = (local_executor(tasks, workers) if executor == "local"
              else dask_executor(tasks, workers, scheduler))
    for outcomes in stream:
        for o in outcomes:
            if o.error is None:
                write_results(o.results, out / "runs" / o.run_id, check=False)
                tally.done += 1
            else:
                tally.failed += 1
                tally.errors[o.run_id] = o.error
                log(f"run {o.run_id} failed: {o.error.strip().splitlines()[-1]}")
            bar.update(1)
    bar.close()
    _write_failures(out, tally)
    write_summary(out, runs, list(spec.targets) + list(targets))
    return tally


def _write_failures(out: Path, tally: Tally) -> None:
    path = out / "failed.yaml"
    if tally.errors:
        tmp = out / ".failed.yaml.tmp"
        tmp.write_text(yaml.safe_dump(tally.errors))
        tmp.replace(path)
    elif path.exists():
        path.unlink()


def dry_run(path: Path, out: Path, reuse: bool, force: bool = False) -> str:
    spec = load_sweep(path)
    runs = expand(path, spec, force=force)
    groups, skipped = plan(runs, out, reuse)
    lines = [f"{r.run_id}  {'done ' if is_done(out, r.run_id) else 'to do'}  "
             + ", ".join(f"{k}={v}" for k, v in r.params.items()) for r in runs]
    pending = len(runs) - skipped
    lines.append(f"{len(runs)} runs ({skipped} done, {pending} to do); {len(groups)} learning "
                 f"runs, {pending - len(groups)} re-simulated"
                 + ("" if reuse else " (reuse off)"))
    return "\n".join(lines)


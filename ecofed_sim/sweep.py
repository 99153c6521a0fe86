"""Running a sweep: in process, local worker processes or Dask; resumable, with
learning-trace reuse.

Runs that differ only in timing-only fields form a learning group: its first pending run
trains for real and records a trace; once the trace exists, the others are re-simulated
from it as tasks of their own, spread over the workers. Workers return tables; only this
process writes, atomically, so a sweep killed at any moment and started again loses and
duplicates nothing.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ecofed_sim.outdir import locked, open_sweep_dir
from ecofed_sim.progress import bar
from ecofed_sim.results import write_results
from ecofed_sim.sweep_files import absolutize, bundle, materialize, restore_paths
from ecofed_sim.sweep_pools import InProcess, make_pool
from ecofed_sim.sweep_spec import RunSpec, SweepSpec, expand, learning_groups, load_sweep
from ecofed_sim.sweep_stream import StreamedResims
from ecofed_sim.sweep_summary import write_summary

LOG = logging.getLogger("ecofed_sim")


@dataclass
class Job:
    """What a worker needs for one run: the scenario as plain data, with its paths made
    absolute (or renamed into ``files``, shipped with it), and whether to record a trace."""

    run_id: str
    scenario: dict
    files: dict[str, bytes] = field(default_factory=dict)
    record: bool = False


@dataclass
class Tally:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    errors: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def job_folder(job: Job) -> Iterator[Path | None]:
    """Where the job's relative paths point: a temporary folder holding its shipped files
    (none to ship: paths are already absolute)."""
    if not job.files:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="ecofed-sim-job-") as folder:
        materialize(job.files, Path(folder))
        yield Path(folder)


def learn(job: Job, on_round: Callable | None = None):
    """Worker side: train one run for real; with ``record``, also return its trace for the
    re-simulations of its group (and hand ``on_round`` each round's as it closes). Torch
    threads come from the scenario's ``training.threads``, never from the worker's cores:
    a run id means one result."""
    from ecofed_sim.run import run
    from ecofed_sim.scenario import Scenario

    with job_folder(job) as folder:
        res = run(Scenario.model_validate(job.scenario), base_dir=folder, record=job.record,
                  on_round=on_round)
    trace, res.trace = res.trace, None
    return res, trace


def resimulate_job(job: Job, trace):
    """Worker side: a run of the same learning group, re-simulated from the trace."""
    from ecofed_sim.resimulate import resimulate
    from ecofed_sim.scenario import Scenario

    with job_folder(job) as folder:
        return resimulate(Scenario.model_validate(job.scenario), trace, base_dir=folder)


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
              progress: bool = True, log: Callable[[str], None] = LOG.warning,
              force: bool = False, scheduler_file: str | None = None,
              shared_fs: bool = False, stream: bool = True) -> Tally:
    """Run (or resume) the sweep in ``path`` into ``out`` and return the tally.

    ``executor``: ``local`` (``workers`` processes; 1 runs in this process) or ``dask``
    (``scheduler`` address, ``scheduler_file``, ``DASK_SCHEDULER_ADDRESS``, else a
    LocalCluster). Finished runs are skipped; learning runs start first and their groups'
    re-simulations follow as traces arrive; with one local worker and ``stream``, they
    run beside the learning run in a helper process, round by round
    (``ecofed_sim.sweep_stream``). A failing run is recorded in ``out/failed.yaml`` and
    the sweep goes on. Bad input raises ``ScenarioError``."""
    spec = load_sweep(path)
    runs = expand(path, spec, force=force, progress=progress)
    open_sweep_dir(out)
    with locked(out):
        pool = make_pool(executor, workers, scheduler, scheduler_file, shared_fs)
        try:
            return _run_locked(path, spec, runs, out, pool, reuse, targets, progress, log,
                               stream)
        finally:
            pool.close()


def _run_locked(path: Path, spec: SweepSpec, runs: list[RunSpec], out: Path, pool,
                reuse: bool, targets: list[float], progress: bool,
                log: Callable[[str], None], stream: bool = True) -> Tally:
    clean_partial(out)
    (out / "runs").mkdir(exist_ok=True)
    write_resolved(path, spec, runs, out)
    groups, skipped = plan(runs, out, reuse)
    jobs = _jobs(groups, (path.parent / spec.base).parent.resolve(), pool.ships_files,
                 str(path))
    tally = Tally(skipped=skipped)
    shown = bar(len(runs), spec.name, "run", progress, initial=skipped)
    streamed = StreamedResims() if isinstance(pool, InProcess) and stream else None
    try:
        if streamed is not None:
            for group in [g for g in groups if len(g) > 1]:
                _learn_streamed(group, jobs, streamed, out, tally, shown, log)
            streamed.stop()  # it exits while the rest runs and the tables are written
            groups = [g for g in groups if len(g) == 1]
        _run_pending(groups, jobs, pool, out, tally, shown, log)
        shown.close()
        _write_failures(out, tally)
        write_summary(out, runs, list(spec.targets) + list(targets))
    except BaseException:  # Ctrl-C, or a bug: the helper's queue is not waited for
        if streamed is not None:
            streamed.close(stop_now=True)
        raise
    if streamed is not None:
        streamed.close()
    return tally


def _run_pending(groups: list[list[RunSpec]], jobs: dict[str, Job], pool, out: Path,
                 tally: Tally, shown, log: Callable[[str], None]) -> None:
    """Learn each group's first run on the pool; a group's re-simulations fan out once
    its trace exists."""
    pending = {pool.submit(learn, jobs[g[0].run_id]): (g, True) for g in groups}
    while pending:
        handle, value, err = pool.next_done()
        group, learned = pending.pop(handle)
        if err is not None:
            for r in group if learned else group[:1]:  # a failed learning run fails its group
                _failed(tally, shown, r.run_id, err, log)
            continue
        results, trace = value if learned else (value, None)
        _finished(tally, shown, results, group[0], out)
        if learned and len(group) > 1:  # the trace exists: its re-simulations fan out
            shared = pool.share(trace)
            for r in group[1:]:
                pending[pool.submit(resimulate_job, jobs[r.run_id], shared)] = ([r], False)


def _learn_streamed(group: list[RunSpec], jobs: dict[str, Job], streamed: StreamedResims,
                    out: Path, tally: Tally, shown, log: Callable[[str], None]) -> None:
    """Train a group's first run here while ``streamed`` re-plays the others round by
    round (``ecofed_sim.sweep_stream``); write each as it is done."""
    from ecofed_sim.scenario import Scenario
    from ecofed_sim.trace import learning_key

    first = jobs[group[0].run_id]  # the key of the scenario as it runs (paths absolute)
    streamed.begin([jobs[r.run_id] for r in group[1:]],
                   learning_key(Scenario.model_validate(first.scenario)),
                   write_to={r.run_id: (r.scenario.model_dump(mode="json"),
                                        out / "runs" / r.run_id) for r in group[1:]})
    try:
        results, trace = learn(first, on_round=streamed.round)
    except Exception as err:  # noqa: BLE001 (a failed learning run fails its group)
        streamed.abandon()
        for r in group:
            _failed(tally, shown, r.run_id, err, log)
        return
    _finished(tally, shown, results, group[0], out)
    by_id, pending = {r.run_id: r for r in group}, {r.run_id for r in group[1:]}
    for run_id, resimulated, err in streamed.results():
        pending.discard(run_id)
        _resimulated(tally, shown, run_id, resimulated, err, by_id[run_id], out, log)
    if pending:  # the helper failed: re-simulate the rest here, from the whole trace
        log("re-simulating in this process: the streaming helper stopped")
        for r in group[1:]:
            if r.run_id in pending:
                try:
                    resimulated, err = resimulate_job(jobs[r.run_id], trace), None
                except Exception as failure:  # noqa: BLE001 (the run's outcome)
                    resimulated, err = None, failure
                _resimulated(tally, shown, r.run_id, resimulated, err, r, out, log)


def _resimulated(tally: Tally, shown, run_id: str, results, err: BaseException | None,
                 run: RunSpec, out: Path, log: Callable[[str], None]) -> None:
    if err is not None:
        _failed(tally, shown, run_id, err, log)
    else:
        _finished(tally, shown, results, run, out)


def _finished(tally: Tally, shown, results, run: RunSpec, out: Path) -> None:
    if results is not None:  # None: the streaming helper wrote the run itself
        _write(results, run, out)
    tally.done += 1
    shown.update(1)


def _jobs(groups: list[list[RunSpec]], base_dir: Path, ship: bool,
          source: str) -> dict[str, Job]:
    """Every pending run's job, built (and its files bundled) before anything starts, so a
    file that cannot travel is an error up front."""
    jobs = {}
    for group in groups:
        for i, r in enumerate(group):
            raw, files = absolutize(r.scenario.model_dump(mode="json"), base_dir), {}
            if ship:
                raw, files = bundle(raw, f"{source} ({r.run_id})")
            jobs[r.run_id] = Job(r.run_id, raw, files, record=i == 0 and len(group) > 1)
    return jobs


def _write(results, run: RunSpec, out: Path) -> None:
    write_run(results, run.scenario.model_dump(mode="json"), out / "runs" / run.run_id)


def write_run(results, as_written: dict, folder: Path) -> None:
    """A finished run's tables, its scenario with the paths as the user wrote them
    (``as_written``). The sweep's lock is held: ``folder`` is its own to replace."""
    from ecofed_sim.scenario import Scenario

    raw = restore_paths(results.scenario.model_dump(mode="json"), as_written)
    results.scenario = Scenario.model_validate(raw)
    write_results(results, folder, check=False)


def _failed(tally: Tally, shown, run_id: str, err: BaseException,
            log: Callable[[str], None]) -> None:
    tally.failed += 1
    shown.update(1)
    tally.errors[run_id] = "".join(traceback.format_exception(err, limit=8))
    last = str(err).strip().splitlines()[-1:] or [type(err).__name__]
    log(f"run {run_id} failed: {type(err).__name__}: {last[0]}")


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


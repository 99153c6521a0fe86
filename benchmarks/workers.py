"""One run on N worker processes against the same run on one: wall time, peak memory, and
whether every table is identical.

Each variant runs in its own fresh process, alternating, several times; medians are
printed side by side with the speed-up. Peak RSS is the main process's plus its workers'
(children's maximum). Goal on a 2-core machine: >= 1.7x with 2 workers, identical tables.
The machine's own ceiling (N independent torch processes against one) is measured before
each pair of runs and after the last: on a shared machine it moves from run to run.

    python benchmarks/workers.py [--workers 2] [--repeats 3] [--scenario FILE] [--set K=V]
    python benchmarks/workers.py --ceiling-only [--repeats 5]

``--ceiling-only`` measures the ceiling alone, ``--repeats`` times, with the same probe
in pure Python beside it (an interpreter loop, no torch): where two interpreter loops
scale and two torch processes do not, the cores are there but the torch kernels share
something (on a virtual machine, its vCPUs may be one physical core's two threads).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one_variant(scenario: str, overrides: list[str], workers: int, out: str) -> dict:
    from ecofed_sim.results import write_results
    from ecofed_sim.run import run
    from ecofed_sim.scenario import load_scenario

    sc = load_scenario(Path(scenario), overrides)
    start = time.perf_counter()
    results = run(sc, source=scenario, base_dir=Path(scenario).parent, workers=workers)
    wall_s = time.perf_counter() - start
    write_results(results, Path(out))
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _stop_fork_server()
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"workers": workers, "wall_s": wall_s, "peak_rss_mib": own,
            "worker_peak_rss_mib": children}


def _stop_fork_server() -> None:
    """On Linux the workers are the children of a fork server (``parallel.worker_context``),
    not of this process: their peak RSS counts in this process's children's once that
    server, which reaps them, has ended and been reaped (``_stop``: the standard
    library's own tests stop it so)."""
    from multiprocessing import forkserver

    stop = getattr(forkserver._forkserver, "_stop", None)
    if stop is not None:
        stop()


def _steps(count: int) -> float:
    """``count`` SGD steps of a small CNN on one thread: the ceiling probe's unit of work."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(16 * 26 * 26, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(20, 1, 28, 28, generator=gen), torch.randint(0, 10, (20,), generator=gen)
    start = time.perf_counter()
    for _ in range(count):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return time.perf_counter() - start


def _loop(count: int) -> float:
    """``count`` thousand turns of an interpreter loop: the pure-Python probe's unit."""
    start, total = time.perf_counter(), 0
    for i in range(count * 1000):
        total += i * i
    return time.perf_counter() - start


def ceiling(workers: int, steps: int = 2000, work=_steps) -> float:
    """How much faster N independent processes do N times one process's torch work here:
    the best any parallel run can do on this machine (cores, memory bandwidth, turbo).
    One process's time is taken just before and just after the N processes' and
    averaged: on a shared machine the speed drifts within seconds. ``steps`` of 400
    (about a second), one process timed before only, gave 0.93x to 2.72x in three probes
    in a row on a 2-core machine; 2,000 gave 1.33x to 1.50x, and later 0.97x to 2.83x."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    def timed(count: int) -> float:
        start = time.perf_counter()
        list(pool.map(work, [steps] * count))
        return time.perf_counter() - start

    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        list(pool.map(work, [5] * workers))  # start and warm every worker
        before, many, after = timed(1), timed(workers), timed(1)
    return workers * (before + after) / 2 / many


def ceiling_only(workers: int, repeats: int) -> None:
    """The ceiling ``repeats`` times, torch and pure Python taking turns."""
    torch_x, python_x = [], []
    for _ in range(repeats):
        torch_x.append(ceiling(workers))
        python_x.append(ceiling(workers, steps=15_000, work=_loop))
    for name, got in (("torch (SGD steps of a small CNN, 1 thread each)", torch_x),
                      ("pure Python (an interpreter loop)", python_x)):
        print(f"{workers} independent processes against one, {name}: median "
              f"{statistics.median(got):.2f}x ({', '.join(f'{x:.2f}' for x in got)})")


def same_tables(a: Path, b: Path) -> bool:
    import pandas as pd

    for name in ("rounds", "transfers", "timeline", "participation"):
        if not pd.read_parquet(a / f"{name}.parquet").equals(
                pd.read_parquet(b / f"{name}.parquet")):
            return False
    return True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--scenario", default=str(ROOT / "scenarios" / "bench_cross_device.yaml"))
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--ceiling-only", action="store_true",
                   help="measure only the machine's ceiling, torch and pure Python")
    p.add_argument("--variant", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.ceiling_only:
        ceiling_only(args.workers, args.repeats)
        return
    if args.variant is not None:
        print(json.dumps(one_variant(args.scenario, args.overrides, args.variant, args.out)))
        return
    runs: dict[int, list[dict]] = {1: [], args.workers: []}
    ceilings = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            ceilings.append(ceiling(args.workers))  # the machine as it is around this pair
            for workers in runs:
                out = Path(tmp) / f"w{workers}-{i}"
                cmd = [sys.executable, __file__, "--variant", str(workers), "--out", str(out),
                       "--scenario", args.scenario,
                       *[x for o in args.overrides for x in ("--set", o)]]
                done = subprocess.run(cmd, capture_output=True, text=True, check=True)
                runs[workers].append(json.loads(done.stdout.strip().splitlines()[-1]))
        identical = all(same_tables(Path(tmp) / f"w1-{i}", Path(tmp) / f"w{args.workers}-{i}")
                        for i in range(args.repeats))
    print(f"scenario: {args.scenario} {' '.join(args.overrides)}  (median of {args.repeats}, "
          "fresh process each)")
    print(f"{'workers':>7} {'wall_s':>8} {'peak_rss_MiB':>13} {'worker_peak_MiB':>16}")
    med = {}
    for workers, rs in runs.items():
        med[workers] = statistics.median(r["wall_s"] for r in rs)
        print(f"{workers:>7} {med[workers]:>8.2f} "
              f"{statistics.median(r['peak_rss_mib'] for r in rs):>13.0f} "
              f"{statistics.median(r['worker_peak_rss_mib'] for r in rs):>16.0f}")
    speedup = med[1] / med[args.workers]
    print(f"speed-up with {args.workers} workers = {speedup:.2f}x  (goal >= 1.7x on 2 cores)")
    print(f"identical tables: {identical}")
    ceilings.append(ceiling(args.workers))
    print(f"this machine's ceiling: {args.workers} independent torch processes do "
          f"{statistics.median(ceilings):.2f}x the work of one in the same time (median of "
          f"{', '.join(f'{c:.2f}' for c in ceilings)}: before each pair of runs and after "
          f"the last); the run reached {speedup / statistics.median(ceilings):.0%} of it")


if __name__ == "__main__":
    main()

"""A 20-point uplink-bandwidth sweep with and without learning-trace reuse.

Bandwidth cannot change what is learned, so with reuse the sweep trains once and
re-simulates the clocks of the other 19 points; with one worker (the default here) a
helper process re-plays them round by round while the learning run trains on one torch
thread (``ecofed_sim.sweep_stream``). Prints the wall-clock of one run, of the sweep with
reuse and of the sweep without, their ratios (goal: the reused sweep costs at most 1.1x
one run; one run is what ``ecofed-sim run`` does: the run, then its tables written, as
the sweep writes each of its points'; the ratio to the run alone is printed too), and
the peak RSS of each process and of its largest child (the helper), all measured in one
invocation. It also splits the reused sweep's time: its learning run's
own wall-clock (from that run's manifest) against one run's, the CPU seconds of the
helper working beside it, and the rest (setup, the last round's re-plays, the summary).
Also the sweep that re-simulates after its learning run (``stream=False``), for
comparison.

    python benchmarks/sweep_reuse.py [--points 20] [--method splitfed] [--repeats 3]
    python benchmarks/sweep_reuse.py --resim-only 7   # re-simulation alone, per point

``--repeats K`` runs one run and the reused sweep K times each, alternating, and takes each
one's median: on a shared machine one pair of wall-clocks can be 20% apart by chance. It
also prints each sweep's ratio to the run just before it, and their median: the machine's
speed drifts over minutes, and a pair measured back to back shares most of the drift.
``--resim-only N`` trains the first point once (recording its trace), then times the
re-simulation of the next N points, best of three passes, against that learning run: the
per-point cost a sweep pays, without the noise of whole-sweep wall-clocks.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def write_sweep(directory: Path, points: int, method: str, model: str = "small_cnn") -> Path:
    uplinks = [round(100 ** (i / (points - 1)), 3) for i in range(points)]  # 1..100 Mbit/s
    spec = {"name": "bench_sweep_reuse", "base": str(ROOT / "scenarios" / "quickstart.yaml"),
            "set": {"rounds": 10, "model.name": model,
                    "method": {"name": method, "split": 4} if method != "fedavg"
                    else {"name": "fedavg"}},
            "axes": [{"path": ["population.devices[0].link", "population.devices[1].link"],
                      "label": "uplink_mbps", "labels": [str(u) for u in uplinks],
                      "values": [{"uplink_mbps": u, "downlink_mbps": 4 * u, "latency_ms": 20}
                                 for u in uplinks]}]}
    path = directory / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def child(kind: str, sweep: Path, out: Path) -> dict:
    from ecofed_sim.sweep import run_sweep

    start = time.perf_counter()
    written_s = None
    if kind == "one":  # as ``ecofed-sim run --out`` does it: tables spilled, then written
        from ecofed_sim.outdir import check_target, new_tmp
        from ecofed_sim.results import write_results
        from ecofed_sim.run import run
        from ecofed_sim.sweep_spec import expand, load_sweep

        first = expand(sweep, load_sweep(sweep))[0]
        check_target(out)
        tmp = new_tmp(out)
        results = run(first.scenario, base_dir=ROOT / "scenarios", progress=False,
                      tables_dir=tmp)
        learn_s = results.manifest["wall_clock_s"]
        writing = time.perf_counter()
        write_results(results, out, tmp=tmp)
        written_s = time.perf_counter() - writing
    else:
        tally = run_sweep(sweep, out, reuse=kind != "no_reuse", progress=False,
                          log=lambda m: None, stream=kind == "reuse")
        assert tally.failed == 0
        learned = [m for m in (json.loads(f.read_text())
                               for f in (out / "runs").glob("*/manifest.json"))
                   if not m["resimulated"]]
        learn_s = min(m["wall_clock_s"] for m in learned)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall_s": time.perf_counter() - start, "learn_s": learn_s,
            "write_s": written_s or 0.0,
            "helper_cpu_s": children.ru_utime + children.ru_stime,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "helper_rss_mib": children.ru_maxrss / 1024}


def resim_only(sweep: Path, points: int) -> None:
    import ecofed_sim
    from ecofed_sim.resimulate import resimulate
    from ecofed_sim.sweep_spec import expand, load_sweep

    runs = expand(sweep, load_sweep(sweep))
    base = ROOT / "scenarios"
    start = time.perf_counter()
    trace = ecofed_sim.run(runs[0].scenario, base_dir=base, record=True).trace
    learn_s = time.perf_counter() - start
    passes = []
    for _ in range(3):
        start = time.perf_counter()
        for r in runs[1:1 + points]:
            resimulate(r.scenario, trace, base_dir=base)
        passes.append((time.perf_counter() - start) / points)
    print(f"learning run (recording): {learn_s:.2f} s; re-simulation: {min(passes):.3f} s a "
          f"point (best of 3 passes over {points}), {min(passes) / learn_s:.1%} of the run; "
          f"a {len(runs)}-point sweep at that rate: "
          f"{1 + (len(runs) - 1) * min(passes) / learn_s:.2f}x one run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20)
    parser.add_argument("--method", default="splitfed")
    parser.add_argument("--model", default="small_cnn", help="small_cnn (worst case: the "
                        "cheapest learning run) or vgg5")
    parser.add_argument("--skip-no-reuse", action="store_true",
                        help="do not run the 20 full runs (slow with larger models)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="time one run and the reused sweep K times each, alternating; "
                        "medians")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--resim-only", type=int, metavar="N",
                        help="time N re-simulations from one recorded trace")
    args = parser.parse_args()
    if args.resim_only:
        with tempfile.TemporaryDirectory() as tmp:
            resim_only(write_sweep(Path(tmp), args.points, args.method, args.model),
                       args.resim_only)
        return
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]), Path(args.child[2]))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        sweep = write_sweep(Path(tmp), args.points, args.method, args.model)
        kinds = ("one", "reuse", "reuse_after") + (() if args.skip_no_reuse else ("no_reuse",))
        order = [k for _ in range(args.repeats) for k in kinds[:2]] + list(kinds[2:])
        runs: dict[str, list[dict]] = {kind: [] for kind in kinds}
        for i, kind in enumerate(order):
            folder = Path(tmp) / f"{kind}{i}"
            out = subprocess.run([sys.executable, __file__, "--child", kind, str(sweep),
                                  str(folder)], capture_output=True, text=True, check=True)
            runs[kind].append(json.loads(out.stdout.strip().splitlines()[-1]))
            if kind in ("reuse", "no_reuse"):  # the last one is compared below
                shutil.rmtree(Path(tmp) / kind, ignore_errors=True)
                folder.rename(Path(tmp) / kind)
        res = {kind: {key: statistics.median(r[key] for r in got) for key in got[0]}
               for kind, got in runs.items()}
        if args.repeats > 1:
            print("wall_s of each repeat: " + "; ".join(
                f"{kind} " + ", ".join(f"{r['wall_s']:.2f}" for r in runs[kind])
                for kind in kinds[:2]))
        same = None if args.skip_no_reuse else all(
            (Path(tmp) / "reuse" / "runs" / r.name / "rounds.csv").read_bytes()
            == (r / "rounds.csv").read_bytes() for r in (Path(tmp) / "no_reuse" / "runs").iterdir())
    print(f"{args.points}-point uplink sweep (1-100 Mbit/s), {args.method}, {args.model}, "
          "quickstart scenario, 10 rounds; each in a fresh process"
          + (f"; medians of {args.repeats}" if args.repeats > 1 else ""))
    print(f"{'':<16} {'wall_s':>8} {'peak_rss_MiB':>13} {'helper_peak_rss_MiB':>20}")
    labels = {"one": "one run", "reuse": "sweep, reuse", "reuse_after": "reuse, no stream",
              "no_reuse": "sweep, no reuse"}
    for kind in kinds:
        print(f"{labels[kind]:<16} {res[kind]['wall_s']:>8.2f} "
              f"{res[kind]['peak_rss_mib']:>13.0f} {res[kind]['helper_rss_mib']:>20.0f}")
    one = res["one"]["wall_s"]
    print(f"sweep with reuse / one run    = {res['reuse']['wall_s'] / one:.2f}  (goal <= 1.1)")
    bare = one - res["one"]["write_s"]
    print(f"  one run is its run and its tables written, as `ecofed-sim run` does it; its "
          f"tables took {res['one']['write_s']:.2f} s; against the run alone "
          f"({bare:.2f} s) the sweep is {res['reuse']['wall_s'] / bare:.2f}x")
    reuse, alone_s = res["reuse"], res["one"]["learn_s"]
    print(f"  where it goes: its learning run took {reuse['learn_s']:.2f} s "
          f"({reuse['learn_s'] / alone_s:.2f}x one run's {alone_s:.2f} s"
          f", with the helper's {reuse['helper_cpu_s']:.2f} s of CPU beside it); "
          f"{reuse['wall_s'] - reuse['learn_s']:.2f} s besides, against "
          f"{one - alone_s:.2f} s for one run")
    if args.repeats > 1:  # each sweep against the run just before it: drift cancels
        pairs = [r["wall_s"] / o["wall_s"] for o, r in zip(runs["one"], runs["reuse"],
                                                           strict=True)]
        print(f"  pair by pair: {', '.join(f'{p:.2f}' for p in pairs)}; "
              f"median {statistics.median(pairs):.2f}")
    print(f"  re-simulating after the learning run instead of beside it: "
          f"{res['reuse_after']['wall_s'] / one:.2f}")
    if same is not None:
        print(f"sweep without reuse / one run = {res['no_reuse']['wall_s'] / one:.2f}")
        print(f"identical rounds tables with and without reuse: {same}")


if __name__ == "__main__":
    main()

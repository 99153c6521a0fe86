"""``ecofed-sim``: run, validate and compare scenarios; list what the simulator knows.

Bad input (scenario, override, profile, results directory) prints one line naming the
file and field, and exits with status 2, without a traceback and without writing anything.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

PLOT_KINDS = ("accuracy-time", "accuracy-bytes", "accuracy-energy", "time-bars",
              "bytes-bars", "heatmap", "gantt", "round-cdf", "participation", "staleness",
              "server", "tiers")

EXAMPLES = """examples:
  ecofed-sim run scenarios/quickstart.yaml --out results/qs
  ecofed-sim run scenarios/quickstart.yaml --set 'method={name: fedavg}' --set rounds=5
  ecofed-sim validate scenarios/quickstart.yaml
  ecofed-sim plan scenarios/paper/splitfed.yaml
  ecofed-sim sweep scenarios/sweeps/quickstart_uplink.yaml --workers 2
  ecofed-sim plot results/quickstart_uplink --format png,pdf
  ecofed-sim compare results/qs-fedavg results/qs-splitfed --out results/qs-compare
  ecofed-sim layers vgg11 --shape 3 32 32
  ecofed-sim list profiles
"""


def accuracy(text: str) -> float:
    """An accuracy target: a finite number in [0, 1] (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:  # also false for NaN
        raise argparse.ArgumentTypeError(f"expected an accuracy in [0, 1] (got {text!r})")
    return value


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                   help="override a scenario field, e.g. --set network.x=1 or "
                        "--set population.devices[0].link=4g (value parsed as YAML); repeatable")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecofed-sim", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Simulate federated and split (DNN-partitioned) learning: real PyTorch "
                    "training for accuracy, simulated devices and networks for time and bytes.",
        epilog=EXAMPLES)
    parser.add_argument("--verbose", action="store_true", help="more detail in log lines")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="simulate one scenario and write its results directory",
                       description="Simulate a scenario. Writes rounds.csv/.parquet, "
                       "transfers.parquet, timeline.parquet, scenario.resolved.yaml and "
                       "manifest.json to --out (default results/<name>-<method>).")
    p.add_argument("scenario", type=Path, help="scenario YAML file, or the name of a "
                   "shipped one (ecofed-sim list scenarios)")
    p.add_argument("--out", type=Path, help="results directory (replaced atomically; only "
                   "a results directory is ever replaced)")
    p.add_argument("--force", action="store_true", help="let the default folder's run of "
                   "another configuration be replaced")
    p.add_argument("--threads", type=int, help="torch threads of the learning computation "
                   "(same as --set training.threads=N; default 1; recorded in the manifest)")
    p.add_argument("--workers", type=int, default=1, help="train each round's kept clients "
                   "in N processes (synchronous fedavg, splitfed, local_loss, fedgkt, "
                   "ecofed; others run serially); same results")
    p.add_argument("--scheduler", help="train them on this Dask scheduler's workers instead")
    p.add_argument("--scheduler-file", help="the same, from a Dask scheduler file")
    p.add_argument("--timing-only", action="store_true", help="clocks, traffic and energy "
                   "only, no training (same as --set learning=none)")
    p.add_argument("--per-client", action="store_true", help="timing only: play every "
                   "client as its own process, not alike clients as one cohort (same "
                   "clocks, slower; for checking)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    _add_set(p)

    p = sub.add_parser("validate", help="check a scenario without running it",
                       description="Check schema, profiles, links and split point; print "
                       "the resolved scenario with --print.")
    p.add_argument("scenario", type=Path)
    p.add_argument("--print", action="store_true", help="print the fully resolved scenario")
    _add_set(p)

    p = sub.add_parser("plan", help="split point per device class with the least round time",
                       description="From the profiles and the analytic time model (no "
                       "simulation), print the expected client round time of every split "
                       "point for every device class, and the pick with the least expected "
                       "round time: a split per class where the method allows it (splitfed), "
                       "else one for all. `method.split: auto` runs this pick.")
    p.add_argument("scenario", type=Path)
    _add_set(p)

    p = sub.add_parser("compare", help="table and figures comparing finished runs",
                       description="Print final accuracy, simulated time and bytes of each "
                       "run, and write accuracy-vs-time and accuracy-vs-bytes figures.")
    p.add_argument("runs", type=Path, nargs="+", help="results directories of `run`")
    p.add_argument("--out", type=Path, help="where to write comparison.csv and the figures")

    p = sub.add_parser("sweep", help="run a sweep file (grid or zip of axes x seeds)",
                       description="Expand a sweep file into runs and execute them, locally "
                       "or on Dask. Resumable: finished runs are skipped. Runs that differ only "
                       "in timing-only fields (bandwidth, latency, profiles) train once and are "
                       "re-simulated. Writes DIR/runs/<run_id>/, DIR/summary.parquet, "
                       "DIR/metrics.csv and DIR/sweep.resolved.yaml.")
    p.add_argument("sweep", type=Path, help="sweep YAML file")
    p.add_argument("--out", type=Path, help="results directory (default results/<name>)")
    p.add_argument("--executor", choices=["local", "dask"], default="local")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes (1: learn in this process, re-simulate beside "
                        "it in one helper); each run uses its scenario's "
                        "training.threads torch threads")
    p.add_argument("--scheduler", help="Dask scheduler address (default: "
                   "$DASK_SCHEDULER_ADDRESS, else a LocalCluster of --workers processes)")
    p.add_argument("--scheduler-file", help="Dask scheduler file (dask scheduler "
                   "--scheduler-file, or a dask-jobqueue cluster's)")
    p.add_argument("--shared-fs", action="store_true",
                   help="Dask workers see this machine's files at the same paths: ship "
                        "nothing (else traces and profiles travel with the tasks and dataset "
                        "folders are refused)")
    p.add_argument("--dry-run", action="store_true",
                   help="list the runs and how many learning runs they need")
    p.add_argument("--no-reuse", action="store_true",
                   help="train every run in full (no learning-trace reuse)")
    p.add_argument("--target", type=accuracy, action="append", default=[],
                   help="accuracy target for time/bytes-to-accuracy; repeatable")
    p.add_argument("--force", action="store_true",
                   help="expand a sweep of more than 10,000 runs")
    p.add_argument("--quiet", action="store_true", help="no progress bar or log lines")

    p = sub.add_parser("plot", help="figures from a sweep's or a run's results directory",
                       description="Make figures from results tables (never re-runs "
                       "anything). Kinds: accuracy-time, accuracy-bytes (mean and band over "
                       "seeds), time-bars, bytes-bars (baseline / method factors on the bars), "
                       "heatmap (speed-up and traffic reduction of --method vs --baseline over "
                       "two swept axes), gantt (one round's device timeline), round-cdf, "
                       "participation (kept, stragglers and dropped clients per round of "
                       "--run), staleness (asynchronous runs: share of updates by staleness), "
                       "server (copies held, clients queued and workers busy over time in "
                       "--run), tiers (traffic per round between devices and edges, and edges "
                       "and cloud, in --run).")
    p.add_argument("results", type=Path, help="sweep directory or run directory")
    p.add_argument("--kind", action="append", choices=[*PLOT_KINDS, "all"],
                   help="repeatable; default all")
    p.add_argument("--format", default="png,pdf", help="comma-separated: png, pdf, svg")
    p.add_argument("--out", type=Path, help="default RESULTS/figures")
    p.add_argument("--style", choices=["paper", "slides"], default="paper")
    p.add_argument("--target", type=accuracy, action="append", default=[],
                   help="accuracy for time/bytes-to-accuracy (default: the sweep's first)")
    p.add_argument("--baseline", default="fedavg", help="method the factors compare against "
                   "(factors are baseline / method: speed-up, traffic reduction)")
    p.add_argument("--log", action="store_true", help="bar charts on a log axis (default "
                   "linear: bar heights in proportion)")
    p.add_argument("--method", default="ecofed", help="method of the heatmap")
    p.add_argument("--axes", nargs=2, metavar=("Y", "X"), help="heatmap axes (swept columns)")
    p.add_argument("--run", help="run id of the gantt chart and participation figure "
                   "(default: the first)")
    p.add_argument("--round", type=int, default=0, dest="round_index",
                   help="round of the gantt chart")

    p = sub.add_parser("profile", help="measure per-layer latency here; write a profile",
                       description="Measure the per-layer forward and backward latency of a "
                       "zoo model on this machine (warm-up, then the median of --repeats) and "
                       "write or update a device profile YAML that scenarios can use. Run it "
                       "on a Raspberry Pi or Jetson to simulate that device.")
    p.add_argument("model")
    p.add_argument("--shape", type=int, nargs=3, default=(3, 32, 32), metavar=("C", "H", "W"))
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[10])
    p.add_argument("--threads", type=int, default=torch_threads_default())
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--max-spread", type=float, default=0.5, help="refuse to write when a "
                   "unit's interquartile range exceeds this share of its median (a busy "
                   "machine)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto",
                   help="where to measure: the device's own accelerator when it trains on "
                   "one, as a Jetson does (auto: cuda when torch sees a GPU, else cpu)")
    p.add_argument("--name", default="this_machine", help="profile name (new files only)")
    p.add_argument("--kind", choices=["device", "server"], default="device")
    p.add_argument("--out", type=Path, help="default: <user profile folder>/<name>.yaml "
                   "(ECOFED_SIM_PROFILES, else ~/.local/share/ecofed_sim/profiles)")

    p = sub.add_parser("layers", help="per-layer shapes, parameters and FLOPs of a model",
                       description="Show each unit of a zoo model: the split index, output "
                       "shape, parameters, forward MFLOP and activation bytes per sample.")
    p.add_argument("model")
    p.add_argument("--shape", type=int, nargs=3, default=(3, 32, 32), metavar=("C", "H", "W"))
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--width", type=float, default=1.0,
                   help="multiplier of channels and hidden units (model.width)")

    p = sub.add_parser("list", help="list models, methods, datasets, profiles, links or the "
                       "shipped scenarios")
    p.add_argument("what", choices=["models", "methods", "datasets", "profiles", "links",
                                    "scenarios"])
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from ecofed_sim.outdir import check_target, new_tmp, safe_component
    from ecofed_sim.results import write_results
    from ecofed_sim.run import run
    from ecofed_sim.scenario import load_scenario

    if args.threads is not None:
        args.overrides.append(f"training.threads={args.threads}")
    if args.timing_only:
        args.overrides.append("learning=none")
    if args.workers < 1:
        raise _user_error(f"--workers: must be >= 1 (got {args.workers})")
    scenario = load_scenario(args.scenario, args.overrides)
    out = args.out or Path("results") / safe_component(
        f"{scenario.name}-{scenario.method.name}")
    check_target(out)  # before minutes of work, not after
    if args.out is None and not args.force:
        _keep_other_configuration(out, scenario)
    tmp = new_tmp(out)  # the long tables go here round by round (``spill``)
    try:
        results = run(scenario, progress=not args.quiet, source=str(args.scenario),
                      base_dir=args.scenario.parent, workers=args.workers,
                      scheduler=args.scheduler, scheduler_file=args.scheduler_file,
                      cohorts=not args.per_client, tables_dir=tmp)
        write_results(results, out, tmp=tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not args.quiet:
        last = results.rounds.iloc[-1]
        accuracy = ("timing only" if scenario.learning == "none"
                    else f"accuracy {last.test_accuracy:.4f}")
        print(f"{scenario.name} [{scenario.method.name}]: {accuracy}, simulated "
              f"{last.sim_time_s:.1f} s, {last.cum_bytes / 2**20:.1f} MiB -> {out}")
    return 0


def _keep_other_configuration(out: Path, scenario) -> None:
    """The default folder holds a run of another configuration (other ``--set`` values):
    refuse to replace it silently."""
    from ecofed_sim.compare import differing_fields
    from ecofed_sim.strict import read_yaml

    saved = out / "scenario.resolved.yaml"
    if not saved.is_file():
        return
    differ = differing_fields(read_yaml(saved), scenario.model_dump(mode="json"))
    if differ:
        shown = ", ".join(differ[:4]) + (" ..." if len(differ) > 4 else "")
        raise _user_error(f"{out}: holds a run of another configuration (differs in "
                          f"{shown}); give --out, or --force to replace it")


def cmd_validate(args: argparse.Namespace) -> int:
    from ecofed_sim.checks import check
    from ecofed_sim.scenario import load_scenario, to_yaml

    scenario = load_scenario(args.scenario, args.overrides)
    check(scenario, str(args.scenario), args.scenario.parent)
    print(to_yaml(scenario) if args.print else f"{args.scenario}: ok")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from ecofed_sim import planner
    from ecofed_sim.checks import check
    from ecofed_sim.scenario import load_scenario

    scenario = load_scenario(args.scenario, args.overrides)
    if getattr(scenario.method, "split", None) is None:
        raise _user_error(f"{args.scenario}: method: {scenario.method.name} has no split "
                          "point to plan")
    prep = check(scenario, str(args.scenario), args.scenario.parent)
    print(planner.format_plan(planner.plan(prep), str(args.scenario)))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from ecofed_sim.outdir import safe_component
    from ecofed_sim.sweep import dry_run, run_sweep
    from ecofed_sim.sweep_spec import load_sweep

    if args.workers < 1:
        raise _user_error(f"--workers: must be >= 1 (got {args.workers})")
    out = args.out or Path("results") / safe_component(load_sweep(args.sweep).name)
    if args.dry_run:
        print(dry_run(args.sweep, out, reuse=not args.no_reuse, force=args.force))
        return 0
    tally = run_sweep(args.sweep, out, args.executor, args.workers, args.scheduler,
                      reuse=not args.no_reuse, targets=args.target,
                      progress=not args.quiet, force=args.force,
                      scheduler_file=args.scheduler_file, shared_fs=args.shared_fs)
    if not args.quiet and (out / "metrics.csv").exists():
        print(_metrics_table(out / "metrics.csv"))
    print(f"{out}: done {tally.done}, skipped {tally.skipped}, failed {tally.failed}")
    return 1 if tally.failed else 0


def _metrics_table(path: Path) -> str:
    import pandas as pd

    m = pd.read_csv(path)
    m["total_mib"] = m.pop("total_bytes") / 2**20
    m = m.drop(columns=[c for c in m if c.startswith("bytes_to_")] + ["run_id", "rounds"])
    return m.to_string(index=False, float_format=lambda v: f"{v:.4g}")


def _headless_plots() -> None:
    """The CLI only writes files: draw with Agg, whatever display is around."""
    import matplotlib

    matplotlib.use("Agg")


def cmd_plot(args: argparse.Namespace) -> int:
    _headless_plots()
    from ecofed_sim.plot_kinds import plot

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    bad = [f for f in formats if f not in ("png", "pdf", "svg")]
    if bad or not formats:
        raise _user_error(f"--format: accepted png, pdf, svg (got {args.format!r})")
    kinds = args.kind or ["all"]
    every = "all" in kinds
    kinds = list(PLOT_KINDS) if every else kinds
    out = args.out or args.results / "figures"
    paths = plot(args.results, kinds, out, formats, args.style, args.target,
                 skip_unavailable=every, baseline=args.baseline, method=args.method,
                 axes=args.axes, run=args.run, round_index=args.round_index, log=args.log)
    print("\n".join(str(p) for p in paths))
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from ecofed_sim.models import ZOO
    from ecofed_sim.outdir import safe_component
    from ecofed_sim.profiler import profile

    if args.model not in ZOO:
        raise _user_error(f"model: unknown model {args.model!r} (accepted: {', '.join(ZOO)})")
    if min(args.batch_sizes) < 2 or args.repeats < 1 or args.threads < 1:
        raise _user_error("--batch-sizes must be >= 2 (BatchNorm), --repeats and --threads >= 1")
    from ecofed_sim.compute import resolve_device
    from ecofed_sim.profiler import NoisyMeasurement
    from ecofed_sim.profiles import user_profiles_dir

    out = args.out or user_profiles_dir() / f"{safe_component(args.name)}.yaml"
    try:
        path = profile(args.model, tuple(args.shape), args.classes, args.batch_sizes,
                       args.threads, args.warmup, args.repeats, args.name, out, args.kind,
                       log=lambda m: print(m, file=sys.stderr), max_spread=args.max_spread,
                       device=resolve_device(args.device, "profile", "--device"))
    except NoisyMeasurement as err:
        raise _user_error(f"profile: {err}") from None
    print(path)
    return 0


def torch_threads_default() -> int:
    import os

    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count() or 1)


def cmd_compare(args: argparse.Namespace) -> int:
    _headless_plots()
    from ecofed_sim.compare import compare

    print(compare(args.runs, args.out))
    return 0


def cmd_layers(args: argparse.Namespace) -> int:
    from ecofed_sim.models import ZOO, build_model, layer_stats

    if args.model not in ZOO:
        raise _user_error(f"model: unknown model {args.model!r} (accepted: {', '.join(ZOO)})")
    if not 0 < args.width <= 8:
        raise _user_error(f"--width: must be in (0, 8] (got {args.width:g})")
    stats = layer_stats(build_model(args.model, tuple(args.shape), args.classes, args.width),
                        tuple(args.shape))
    print(f"{'split':>5}  {'unit':<8} {'output':<14} {'params':>10} {'MFLOP':>9} "
          f"{'act bytes':>10}")
    for s in stats:
        print(f"{s.index + 1:>5}  {s.name:<8} {'x'.join(map(str, s.out_shape)):<14} "
              f"{s.params:>10,} {s.forward_flops / 1e6:>9.2f} {s.out_elements * 4:>10,}")
    print("split = k puts units 1..k on the device; act bytes = fp32 activation per sample")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from ecofed_sim.profiles import load_library, round_trip_ms  # torch-free: answers fast

    if args.what == "models":
        from ecofed_sim.models import ZOO

        rows = list(ZOO)
    elif args.what == "methods":
        from ecofed_sim.methods import REGISTRY

        rows = [f"{n:<12} {_first_line(sys.modules[m.__module__].__doc__)}"
                for n, m in REGISTRY.items()]
    elif args.what == "datasets":
        from ecofed_sim.scenario import DataSpec

        rows = list(DataSpec.model_fields["dataset"].annotation.__args__)
    elif args.what == "profiles":
        lib = load_library()
        rows = [f"{n:<16} {p.kind:<7} {p.description}" for n, p in sorted(lib.devices.items())]
    elif args.what == "scenarios":
        from ecofed_sim.shipped import describe, shipped

        rows = [f"{n:<26} {describe(p)}\n{'':<26} {p}" for n, p in shipped().items()]
    else:
        lib = load_library()
        rows = [f"{n:<10} up {link.uplink_mbps:>7g} Mbps  down {link.downlink_mbps:>7g} Mbps  "
                f"RTT {round_trip_ms(link):>4g} ms  {link.source}"
                for n, link in sorted(lib.links.items())]
    print("\n".join(rows))
    return 0


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if text else ""


def _user_error(msg: str) -> Exception:
    from ecofed_sim.errors import ScenarioError

    return ScenarioError(msg)


COMMANDS = {"run": cmd_run, "validate": cmd_validate, "sweep": cmd_sweep, "plot": cmd_plot,
            "profile": cmd_profile, "plan": cmd_plan,
            "compare": cmd_compare,
            "layers": cmd_layers, "list": cmd_list}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ecofed_sim.errors import ScenarioError, one_line
    from ecofed_sim.progress import configure

    configure(quiet=getattr(args, "quiet", False), verbose=args.verbose)
    from ecofed_sim.shipped import resolve

    for name in ("scenario", "sweep"):  # a shipped name runs from any folder
        if isinstance(getattr(args, name, None), Path):
            setattr(args, name, resolve(getattr(args, name)))

    try:
        return COMMANDS[args.command](args)
    except ScenarioError as err:
        print(f"error: {one_line(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""``ecofed-sim``: run, validate and compare scenarios; list what the simulator knows.

Bad input (scenario, override, profile, results directory) prints one line naming the
file and field, and exits with status 2, without a traceback and without writing anything.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from ecofed_sim.cli_parser import PLOT_KINDS, build_parser


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
    from ecofed_sim.errors import ScenarioError, WorkerLost, one_line
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
    except WorkerLost as err:
        print(f"error: {err}; nothing was written", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; " + ("the runs finished so far are kept, and the same command "
                                 "resumes the sweep" if args.command == "sweep"
                                 else "nothing was written"), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

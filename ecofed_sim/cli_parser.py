"""The ``ecofed-sim`` command line: its sub-commands, their options and help (the
commands themselves are in ``cli``)."""

from __future__ import annotations

import argparse
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


def torch_threads_default() -> int:
    import os

    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count() or 1)

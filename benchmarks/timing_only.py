"""A timing-only run of a large population, with cohorts and with every client alone; or
any scenario timing-only against its full run.

Runs ``ecofed-sim run scenarios/bench_cross_device.yaml --timing-only`` at 100,000
clients, 10,000 per round (500,000 samples: 5 per client) in a fresh process each way,
and prints each one's wall-clock and peak RSS, their ratio, and whether the tables agree
(rows sorted; message ids aside: ``ecofed_sim.cohorts``). Goal (issue: scale): 100
rounds in at most 60 s on 2 cores.

With ``--scenario FILE`` (e.g. a split method's), it runs FILE in full and with
``--timing-only`` instead, each in a fresh process, and prints both times, peak RSS and
whether the clocks, bytes and outcomes agree.

    python benchmarks/timing_only.py [--rounds 100] [--clients 100000] [--per-round 10000]
                                     [--skip-per-client]
    python benchmarks/timing_only.py --scenario FILE [--rounds N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
KEYS = {"transfers": ["round", "client", "t_start_s", "direction", "kind"],
        "timeline": ["round", "device", "client", "t_start_s", "state", "t_end_s"],
        "participation": ["round", "client"], "energy": ["round", "device"]}


def _timed_cli_run(scenario: str, out: Path, *options: str) -> tuple[float, float]:
    """(wall-clock s, peak RSS MiB) of ``ecofed-sim run`` in a fresh process (GNU time's
    %M)."""
    cmd = ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "ecofed_sim.cli", "run",
           scenario, "--quiet", "--out", str(out), *options]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall_s = time.perf_counter() - start
    return wall_s, int(proc.stderr.strip().splitlines()[-1]) / 1024


def timed_run(out: Path, args: argparse.Namespace, per_client: bool) -> tuple[float, float]:
    """The large timing-only population, with cohorts or every client alone."""
    return _timed_cli_run(
        str(ROOT / "scenarios" / "bench_cross_device.yaml"), out, "--timing-only",
        "--set", f"population.clients={args.clients}",
        "--set", f"population.clients_per_round={args.per_round}",
        "--set", f"data.synthetic.train_samples={5 * args.clients}",
        "--set", f"rounds={args.rounds}", *(["--per-client"] if per_client else []))


def scenario_run(out: Path, scenario: str, rounds: int, timing_only: bool) -> tuple[float, float]:
    """``scenario`` in full or timing-only, without evaluation."""
    return _timed_cli_run(scenario, out, "--set", f"rounds={rounds}",
                          "--set", "evaluation.every=1000000",
                          *(["--timing-only"] if timing_only else []))


def same_clocks(full: Path, timing: Path) -> bool:
    """Rounds (accuracy aside), transfers, timeline and participation identical."""
    learned = ["test_accuracy", "test_loss"]
    if not pd.read_parquet(full / "rounds.parquet").drop(columns=learned, errors="ignore").equals(
            pd.read_parquet(timing / "rounds.parquet").drop(columns=learned, errors="ignore")):
        return False
    return all(pd.read_parquet(full / f"{name}.parquet").equals(
        pd.read_parquet(timing / f"{name}.parquet"))
        for name in ("transfers", "timeline", "participation"))


def compare_full(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        res = {kind: scenario_run(Path(tmp) / kind, args.scenario, args.rounds,
                                  kind == "timing_only") for kind in ("full", "timing_only")}
        same = same_clocks(Path(tmp) / "full", Path(tmp) / "timing_only")
    print(f"{args.scenario}, {args.rounds} rounds (no evaluation); each in a fresh process")
    print(f"{'':<12} {'wall_s':>8} {'peak_rss_MiB':>13}")
    for kind, (wall_s, rss) in res.items():
        print(f"{kind:<12} {wall_s:>8.2f} {rss:>13.0f}")
    print(f"full / timing-only = {res['full'][0] / res['timing_only'][0]:.2f}")
    print(f"same clocks, bytes and outcomes: {same}")


def same_tables(a: Path, b: Path) -> bool:
    if not pd.read_parquet(a / "rounds.parquet").equals(pd.read_parquet(b / "rounds.parquet")):
        return False
    for name, keys in KEYS.items():
        x, y = (pd.read_parquet(d / f"{name}.parquet").drop(columns=["message_id"],
                                                             errors="ignore")
                .sort_values(keys).reset_index(drop=True) for d in (a, b))
        if not x.equals(y):
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--per-round", type=int, default=10_000)
    parser.add_argument("--skip-per-client", action="store_true",
                        help="only the cohort run (the per-client run takes ~3x longer)")
    parser.add_argument("--scenario", help="run this scenario in full and timing-only")
    args = parser.parse_args()
    if args.scenario:
        compare_full(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        kinds = ("cohorts",) if args.skip_per_client else ("cohorts", "per_client")
        res = {k: timed_run(Path(tmp) / k, args, k == "per_client") for k in kinds}
        print(f"timing only: {args.clients} clients, {args.per_round} per round, "
              f"{args.rounds} rounds; each in a fresh process")
        print(f"{'':<12} {'wall_s':>8} {'peak_rss_MiB':>13}")
        for kind, (wall_s, rss) in res.items():
            print(f"{kind:<12} {wall_s:>8.2f} {rss:>13.0f}")
        print(f"cohorts: {res['cohorts'][0]:.1f} s (goal <= 60 s at 100 rounds)")
        if not args.skip_per_client:
            print(f"per-client / cohorts = {res['per_client'][0] / res['cohorts'][0]:.2f}")
            print("same tables (rows sorted, message ids aside): "
                  f"{same_tables(Path(tmp) / 'cohorts', Path(tmp) / 'per_client')}")


if __name__ == "__main__":
    main()

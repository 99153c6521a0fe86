"""One scenario on the CPU and on a CUDA GPU: are the clocks and bytes the same, how close
is the accuracy, and how long does each take?

Each device runs in its own fresh process, alternating, ``--repeats`` times; medians are
printed side by side with the speed-up, with peak host memory (and the GPU's peak
allocation). Clocks and byte counts must be identical: they come from profiles, links and
tensor shapes, never from where the computation ran. Accuracy may differ to float
tolerance (GPU kernels sum in other orders). Without a CUDA device it prints why and
exits 0 without running anything.

    python benchmarks/gpu_check.py [--scenario FILE] [--repeats 3] [--set K=V ...]
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
TIMING_COLUMNS = ["round", "sim_time_s", "round_time_s", "bytes_up", "bytes_down", "cum_bytes"]


def one_device(scenario: str, overrides: list[str], device: str, out: str) -> dict:
    import torch

    from ecofed_sim.results import write_results
    from ecofed_sim.run import run
    from ecofed_sim.scenario import load_scenario

    sc = load_scenario(Path(scenario), [*overrides, f"training.device={device}"])
    start = time.perf_counter()
    results = run(sc, source=scenario, base_dir=Path(scenario).parent)
    wall_s = time.perf_counter() - start
    write_results(results, Path(out))
    gpu_mib = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else 0.0)
    return {"device": device, "wall_s": wall_s, "gpu_peak_mib": gpu_mib,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def compare(cpu_dir: Path, gpu_dir: Path) -> tuple[bool, bool, float]:
    """(rounds' clocks and bytes identical, transfers identical, max accuracy gap)."""
    import pandas as pd

    a, b = (pd.read_csv(d / "rounds.csv") for d in (cpu_dir, gpu_dir))
    clocks = a[TIMING_COLUMNS].equals(b[TIMING_COLUMNS])
    transfers = pd.read_parquet(cpu_dir / "transfers.parquet").equals(
        pd.read_parquet(gpu_dir / "transfers.parquet"))
    gap = float((a.test_accuracy - b.test_accuracy).abs().max())
    return clocks, transfers, gap


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", default=str(ROOT / "scenarios" / "quickstart.yaml"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="K=V")
    p.add_argument("--child", nargs=2, metavar=("DEVICE", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(one_device(args.scenario, args.overrides, *args.child)))
        return
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: skipped: no CUDA device on this machine "
              "(torch.cuda.is_available() is False)")
        return
    runs: dict[str, list[dict]] = {"cpu": [], "cuda": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for device in runs:
                out = str(Path(tmp) / f"{device}{i}")
                cmd = [sys.executable, __file__, "--scenario", args.scenario,
                       *(f"--set={o}" for o in args.overrides), "--child", device, out]
                done = subprocess.run(cmd, capture_output=True, text=True, check=True)
                runs[device].append(json.loads(done.stdout.strip().splitlines()[-1]))
        clocks, transfers, gap = compare(Path(tmp) / "cpu0", Path(tmp) / "cuda0")
    print(f"{'device':<6} {'median wall s':>14} {'peak RSS MiB':>13} {'GPU peak MiB':>13}")
    medians = {}
    for device, rows in runs.items():
        medians[device] = statistics.median(r["wall_s"] for r in rows)
        print(f"{device:<6} {medians[device]:>14.2f} "
              f"{max(r['peak_rss_mib'] for r in rows):>13.0f} "
              f"{max(r['gpu_peak_mib'] for r in rows):>13.0f}")
    print(f"speed-up cuda vs cpu: {medians['cpu'] / medians['cuda']:.2f}x "
          f"({args.repeats} runs each, {torch.cuda.get_device_name()})")
    print(f"clocks and bytes identical: {clocks}; transfers identical: {transfers}; "
          f"largest test-accuracy gap: {gap:.4f}")
    if not (clocks and transfers):
        sys.exit("gpu_check: the simulated clocks or bytes depend on the device: a bug")


if __name__ == "__main__":
    main()

"""Wall-clock of EcoFed with frozen-activation reuse against the same run without it.

Frozen device layers give the same output for the same batch, so ecofed_sim computes them
once per (client, batch composition) and once per test batch, and reuses them; the
simulated clock is charged every time either way (the tables are identical; checked here).
Each variant runs in a fresh process; the split is varied because the saving grows with
the share of the model that is frozen.

    python benchmarks/ecofed_cache.py [--repeats 1] [--splits 4 12]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "bench_ecofed_cache.yaml"


def one(split: int, reuse: bool) -> dict:
    import ecofed_sim
    from ecofed_sim.scenario import load_scenario

    torch.set_num_threads(2)
    sc = load_scenario(SCENARIO, [f"method.split={split}", f"method.reuse_frozen={reuse}"])
    start = time.perf_counter()
    res = ecofed_sim.run(sc)
    return {"wall_s": time.perf_counter() - start,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rounds_csv": res.rounds.to_csv(index=False)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, nargs="+", default=[4, 12])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one(int(args.child[0]), args.child[1] == "1")))
        return
    print(f"scenario: {SCENARIO.name} (VGG11, fixed data order), fresh process per run")
    print(f"{'split':>5} {'reuse_s':>8} {'no_reuse_s':>10} {'speed-up':>8} "
          f"{'reuse_MiB':>9} {'no_reuse_MiB':>12} same_tables")
    for split in args.splits:
        runs: dict[bool, list[dict]] = {True: [], False: []}
        for _ in range(args.repeats):
            for reuse in (False, True):
                out = subprocess.run([sys.executable, __file__, "--child", str(split),
                                      "1" if reuse else "0"], capture_output=True, text=True,
                                     check=True)
                runs[reuse].append(json.loads(out.stdout.strip().splitlines()[-1]))
        best = {k: min(v, key=lambda r: r["wall_s"]) for k, v in runs.items()}
        same = best[True]["rounds_csv"] == best[False]["rounds_csv"]
        print(f"{split:>5} {best[True]['wall_s']:>8.2f} {best[False]['wall_s']:>10.2f} "
              f"{best[False]['wall_s'] / best[True]['wall_s']:>7.2f}x "
              f"{best[True]['peak_rss_mib']:>9.0f} {best[False]['peak_rss_mib']:>12.0f} {same}")


if __name__ == "__main__":
    main()

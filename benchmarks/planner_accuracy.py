"""How close the split planner's analytic round time is to the simulation, and whether its
pick is the simulated best, on a scenario where its assumptions do not hold exactly.

Quickstart (small CNN, embedded MNIST, 10 of 20 clients a round) with one server worker and
a 50 Mbit/s server link shared by all, so server steps queue and uploads share capacity:
the planner bounds the first and splits the second evenly. Two regimes: slow mobile links
(3G, 4G, WiFi), and fast device links behind the shared server link (Ethernet, WiFi). For
every split the scenario is simulated for real (one round, SplitFed-V1 and local loss),
and the table prints analytic against simulated seconds, with the relative error. Then
the planner's per-class pick is simulated beside the best single split. Wall time and
peak RSS are printed for the planner and for the simulations, measured in this one run.

    python benchmarks/planner_accuracy.py [--rounds 1]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import ecofed_sim
from ecofed_sim import planner
from ecofed_sim.prepare import check
from ecofed_sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
REGIMES = {
    "slow links": ("population.devices=[{profile: rpi4b, share: 0.4, link: 3g}, "
                   "{profile: rpi4b, share: 0.3, link: 4g}, {profile: jetson_nano, "
                   "share: 0.3, link: wifi}]", "server_gpu"),
    "shared server link": ("population.devices=[{profile: rpi4b, share: 0.5, link: ethernet}, "
                    "{profile: jetson_nano, share: 0.5, link: wifi}]", "server_cpu"),
}


def scenario(regime: str, method: str, split, rounds: int, classes: tuple | None = None):
    devices, server = REGIMES[regime]
    sets = [devices, f"rounds={rounds}", "server.workers=1", f"server.profile={server}",
            "server.link={ingress_mbps: 50, egress_mbps: 50}",
            f"method={{name: {method}, split: {split}}}"]
    sets += [f"population.devices[{i}].split={k}" for i, k in enumerate(classes or ())]
    return load_scenario(ROOT / "scenarios" / "quickstart.yaml", sets)


def simulate_s(sc) -> float:
    res = ecofed_sim.run(sc, base_dir=ROOT / "scenarios")
    return float(res.rounds.round_time_s.mean())


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    for regime, method in [(r, m) for r in REGIMES for m in ("splitfed", "local_loss")]:
        started = time.perf_counter()
        sc = scenario(regime, method, "auto", args.rounds)
        the_plan = planner.plan(check(sc, "bench", ROOT / "scenarios"))
        plan_s, rss_plan = time.perf_counter() - started, peak_rss_mib()
        started = time.perf_counter()
        print(f"\n{regime}, {method}: split, analytic round s, simulated round s, "
              "relative error")
        simulated = {}
        for k in the_plan.splits:
            simulated[k] = simulate_s(scenario(regime, method, k, args.rounds))
            analytic = the_plan.same_split(k).round_time_s
            print(f"  {k:>2}  {analytic:>10.4f}  {simulated[k]:>10.4f}  "
                  f"{analytic / simulated[k] - 1:>+8.1%}")
        sim_s = time.perf_counter() - started
        best_k = min(simulated, key=simulated.get)
        pick = the_plan.best.splits
        picked_s = (simulate_s(scenario(regime, method, pick[0], args.rounds, pick))
                    if the_plan.per_class else simulated[pick[0]])
        print(f"  planner pick {pick}: simulated {picked_s:.4f} s; best single split "
              f"{best_k}: {simulated[best_k]:.4f} s; ratio {picked_s / simulated[best_k]:.3f}")
        print(f"  planner {plan_s:.2f} s wall (peak RSS {rss_plan:.0f} MiB); "
              f"{len(simulated)} simulations {sim_s:.1f} s wall (peak RSS {peak_rss_mib():.0f}"
              f" MiB); ratio {sim_s / plan_s:.0f}x")


if __name__ == "__main__":
    main()

"""Simulator overhead: one fedavg scenario through ecofed_sim, against the same SGD steps
(same clients, batches, order and FedAvg) in a plain PyTorch loop.

Each variant runs in its own fresh process (so peak RSS is its own), alternating, several
times; the medians are printed side by side with their ratio. Goal: ratio <= 1.10.

    python benchmarks/overhead.py [--repeats 3] [--scenario scenarios/bench_overhead.yaml]
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent


def plain_loop(prep) -> float:
    """The same training, no SimPy, no ledger: returns the final test accuracy."""
    from ecofed_sim.aggregation import fedavg
    from ecofed_sim.population import sample_clients
    from ecofed_sim.seeding import DATA_ORDER, INIT, torch_gen

    sc = prep.scenario
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_gen(sc.seed, INIT).initial_seed())
        global_model = prep.build_model()
    for r in range(sc.rounds):
        states, weights = [], []
        everyone = list(range(sc.population.clients))
        for c in sorted(sample_clients(sc.seed, r, everyone, sc.population.clients,
                                       sc.population.clients_per_round)):
            model = copy.deepcopy(global_model).train()
            opt = torch.optim.SGD(model.parameters(), lr=sc.training.lr,
                                  momentum=sc.training.momentum,
                                  weight_decay=sc.training.weight_decay)
            idx = torch.as_tensor(prep.client_indices[c])
            for epoch in range(sc.training.local_epochs):
                order = idx[torch.randperm(len(idx),
                                           generator=torch_gen(sc.seed, DATA_ORDER, r, c, epoch))]
                for s in range(0, len(order), sc.training.batch_size):
                    x, y = prep.train.batch(order[s:s + sc.training.batch_size])
                    opt.zero_grad(set_to_none=True)
                    F.cross_entropy(model(x), y).backward()
                    opt.step()
            states.append(model.state_dict())
            weights.append(len(idx))
        global_model.load_state_dict(fedavg(states, weights))
    global_model.eval()
    with torch.no_grad():
        x, y = prep.test.batch(torch.arange(len(prep.test)))
        return float((global_model(x).argmax(1) == y).float().mean())


def one_variant(variant: str, scenario_path: str) -> dict:
    from ecofed_sim.engine import Engine
    from ecofed_sim.prepare import prepare
    from ecofed_sim.scenario import load_scenario

    torch.set_num_threads(2)
    sc = load_scenario(scenario_path)
    prep = prepare(sc, scenario_path, Path(scenario_path).parent)
    start = time.perf_counter()
    if variant == "sim":
        engine = Engine(prep)
        rows = [engine.run_round(r) for r in range(sc.rounds)]
        engine.ledger.frames()
        accuracy = rows[-1]["test_accuracy"]
    else:
        accuracy = plain_loop(prep)
    wall_s = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"variant": variant, "wall_s": wall_s, "peak_rss_mib": peak_mib,
            "accuracy": accuracy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scenario", default=str(ROOT / "scenarios" / "bench_overhead.yaml"))
    parser.add_argument("--variant", choices=["sim", "plain"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(one_variant(args.variant, args.scenario)))
        return
    results: dict[str, list[dict]] = {"sim": [], "plain": []}
    for _ in range(args.repeats):
        for variant in ("plain", "sim"):
            out = subprocess.run([sys.executable, __file__, "--variant", variant,
                                  "--scenario", args.scenario],
                                 capture_output=True, text=True, check=True)
            results[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"scenario: {args.scenario}  (median of {args.repeats}, fresh process each)")
    print(f"{'variant':<8} {'wall_s':>8} {'peak_rss_MiB':>13} {'accuracy':>9}")
    med = {}
    for variant, runs in results.items():
        med[variant] = statistics.median(r["wall_s"] for r in runs)
        rss = statistics.median(r["peak_rss_mib"] for r in runs)
        print(f"{variant:<8} {med[variant]:>8.3f} {rss:>13.0f} {runs[0]['accuracy']:>9.4f}")
    print(f"ratio sim/plain = {med['sim'] / med['plain']:.3f}  (goal <= 1.10)")
    same = abs(results["sim"][0]["accuracy"] - results["plain"][0]["accuracy"]) < 1e-6
    print(f"same final accuracy: {same}")


if __name__ == "__main__":
    main()

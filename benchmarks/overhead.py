"""Simulator overhead: one fedavg scenario through ecofed_sim, against the same SGD steps
(same clients, batches, order and FedAvg) in a plain PyTorch loop; then the same scenario
asynchronously (FedBuff, 10 concurrent clients, K = 10), against a plain loop that
replays the simulated arrival order (client, data order, pulled version) with the same
buffer arithmetic. The arrival order is read from a timing-only run made beforehand and
not timed: the simulated variant computes it as it runs, and pays for that.

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


def accuracy(prep, model) -> float:
    """Test accuracy in the scenario's evaluation batches, as the simulator measures it
    (another batch size can round a logit differently and flip an argmax tie)."""
    model.eval()
    n, size, correct = len(prep.test), prep.scenario.evaluation.batch_size, 0
    with torch.no_grad():
        for start in range(0, n, size):
            x, y = prep.test.batch(torch.arange(start, min(start + size, n)))
            correct += int((model(x).argmax(1) == y).sum())
    return correct / n


def local_training(prep, start: dict, like: torch.nn.Module, key: int, c: int) -> dict:
    """Client ``c``'s local epochs from ``start`` on a fresh copy of ``like`` with a fresh
    optimiser; data order keyed by (seed, ``key``, client, epoch): the round, or the job."""
    from ecofed_sim.seeding import DATA_ORDER, torch_gen

    sc = prep.scenario
    model = copy.deepcopy(like).train()
    model.load_state_dict(start)
    opt = torch.optim.SGD(model.parameters(), lr=sc.training.lr,
                          momentum=sc.training.momentum, weight_decay=sc.training.weight_decay)
    idx = torch.as_tensor(prep.client_indices[c])
    for epoch in range(sc.training.local_epochs):
        order = idx[torch.randperm(len(idx),
                                   generator=torch_gen(sc.seed, DATA_ORDER, key, c, epoch))]
        for s in range(0, len(order), sc.training.batch_size):
            x, y = prep.train.batch(order[s:s + sc.training.batch_size])
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
    return model.state_dict()


def plain_loop(prep) -> float:
    """The same training, no SimPy, no ledger: returns the final test accuracy."""
    from ecofed_sim.aggregation import fedavg
    from ecofed_sim.population import sample_clients
    from ecofed_sim.seeding import INIT, torch_gen

    sc = prep.scenario
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_gen(sc.seed, INIT).initial_seed())
        global_model = prep.build_model()
    for r in range(sc.rounds):
        states, weights = [], []
        everyone = list(range(sc.population.clients))
        for c in sorted(sample_clients(sc.seed, r, everyone, sc.population.clients,
                                       sc.population.clients_per_round)):
            states.append(local_training(prep, global_model.state_dict(), global_model, r, c))
            weights.append(len(prep.client_indices[c]))
        global_model.load_state_dict(fedavg(states, weights))
    return accuracy(prep, global_model)


ASYNC = "asynchronous={aggregator: fedbuff, concurrency: 10, buffer_size: 10}"


def arrival_order(prep):
    """(job, client, pulled version, staleness factor) of every update, in arrival order,
    from a timing-only run of the same scenario."""
    import dataclasses

    from ecofed_sim.async_engine import AsyncEngine

    timing = dataclasses.replace(prep, scenario=prep.scenario.model_copy(
        update={"learning": "none"}))
    engine = AsyncEngine(timing)
    for r in range(prep.scenario.rounds):
        engine.run_round(r)
    up = engine.ledger.frames()["updates"]
    return list(zip(up.job, up.client, up.pulled_version, up.staleness_factor, strict=True))


def plain_async_loop(prep, arrivals) -> float:
    """FedBuff's SGD steps and buffer in arrival order, no SimPy, no ledger."""
    from ecofed_sim.aggregation import DeltaBuffer
    from ecofed_sim.seeding import INIT, torch_gen

    sc = prep.scenario
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_gen(sc.seed, INIT).initial_seed())
        global_model = prep.build_model()
    versions = {0: copy.deepcopy(global_model.state_dict())}
    buffer, version = DeltaBuffer(sc.asynchronous.buffer_size), 0
    for job, c, pulled, factor in arrivals:
        trained = local_training(prep, versions[pulled], global_model, job, c)
        buffer.add(trained, versions[pulled], float(len(prep.client_indices[c])), factor)
        if buffer.full:
            global_model.load_state_dict(buffer.apply(global_model.state_dict()))
            version += 1
            versions[version] = copy.deepcopy(global_model.state_dict())
    return accuracy(prep, global_model)


def one_variant(variant: str, scenario_path: str) -> dict:
    from ecofed_sim.async_engine import AsyncEngine
    from ecofed_sim.engine import Engine
    from ecofed_sim.prepare import prepare
    from ecofed_sim.scenario import load_scenario

    torch.set_num_threads(2)
    sc = load_scenario(scenario_path, [ASYNC] if variant.startswith("async") else [])
    prep = prepare(sc, scenario_path, Path(scenario_path).parent)
    arrivals = arrival_order(prep) if variant == "async-plain" else None
    start = time.perf_counter()
    if variant in ("sim", "async-sim"):
        engine = (AsyncEngine if variant == "async-sim" else Engine)(prep)
        rows = [engine.run_round(r) for r in range(sc.rounds)]
        engine.ledger.frames()
        accuracy = rows[-1]["test_accuracy"]
    elif variant == "async-plain":
        accuracy = plain_async_loop(prep, arrivals)
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
    parser.add_argument("--variant", choices=["sim", "plain", "async-sim", "async-plain"],
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(one_variant(args.variant, args.scenario)))
        return
    variants = ("plain", "sim", "async-plain", "async-sim")
    results: dict[str, list[dict]] = {v: [] for v in variants}
    for _ in range(args.repeats):
        for variant in variants:
            out = subprocess.run([sys.executable, __file__, "--variant", variant,
                                  "--scenario", args.scenario],
                                 capture_output=True, text=True, check=True)
            results[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"scenario: {args.scenario}  (median of {args.repeats}, fresh process each)")
    print(f"{'variant':<12} {'wall_s':>8} {'peak_rss_MiB':>13} {'accuracy':>9}")
    med = {}
    for variant, runs in results.items():
        med[variant] = statistics.median(r["wall_s"] for r in runs)
        rss = statistics.median(r["peak_rss_mib"] for r in runs)
        print(f"{variant:<12} {med[variant]:>8.3f} {rss:>13.0f} {runs[0]['accuracy']:>9.4f}")
    for sim, plain in (("sim", "plain"), ("async-sim", "async-plain")):
        same = abs(results[sim][0]["accuracy"] - results[plain][0]["accuracy"]) < 1e-6
        print(f"ratio {sim}/{plain} = {med[sim] / med[plain]:.3f}  (goal <= 1.10); "
              f"same final accuracy: {same}")


if __name__ == "__main__":
    main()

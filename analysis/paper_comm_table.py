"""The EcoFed paper's communication table, measured by running the simulator.

Runs scenarios/paper/{fedavg,splitfed,local_loss,fedgkt,ecofed}.yaml (VGG11, split after
the 2nd conv block, 500 samples per client, batch 10, period 2, 8-bit activations) and
reads the byte ledger. Per-client, per-round traffic does not depend on how many clients
or rounds run, so the defaults cut both; rounds must be even (EcoFed alternates update and
replay rounds). Writes analysis/out/paper_comm_table.csv and prints it beside the paper's
claims (133x less than classic FL, 16x less than vanilla DPFL).

    python analysis/paper_comm_table.py [--clients 2] [--rounds 2] [--cifar-root DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

import ecofed_sim
from ecofed_sim.errors import ScenarioError
from ecofed_sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
METHODS = ["fedavg", "splitfed", "local_loss", "fedgkt", "ecofed"]
PAPER = {"fedavg": 133.0, "splitfed": 16.0}  # EcoFed's reduction factors (abstract)


def overrides(args: argparse.Namespace) -> list[str]:
    out = [f"rounds={args.rounds}", f"population.clients={args.clients}",
           f"population.clients_per_round={args.clients}",
           f"data.eval_samples={args.eval_samples}", f"evaluation.every={args.rounds}"]
    cifar = args.cifar_root and (Path(args.cifar_root) / "cifar-10-batches-py").is_dir()
    if cifar:
        out += ["data.dataset=cifar10", f"data.root={Path(args.cifar_root).resolve()}"]
    else:  # only as many synthetic images as the clients hold
        out += [f"data.synthetic.train_samples={500 * args.clients}",
                f"data.synthetic.test_samples={args.eval_samples}"]
    return out


def measure(method: str, args: argparse.Namespace) -> dict:
    path = ROOT / "scenarios" / "paper" / f"{method}.yaml"
    extra = [] if args.pretrain or method != "ecofed" else ["pretrain.source=none"]
    envelope = [f"network.message_overhead_bytes={args.message_overhead}"]
    scenario = load_scenario(path, overrides(args) + extra + envelope)
    started = time.perf_counter()
    res = ecofed_sim.run(scenario, progress=sys.stderr.isatty(), source=str(path),
                         base_dir=path.parent)
    total = int(res.rounds.bytes_up.sum() + res.rounds.bytes_down.sum())
    by_kind = res.transfers.groupby(["direction", "kind"]).payload_bytes.sum()
    per = args.rounds * args.clients
    row = {"method": method, "mib_per_client_per_round": total / per / 2**20,
           "dataset": scenario.data.dataset, "wall_s": round(time.perf_counter() - started, 1)}
    for (direction, kind), nbytes in by_kind.items():
        row[f"{direction}_{kind}_mib"] = nbytes / per / 2**20
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=2, help="clients per round (and in all)")
    parser.add_argument("--rounds", type=int, default=2, help="an even number of rounds")
    parser.add_argument("--cifar-root", default=str(ROOT / "data"),
                        help="directory holding cifar-10-batches-py/ (used when present; "
                        "default: data/ in the repository), else synthetic CIFAR-shaped data")
    parser.add_argument("--eval-samples", type=int, default=100)
    parser.add_argument("--pretrain", action="store_true",
                        help="pre-train EcoFed's device part (slow on a CPU; bytes are the same)")
    parser.add_argument("--message-overhead", type=int, default=0, metavar="BYTES",
                        help="bytes each message adds as its envelope (930 reproduces the "
                        "reference code's pickled totals); default 0: payload only")
    parser.add_argument("--out", type=Path, default=ROOT / "analysis" / "out")
    args = parser.parse_args()
    if args.rounds < 2 or args.rounds % 2:
        print("error: --rounds: must be an even number >= 2", file=sys.stderr)
        return 2
    try:
        table = pd.DataFrame([measure(m, args) for m in METHODS])
    except ScenarioError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    mib = table.set_index("method")["mib_per_client_per_round"]
    table["ratio_vs_fedavg"] = mib["fedavg"] / table["mib_per_client_per_round"]
    table["ratio_vs_splitfed"] = mib["splitfed"] / table["mib_per_client_per_round"]
    args.out.mkdir(parents=True, exist_ok=True)
    cols = ["method", "mib_per_client_per_round", "ratio_vs_fedavg", "ratio_vs_splitfed"]
    name = ("paper_comm_table" if not args.message_overhead
            else f"paper_comm_table_envelope_{args.message_overhead}")
    table[cols].to_csv(args.out / f"{name}.csv", index=False, float_format="%.6g")
    table.to_csv(args.out / f"{name}_by_kind.csv", index=False, float_format="%.6g")
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    eco = table.set_index("method").loc["ecofed"]
    print(f"\nEcoFed reduction vs classic FL:   simulated {eco.ratio_vs_fedavg:.1f}x, "
          f"paper {PAPER['fedavg']:.0f}x")
    print(f"EcoFed reduction vs vanilla DPFL: simulated {eco.ratio_vs_splitfed:.1f}x, "
          f"paper {PAPER['splitfed']:.0f}x")
    print(f"data: {table.dataset.iloc[0]}; wrote {args.out / (name + '.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

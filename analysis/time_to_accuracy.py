"""Time to accuracy: how much sooner EcoFed reaches a target accuracy than its baselines,
and where the paper's four headline figures (21x and 2.86x faster, 133x and 16x less
traffic than classic FL and vanilla DPFL) come out of the simulation within +-15%.

The paper's speed-ups are times to a target accuracy, not times per round: a method that
needs more rounds loses part of its per-round advantage. Two sweeps, both at the paper's
setup run as its reference code runs it (``fidelity: paper``):

1. ``scenarios/sweeps/paper_tta_learning.yaml``: what each method learns per round (six
   learning runs, 30 rounds, VGG11 at a quarter of its width so that they fit on 2 cores).
   Gives each method's rounds to the target.
2. ``scenarios/sweeps/paper_tta_timing.yaml``: each method's time and traffic per round
   for the full-width VGG11, over device, uplink, round-trip time and transport, with
   EcoFed and local loss in lock-step (the code) and streaming (the paper's text). Each
   variant trains two rounds; the other points are re-simulated from its trace.

A method's time to the target at a timing point is the sum of its first R rounds there,
R from (1), each round's time from (2): rounds repeat with period 2 (EcoFed's buffer-update
and replay rounds; every other method's rounds are alike after the first). The same for
bytes. The accuracy per round therefore comes from the narrow model and the time per round
from the full one: the assumption, stated beside every table, is that narrowing VGG11
changes how fast every method learns per round alike. The narrow runs' own times (their
own model, 5x Raspberry Pi 4B on WiFi) are reported too, as a check of that assumption's
direction.

Writes, under analysis/out/: tta_curves.csv (accuracy per round per method), tta.csv (per
target, timing point and method: rounds, time and bytes to the target), tta_factors.csv
(EcoFed's factors per point, to the target and at equal rounds), tta_claims.csv (per claim:
where it holds within +-15%), tta_both_speedups.csv (where both speed-ups hold at once),
and figures/tta_*.png.

    python analysis/time_to_accuracy.py [--workers 2] [--targets 0.7 0.8 0.9 0.95]
    python analysis/time_to_accuracy.py --full --data-root DIR --device cuda   # see below
    python analysis/time_to_accuracy.py --reuse-learning   # timing sweep only (see --help)

``--full`` runs the learning sweep at the paper's full setting instead: full-width VGG11,
500 rounds, the CIFAR-10 files under ``--data-root`` (the standard python-pickle batches),
evaluation every round on the 10,000 test images, on ``--device``. It needs a GPU to finish
in a day (see analysis/README.md for the measured cost per round on this CPU).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import yaml
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from ecofed_sim.plots import OKABE_ITO, figure_style, save, style
from ecofed_sim.sweep import run_sweep

ROOT = Path(__file__).resolve().parent.parent
SWEEPS = ROOT / "scenarios" / "sweeps"
OUT = ROOT / "analysis" / "out"
TOLERANCE = 0.15  # a figure "holds" within +-15% of the paper's
CLAIMS = [  # (quantity, baseline variant, paper's factor)
    ("speedup", "fedavg", 21.0), ("speedup", "splitfed", 2.86),
    ("comm_reduction", "fedavg", 133.0), ("comm_reduction", "splitfed", 16.0)]
# timing variant -> the learning variant whose curve it follows (lock-step or streaming
# changes when things happen, not what is learned)
LEARNS_AS = {"fedavg": "fedavg", "splitfed": "splitfed", "local_loss": "local_loss",
             "local_loss streaming": "local_loss", "fedgkt two-phase": "fedgkt two-phase",
             "fedgkt lock-step": "fedgkt lock-step", "ecofed": "ecofed",
             "ecofed streaming": "ecofed"}
ECOFED = ("ecofed", "ecofed streaming")
POINT = ["devices", "uplink_mbps", "rtt_ms", "transport"]
REFERENCE = {"devices": "5x rpi4b", "uplink_mbps": 25, "rtt_ms": 40, "transport": "tcp"}


def rounds_to(curve: pd.DataFrame, target: float) -> float:
    """Rounds run when test accuracy first reaches ``target`` (NaN if it never does)."""
    hit = curve[curve.test_accuracy >= target]
    return float(hit["round"].iloc[0] + 1) if len(hit) else np.nan


def cumulative(cycle: list[float], rounds: float) -> float:
    """Sum of the first ``rounds`` rounds of a periodic sequence of per-round values."""
    if np.isnan(rounds):
        return np.nan
    return float(sum(cycle[r % len(cycle)] for r in range(int(rounds))))


def cycles(summary: pd.DataFrame) -> pd.DataFrame:
    """Per timing run: its rounds' times and bytes, in round order."""
    s = summary.sort_values(["run_id", "round"]).assign(
        round_bytes=lambda d: d.bytes_up + d.bytes_down)
    keys = ["variant", *POINT]
    return (s.groupby(keys, sort=False)
            .agg(times=("round_time_s", list), bytes=("round_bytes", list)).reset_index())


def to_target(curves: pd.DataFrame, timing: pd.DataFrame,
              targets: list[float]) -> pd.DataFrame:
    """Rounds, seconds and bytes to each target, per timing point and variant."""
    rows = []
    for target, row in itertools.product(targets, timing.itertuples(index=False)):
        curve = curves[curves.variant == LEARNS_AS[row.variant]]
        n = rounds_to(curve, target)
        rows.append({"target": target, "variant": row.variant,
                     **{k: getattr(row, k) for k in POINT}, "rounds": n,
                     "time_s": cumulative(row.times, n), "bytes": cumulative(row.bytes, n),
                     "round_time_s": float(np.mean(row.times)),
                     "round_bytes": float(np.mean(row.bytes))})
    return pd.DataFrame(rows)


def factors(tta: pd.DataFrame) -> pd.DataFrame:
    """EcoFed's factors over each baseline per (target, point, EcoFed variant): to the
    target (``speedup``, ``comm_reduction``) and at equal rounds (``*_per_round``)."""
    rows = []
    for key, part in tta.groupby(["target", *POINT], sort=False):
        by = part.set_index("variant")
        for eco, base in itertools.product(ECOFED, by.index.difference(ECOFED)):
            e, b = by.loc[eco], by.loc[base]
            rows.append({**dict(zip(["target", *POINT], key, strict=True)), "ecofed": eco,
                         "baseline": base, "speedup": b.time_s / e.time_s,
                         "comm_reduction": b.bytes / e.bytes,
                         "speedup_per_round": b.round_time_s / e.round_time_s,
                         "comm_reduction_per_round": b.round_bytes / e.round_bytes,
                         "rounds_ratio": b.rounds / e.rounds})
    return pd.DataFrame(rows)


def _where(points: pd.DataFrame) -> str:
    """Points as compact labels: devices, uplink, RTT, transport and EcoFed's variant."""
    return "; ".join(f"{p.devices} {p.uplink_mbps:g} Mbit/s {p.rtt_ms:g} ms {p.transport} "
                     f"{'streaming' if p.ecofed.endswith('streaming') else 'lock-step'}"
                     for p in points.sort_values([*POINT, "ecofed"]).itertuples(index=False)
                     ) or "nowhere"


def claims(table: pd.DataFrame) -> pd.DataFrame:
    """Per claim and basis: the simulated range beside the paper's figure, their ratio,
    and the points within +-15% of it."""
    rows = []
    for (quantity, base, claim), basis in itertools.product(CLAIMS, ("to target",
                                                                     "equal rounds")):
        col = quantity if basis == "to target" else f"{quantity}_per_round"
        part = table[table.baseline == base].dropna(subset=[col])
        near = part[(part[col] - claim).abs() <= TOLERANCE * claim]
        rows.append({"claim": f"{claim:g}x {quantity.replace('_', ' ')} vs {base}",
                     "basis": basis, "paper": claim, "simulated_min": part[col].min(),
                     "simulated_median": part[col].median(),
                     "simulated_max": part[col].max(),
                     "median_to_paper": part[col].median() / claim,
                     "points_within_15pct": f"{len(near)} of {len(part)}",
                     "where_within_15pct": _where(near)})
    return pd.DataFrame(rows)


def both_speedups(table: pd.DataFrame) -> pd.DataFrame:
    """The points where EcoFed is within +-15% of both of the paper's speed-ups (21x over
    classic FL and 2.86x over vanilla DPFL) to the target at once."""
    keys = ["ecofed", *POINT]
    wide = table.pivot_table(index=keys, columns="baseline", values="speedup").reset_index()
    ok = np.ones(len(wide), dtype=bool)
    for quantity, base, claim in CLAIMS:
        if quantity == "speedup":
            ok &= ((wide[base] - claim).abs() <= TOLERANCE * claim).to_numpy()
    return wide.loc[ok, [*keys, "fedavg", "splitfed"]].sort_values(POINT).rename(
        columns={"fedavg": "speedup_vs_fedavg", "splitfed": "speedup_vs_splitfed"})


def curve_figure(curves: pd.DataFrame, out: Path) -> list[Path]:
    with figure_style("paper"):
        fig, ax = plt.subplots()
        for variant, df in curves.groupby("variant", sort=False):
            ax.plot(df["round"] + 1, df.test_accuracy, markevery=5, **style(variant))
        ax.set_xlabel("Round")
        ax.set_ylabel("Test accuracy")
        ax.set_title("VGG11 at width 0.25, paper setup, fidelity: paper", fontsize=8)
        ax.legend(frameon=False, fontsize=6)
        return save(fig, out / "tta_curves", ["png", "pdf"])


def accuracy_time_figure(curves: pd.DataFrame, timing: pd.DataFrame, point: dict,
                         figures: Path) -> list[Path]:
    """Accuracy against time for the methods as the code runs them, at one timing point:
    each round's accuracy (narrow model) at the full model's time after that round."""
    here = timing[np.logical_and.reduce([timing[k] == v for k, v in point.items()])]
    with figure_style("paper"):
        fig, ax = plt.subplots()
        for variant in ("fedavg", "splitfed", "local_loss", "fedgkt two-phase", "ecofed"):
            row = here[here.variant == variant].iloc[0]
            acc = curves[curves.variant == LEARNS_AS[variant]].sort_values("round")
            times = [cumulative(row.times, r + 1) for r in acc["round"]]
            ax.plot(times, acc.test_accuracy, markevery=5, **style(variant))
        ax.set_xscale("log")
        ax.set_xlabel("Simulated time (s), full-width VGG11")
        ax.set_ylabel("Test accuracy")
        ax.set_title(", ".join(f"{k} {v}" for k, v in point.items()), fontsize=7)
        ax.legend(frameon=False, fontsize=6)
        return save(fig, figures / "tta_accuracy_vs_time", ["png", "pdf"])


def speedup_figure(table: pd.DataFrame, target: float, figures: Path) -> list[Path]:
    """EcoFed (lock-step, as the code) to the target against uplink, per device, at 40 ms
    RTT and the tcp transport; the paper's figure with its +-15% band."""
    df = table[(table.target == target) & (table.ecofed == "ecofed") & (table.rtt_ms == 40)
               & (table.transport == "tcp")]
    with figure_style("paper"):
        fig, axes = plt.subplots(1, 2, figsize=(6.8, 2.6))
        for ax, (base, claim) in zip(axes, (("fedavg", 21.0), ("splitfed", 2.86)),
                                     strict=True):
            ax.axhspan(claim * (1 - TOLERANCE), claim * (1 + TOLERANCE), color="0.88")
            ax.axhline(claim, color="grey", linestyle="--", linewidth=0.8)
            for i, (devices, part) in enumerate(df[df.baseline == base].groupby("devices")):
                part = part.sort_values("uplink_mbps")
                ax.plot(part.uplink_mbps, part.speedup, marker="os^"[i], color=OKABE_ITO[i],
                        label=f"{devices}, to {target:g}")
                ax.plot(part.uplink_mbps, part.speedup_per_round, linestyle=":",
                        color=OKABE_ITO[i], linewidth=0.9)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
            for axis in (ax.xaxis, ax.yaxis):
                axis.set_major_formatter(FormatStrFormatter("%g"))
                axis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("Device uplink (Mbit/s)")
            ax.set_title(f"vs {style(base)['label']}; dotted: equal rounds", fontsize=7)
        axes[0].set_ylabel("Speed-up of EcoFed (x)")
        axes[1].legend(frameon=False, fontsize=6)
        return save(fig, figures / f"tta_speedup_to_{round(target * 100)}pct", ["png", "pdf"])


def full_setting(args: argparse.Namespace) -> Path:
    """The learning sweep at the paper's full setting, written beside its results."""
    spec = yaml.safe_load((SWEEPS / "paper_tta_learning.yaml").read_text())
    spec["base"] = str(SWEEPS / spec["base"])
    spec["name"] = "paper_tta_learning_full"
    spec["set"].update({"rounds": 500, "model.width": 1.0, "data.eval_samples": 10000,
                        "data.dataset": "cifar10", "data.root": str(args.data_root.resolve()),
                        "training.device": args.device})
    for key in ("data.synthetic.noise", "data.synthetic.test_samples"):
        spec["set"].pop(key)
    path = args.out / "tta_learning_full" / "sweep.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def sweep(path: Path, out: Path, workers: int) -> pd.DataFrame:
    tally = run_sweep(path, out, workers=workers, progress=sys.stderr.isatty())
    if tally.failed:
        raise SystemExit(f"{tally.failed} runs failed; see {out / 'failed.yaml'}")
    return pd.read_parquet(out / "summary.parquet")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--targets", type=float, nargs="+", default=[0.7, 0.8, 0.9, 0.95])
    parser.add_argument("--claims-target", type=float, default=0.9,
                        help="the target of the claims table (one of --targets)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--full", action="store_true", help="the paper's full setting")
    parser.add_argument("--data-root", type=Path, help="--full: the CIFAR-10 files")
    parser.add_argument("--device", default="auto", help="--full: training.device")
    parser.add_argument("--reuse-learning", action="store_true",
                        help="take the learning sweep's results already in --out instead "
                        "of running it: the composition takes only accuracy per round from "
                        "them, which no timing field changes, so after a change to the "
                        "timing model only the timing sweep needs to run (the learning "
                        "runs' own times in tta_curves.csv stay those of the runs reused)")
    args = parser.parse_args()
    if args.claims_target not in args.targets:
        parser.error(f"--claims-target {args.claims_target:g} is not one of --targets")
    if args.full and args.data_root is None:
        parser.error("--full needs --data-root (the CIFAR-10 files)")
    learning = (full_setting(args) if args.full else SWEEPS / "paper_tta_learning.yaml")
    learned = args.out / ("tta_learning_full" if args.full else "tta_learning")
    if args.reuse_learning:
        if not (learned / "summary.parquet").exists():
            parser.error(f"--reuse-learning: no learning results in {learned}")
        curves = pd.read_parquet(learned / "summary.parquet")
    else:
        curves = sweep(learning, learned, args.workers)
    timing = cycles(sweep(SWEEPS / "paper_tta_timing.yaml", args.out / "tta_timing",
                          args.workers))
    curves = curves[["variant", "round", "test_accuracy", "sim_time_s", "cum_bytes"]]
    curves.to_csv(args.out / "tta_curves.csv", index=False, float_format="%.6g")
    tta = to_target(curves, timing, args.targets)
    tta.to_csv(args.out / "tta.csv", index=False, float_format="%.6g")
    table = factors(tta)
    table.to_csv(args.out / "tta_factors.csv", index=False, float_format="%.4g")
    found = claims(table[table.target == args.claims_target])
    found.to_csv(args.out / "tta_claims.csv", index=False, float_format="%.4g")
    both = both_speedups(table[table.target == args.claims_target])
    both.to_csv(args.out / "tta_both_speedups.csv", index=False, float_format="%.4g")
    figures = args.out / "figures"
    paths = curve_figure(curves, figures) + accuracy_time_figure(curves, timing, REFERENCE,
                                                                   figures)
    for target in args.targets:
        paths += speedup_figure(table, target, figures)
    rounds = tta[tta.devices == tta.devices.iloc[0]].drop_duplicates(["target", "variant"])
    print(rounds.pivot(index="variant", columns="target", values="rounds").to_string())
    print()
    shown = ["claim", "basis", "simulated_min", "simulated_median", "simulated_max",
             "points_within_15pct"]
    print(found[shown].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"\nboth speed-ups within 15% at {len(both)} points:")
    print(both.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print("wrote", *(str(args.out / f) for f in ("tta_curves.csv", "tta.csv",
                                                 "tta_factors.csv", "tta_claims.csv",
                                                 "tta_both_speedups.csv")),
          *map(str, paths), sep="\n  ")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""EcoFed's headline comparison across uplink bandwidth and device mix, and where in that
space the paper's figures (21x and 2.86x faster, 133x and 16x less traffic than classic FL
and vanilla DPFL) are reached.

Runs (or resumes) scenarios/sweeps/paper_headline.yaml: VGG11 at the paper's setup, four
methods x four device mixes x seven uplinks (1-100 Mbit/s) x two transports (``tcp``, the
default, and ``flow``). Each method trains once; the other 55 points per method are
re-simulated. Ratios are at equal rounds (per-round time and traffic are stationary).
Writes analysis/out/headline.csv, where_paper_figures.csv (both per transport) and
figures under analysis/out/figures/ (``tcp``, and how the factors move under ``flow``).
where_paper_figures.csv gives each figure's simulated range beside the paper's, their
ratio, and the points within +-15% of it.

    python analysis/headline.py [--workers 2]      # ~25 min on 2 cores, resumable
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import NullFormatter, ScalarFormatter

from ecofed_sim.plot_kinds import heatmap, load
from ecofed_sim.plots import OKABE_ITO, figure_style, save, style
from ecofed_sim.sweep import run_sweep

ROOT = Path(__file__).resolve().parent.parent
SWEEP = ROOT / "scenarios" / "sweeps" / "paper_headline.yaml"
OUT = ROOT / "analysis" / "out"
CLAIMS = [  # (quantity, baseline, paper's factor)
    ("speedup", "fedavg", 21.0), ("speedup", "splitfed", 2.86),
    ("comm_reduction", "fedavg", 133.0), ("comm_reduction", "splitfed", 16.0)]


def ratios(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (transport, devices, uplink): per-round time of each method and
    EcoFed's factors."""
    m = metrics.assign(uplink_mbps=metrics.uplink_mbps.astype(float))
    per_round = m.assign(round_time_s=m.total_sim_time_s / m.rounds,
                         mib_per_round=m.total_bytes / m.rounds / 2**20)
    index = ["transport", "devices", "uplink_mbps"]
    time = per_round.pivot_table(index=index, columns="method", values="round_time_s")
    traffic = per_round.pivot_table(index=index, columns="method", values="mib_per_round")
    out = time.add_suffix("_round_time_s").join(traffic.add_suffix("_mib_per_round"))
    for base in ("fedavg", "splitfed", "local_loss"):
        out[f"speedup_vs_{base}"] = time[base] / time["ecofed"]
        out[f"comm_reduction_vs_{base}"] = traffic[base] / traffic["ecofed"]
    return out.reset_index()


def beside_claims(table: pd.DataFrame, tolerance: float = 0.15) -> pd.DataFrame:
    """Per transport and paper figure: the simulated range beside the claim, the ratio
    simulated / paper, and the points within ``tolerance`` of the paper's figure."""
    rows = []
    for (transport, part), (quantity, base, claim) in itertools.product(
            table.groupby("transport", sort=False), CLAIMS):
        col = f"{quantity}_vs_{base}"
        near = part[(part[col] - claim).abs() <= tolerance * claim]
        rows.append({"transport": transport,
                     "claim": f"{claim:g}x {quantity.replace('_', ' ')} vs {base}",
                     "paper": claim, "simulated_min": part[col].min(),
                     "simulated_max": part[col].max(),
                     "ratio_to_paper_min": part[col].min() / claim,
                     "ratio_to_paper_max": part[col].max() / claim,
                     "points_within_15pct": f"{len(near)} of {len(part)}",
                     "where_within_15pct": "; ".join(
                         f"{d} @ {u:g} Mbit/s" for d, u in
                         zip(near.devices, near.uplink_mbps, strict=True)) or "nowhere"})
    return pd.DataFrame(rows)


def speedup_lines(table: pd.DataFrame, out: Path) -> list[Path]:
    paths = []
    for quantity, label in (("speedup", "Speed-up of EcoFed (x)"),
                            ("comm_reduction", "Traffic reduction of EcoFed (x)")):
        with figure_style("paper"):
            fig, axes = plt.subplots(1, 2, figsize=(6.8, 2.6), sharey=True)
            for ax, (base, claim) in zip(axes, [(b, c) for q, b, c in CLAIMS if q == quantity],
                                         strict=True):
                for i, (devices, df) in enumerate(table.groupby("devices", sort=False)):
                    ax.plot(df.uplink_mbps, df[f"{quantity}_vs_{base}"], marker="os^D"[i],
                            color=OKABE_ITO[i], label=devices)
                ax.axhline(claim, color="grey", linestyle="--", linewidth=0.8)
                ax.annotate(f"paper: {claim:g}x", (1, claim), xytext=(0, 2),
                            textcoords="offset points", fontsize=6.5, color="grey")
                ax.set_xscale("log")
                ax.set_yscale("log")
                for axis in (ax.xaxis, ax.yaxis):
                    axis.set_major_formatter(ScalarFormatter())
                    axis.set_minor_formatter(NullFormatter())
                ax.set_xlabel("Device uplink (Mbit/s)")
                ax.set_title(f"vs {style(base)['label']}", fontsize=8)
            axes[0].set_ylabel(label)
            axes[1].legend(frameon=False, fontsize=6)
            paths += save(fig, out / f"{quantity}_vs_uplink", ["png", "pdf"])
    return paths


def round_times(table: pd.DataFrame, out: Path, devices: str = "5x rpi4b") -> list[Path]:
    df = table[table.devices == devices]
    with figure_style("paper"):
        fig, ax = plt.subplots()
        for method in ("fedavg", "splitfed", "local_loss", "ecofed"):
            ax.plot(df.uplink_mbps, df[f"{method}_round_time_s"], **style(method))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("Device uplink (Mbit/s)")
        ax.set_ylabel("Simulated time per round (s)")
        ax.set_title(f"VGG11, {devices}, 20 clients per round", fontsize=8)
        ax.legend(frameon=False)
        return save(fig, out / "round_time_vs_uplink", ["png", "pdf"])


def transport_shift(table: pd.DataFrame, out: Path, devices: str = "5x rpi4b") -> list[Path]:
    """EcoFed's factors under the tcp transport (solid) and the flow model (dashed)."""
    df = table[table.devices == devices]
    with figure_style("paper"):
        fig, axes = plt.subplots(1, 2, figsize=(6.8, 2.6))
        for ax, base in zip(axes, ("fedavg", "splitfed"), strict=True):
            for transport, dash in (("tcp", "-"), ("flow", "--")):
                part = df[df.transport == transport]
                ax.plot(part.uplink_mbps, part[f"speedup_vs_{base}"], linestyle=dash,
                        marker="o", color=OKABE_ITO[0 if transport == "tcp" else 1],
                        label=f"{transport} transport")
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("Device uplink (Mbit/s)")
            ax.set_title(f"EcoFed vs {style(base)['label']}, {devices}", fontsize=8)
        axes[0].set_ylabel("Speed-up of EcoFed (x)")
        axes[1].legend(frameon=False, fontsize=6)
        return save(fig, out / "speedup_tcp_vs_flow", ["png", "pdf"])


def only_transport(rs, transport: str):
    """The result set restricted to one transport (never averaged across them)."""
    keep = rs.metrics.transport == transport
    return dataclasses.replace(rs, metrics=rs.metrics[keep],
                               params=[p for p in rs.params if p != "transport"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--tables-only", action="store_true",
                        help="no runs: rebuild the tables and figures from the sweep's "
                        "summary (analysis/out/headline/)")
    args = parser.parse_args()
    results = args.out / "headline"
    tally = (None if args.tables_only else
             run_sweep(SWEEP, results, workers=args.workers, progress=sys.stderr.isatty()))
    if tally is not None and tally.failed:
        print(f"{tally.failed} runs failed; see {results / 'failed.yaml'}", file=sys.stderr)
        return 1
    rs = load(results, [])
    table = ratios(rs.metrics)
    table.to_csv(args.out / "headline.csv", index=False, float_format="%.6g")
    reached = beside_claims(table)
    reached.to_csv(args.out / "where_paper_figures.csv", index=False, float_format="%.4g")
    figures = args.out / "figures"
    tcp = table[table.transport == "tcp"]
    paths = (speedup_lines(tcp, figures) + round_times(tcp, figures)
             + transport_shift(table, figures))
    for base in ("fedavg", "splitfed"):
        with figure_style("paper"):
            built = heatmap(only_transport(rs, "tcp"), "paper", baseline=base,
                            method="ecofed", axes=["devices", "uplink_mbps"])
            for suffix, fig in built.items():
                paths += save(fig, figures / f"heatmap_ecofed_vs_{base}{suffix}",
                              ["png", "pdf"])
    cols = ["transport", "devices", "uplink_mbps", "speedup_vs_fedavg", "speedup_vs_splitfed",
            "comm_reduction_vs_fedavg", "comm_reduction_vs_splitfed"]
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print()
    shown = ["transport", "claim", "simulated_min", "simulated_max", "ratio_to_paper_min",
             "ratio_to_paper_max", "points_within_15pct"]
    print(reached[shown].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print("wrote", args.out / "headline.csv", args.out / "where_paper_figures.csv",
          *map(str, paths), sep="\n  ")
    return 0


if __name__ == "__main__":
    sys.exit(main())

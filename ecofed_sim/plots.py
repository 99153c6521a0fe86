"""Figures from results tables only (never re-runs a simulation).

One fixed colour and marker per method across every figure, from the Okabe-Ito
colour-blind-safe palette; units in every axis label; PNG for viewing, PDF for papers.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

OKABE_ITO = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442",
             "#000000"]
METHOD_STYLE = {
    "fedavg": (OKABE_ITO[0], "o"), "splitfed": (OKABE_ITO[1], "s"),
    "splitfed_v2": (OKABE_ITO[2], "^"), "local_loss": (OKABE_ITO[3], "D"),
    "fedgkt": (OKABE_ITO[4], "v"), "ecofed": (OKABE_ITO[7], "*"),
}
LABELS = {"fedavg": "Classic FL (FedAvg)", "splitfed": "Vanilla DPFL (SplitFed-V1)",
          "splitfed_v2": "SplitFed-V2", "local_loss": "Local-loss DPFL", "fedgkt": "FedGKT",
          "ecofed": "EcoFed"}


def style(method: str) -> dict:
    colour, marker = METHOD_STYLE.get(method, (OKABE_ITO[5], "x"))
    return {"color": colour, "marker": marker, "label": LABELS.get(method, method)}


def _axis(rounds: pd.DataFrame, x: str, xlabel: str, xscale: float, out: Path) -> list[Path]:
    fig, ax = plt.subplots(figsize=(3.4, 2.5), dpi=150)  # single-column paper width
    for _, df in rounds.groupby("run", sort=False):
        df = df.dropna(subset=["test_accuracy"])
        ax.plot(df[x] / xscale, df["test_accuracy"] * 100, markersize=3, linewidth=1.2,
                markevery=max(1, len(df) // 8), **style(df["method"].iloc[0]))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Test accuracy (%)")
    ax.grid(alpha=0.3, linewidth=0.5)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    paths = [out.with_suffix(".png"), out.with_suffix(".pdf")]
    for p in paths:
        fig.savefig(p)
    plt.close(fig)
    return paths


def accuracy_vs_time(rounds: pd.DataFrame, out: Path) -> list[Path]:
    return _axis(rounds, "sim_time_s", "Simulated training time (s)", 1.0, out)


def accuracy_vs_bytes(rounds: pd.DataFrame, out: Path) -> list[Path]:
    return _axis(rounds, "cum_bytes", "Cumulative traffic (MiB)", 2**20, out)

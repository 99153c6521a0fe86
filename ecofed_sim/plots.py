"""Figures from results tables only (never re-runs a simulation).

One fixed colour and marker per method in every figure (Okabe-Ito, colour-blind safe),
units in every axis label, single-column paper width by default (``--style slides`` for
talks), PNG for viewing and PDF/SVG (vector) for papers. Importing this module leaves
matplotlib's backend alone (a notebook keeps its own); the CLI picks Agg.
"""

from __future__ import annotations

import zlib
from contextlib import contextmanager
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

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
STATE_COLOURS = {"compute": OKABE_ITO[2], "upload": OKABE_ITO[1], "download": OKABE_ITO[0],
                 "idle": "#DDDDDD", "offline": "#555555", "queued": OKABE_ITO[5]}
OUTCOME_COLOURS = {"completed": OKABE_ITO[2], "stragglers": OKABE_ITO[4],
                   "dropped": OKABE_ITO[1]}
STYLES = {
    "paper": {"figure.figsize": (3.4, 2.5), "font.size": 8, "axes.labelsize": 8,
              "legend.fontsize": 6.5, "xtick.labelsize": 7, "ytick.labelsize": 7,
              "lines.linewidth": 1.2, "lines.markersize": 3.5},
    "slides": {"figure.figsize": (6.4, 4.2), "font.size": 13, "axes.labelsize": 14,
               "legend.fontsize": 11, "xtick.labelsize": 12, "ytick.labelsize": 12,
               "lines.linewidth": 2.2, "lines.markersize": 7},
}


LINESTYLES = ("-", "--", ":", "-.")


def style(label: str) -> dict:
    """Colour, marker and legend label of a method: the same in every figure (a plugin
    method's own ``plot_style`` when it has one). A configuration of a method (``splitfed
    split=2``: the method's name, then what sets it apart) keeps the method's colour and
    gets a dash pattern of its own."""
    from ecofed_sim.methods import REGISTRY

    method, _, variant = str(label).partition(" ")
    plugin = getattr(REGISTRY.get(method), "plot_style", None)
    colour, marker = METHOD_STYLE.get(method, plugin or (OKABE_ITO[5], "x"))
    out = {"color": colour, "marker": marker, "label": LABELS.get(method, method)}
    if variant:
        out["label"] += f" {variant}"
        out["linestyle"] = LINESTYLES[zlib.crc32(variant.encode()) % len(LINESTYLES)]
    return out


@contextmanager
def figure_style(name: str = "paper"):
    with plt.rc_context({**STYLES[name], "axes.grid": True, "grid.alpha": 0.3,
                         "grid.linewidth": 0.5, "savefig.bbox": "tight",
                         "pdf.fonttype": 42, "svg.fonttype": "none"}):
        yield


def save(fig, out: Path, formats: list[str]) -> list[Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out.with_suffix(f".{fmt}") for fmt in formats]
    for p in paths:
        fig.savefig(p, dpi=200)
    plt.close(fig)
    return paths


def curves(ax, summary: pd.DataFrame, x: str, xscale: float) -> None:
    """Mean accuracy over seeds per method against ``x``, with a min-max band."""
    for method, df in summary.groupby("method", sort=False):
        df = df.dropna(subset=["test_accuracy"])
        by_round = df.groupby("round")
        xs = by_round[x].mean() / xscale
        acc = by_round["test_accuracy"]
        st = style(method)
        ax.plot(xs, acc.mean() * 100, markevery=max(1, len(xs) // 8), **st)
        if df["run_id"].nunique() > 1:
            ax.fill_between(xs, acc.min() * 100, acc.max() * 100, color=st["color"],
                            alpha=0.18, linewidth=0)
    ax.set_ylabel("Test accuracy (%)")


def accuracy_vs(summary: pd.DataFrame, x: str, style_name: str = "paper") -> plt.Figure:
    """Accuracy against simulated time (``x="sim_time_s"``) or traffic (``"cum_bytes"``),
    one curve per method; returns the Figure (``save`` writes it)."""
    xlabel, xscale = (("Simulated training time (s)", 1.0) if x == "sim_time_s"
                      else ("Cumulative traffic (MiB)", 2**20))
    with figure_style(style_name):
        fig, ax = plt.subplots()
        curves(ax, summary, x, xscale)
        ax.set_xlabel(xlabel)
        ax.legend(frameon=False)
    return fig

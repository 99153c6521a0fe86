"""Figures of runs with a topology: traffic per tier (devices to edges, edges to cloud)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ecofed_sim.plots import OKABE_ITO, figure_style

EDGE_COLUMNS = ("up_edge_model_bytes", "down_edge_model_bytes")


def traffic_tiers(rs, st: str = "paper", run: str | None = None, **_) -> dict[str, plt.Figure]:
    """Per round of one run (default: the first with a topology): MiB between devices and
    their edges, and between edges and the cloud, stacked."""
    from ecofed_sim.plot_kinds import NothingToDraw

    summary = rs.summary
    tiered = [c for c in EDGE_COLUMNS if c in summary]
    if run is None:
        with_edges = summary[summary[tiered].fillna(0).sum(axis=1) > 0] if tiered else []
        run = with_edges.run_id.iloc[0] if len(with_edges) else rs.metrics.run_id.iloc[0]
    rounds = summary[summary.run_id == rs.require_run(run)]
    edge = rounds[tiered].fillna(0).sum(axis=1).to_numpy() if tiered else np.zeros(len(rounds))
    if not edge.any():
        raise NothingToDraw(f"tiers: run {run} has no edge-cloud traffic (no topology, or "
                            "edges with the cloud): nothing to draw")
    device = (rounds.bytes_up + rounds.bytes_down).to_numpy() - edge
    with figure_style(st):
        fig, ax = plt.subplots()
        ax.bar(rounds["round"], device / 2**20, color=OKABE_ITO[0], label="devices - edges",
               width=0.9)
        ax.bar(rounds["round"], edge / 2**20, bottom=device / 2**20, color=OKABE_ITO[1],
               label="edges - cloud", width=0.9)
        ax.set_xlabel("Round")
        ax.set_ylabel("Traffic per round (MiB)")
        ax.legend(frameon=False)
        return {"": fig}

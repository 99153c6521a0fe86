"""Figures of asynchronous runs, from their updates.parquet (one row per arriving
update): how stale the updates were when the server applied them."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ecofed_sim.plots import figure_style, style


def _staleness(rs, run: str) -> np.ndarray:
    path = rs.run_dir(run) / "updates.parquet"
    return (pd.read_parquet(path, columns=["staleness"]).staleness.to_numpy()
            if path.exists() else np.array([], dtype=int))


def staleness_histogram(rs, st: str = "paper", **_) -> dict[str, plt.Figure]:
    """Share of updates by staleness (server versions between a client's pull and its
    push). One panel per combination of the swept values (never pooled); within a panel
    one outline per method, pooling its seeds. Synchronous runs have no updates table
    rows and are left out; with none asynchronous, nothing is drawn."""
    from ecofed_sim.plot_kinds import NothingToDraw, _grid  # one module imports the other

    groups = list(rs.metrics.groupby(rs.params, sort=False)) if rs.params else [
        ((), rs.metrics)]
    panels = []
    for key, runs in groups:
        key = key if isinstance(key, tuple) else (key,)
        title = ", ".join(f"{p}={v}" for p, v in zip(rs.params, key, strict=True))
        lines = {method: np.concatenate([_staleness(rs, r) for r in group.run_id])
                 for method, group in runs.groupby("method", sort=False)}
        lines = {m: v for m, v in lines.items() if len(v)}
        if lines:
            panels.append((title, lines))
    if not panels:
        raise NothingToDraw(f"staleness: no asynchronous run in {rs.root} (its updates "
                            "tables are empty): nothing to draw")
    with figure_style(st):
        fig, axes = _grid(len(panels))
        for ax, (title, lines) in zip(axes, panels, strict=True):
            for method, values in lines.items():
                edges = np.arange(values.max() + 2) - 0.5
                s = style(method)
                ax.hist(values, bins=edges, weights=np.full(len(values), 1 / len(values)),
                        histtype="step", color=s["color"], label=s["label"])
            ax.set_xlabel("Staleness (server versions)")
            ax.xaxis.get_major_locator().set_params(integer=True)
            if title:
                ax.set_title(title, fontsize=plt.rcParams["font.size"])
        axes[0].set_ylabel("Share of updates")
        axes[0].legend(frameon=False)
        return {"": fig}

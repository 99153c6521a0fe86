"""The split-learning server's load over one run, from its timeline: per-client server
copies held and clients waiting for one, and the share of server workers computing."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ecofed_sim.plots import OKABE_ITO, figure_style
from ecofed_sim.strict import read_yaml


def in_progress(spans: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(times, how many ``spans`` are under way from each time on): a step function."""
    if spans.empty:
        return np.array([0.0]), np.array([0])
    times = np.concatenate([spans.t_start_s.to_numpy(), spans.t_end_s.to_numpy()])
    steps = np.concatenate([np.ones(len(spans)), -np.ones(len(spans))])
    order = np.lexsort((steps, times))  # at equal times, ends before starts
    times, counts = times[order], np.cumsum(steps[order])
    last = np.r_[times[1:] != times[:-1], True]  # one value per instant: after all its events
    return times[last], counts[last].astype(int)


def binned_mean(times: np.ndarray, counts: np.ndarray, bins: int = 100
                ) -> tuple[np.ndarray, np.ndarray]:
    """(bin edges, mean of the step function in each bin): its exact integral over the
    bin over the bin's width. A worker busy for many short steps reads as a share."""
    total = np.r_[0.0, np.cumsum(counts[:-1] * np.diff(times))]  # integral at each time
    edges = np.linspace(times[0], times[-1], bins + 1)
    return edges, np.diff(np.interp(edges, times, total)) / np.diff(edges)


def server_load(rs, st: str = "paper", run: str | None = None, **_) -> dict[str, plt.Figure]:
    """Two panels over simulated time: server copies held and clients queued for one;
    the workers' utilisation (busy share, mean per bin of 1% of the run). Default run:
    the first with server work."""
    from ecofed_sim.plot_kinds import NothingToDraw

    if run is None:
        busy = rs.summary[rs.summary.get("server_busy_s", 0) > 0]
        run = busy.run_id.iloc[0] if len(busy) else rs.metrics.run_id.iloc[0]
    run = rs.require_run(run)
    folder = rs.run_dir(run)
    tl = pd.read_parquet(folder / "timeline.parquet")
    workers = read_yaml(folder / "scenario.resolved.yaml")["server"]["workers"]
    compute = tl[(tl.device == "server") & (tl.state == "compute")]
    if compute.empty:
        raise NothingToDraw(f"server: run {run} does no server work (e.g. fedavg): "
                            "nothing to draw")
    with figure_style(st):
        w, h = plt.rcParams["figure.figsize"]
        fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(w, h * 1.5))
        for state, label, colour, style in (("hosting", "copies held", OKABE_ITO[0], "-"),
                                            ("queued", "clients queued", OKABE_ITO[1], "--")):
            times, counts = in_progress(tl[tl.state == state])
            top.step(times, counts, where="post", color=colour, linestyle=style, label=label)
        top.set_ylabel("Server copies")
        top.legend(frameon=False)
        edges, mean = binned_mean(*in_progress(compute))
        share = 100 * mean / workers
        bottom.stairs(share, edges, color=OKABE_ITO[2],
                      label=f"mean over {edges[1] - edges[0]:.2g} s; run: "
                            f"{share.mean():.2g}% of {workers} worker(s)")
        bottom.set_ylabel("Server utilisation (%)")
        bottom.set_xlabel("Simulated time (s)")
        bottom.legend(frameon=False)
        top.yaxis.get_major_locator().set_params(integer=True)
        for ax in (top, bottom):
            ax.set_ylim(bottom=0)
        return {"": fig}

"""``ecofed-sim plot``: the figures researchers publish, from a sweep's (or one run's)
results directory. Reads tables only; never re-runs a simulation."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import NullFormatter, ScalarFormatter

from ecofed_sim.errors import ScenarioError
from ecofed_sim.plot_async import staleness_histogram
from ecofed_sim.plot_hierarchy import EDGE_COLUMNS, traffic_tiers
from ecofed_sim.plot_server import server_load
from ecofed_sim.plots import (
    LABELS,
    OUTCOME_COLOURS,
    STATE_COLOURS,
    curves,
    figure_style,
    save,
    style,
)
from ecofed_sim.strict import read_yaml
from ecofed_sim.sweep_summary import run_metrics

Figures = dict[str, plt.Figure]  # file-name suffix -> figure


@dataclass
class ResultSet:
    """A sweep directory (summary.parquet) or a single run directory, as sweep tables."""

    root: Path
    summary: pd.DataFrame  # one row per (run, round)
    metrics: pd.DataFrame  # one row per run
    params: list[str]  # swept columns other than method and seed

    def require_run(self, run_id: str) -> str:
        """``run_id`` if it is among the results; else a ``ScenarioError`` naming some
        that are."""
        known = list(self.metrics.run_id.unique())
        if run_id not in known:
            shown = ", ".join(map(str, known[:5])) + (" ..." if len(known) > 5 else "")
            raise ScenarioError(f"--run: no run {run_id!r} in {self.root} (runs: {shown})")
        return run_id

    def run_dir(self, run_id: str) -> Path:
        """One run's folder: ``runs/<id>`` in a sweep, the folder itself for one run."""
        nested = self.root / "runs" / self.require_run(run_id)
        return nested if nested.is_dir() else self.root


def load(root: Path, targets: list[float]) -> ResultSet:
    """A sweep folder (``summary.parquet``) or one run's folder, as the tables the figure
    builders read; ``targets`` are accuracies for time- and bytes-to-accuracy (default:
    the sweep's own). Not a results folder: ``ScenarioError``."""
    if (root / "summary.parquet").exists():
        summary = pd.read_parquet(root / "summary.parquet")
        resolved = read_yaml(root / "sweep.resolved.yaml")
        targets = targets or resolved["sweep"].get("targets", [])
        params = [c for c in resolved["runs"][0]["params"] if c not in ("method", "seed")]
    elif (root / "rounds.parquet").exists():
        summary = pd.read_parquet(root / "rounds.parquet")
        scenario = read_yaml(root / "scenario.resolved.yaml")
        summary.insert(0, "method", scenario["method"]["name"])
        summary.insert(0, "run_id", root.name)
        params = []
    else:
        raise ScenarioError(f"{root}: not a results directory (no summary.parquet or "
                            "rounds.parquet)")
    keep = ["run_id", "method", *params, *(["seed"] if "seed" in summary else [])]
    rows = [{**dict(zip(keep, key, strict=True)), **run_metrics(df, targets)}
            for key, df in summary.groupby(keep, sort=False)]
    return ResultSet(root, summary, pd.DataFrame(rows), params)


def _facets(rs: ResultSet) -> list[tuple[str, pd.Series]]:
    """One panel per combination of the other swept parameters (a single panel if none)."""
    if not rs.params:
        return [("", pd.Series(True, index=rs.summary.index))]
    out = []
    for key, df in rs.summary.groupby(rs.params, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        title = ", ".join(f"{p}={v}" for p, v in zip(rs.params, key, strict=True))
        out.append((title, rs.summary.index.isin(df.index)))
    return out


def _grid(n: int):
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    w, h = plt.rcParams["figure.figsize"]
    fig, axes = plt.subplots(rows, cols, figsize=(w * cols * 0.8 + 0.6, h * rows * 0.85),
                             squeeze=False, sharey=True)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


X_AXES = {"sim_time_s": ("Simulated training time (s)", 1.0),
          "cum_bytes": ("Cumulative traffic (MiB)", 2**20),
          "cum_energy_j": ("Cumulative device energy (kJ)", 1e3)}


def accuracy_curves(rs: ResultSet, x: str, st: str = "paper", **_) -> Figures:
    if x not in rs.summary:
        raise ScenarioError(f"--kind: the results have no {x} column (energy needs power "
                            "figures in the device profiles)")
    xlabel, xscale = X_AXES[x]
    facets = _facets(rs)
    with figure_style(st):
        fig, axes = _grid(len(facets))
        for ax, (title, mask) in zip(axes, facets, strict=True):
            curves(ax, rs.summary[mask], x, xscale)
            ax.set_xlabel(xlabel)
            if title:
                ax.set_title(title, fontsize=plt.rcParams["font.size"])
        axes[0].legend(frameon=False)
        return {"": fig}


def _metric(rs: ResultSet, quantity: str, target: float | None) -> tuple[str, str, float]:
    """(metrics column, axis label, scale) for time or bytes, to a target or in total."""
    if target is not None:
        col = f"time_to_{target:g}_s" if quantity == "time" else f"bytes_to_{target:g}"
        where = f"to {target:.0%} accuracy"
    else:
        col = "total_sim_time_s" if quantity == "time" else "total_bytes"
        where = "in total"
    label = f"Simulated time {where} (s)" if quantity == "time" else f"Traffic {where} (MiB)"
    return col, label, 1.0 if quantity == "time" else 2**20


class NothingToDraw(ScenarioError):
    """A figure that would be empty or misleading; the message says why, in one line."""


def bars(rs: ResultSet, quantity: str, st: str = "paper", target: float | None = None,
         baseline: str = "fedavg", log: bool = False, **_) -> Figures:
    """Per method: the mean over seeds, a whisker from the lowest to the highest seed, and
    on each bar the factor of ``baseline`` over it (baseline / method: a speed-up or a
    traffic reduction, above 1 when the method is faster or sends less). Linear axis
    unless ``log``."""
    col, label, scale = _metric(rs, quantity, target)
    if col not in rs.metrics or rs.metrics[col].isna().all():
        what = f"reached {target:.0%} accuracy" if target is not None else "finished"
        raise NothingToDraw(f"{quantity}-bars: no run {what}: nothing to draw")
    m = rs.metrics.copy()
    m["group"] = m[rs.params].astype(str).agg(", ".join, axis=1) if rs.params else ""
    by = m.groupby(["group", "method"], sort=False)[col]
    table = by.mean().unstack("method")
    low, high = by.min().unstack("method"), by.max().unstack("method")
    methods = list(table.columns)
    has_baseline = baseline in methods
    factor = "speed-up" if quantity == "time" else "traffic reduction"
    with figure_style(st):
        fig, ax = plt.subplots()
        width = 0.8 / max(1, len(methods))
        for i, method in enumerate(methods):
            xs = np.arange(len(table)) + (i - (len(methods) - 1) / 2) * width
            values = table[method].to_numpy() / scale
            spread = [values - low[method].to_numpy() / scale,
                      high[method].to_numpy() / scale - values]  # lowest..highest seed
            s = style(method)
            ax.bar(xs, values, width, color=s["color"], label=s["label"], yerr=spread,
                   error_kw={"elinewidth": 0.7, "capsize": 1.5, "ecolor": "#333333"})
            for x, v, g in zip(xs, values, table.index, strict=True):
                base = table.loc[g].get(baseline, np.nan) / scale
                if np.isfinite(v) and np.isfinite(base) and v > 0 and method != baseline:
                    ax.annotate(f"{base / v:.2g}x", (x, v), ha="center", va="bottom",
                                fontsize=plt.rcParams["font.size"] * 0.75)
        ax.set_xticks(np.arange(len(table)), [g or "" for g in table.index])
        ax.set_ylabel(label)
        if rs.params:
            ax.set_xlabel(", ".join(rs.params))
        if log:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(ScalarFormatter())
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_ylim(top=ax.get_ylim()[1] * 1.6)  # room for the factors
        else:
            ax.set_ylim(0, ax.get_ylim()[1] * 1.12)
        base_label = LABELS.get(baseline, baseline)
        title = (f"on the bars: {factor} = {base_label} / method" if has_baseline
                 else f"no {base_label} in the results: no factors")
        ax.legend(frameon=False, title=title,
                  title_fontsize=plt.rcParams["legend.fontsize"], loc="upper center",
                  bbox_to_anchor=(0.5, -0.22 if rs.params else -0.1), ncol=2)
        return {"": fig}


def heatmap(rs: ResultSet, st: str = "paper", target: float | None = None,
            baseline: str = "fedavg", method: str = "ecofed", axes: list[str] | None = None,
            **_) -> Figures:
    """Speed-up and traffic reduction of ``method`` over ``baseline`` across two axes: the
    mean of the per-seed factors, and their range when there are several seeds."""
    axes = axes or rs.params[:2]
    if len(axes) != 2 or any(a not in rs.metrics for a in axes):
        raise ScenarioError(f"--axes: need two swept parameters (have {rs.params})")
    figures = {}
    for quantity, title in (("time", "Speed-up"), ("bytes", "Traffic reduction")):
        col, _, _ = _metric(rs, quantity, target)
        keys = [*axes, "seed"] if "seed" in rs.metrics else list(axes)
        per_seed = rs.metrics.groupby([*keys, "method"])[col].mean().unstack("method")
        if method not in per_seed or baseline not in per_seed:
            raise NothingToDraw(f"--method/--baseline: {method!r} and {baseline!r} must both "
                                f"be in the results (have {list(per_seed.columns)})")
        factor = (per_seed[baseline] / per_seed[method]).groupby(level=list(axes))
        order = {"index": rs.metrics[axes[0]].unique(),  # sweep order, not sorted
                 "columns": rs.metrics[axes[1]].unique()}
        grid = factor.mean().unstack(axes[1]).reindex(**order)
        if not np.isfinite(grid.to_numpy(dtype=float)).any():
            what = f"reached {target:.0%} accuracy" if target is not None else "finished"
            raise NothingToDraw(f"heatmap: no pair of {method} and {baseline} runs {what}: "
                                "nothing to draw")
        lo = factor.min().unstack(axes[1]).reindex(**order).to_numpy(dtype=float)
        hi = factor.max().unstack(axes[1]).reindex(**order).to_numpy(dtype=float)
        with figure_style(st):
            fig, ax = plt.subplots()
            im = ax.imshow(grid.to_numpy(dtype=float), cmap="cividis", aspect="auto",
                           origin="lower")
            for (i, j), v in np.ndenumerate(grid.to_numpy(dtype=float)):
                text = f"{v:.3g}x" if np.isfinite(v) else "n/a"
                if np.isfinite(v) and hi[i, j] > lo[i, j]:  # several seeds: their range
                    text += f"\n{lo[i, j]:.3g}-{hi[i, j]:.3g}"
                ax.text(j, i, text, ha="center", va="center",
                        color="white" if v < np.nanmean(grid) else "black",
                        fontsize=plt.rcParams["font.size"] * 0.7)
            ax.set_xticks(range(grid.shape[1]), grid.columns)
            ax.set_yticks(range(grid.shape[0]), grid.index)
            ax.set_xlabel(axes[1])
            ax.set_ylabel(axes[0])
            ax.grid(False)
            fig.colorbar(im, label=f"{title} of {LABELS.get(method, method)} vs "
                         f"{LABELS.get(baseline, baseline)} (x)")
            figures[f"_{quantity}"] = fig
    return figures


def gantt(rs: ResultSet, st: str = "paper", run: str | None = None, round_index: int = 0,
          **_) -> Figures:
    """Compute, upload, download and idle spans of each device in one round."""
    run = run or rs.metrics.run_id.iloc[0]
    timeline = pd.read_parquet(rs.run_dir(run) / "timeline.parquet")
    spans = timeline[timeline["round"] == round_index]
    if spans.empty:
        raise ScenarioError(f"--round: run {run} has no round {round_index}")
    spans = spans[spans.state != "hosting"]  # copies held: the `server` figure draws them
    devices = sorted(spans.device.unique(), key=lambda d: (d == "server", d))
    with figure_style(st):
        fig, ax = plt.subplots(figsize=(plt.rcParams["figure.figsize"][0],
                                        0.5 + 0.22 * len(devices)))
        for y, device in enumerate(devices):
            for state, df in spans[spans.device == device].groupby("state"):
                ax.broken_barh(list(zip(df.t_start_s, df.t_end_s - df.t_start_s, strict=True)),
                               (y - 0.4, 0.8), color=STATE_COLOURS.get(state, "grey"))
        ax.set_yticks(range(len(devices)), devices)
        ax.set_xlabel("Simulated time (s)")
        ax.invert_yaxis()
        ax.grid(axis="y", visible=False)
        handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in STATE_COLOURS.values()]
        ax.legend(handles, list(STATE_COLOURS), frameon=False, loc="center left",
                  bbox_to_anchor=(1.0, 0.5))
        method = rs.metrics.set_index("run_id").loc[run, "method"]
        ax.set_title(f"{LABELS.get(method, method)}, round {round_index}",
                     fontsize=plt.rcParams["font.size"])
        return {"": fig}


def _device_round_times(rs: ResultSet, run: str) -> list[float]:
    tl = pd.read_parquet(rs.run_dir(run) / "timeline.parquet")
    tl = tl[tl.device != "server"]
    start = tl.groupby("round").t_start_s.min()
    working = tl[~tl.state.isin(["idle", "offline"])]
    busy = working.groupby(["round", "device"]).t_end_s.max()
    return (busy - start.reindex(busy.index.get_level_values(0)).to_numpy()).tolist()


def round_time_cdf(rs: ResultSet, st: str = "paper", **_) -> Figures:
    """Per device and round: time from round start to the device's last busy moment. One
    panel per combination of the swept values (their distributions are never pooled);
    within a panel, one curve per method, pooling its seeds."""
    groups = list(rs.metrics.groupby(rs.params, sort=False)) if rs.params else [
        ((), rs.metrics)]
    with figure_style(st):
        fig, axes = _grid(len(groups))
        for ax, (key, runs) in zip(axes, groups, strict=True):
            key = key if isinstance(key, tuple) else (key,)
            title = ", ".join(f"{p}={v}" for p, v in zip(rs.params, key, strict=True))
            for method, group in runs.groupby("method", sort=False):
                xs = np.sort([t for run in group.run_id for t in _device_round_times(rs, run)])
                s = style(method)
                ax.step(xs, np.arange(1, len(xs) + 1) / len(xs), where="post",
                        color=s["color"], linestyle=s.get("linestyle", "-"), label=s["label"])
            ax.set_xlabel("Device time per round (s)")
            if title:
                ax.set_title(title, fontsize=plt.rcParams["font.size"])
        axes[0].set_ylabel("Fraction of device-rounds")
        axes[0].legend(frameon=False)
        return {"": fig}


def participation(rs: ResultSet, st: str = "paper", run: str | None = None,
                  **_) -> Figures:
    """Per round of one run: clients kept, stragglers cut off and clients dropped."""
    run = rs.require_run(run or rs.metrics.run_id.iloc[0])
    rounds = rs.summary[rs.summary.run_id == run]
    if "completed" not in rounds:
        raise ScenarioError(f"{rs.root}: run {run} has no participation columns")
    with figure_style(st):
        fig, ax = plt.subplots()
        bottom = np.zeros(len(rounds))
        for outcome, colour in OUTCOME_COLOURS.items():
            counts = rounds[outcome].to_numpy(dtype=float)
            ax.bar(rounds["round"], counts, bottom=bottom, color=colour, label=outcome,
                   width=0.9)
            bottom += counts
        ax.set_xlabel("Round")
        ax.set_ylabel("Selected clients")
        ax.legend(frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
        return {"": fig}


KINDS: dict[str, Callable[..., Figures]] = {
    "accuracy-time": lambda rs, st, **k: accuracy_curves(rs, "sim_time_s", st),
    "accuracy-bytes": lambda rs, st, **k: accuracy_curves(rs, "cum_bytes", st),
    "accuracy-energy": lambda rs, st, **k: accuracy_curves(rs, "cum_energy_j", st),
    "time-bars": lambda rs, st, **k: bars(rs, "time", st, **k),
    "bytes-bars": lambda rs, st, **k: bars(rs, "bytes", st, **k),
    "heatmap": heatmap,
    "gantt": gantt,
    "round-cdf": round_time_cdf,
    "participation": participation,
    "staleness": lambda rs, st, **k: staleness_histogram(rs, st),
    "server": server_load,
    "tiers": traffic_tiers,
}


def _anyone_left_out(rs: ResultSet) -> bool:
    cols = [c for c in ("dropped", "stragglers") if c in rs.summary]
    return bool(cols) and bool(rs.summary[cols].to_numpy().sum() > 0)


def plot(root: Path, kinds: list[str], out: Path, formats: list[str], style_name: str,
         targets: list[float], skip_unavailable: bool = False, **options) -> list[Path]:
    """Draw ``kinds`` from the results in ``root`` (a sweep or a run folder; nothing is
    re-run) and save each figure to ``out/<kind>.<format>``; returns the files written.
    The figure builders of ``KINDS`` return matplotlib Figures, for notebooks."""
    rs = load(root, targets)
    target = targets[0] if targets else None
    if target is None:
        found = [c for c in rs.metrics if c.startswith("time_to_")]
        target = float(found[0][8:-2]) if found else None
    paths: list[Path] = []
    for kind in kinds:
        if skip_unavailable and ((kind == "heatmap" and len(rs.params) < 2) or (
                kind == "accuracy-energy" and "cum_energy_j" not in rs.summary) or (
                kind == "participation" and not _anyone_left_out(rs)) or (
                kind == "staleness" and "staleness_max" not in rs.summary) or (
                kind == "server" and not (rs.summary.get("server_busy_s", 0) > 0).any()) or (
                kind == "tiers" and not any(c in rs.summary for c in EDGE_COLUMNS))):
            continue  # needs two swept axes, power figures, or someone not kept
        with figure_style(style_name):  # saving reads the style too (bbox, font types)
            try:
                built = KINDS[kind](rs, style_name, target=target, **options)
            except NothingToDraw as why:
                if not skip_unavailable:
                    raise
                print(f"skipped {why}", file=sys.stderr)
                continue
            for suffix, fig in built.items():
                paths += save(fig, out / f"{kind.replace('-', '_')}{suffix}", formats)
    return paths

"""``ecofed-sim plot``: the figures researchers publish, from a sweep's (or one run's)
results directory. Reads tables only; never re-runs a simulation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import NullFormatter, ScalarFormatter

from ecofed_sim.errors import ScenarioError
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


@dataclass
class ResultSet:
    """A sweep directory (summary.parquet) or a single run directory, as sweep tables."""

    root: Path
    summary: pd.DataFrame  # one row per (run, round)
    metrics: pd.DataFrame  # one row per run
    params: list[str]  # swept columns other than method and seed

    def run_dir(self, run_id: str) -> Path:
        nested = self.root / "runs" / run_id
        return nested if nested.is_dir() else self.root


def load(root: Path, targets: list[float]) -> ResultSet:
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


def accuracy_curves(rs: ResultSet, x: str, out: Path, fmts: list[str], st: str, **_) -> list:
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
        return save(fig, out, fmts)


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


def bars(rs: ResultSet, quantity: str, out: Path, fmts: list[str], st: str,
         target: float | None = None, baseline: str = "fedavg", **_) -> list:
    """Per method (mean over seeds) with the factor against ``baseline`` on each bar."""
    col, label, scale = _metric(rs, quantity, target)
    m = rs.metrics.copy()
    m["group"] = m[rs.params].astype(str).agg(", ".join, axis=1) if rs.params else ""
    table = m.groupby(["group", "method"], sort=False)[col].mean().unstack("method")
    methods = list(table.columns)
    with figure_style(st):
        fig, ax = plt.subplots()
        width = 0.8 / max(1, len(methods))
        for i, method in enumerate(methods):
            xs = np.arange(len(table)) + (i - (len(methods) - 1) / 2) * width
            values = table[method].to_numpy() / scale
            s = style(method)
            ax.bar(xs, values, width, color=s["color"], label=s["label"])
            for x, v, g in zip(xs, values, table.index, strict=True):
                base = table.loc[g].get(baseline, np.nan) / scale
                if np.isfinite(v) and np.isfinite(base) and v > 0 and method != baseline:
                    ax.annotate(f"{base / v:.2g}x", (x, v), ha="center", va="bottom",
                                fontsize=plt.rcParams["font.size"] * 0.75)
        ax.set_xticks(np.arange(len(table)), [g or "" for g in table.index])
        ax.set_ylabel(label)
        if rs.params:
            ax.set_xlabel(", ".join(rs.params))
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_ylim(top=ax.get_ylim()[1] * 1.6)  # room for the factors
        ax.legend(frameon=False, title=f"factor vs {LABELS.get(baseline, baseline)}",
                  title_fontsize=plt.rcParams["legend.fontsize"], loc="upper center",
                  bbox_to_anchor=(0.5, -0.22 if rs.params else -0.1), ncol=2)
        return save(fig, out, fmts)


def heatmap(rs: ResultSet, out: Path, fmts: list[str], st: str, target: float | None = None,
            baseline: str = "fedavg", method: str = "ecofed", axes: list[str] | None = None,
            **_) -> list:
    """Speed-up and traffic reduction of ``method`` over ``baseline`` across two axes."""
    axes = axes or rs.params[:2]
    if len(axes) != 2 or any(a not in rs.metrics for a in axes):
        raise ScenarioError(f"--axes: need two swept parameters (have {rs.params})")
    paths = []
    for quantity, title in (("time", "Speed-up"), ("bytes", "Traffic reduction")):
        col, _, _ = _metric(rs, quantity, target)
        mean = rs.metrics.groupby([*axes, "method"])[col].mean().unstack("method")
        if method not in mean or baseline not in mean:
            raise ScenarioError(f"--method/--baseline: {method!r} and {baseline!r} must both "
                                f"be in the results (have {list(mean.columns)})")
        grid = (mean[baseline] / mean[method]).unstack(axes[1])
        grid = grid.reindex(index=rs.metrics[axes[0]].unique(),  # sweep order, not sorted
                            columns=rs.metrics[axes[1]].unique())
        with figure_style(st):
            fig, ax = plt.subplots()
            im = ax.imshow(grid.to_numpy(dtype=float), cmap="cividis", aspect="auto",
                           origin="lower")
            for (i, j), v in np.ndenumerate(grid.to_numpy(dtype=float)):
                ax.text(j, i, f"{v:.3g}x" if np.isfinite(v) else "n/a", ha="center",
                        va="center", color="white" if v < np.nanmean(grid) else "black",
                        fontsize=plt.rcParams["font.size"] * 0.8)
            ax.set_xticks(range(grid.shape[1]), grid.columns)
            ax.set_yticks(range(grid.shape[0]), grid.index)
            ax.set_xlabel(axes[1])
            ax.set_ylabel(axes[0])
            ax.grid(False)
            fig.colorbar(im, label=f"{title} of {LABELS.get(method, method)} vs "
                         f"{LABELS.get(baseline, baseline)} (x)")
            paths += save(fig, out.with_name(f"{out.name}_{quantity}"), fmts)
    return paths


def gantt(rs: ResultSet, out: Path, fmts: list[str], st: str, run: str | None = None,
          round_index: int = 0, **_) -> list:
    """Compute, upload, download and idle spans of each device in one round."""
    run = run or rs.metrics.run_id.iloc[0]
    timeline = pd.read_parquet(rs.run_dir(run) / "timeline.parquet")
    spans = timeline[timeline["round"] == round_index]
    if spans.empty:
        raise ScenarioError(f"--round: run {run} has no round {round_index}")
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
        return save(fig, out, fmts)


def round_time_cdf(rs: ResultSet, out: Path, fmts: list[str], st: str, **_) -> list:
    """Per device and round: time from round start to the device's last busy moment."""
    with figure_style(st):
        fig, ax = plt.subplots()
        for method, runs in rs.metrics.groupby("method", sort=False):
            times = []
            for run in runs.run_id:
                tl = pd.read_parquet(rs.run_dir(run) / "timeline.parquet")
                tl = tl[tl.device != "server"]
                start = tl.groupby("round").t_start_s.min()
                working = tl[~tl.state.isin(["idle", "offline"])]
                busy = working.groupby(["round", "device"]).t_end_s.max()
                times += (busy - start.reindex(busy.index.get_level_values(0)).to_numpy()
                          ).tolist()
            xs = np.sort(times)
            s = style(method)
            ax.step(xs, np.arange(1, len(xs) + 1) / len(xs), where="post", color=s["color"],
                    label=s["label"])
        ax.set_xlabel("Device time per round (s)")
        ax.set_ylabel("Fraction of device-rounds")
        ax.legend(frameon=False)
        return save(fig, out, fmts)


def participation(rs: ResultSet, out: Path, fmts: list[str], st: str, run: str | None = None,
                  **_) -> list:
    """Per round of one run: clients kept, stragglers cut off and clients dropped."""
    run = run or rs.metrics.run_id.iloc[0]
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
        return save(fig, out, fmts)


KINDS = {
    "accuracy-time": lambda rs, out, f, s, **k: accuracy_curves(rs, "sim_time_s", out, f, s),
    "accuracy-bytes": lambda rs, out, f, s, **k: accuracy_curves(rs, "cum_bytes", out, f, s),
    "accuracy-energy": lambda rs, out, f, s, **k: accuracy_curves(rs, "cum_energy_j", out, f,
                                                                  s),
    "time-bars": lambda rs, out, f, s, **k: bars(rs, "time", out, f, s, **k),
    "bytes-bars": lambda rs, out, f, s, **k: bars(rs, "bytes", out, f, s, **k),
    "heatmap": heatmap,
    "gantt": gantt,
    "round-cdf": round_time_cdf,
    "participation": participation,
}


def _anyone_left_out(rs: ResultSet) -> bool:
    cols = [c for c in ("dropped", "stragglers") if c in rs.summary]
    return bool(cols) and bool(rs.summary[cols].to_numpy().sum() > 0)


def plot(root: Path, kinds: list[str], out: Path, formats: list[str], style_name: str,
         targets: list[float], skip_unavailable: bool = False, **options) -> list[Path]:
    rs = load(root, targets)
    target = targets[0] if targets else None
    if target is None:
        found = [c for c in rs.metrics if c.startswith("time_to_")]
        target = float(found[0][8:-2]) if found else None
    paths: list[Path] = []
    for kind in kinds:
        if skip_unavailable and ((kind == "heatmap" and len(rs.params) < 2) or (
                kind == "accuracy-energy" and "cum_energy_j" not in rs.summary) or (
                kind == "participation" and not _anyone_left_out(rs))):
            continue  # needs two swept axes, power figures, or someone not kept
        paths += KINDS[kind](rs, out / kind.replace("-", "_"), formats, style_name,
                             target=target, **options)
    return paths

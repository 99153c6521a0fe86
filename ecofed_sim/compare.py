"""Compare finished runs: a short table (final accuracy, simulated time, traffic, ratios
against the first run) and accuracy-vs-time / accuracy-vs-bytes figures."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ecofed_sim.errors import ScenarioError
from ecofed_sim.plots import accuracy_vs, figure_style, save
from ecofed_sim.results import read_rounds


def summary(rounds: pd.DataFrame) -> pd.DataFrame:
    """One row per run; ratios are against the first run listed."""
    rows = []
    for run, df in rounds.groupby("run", sort=False):
        last = df.iloc[-1]
        rows.append({"run": run, "method": last["method"], "rounds": len(df),
                     "final_accuracy": last["test_accuracy"], "sim_time_s": last["sim_time_s"],
                     "total_mib": last["cum_bytes"] / 2**20})
    table = pd.DataFrame(rows)
    table["time_vs_first"] = table["sim_time_s"] / table["sim_time_s"].iloc[0]
    table["traffic_vs_first"] = table["total_mib"] / table["total_mib"].iloc[0]
    return table


def compare(run_dirs: list[Path], out: Path | None) -> str:
    """The comparison table of finished runs as text; with ``out``, also comparison.csv
    and accuracy-vs-time and accuracy-vs-bytes figures there."""
    for d in run_dirs:
        if not (d / "rounds.parquet").exists():
            raise ScenarioError(f"{d}: not a results directory (no rounds.parquet)")
    rounds = pd.concat([read_rounds(d) for d in run_dirs], ignore_index=True)
    table = summary(rounds)
    text = table.to_string(index=False, float_format=lambda v: f"{v:.4g}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "comparison.csv", index=False)
        curves = rounds.assign(run_id=rounds["run"])
        figures = []
        with figure_style("paper"):
            for x, name in (("sim_time_s", "accuracy_vs_time"), ("cum_bytes",
                                                                 "accuracy_vs_bytes")):
                figures += save(accuracy_vs(curves, x), out / name, ["png", "pdf"])
        text += "\nwrote " + ", ".join(str(p) for p in [out / "comparison.csv", *figures])
    return text

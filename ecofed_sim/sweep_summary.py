"""A sweep's tidy tables: one row per (run, round), and derived metrics per run."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd


def to_accuracy(rounds: pd.DataFrame, target: float) -> tuple[float, float]:
    """(simulated seconds, cumulative bytes) when test accuracy first reaches ``target``;
    NaN when it never does."""
    hit = rounds[rounds.test_accuracy >= target]
    if hit.empty:
        return math.nan, math.nan
    first = hit.iloc[0]
    return float(first.sim_time_s), float(first.cum_bytes)


def run_metrics(rounds: pd.DataFrame, targets: list[float]) -> dict:
    last = rounds.iloc[-1]
    evaluated = rounds.test_accuracy.dropna()
    row = {"final_accuracy": float(evaluated.iloc[-1]) if len(evaluated)
           else math.nan, "total_sim_time_s": float(last.sim_time_s),
           "total_bytes": int(last.cum_bytes), "rounds": len(rounds)}
    for t in targets:
        row[f"time_to_{t:g}_s"], row[f"bytes_to_{t:g}"] = to_accuracy(rounds, t)
    return row


def _atomic_parquet(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_parquet(tmp, index=False)
    tmp.replace(path)


def _with_labels(rounds: pd.DataFrame, labelled: list[tuple[dict, int]]) -> pd.DataFrame:
    """The runs' rounds, one after another, with each run's labels on its rows (a label
    named as a column of the rounds replaces it). Added once for all runs: column by
    column per run, pandas rebuilds the column index each time (most of a 20-run
    summary's time)."""
    labels = pd.DataFrame([row for row, _ in labelled])
    labels = labels.loc[labels.index.repeat([n for _, n in labelled])].reset_index(drop=True)
    rest = rounds.drop(columns=[c for c in labels.columns if c in rounds.columns])
    return pd.concat([rest, labels], axis=1)


def write_summary(out: Path, runs, targets: list[float]) -> pd.DataFrame:
    """summary.parquet (run x round) and metrics.parquet/.csv (one row per run)."""
    per_round, labelled, per_run = [], [], []
    for r in runs:
        path = out / "runs" / r.run_id / "rounds.parquet"
        if not path.exists():
            continue  # failed or not yet run
        rounds = pd.read_parquet(path)
        params = {k: (v if isinstance(v, int | float | str | bool) else str(v))
                  for k, v in r.params.items()}
        labels = {"run_id": r.run_id, "method": r.scenario.method.name,
                  **params}  # an axis label may rename the method
        per_round.append(rounds)
        labelled.append((labels, len(rounds)))
        per_run.append({**labels, **run_metrics(rounds, targets)})
    if not per_round:
        return pd.DataFrame()
    summary = _with_labels(pd.concat(per_round, ignore_index=True), labelled)
    front = ["run_id", "round", "method", *[c for c in runs[0].params if c != "method"]]
    summary = summary[front + [c for c in summary.columns if c not in front]]
    _atomic_parquet(summary, out / "summary.parquet")
    metrics = pd.DataFrame(per_run)
    _atomic_parquet(metrics, out / "metrics.parquet")
    tmp = out / ".metrics.csv.tmp"
    metrics.to_csv(tmp, index=False, float_format="%.6g")
    tmp.replace(out / "metrics.csv")
    return summary

"""Writing and reading a run's results directory, atomically.

Layout: rounds.csv, rounds.parquet, transfers.parquet, timeline.parquet, energy.parquet,
participation.parquet, updates.parquet (asynchronous runs' arrivals; empty otherwise),
scenario.resolved.yaml, manifest.json and a marker file. Everything is written to a
hidden temporary directory next to the target and swapped into place (see ``outdir``), so
a failed or killed run never leaves a half-written results directory, and only a results
directory is ever replaced.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from ecofed_sim.outdir import check_target, new_tmp, swap_in
from ecofed_sim.run import Results
from ecofed_sim.scenario import to_yaml
from ecofed_sim.strict import read_yaml

TABLES = ("rounds", "transfers", "timeline", "energy", "participation", "updates")


def write_results(results: Results, out_dir: str | Path, check: bool = True,
                  tmp: Path | None = None) -> Path:
    """Write ``results`` to ``out_dir``, replacing it only if it is a results folder
    (``ScenarioError`` otherwise; ``outdir.check_target`` says so before a run starts).
    ``check=False``: the caller owns the parent folder and has cleaned it (a sweep, under
    its lock), so the per-run check and leftover scan are skipped. ``tmp``: the hidden
    folder (``outdir.new_tmp``) the run already wrote its ``files`` into."""
    out = Path(out_dir)
    if check:
        check_target(out)
    tmp = new_tmp(out) if tmp is None else tmp
    try:
        results.rounds.to_csv(tmp / "rounds.csv", index=False, float_format="%.9g")
        for name in TABLES:
            if name in results.files:  # written while the run went
                if results.files[name] != tmp / f"{name}.parquet":
                    raise ValueError(f"{name}: written to {results.files[name]}, not in {tmp}")
                continue
            getattr(results, name).to_parquet(tmp / f"{name}.parquet", index=False)
        (tmp / "scenario.resolved.yaml").write_text(to_yaml(results.scenario))
        (tmp / "manifest.json").write_text(json.dumps(results.manifest, indent=2) + "\n")
        swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_rounds(run_dir: str | Path) -> pd.DataFrame:
    """A run's per-round table, with its method and scenario name as columns."""
    run_dir = Path(run_dir)
    rounds = pd.read_parquet(run_dir / "rounds.parquet")
    scenario = read_yaml(run_dir / "scenario.resolved.yaml")
    rounds.insert(0, "method", scenario["method"]["name"])
    rounds.insert(0, "run", run_dir.name)
    return rounds

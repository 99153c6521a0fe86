"""Compare finished runs: a short table (final accuracy, simulated time, traffic, and the
first run's speed-up and traffic reduction over each, as everywhere: baseline / run) and
accuracy-vs-time / accuracy-vs-bytes figures with one curve per run, each labelled by the
fields in which the runs differ."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ecofed_sim.errors import ScenarioError
from ecofed_sim.plots import accuracy_vs, figure_style, save
from ecofed_sim.results import read_rounds
from ecofed_sim.strict import read_yaml

IGNORED = ("name", "description")  # fields that never make two runs differ in substance
ITEM = re.compile(r".*\[\d+\]\.")  # a field of a list item


def _flat(node: object, prefix: str = "") -> dict[str, object]:
    if isinstance(node, dict):
        out: dict[str, object] = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    if isinstance(node, list) and node and all(isinstance(n, dict) for n in node):
        out = {prefix[:-1] + "#": len(node)}  # lists of mappings: item by item
        for i, item in enumerate(node):
            out.update(_flat(item, f"{prefix[:-1]}[{i}]."))
        return out
    if isinstance(node, list):
        return {prefix[:-1]: repr(node)}
    return {prefix[:-1]: node}


def differing_fields(a: dict, b: dict) -> list[str]:
    """Dotted paths of the fields in which two scenario mappings differ."""
    fa, fb = _flat(a), _flat(b)
    return sorted(k for k in set(fa) | set(fb) if repr(fa.get(k)) != repr(fb.get(k)))


def _differing(flat: list[dict[str, object]], keys: list[str]) -> list[str]:
    return [k for k in keys if len({repr(f.get(k)) for f in flat}) > 1]


def _optional_sections(flat: list[dict[str, object]], general: list[str]) -> list[str]:
    """Sections that some runs leave out (``asynchronous: null``) and others fill in."""
    return sorted({k for f in flat for k, v in f.items()
                   if v is None and any(g.startswith(k + ".") for g in general)})


def _section_parts(flat: list[dict[str, object]], general: list[str], section: str
                   ) -> list[list[str]]:
    """Per run, how it differs in an optional section: ``asynchronous=none`` where it is
    left out; elsewhere its fields that differ between the runs that have it (or its
    first field, ``aggregator=fedbuff``, when they all agree)."""
    inside = [g for g in general if g.startswith(section + ".")]
    having = [f for f in flat if f.get(section, ...) is not None]
    shown = _differing(having, inside) or inside[:1]
    return [[f"{section}=none"] if f.get(section, ...) is None
            else [f"{k.rsplit('.', 1)[-1]}={f.get(k)}" for k in shown] for f in flat]


def run_labels(scenarios: list[dict], names: list[str]) -> list[str]:
    """A label per run: its method, the method's fields in which it differs from the other
    runs of that method (``splitfed split=2``), then the other fields in which the runs
    differ (the last part of each path, ``seed=1``; a section some runs leave out reads
    ``asynchronous=none`` there); the folder name where runs are identical."""
    flat = [{k: v for k, v in _flat(s).items() if k not in IGNORED} for s in scenarios]
    keys = sorted({k for f in flat for k in f})
    general = _differing(flat, [k for k in keys if not k.startswith("method.")])
    # an item some runs' lists lack: their length (``devices#``) already tells them apart
    general = [k for k in general if not (ITEM.match(k) and any(k not in f for f in flat))]
    sections = _optional_sections(flat, general)
    extra = [_section_parts(flat, general, s) for s in sections]
    general = [g for g in general if not any(g.startswith(s + ".") for s in sections)]
    labels = []
    for i, f in enumerate(flat):
        same = [g for g in flat if g.get("method.name") == f.get("method.name")]
        own = _differing(same, [k for k in keys if k.startswith("method.")])
        parts = [f"{k.rsplit('.', 1)[-1]}={f.get(k)}" for k in own + general]
        parts += [part for per_run in extra for part in per_run[i]]
        labels.append(" ".join([str(f.get("method.name", "?")), *parts]))
    if len(set(labels)) < len(labels):  # identical configurations: the folders tell them apart
        labels = [f"{label} ({name})" for label, name in zip(labels, names, strict=True)]
    return labels


def summary(rounds: pd.DataFrame) -> pd.DataFrame:
    """One row per run; factors are of the first run listed over each (baseline / run:
    above 1, the first run is slower or sends more)."""
    rows = []
    for run, df in rounds.groupby("run", sort=False):
        last = df.iloc[-1]
        rows.append({"run": run, "label": last["method"], "rounds": len(df),
                     "final_accuracy": last["test_accuracy"], "sim_time_s": last["sim_time_s"],
                     "total_mib": last["cum_bytes"] / 2**20})
    table = pd.DataFrame(rows)
    table["speedup_vs_first"] = table["sim_time_s"].iloc[0] / table["sim_time_s"]
    table["traffic_reduction_vs_first"] = table["total_mib"].iloc[0] / table["total_mib"]
    return table


def compare(run_dirs: list[Path], out: Path | None) -> str:
    """The comparison table of finished runs as text; with ``out``, also comparison.csv
    and accuracy-vs-time and accuracy-vs-bytes figures there."""
    for d in run_dirs:
        if not (d / "rounds.parquet").exists():
            raise ScenarioError(f"{d}: not a results directory (no rounds.parquet)")
    labels = run_labels([read_yaml(d / "scenario.resolved.yaml") for d in run_dirs],
                        [d.name for d in run_dirs])
    rounds = pd.concat([read_rounds(d).assign(method=label, run=f"{i}:{d.name}")
                        for i, (d, label) in enumerate(zip(run_dirs, labels, strict=True))],
                       ignore_index=True)
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

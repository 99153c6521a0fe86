"""``compare``: one curve per run, labelled by what sets the runs apart, and factors in the
one direction used everywhere (baseline / run)."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import tiny
from helpers import run_dict

from ecofed_sim import compare as compare_mod
from ecofed_sim.results import write_results


def _runs(tiny_dir, tmp_path) -> list:
    specs = {"a": tiny(seed=3), "b": tiny(seed=4),
             "c": tiny(seed=3, method={"name": "splitfed", "split": 4})}
    return [write_results(run_dict(raw, tiny_dir), tmp_path / name)
            for name, raw in specs.items()]


def test_compare_draws_one_curve_per_run_and_states_factors_as_baseline_over_run(
        tiny_dir, tmp_path, monkeypatch):
    dirs = _runs(tiny_dir, tmp_path)
    figures = []
    monkeypatch.setattr(compare_mod, "save", lambda fig, out, fmts: figures.append(fig) or [])
    text = compare_mod.compare(dirs, tmp_path / "cmp")
    legend = [t.get_text() for t in figures[0].axes[0].get_legend().get_texts()]
    assert [x.rsplit(")", 1)[-1].strip() for x in legend] == ["seed=3", "seed=4",
                                                             "seed=3"], legend
    assert len(figures[0].axes[0].get_lines()) == 3  # the two FedAvg runs are not averaged
    rows = pd.read_csv(tmp_path / "cmp" / "comparison.csv")
    assert rows.speedup_vs_first.tolist() == pytest.approx(
        (rows.sim_time_s.iloc[0] / rows.sim_time_s).tolist(), rel=1e-12)
    assert rows.traffic_reduction_vs_first.tolist() == pytest.approx(
        (rows.total_mib.iloc[0] / rows.total_mib).tolist(), rel=1e-12)
    assert rows.speedup_vs_first.iloc[2] > 1  # SplitFed is slower here: FedAvg's factor > 1
    assert "speedup_vs_first" in text


def test_runs_that_differ_in_nothing_are_told_apart_by_their_folders():
    same = {"method": {"name": "fedavg"}, "seed": 0, "name": "x"}
    assert compare_mod.run_labels([same, dict(same)], ["r1", "r2"]) == [
        "fedavg (r1)", "fedavg (r2)"]
    other = {**same, "method": {"name": "splitfed", "split": 2}}
    assert compare_mod.run_labels([same, other], ["r1", "r2"]) == ["fedavg", "splitfed"]
    four = {**same, "method": {"name": "splitfed", "split": 4}}
    assert compare_mod.run_labels([same, other, four], ["r1", "r2", "r3"]) == [
        "fedavg", "splitfed split=2", "splitfed split=4"]

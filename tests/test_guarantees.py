"""What the tool promises on valid input: it never deletes a user's files, a killed re-run
leaves the old or the new results, and a run id means one table whatever the executor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import tiny, write_scenario

from ecofed_sim import outdir
from ecofed_sim.cli import main
from ecofed_sim.outdir import MARKER

RESULT_FILES = {"rounds.csv", "rounds.parquet", "transfers.parquet", "timeline.parquet",
                "energy.parquet", "participation.parquet", "updates.parquet",
                "scenario.resolved.yaml",
                "manifest.json", MARKER}


def _no_simulation(monkeypatch):
    """Fail the test if a run starts: output checks must come before the work."""
    import ecofed_sim.run  # noqa: F401 (the module, shadowed by the package's ``run``)

    def refuse(*args, **kwargs):
        raise AssertionError("the simulation started before the output was checked")

    monkeypatch.setattr(sys.modules["ecofed_sim.run"], "run", refuse)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


def test_a_users_folder_is_never_replaced(tiny_dir, capsys, monkeypatch):
    mine = tiny_dir / "thesis"
    (mine / "sub").mkdir(parents=True)
    (mine / "thesis.tex").write_text("\\section{x}")
    (mine / "sub" / "data.csv").write_text("a,b\n1,2\n")
    path = write_scenario(tiny_dir, tiny())
    _no_simulation(monkeypatch)
    assert main(["run", str(path), "--out", str(mine), "--quiet"]) == 2
    assert "not this tool's results; refusing to replace it" in _one_error_line(capsys)
    assert (mine / "thesis.tex").read_text() == "\\section{x}"
    assert (mine / "sub" / "data.csv").read_text() == "a,b\n1,2\n"
    assert sorted(p.name for p in tiny_dir.iterdir()) == ["profiles", "thesis", "tiny.yaml"]


def test_a_file_and_the_current_folder_are_refused(tiny_dir, capsys, monkeypatch):
    path = write_scenario(tiny_dir, tiny())
    (tiny_dir / "notes.txt").write_text("keep me")
    _no_simulation(monkeypatch)
    assert main(["run", str(path), "--out", str(tiny_dir / "notes.txt"), "--quiet"]) == 2
    assert "notes.txt: exists and is not a results folder" in _one_error_line(capsys)
    assert (tiny_dir / "notes.txt").read_text() == "keep me"
    monkeypatch.chdir(tiny_dir)
    assert main(["run", str(path), "--out", ".", "--quiet"]) == 2
    _one_error_line(capsys)
    assert sorted(p.name for p in tiny_dir.iterdir()) == ["notes.txt", "profiles", "tiny.yaml"]


@pytest.mark.parametrize("out, expected", [
    ("blocker/sub/out", "a parent of the output folder is a file"),
    ("x" * 300, "cannot write here"),
])
def test_unwritable_outputs_fail_before_the_run(tiny_dir, capsys, monkeypatch, out, expected):
    (tiny_dir / "blocker").write_text("")
    path = write_scenario(tiny_dir, tiny())
    _no_simulation(monkeypatch)
    assert main(["run", str(path), "--out", str(tiny_dir / out), "--quiet"]) == 2
    assert expected in _one_error_line(capsys)


def test_rerun_replaces_results_and_keeps_the_umask(tiny_dir):
    path = write_scenario(tiny_dir, tiny(rounds=1))
    out = tiny_dir / "r"
    old_mask = os.umask(0o022)
    try:
        assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
        (out / "rounds.csv").write_text("stale")
        assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    finally:
        os.umask(old_mask)
    assert {p.name for p in out.iterdir()} == RESULT_FILES
    assert (out / "rounds.csv").read_text() != "stale"
    assert out.stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in tiny_dir.iterdir()) == ["profiles", "r", "tiny.yaml"]


def test_a_folder_of_results_without_the_marker_is_replaced(tiny_dir):
    """Folders written before the marker existed hold only result files."""
    path = write_scenario(tiny_dir, tiny(rounds=1))
    out = tiny_dir / "legacy"
    out.mkdir()
    (out / "rounds.csv").write_text("old")
    (out / "manifest.json").write_text("{}")
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    assert (out / MARKER).exists() and (out / "rounds.csv").read_text() != "old"


KILL_BETWEEN_RENAMES = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from ecofed_sim import outdir
    from ecofed_sim.cli import main
    outdir._EXCHANGE = None  # the two-rename fallback of systems without renameat2
    real_rename = Path.rename
    def rename_then_die(self, target):
        real_rename(self, target)
        if ".old-" in str(target):
            os.kill(os.getpid(), signal.SIGKILL)
        return target
    Path.rename = rename_then_die
    sys.exit(main(sys.argv[1:]))
""")


def test_kill_between_the_two_renames_leaves_the_old_results(tiny_dir):
    path = write_scenario(tiny_dir, tiny(rounds=1))
    out = tiny_dir / "r"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    before = (out / "manifest.json").read_text()
    args = [sys.executable, "-c", KILL_BETWEEN_RENAMES, "run", str(path), "--out", str(out),
            "--quiet", "--set", "rounds=2"]
    proc = subprocess.run(args, capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    assert not out.exists()  # the instant between the renames: old results set aside
    aside = [p for p in tiny_dir.iterdir() if p.name.startswith(".r.old-")]
    assert len(aside) == 1 and (aside[0] / "manifest.json").read_text() == before
    outdir.recover(out)  # what the next run does first
    assert (out / "manifest.json").read_text() == before
    assert sorted(p.name for p in tiny_dir.iterdir()) == ["profiles", "r", "tiny.yaml"]


def test_atomic_exchange_leaves_nothing_behind(tiny_dir):
    if outdir._EXCHANGE is None:
        pytest.skip("no renameat2 on this system: the two-rename path is tested above")
    a, b = tiny_dir / "a", tiny_dir / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    (b / "x").write_text("b")
    assert outdir._exchange(a, b)
    assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"


def test_default_output_name_stays_inside_results(tiny_dir, monkeypatch):
    path = write_scenario(tiny_dir, tiny(rounds=1, name="../../escape"))
    monkeypatch.chdir(tiny_dir)
    assert main(["run", str(path), "--quiet"]) == 0
    (made,) = list((tiny_dir / "results").iterdir())
    assert made.name == "_.._escape-fedavg"
    assert not (tiny_dir.parent / "escape-fedavg").exists()


def _one_run_sweep(directory: Path) -> Path:
    write_scenario(directory, tiny(rounds=1), "base.yaml")
    sweep = directory / "s.yaml"
    sweep.write_text(yaml.safe_dump({"name": "s", "base": "base.yaml"}))
    return sweep


def test_a_second_sweep_on_a_locked_folder_is_refused(tiny_dir, capsys):
    sweep = _one_run_sweep(tiny_dir)
    out = tiny_dir / "out"
    out.mkdir()
    (out / "runs" / ".abc.tmp-1-x").mkdir(parents=True)  # the first sweep's work in flight
    with outdir.locked(out):
        assert main(["sweep", str(sweep), "--out", str(out), "--quiet"]) == 2
        assert "another sweep is writing this folder" in _one_error_line(capsys)
        assert (out / "runs" / ".abc.tmp-1-x").is_dir()


def test_a_huge_grid_is_refused_unless_forced(tiny_dir, capsys):
    write_scenario(tiny_dir, tiny(rounds=1), "base.yaml")
    sweep = tiny_dir / "s.yaml"
    axes = [{"path": "seed", "values": list(range(1000))},
            {"path": "training.lr", "values": [0.01 * (i + 1) for i in range(1000)]}]
    sweep.write_text(yaml.safe_dump({"name": "s", "base": "base.yaml", "axes": axes}))
    assert main(["sweep", str(sweep), "--dry-run"]) == 2
    assert "expands to 1,000,000 runs, more than 10,000; pass --force" in _one_error_line(capsys)


CIFAR_LIKE = {"data.synthetic.shape": [3, 32, 32], "data.synthetic.train_samples": 200,
              "training.batch_size": 20}


def test_run_threads_are_set_recorded_and_restored(tiny_dir):
    path = write_scenario(tiny_dir, tiny(rounds=1, **CIFAR_LIKE))
    torch.set_num_threads(2)
    losses = {}
    for threads in (1, 2):
        out = tiny_dir / f"t{threads}"
        assert main(["run", str(path), "--out", str(out), "--quiet",
                     "--threads", str(threads)]) == 0
        assert torch.get_num_threads() == 2
        assert json.loads((out / "manifest.json").read_text())["torch_threads"] == threads
        losses[threads] = pd.read_parquet(out / "rounds.parquet").test_loss.tolist()
    # float sums split over threads round differently: the count is part of the result
    assert losses[1] != losses[2]


def test_sweep_tables_do_not_depend_on_worker_count(tiny_dir):
    write_scenario(tiny_dir, tiny(rounds=1, **CIFAR_LIKE), "base.yaml")
    sweep = tiny_dir / "s.yaml"
    sweep.write_text(yaml.safe_dump({"name": "s", "base": "base.yaml",
                                     "axes": [{"path": "seed", "values": [0, 1]}]}))
    from ecofed_sim.sweep import run_sweep

    for workers in (1, 2):
        run_sweep(sweep, tiny_dir / f"w{workers}", workers=workers, progress=False)
    for run in (tiny_dir / "w1" / "runs").iterdir():
        pd.testing.assert_frame_equal(pd.read_parquet(run / "rounds.parquet"),
                                      pd.read_parquet(tiny_dir / "w2" / "runs" / run.name
                                                      / "rounds.parquet"))


def test_results_folders_are_recognised_only_by_marker_or_contents(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "paper.tex").write_text("")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "paper.tex").write_text("")
    (tmp_path / "b" / MARKER).write_text("")
    assert not outdir.is_ours(tmp_path / "a", outdir.RUN_FILES)
    assert outdir.is_ours(tmp_path / "b", outdir.RUN_FILES)


def test_a_sweep_into_a_users_folder_is_refused(tiny_dir, capsys):
    sweep = _one_run_sweep(tiny_dir)
    mine = tiny_dir / "mine"
    mine.mkdir()
    (mine / "metrics.csv").write_text("my own metrics")
    (mine / "notes.md").write_text("keep")
    assert main(["sweep", str(sweep), "--out", str(mine), "--quiet"]) == 2
    assert "not this tool's results" in _one_error_line(capsys)
    assert (mine / "metrics.csv").read_text() == "my own metrics"
    assert sorted(p.name for p in mine.iterdir()) == ["metrics.csv", "notes.md"]


def test_the_default_folder_is_not_silently_replaced_by_another_configuration(
        tiny_dir, monkeypatch, capsys):
    from conftest import tiny, write_scenario

    from ecofed_sim.cli import main

    path = write_scenario(tiny_dir, tiny(rounds=1))
    monkeypatch.chdir(tiny_dir)
    out = tiny_dir / "results" / "tiny-fedavg"
    assert main(["run", str(path), "--quiet"]) == 0
    first = (out / "rounds.csv").read_text()
    assert main(["run", str(path), "--quiet"]) == 0  # the same configuration: replaced
    assert main(["run", str(path), "--quiet", "--set", "training.lr=0.2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "another configuration (differs in training.lr)" in err
    assert (out / "rounds.csv").read_text() == first
    assert main(["run", str(path), "--quiet", "--set", "training.lr=0.2", "--force"]) == 0
    assert (out / "rounds.csv").read_text() != first


def test_a_sweep_folder_without_its_marker_is_still_recognised_by_its_files(tmp_path):
    """A copy of a sweep's tables (a marker is a hidden file that copies may drop) holds
    only what a sweep writes, every table of it included, so it may be replaced."""
    from ecofed_sim.errors import ScenarioError
    from ecofed_sim.outdir import SWEEP_FILES, refuse_foreign

    out = tmp_path / "sweep"
    out.mkdir()
    for name in ("summary.parquet", "metrics.csv", "metrics.parquet", "sweep.resolved.yaml"):
        (out / name).write_text("x")
    refuse_foreign(out, SWEEP_FILES)  # no error
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ScenarioError, match="not this tool's results"):
        refuse_foreign(out, SWEEP_FILES)

"""Progress when stderr is not a terminal (batch jobs, CI, cluster logs): log lines, not a
bar; nothing with --quiet."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import yaml
from conftest import tiny, write_scenario

from ecofed_sim.progress import LogProgress


def _cli(cwd, *args: str, every_s: str = "0") -> subprocess.CompletedProcess:
    env = {**os.environ, "ECOFED_SIM_LOG_EVERY_S": every_s}
    return subprocess.run([sys.executable, "-m", "ecofed_sim.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_run_logs_rounds_when_not_on_a_terminal(tiny_dir):
    path = write_scenario(tiny_dir, tiny(rounds=2))
    done = _cli(tiny_dir, "run", str(path), "--out", "r")
    assert done.returncode == 0, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if "rounds done" in ln]
    assert lines[0].startswith("ecofed-sim: tiny [fedavg]: 1/2 rounds done, ")
    assert "left" in lines[0] and "acc=" in lines[0]
    assert lines[-1].startswith("ecofed-sim: tiny [fedavg]: 2/2 rounds done")
    assert "\r" not in done.stderr  # no bar in a log
    quiet = _cli(tiny_dir, "run", str(path), "--out", "r", "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_a_sweep_logs_runs_done(tiny_dir):
    write_scenario(tiny_dir, tiny(rounds=1), "base.yaml")
    (tiny_dir / "s.yaml").write_text(yaml.safe_dump({
        "name": "s", "base": "base.yaml", "seeds": [0, 1, 2]}))
    done = _cli(tiny_dir, "sweep", "s.yaml", "--out", "out")
    assert done.returncode == 0, done.stderr
    assert "ecofed-sim: s: 3/3 runs done" in done.stderr


def test_log_lines_are_spaced_by_the_interval(caplog, monkeypatch):
    monkeypatch.setenv("ECOFED_SIM_LOG_EVERY_S", "3600")
    caplog.set_level("INFO", logger="ecofed_sim")
    shown = LogProgress(10, "x", "run")
    for _ in range(10):
        shown.update(1)
    assert [r.getMessage().split(",")[0] for r in caplog.records] == ["x: 10/10 runs done"]


def test_pre_training_logs_its_steps_and_the_run_its_sub_second_clock(tiny_dir):
    # 10 public samples at batch 4: 3 steps an epoch, 2 epochs
    raw = tiny(rounds=1, method={"name": "ecofed", "split": 4},
               pretrain={"source": "public_split", "public_fraction": 0.25, "epochs": 2,
                         "batch_size": 4, "cache_dir": str(tiny_dir / "cache")})
    path = write_scenario(tiny_dir, raw)
    done = _cli(tiny_dir, "run", str(path), "--out", "r")
    assert done.returncode == 0, done.stderr
    steps = [ln for ln in done.stderr.splitlines() if "pre-training small_cnn" in ln]
    assert steps and steps[-1].startswith("ecofed-sim: pre-training small_cnn: 6/6 steps done")
    rounds = [ln for ln in done.stderr.splitlines() if "rounds done" in ln]
    assert re.search(r"sim_s=\d+\.\d\d\b", rounds[-1]), rounds[-1]

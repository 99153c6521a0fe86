"""``run`` writes the long tables round by round (``ecofed_sim.spill``): the files hold
the tables an in-memory run returns, and a run that fails half-way leaves nothing."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import tiny, write_scenario
from helpers import run_dict

from ecofed_sim.cli import main
from ecofed_sim.spill import TableSpill

SPILLED = ("transfers", "timeline", "energy", "participation")


def test_cli_tables_written_round_by_round_equal_the_in_memory_run(tiny_dir):
    raw = tiny(rounds=3, **{"network.transport": "tcp"})
    path = write_scenario(tiny_dir, raw)
    out = tiny_dir / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    memory = run_dict(raw, tiny_dir)
    for name in SPILLED:
        table = getattr(memory, name)
        if name == "energy" and table.empty:
            continue
        assert pq.ParquetFile(out / f"{name}.parquet").metadata.num_row_groups == 3, name
        pd.testing.assert_frame_equal(pd.read_parquet(out / f"{name}.parquet"), table,
                                      obj=name)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "rounds.parquet"), memory.rounds)
    assert not [p for p in tiny_dir.iterdir() if ".tmp-" in p.name]


def test_a_run_that_fails_after_two_rounds_leaves_no_folder_and_no_spill(tiny_dir, capsys):
    """Rounds 0 and 1 are written to the hidden folder; round 2 passes the simulated-time
    limit: neither the results folder nor the hidden one remains."""
    raw = tiny(rounds=3)
    full = run_dict(raw, tiny_dir).rounds
    limit_s = (full.sim_time_s[1] + full.sim_time_s[2]) / 2
    path = write_scenario(tiny_dir, {**raw, "max_sim_time_s": float(limit_s)})
    out = tiny_dir / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 2
    assert "round 2 is still running" in capsys.readouterr().err
    assert not out.exists()
    assert not [p for p in tiny_dir.iterdir() if ".tmp-" in p.name]


def test_later_chunks_take_the_first_chunks_types(tmp_path):
    spill = TableSpill(tmp_path)
    spill.write("t", pd.DataFrame({"round": [0, 0], "t_s": [0.5, 1.5], "who": ["a", "b"]}))
    spill.write("t", pd.DataFrame({"round": [1], "t_s": [2], "who": ["c"]}))  # an int
    assert spill.close() == {"t": tmp_path / "t.parquet"}
    back = pd.read_parquet(tmp_path / "t.parquet")
    assert back.t_s.tolist() == [0.5, 1.5, 2.0] and back.t_s.dtype == "float64"
    assert spill.rows == {"t": 3}
    assert spill.close() == {"t": tmp_path / "t.parquet"}  # closing again is harmless
    with pytest.raises(RuntimeError, match="closed"):
        spill.write("t", pd.DataFrame({"round": [2], "t_s": [3.0], "who": ["d"]}))

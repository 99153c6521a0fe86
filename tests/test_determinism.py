"""Same scenario and seed: identical tables; a different seed: a different run."""

from __future__ import annotations

from conftest import tiny, write_scenario

from ecofed_sim.cli import main


def test_two_cli_runs_write_identical_rounds_csv(tiny_dir):
    path = write_scenario(tiny_dir, tiny(method={"name": "splitfed", "split": 2}))
    for out in ("a", "b"):
        assert main(["run", str(path), "--out", str(tiny_dir / out), "--quiet"]) == 0
    a = (tiny_dir / "a" / "rounds.csv").read_bytes()
    assert a == (tiny_dir / "b" / "rounds.csv").read_bytes()
    assert main(["run", str(path), "--out", str(tiny_dir / "c"), "--quiet",
                 "--set", "seed=4"]) == 0
    assert a != (tiny_dir / "c" / "rounds.csv").read_bytes()


def test_results_directory_holds_every_output(tiny_dir):
    path = write_scenario(tiny_dir, tiny())
    assert main(["run", str(path), "--out", str(tiny_dir / "r"), "--quiet"]) == 0
    names = {p.name for p in (tiny_dir / "r").iterdir()}
    assert names == {"rounds.csv", "rounds.parquet", "transfers.parquet", "timeline.parquet",
                     "energy.parquet", "participation.parquet", "updates.parquet",
                     "scenario.resolved.yaml",
                     "manifest.json", ".ecofed-sim-results"}
    import json

    manifest = json.loads((tiny_dir / "r" / "manifest.json").read_text())
    assert {"ecofed_sim_version", "versions", "seed", "python", "torch", "torch_threads",
            "wall_clock_s"} <= manifest.keys()
    import ecofed_sim

    versions = manifest["versions"]  # from package metadata, not from git
    assert versions["ecofed_sim"] == ecofed_sim.__version__
    assert versions["torch"] and versions["numpy"] and versions["simpy"] and versions["pandas"]
    # the resolved scenario re-runs to the same table
    assert main(["run", str(tiny_dir / "r" / "scenario.resolved.yaml"), "--out",
                 str(tiny_dir / "r2"), "--quiet", "--set", f"profiles_dir={tiny_dir}/profiles"]
                ) == 0
    assert (tiny_dir / "r" / "rounds.csv").read_bytes() == \
        (tiny_dir / "r2" / "rounds.csv").read_bytes()

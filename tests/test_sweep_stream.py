"""Re-simulations streamed beside their learning run (``ecofed_sim.sweep_stream``): the
same tables as re-simulating from the finished trace, a fallback when the helper fails,
and groups kept apart."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml
from conftest import tiny, write_scenario

import ecofed_sim
from ecofed_sim.resimulate import resimulate
from ecofed_sim.scenario import Scenario
from ecofed_sim.sweep import Job, run_sweep
from ecofed_sim.sweep_files import absolutize
from ecofed_sim.sweep_stream import StreamedResims

LINK = "population.devices[0].link.uplink_mbps"
TABLES = ("rounds", "transfers", "timeline", "energy", "participation", "updates")


def _sweep(directory: Path) -> Path:
    write_scenario(directory, tiny(rounds=3), "base.yaml")
    spec = {"name": "s", "base": "base.yaml", "mode": "grid", "axes": [
        {"path": "method", "values": [{"name": "fedavg"}, {"name": "splitfed", "split": 4},
                                      {"name": "ecofed", "split": 4}],
         "labels": ["fedavg", "splitfed", "ecofed"]},
        {"path": LINK, "values": [1, 3, 9]}]}
    path = directory / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _tables(out: Path) -> dict[tuple[str, str], pd.DataFrame]:
    return {(run.name, t): pd.read_parquet(run / f"{t}.parquet")
            for run in sorted((out / "runs").iterdir()) for t in TABLES}


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and len(a) == 9 * len(TABLES)
    for key in a:
        pd.testing.assert_frame_equal(a[key], b[key], obj=str(key))


def test_streamed_re_simulations_equal_those_from_the_finished_trace(tiny_dir):
    path = _sweep(tiny_dir)
    streamed = run_sweep(path, tiny_dir / "streamed", progress=False)
    after = run_sweep(path, tiny_dir / "after", progress=False, stream=False)
    assert (streamed.done, streamed.failed) == (after.done, after.failed) == (9, 0)
    _assert_same(_tables(tiny_dir / "streamed"), _tables(tiny_dir / "after"))


def test_a_helper_that_cannot_start_leaves_the_work_to_the_sweep(tiny_dir, monkeypatch):
    def no_helper(self):
        raise OSError("no helper here")

    monkeypatch.setattr(StreamedResims, "_start", no_helper)
    path, said = _sweep(tiny_dir), []
    tally = run_sweep(path, tiny_dir / "fallback", progress=False, log=said.append)
    assert (tally.done, tally.failed) == (9, 0)
    assert said.count("re-simulating in this process: the streaming helper stopped") == 3
    run_sweep(path, tiny_dir / "after", progress=False, stream=False)
    _assert_same(_tables(tiny_dir / "fallback"), _tables(tiny_dir / "after"))


def test_an_abandoned_group_sends_nothing_into_the_next(tiny_dir):
    """A group whose learning run failed is dropped mid-way (a run that could not start
    has already reported its error); the next group gets exactly its own runs."""
    def raw(**changes) -> dict:
        return absolutize(tiny(rounds=2, **changes), tiny_dir)

    base = Scenario.model_validate(raw())
    recorded = ecofed_sim.run(base, base_dir=tiny_dir, record=True)
    other = raw(**{"population.devices.0.link.uplink_mbps": 3.0})
    bad = raw(seed=1)  # learns otherwise: cannot re-play this trace
    helper = StreamedResims()
    try:
        helper.begin([Job("bad", bad), Job("other", other)],
                     recorded.trace.learning_key)
        helper.round(recorded.trace.rounds[0])
        helper.abandon()
        helper.begin([Job("other", other)], recorded.trace.learning_key)
        for r in recorded.trace.rounds:
            helper.round(r)
        (run_id, results, err), = list(helper.results())
    finally:
        helper.close()
    assert (run_id, err, helper.broken) == ("other", None, False)
    expected = resimulate(Scenario.model_validate(other), recorded.trace, base_dir=tiny_dir)
    for t in TABLES:
        pd.testing.assert_frame_equal(getattr(results, t), getattr(expected, t))


def test_a_trace_that_stops_short_is_an_error_not_a_wait(tiny_dir):
    recorded = ecofed_sim.run(Scenario.model_validate(absolutize(tiny(rounds=2), tiny_dir)),
                              base_dir=tiny_dir, record=True)
    other = absolutize(tiny(rounds=2, **{"population.devices.0.link.uplink_mbps": 3.0}),
                       tiny_dir)
    helper = StreamedResims()
    try:
        helper.begin([Job("other", other)], recorded.trace.learning_key)
        helper.round(recorded.trace.rounds[0])
        (run_id, results, err), = list(helper.results())
    finally:
        helper.close()
    assert run_id == "other" and results is None
    assert str(err) == "the learning trace ended after 1 of 2 rounds"

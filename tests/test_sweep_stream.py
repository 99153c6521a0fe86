"""Re-simulations streamed beside their learning run (``ecofed_sim.sweep_stream``): the
same tables as re-simulating from the finished trace, a fallback when the helper fails,
and groups kept apart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml
from conftest import tiny, write_scenario

import ecofed_sim
from ecofed_sim.forked import ForkedProcess
from ecofed_sim.resimulate import resimulate
from ecofed_sim.scenario import Scenario
from ecofed_sim.sweep import Job, run_sweep
from ecofed_sim.sweep_files import absolutize
from ecofed_sim.sweep_stream import (
    StreamedResims,
    _Group,
    _halves,
    _play_on,
    _Reporter,
)

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
    for run in (tiny_dir / "after" / "runs").iterdir():  # the helper wrote 6 of them
        resolved = (run / "scenario.resolved.yaml").read_text()
        assert "base.yaml" not in resolved and str(tiny_dir) not in resolved
        assert resolved == (tiny_dir / "streamed" / "runs" / run.name
                            / "scenario.resolved.yaml").read_text()


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


def _helper() -> tuple[subprocess.Popen, Connection]:
    """A streaming helper as a sweep starts it, its stderr captured."""
    ours, theirs = socket.socketpair()
    helper = subprocess.Popen([sys.executable, "-m", "ecofed_sim.sweep_stream",
                               str(theirs.fileno())], pass_fds=(theirs.fileno(),),
                              stderr=subprocess.PIPE)
    theirs.close()
    return helper, Connection(ours.detach())


def _recorded_and_jobs(tiny_dir: Path, uplinks_mbps: tuple[float, ...]):
    recorded = ecofed_sim.run(Scenario.model_validate(absolutize(tiny(rounds=2), tiny_dir)),
                              base_dir=tiny_dir, record=True)
    return recorded.trace, [Job(f"r{mbps}", absolutize(
        tiny(rounds=2, **{"population.devices.0.link.uplink_mbps": mbps}), tiny_dir))
        for mbps in uplinks_mbps]


def _send_group(conn: Connection, group: int, trace, jobs: list[Job]) -> None:
    conn.send(("begin", group, jobs, trace.learning_key, {}))
    for r in trace.rounds:
        conn.send(("round", r))


def test_a_helper_whose_sweep_went_away_stops_quietly(tiny_dir):
    """A sweep killed while its helper plays: the helper's reports find the socket closed,
    and it exits at once, with status 0 and nothing on stderr (no traceback)."""
    trace, jobs = _recorded_and_jobs(tiny_dir, (2.0, 3.0, 4.0))
    helper, conn = _helper()
    _send_group(conn, 1, trace, jobs)
    conn.close()  # the data sent stays readable; every result the helper sends fails
    _, stderr = helper.communicate(timeout=120)
    assert (helper.returncode, stderr.decode()) == (0, "")


def test_an_interrupted_sweep_stops_its_helper_at_once(tiny_dir):
    """The helper has its own process group, so Ctrl-C reaches the sweep alone (no
    traceback from the helper); the interrupted sweep stops it without waiting for what
    it still had queued."""
    trace, jobs = _recorded_and_jobs(tiny_dir, (2.0,))
    helper = StreamedResims()
    helper.begin(jobs, trace.learning_key)
    for r in trace.rounds:
        helper.round(r)
    (run_id, _, err), = list(helper.results())  # it is up and serving
    assert (run_id, err) == ("r2.0", None)
    pid = helper._process.pid
    assert os.getpgid(pid) == pid != os.getpgid(0)
    for _ in range(5):  # more than it plays in the moment it has
        helper.begin(jobs, trace.learning_key)
        for r in trace.rounds:
            helper.round(r)
    process = helper._process
    helper.close(stop_now=True)
    assert process.returncode == -signal.SIGTERM  # stopped, not done with its queue


class _Run:
    """A stand-in re-simulation of ``rounds`` rounds. Played in a forked process (not
    the one that made it), it writes that process's id to ``marks``, and exits there if
    it ``dies``."""

    def __init__(self, marks: Path | None = None, dies: bool = False, rounds: int = 1) -> None:
        self.rounds_played, self.scenario = 0, SimpleNamespace(rounds=rounds)
        self.marks, self.dies, self.maker = marks, dies, os.getpid()

    def play(self, recorded) -> None:
        if self.marks is not None and os.getpid() != self.maker:
            self.marks.write_text(str(os.getpid()))  # the child was here
            if self.dies:
                os._exit(3)
        self.rounds_played += 1

    def results(self) -> dict:
        return {"rounds_played": self.rounds_played}


def _group(sims: dict, rounds_received: int, ended: bool = False) -> _Group:
    group = _Group()
    group.sims, group.received, group.ended = sims, [None] * rounds_received, ended
    return group


def _pair() -> tuple[Connection, Connection]:
    ours, theirs = socket.socketpair()
    return Connection(ours.detach()), Connection(theirs.detach())


def _reported(conn: Connection, count: int) -> list[tuple]:
    got = []
    for _ in range(count):
        assert conn.poll(30), f"only {got} reported"
        got.append(conn.recv())
    assert not conn.poll(0.2)
    return got


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forks on Linux only")
def test_a_last_round_is_split_with_a_child_and_survives_its_death(tmp_path):
    """Two runs end this round: the second is played in a forked child, which dies. The
    helper still holds that run as the round found it, plays it itself, and reports it:
    both results arrive, no error."""
    sweep_end, helper_end = _pair()
    group = _group({"kept": _Run(), "forked": _Run(tmp_path / "child", dies=True)}, 1)
    _play_on(group, group.behind(), _Reporter(helper_end), lambda: False)
    assert group.sims == {}
    assert _reported(sweep_end, 2) == [("result", 0, "kept", {"rounds_played": 1}, None),
                                       ("result", 0, "forked", {"rounds_played": 1}, None)]
    assert int((tmp_path / "child").read_text()) != os.getpid()  # it was forked


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forks on Linux only")
@pytest.mark.parametrize("dies", [False, True])
def test_what_is_left_when_learning_ended_is_split_with_a_child(tmp_path, dies):
    """Two rounds received and ``end``: "a" and "b" end with them, "c" needs a third.
    The child plays its half ("c") and reports it as cut short; if it dies, the parent
    plays that half itself and leaves "c" for its own report of runs cut short."""
    sweep_end, helper_end = _pair()
    group = _group({"a": _Run(rounds=2), "c": _Run(tmp_path / "child", dies, rounds=3),
                    "b": _Run(rounds=2)}, 2, ended=True)
    _play_on(group, group.behind(), _Reporter(helper_end), lambda: False)
    assert int((tmp_path / "child").read_text()) != os.getpid()  # it was forked
    got = sorted(_reported(sweep_end, 2 if dies else 3), key=lambda m: m[2])
    assert got[:2] == [("result", 0, "a", {"rounds_played": 2}, None),
                       ("result", 0, "b", {"rounds_played": 2}, None)]
    if dies:
        assert list(group.sims) == ["c"] and group.sims["c"].rounds_played == 2
    else:
        assert group.sims == {} and got[2][:4] == ("result", 0, "c", None)
        assert str(got[2][4]) == "the learning trace ended after 2 of 3 rounds"


def test_while_learning_goes_on_the_runs_furthest_behind_play_one_round():
    """The learning run still holds one core: no fork, one round of each run furthest
    behind (so every run is one round from done when the last arrives), and none after
    a message is waiting."""
    sweep_end, helper_end = _pair()
    runs = {name: _Run(rounds=5) for name in ("ahead", "behind", "too", "last")}
    runs["ahead"].rounds_played = 2
    group = _group(runs, 3)
    _play_on(group, group.behind(), _Reporter(helper_end), lambda: False)
    assert [r.rounds_played for r in runs.values()] == [2, 1, 1, 1]
    checks = []
    _play_on(group, group.behind(), _Reporter(helper_end),
             lambda: checks.append(1) or len(checks) == 2)
    assert [r.rounds_played for r in runs.values()] == [2, 2, 2, 1]
    assert not group.learning_over() and not sweep_end.poll(0.1)


def test_the_work_left_is_halved_by_rounds_to_play():
    """Each run costs its rounds left plus one (its tables); the longest are placed
    first, each on the lighter half; each half keeps the runs' order."""
    runs = {name: _Run(rounds=rounds) for name, rounds in
            [("a", 1), ("b", 4), ("c", 1), ("d", 2), ("e", 1)]}
    group = _group(runs, 4)
    ours, theirs = _halves(group, list(runs))
    assert (ours, theirs) == (["b", "c"], ["a", "d", "e"])
    assert _halves(group, ["a", "c"]) == (["a"], ["c"])


def test_a_single_run_left_is_played_here_even_once_learning_ended():
    """Nothing to halve: no fork, one round at a time."""
    sweep_end, helper_end = _pair()
    only = _Run(rounds=2)
    group = _group({"only": only}, 2, ended=True)
    _play_on(group, group.behind(), _Reporter(helper_end), lambda: False)
    assert only.rounds_played == 1 and list(group.sims) == ["only"]


def test_a_backlog_played_in_two_processes_makes_the_same_tables(tiny_dir):
    """Every message sent before the helper has started: it finds the rounds queued
    behind ``end`` and splits them (the tables say nothing of it either way)."""
    trace, jobs = _recorded_and_jobs(tiny_dir, (2.0, 3.0, 4.0, 5.0))
    helper = StreamedResims()
    try:
        helper.begin(jobs, trace.learning_key)
        for r in trace.rounds:
            helper.round(r)
        got = {run_id: (results, err) for run_id, results, err in helper.results()}
    finally:
        helper.close()
    assert sorted(got) == sorted(job.run_id for job in jobs)
    for job in jobs:
        results, err = got[job.run_id]
        assert err is None
        expected = resimulate(Scenario.model_validate(job.scenario), trace, base_dir=tiny_dir)
        for t in TABLES:
            pd.testing.assert_frame_equal(getattr(results, t), getattr(expected, t))


@pytest.mark.parametrize("forks", [True, False])
def test_the_helper_is_forked_where_it_can_be_else_a_fresh_interpreter(tiny_dir, monkeypatch,
                                                                       forks):
    """On Linux the helper is forked from the sweep; elsewhere (here: told it cannot
    fork) it is ``python -m ecofed_sim.sweep_stream``. Either plays the same."""
    if forks and not sys.platform.startswith("linux"):
        pytest.skip("forks on Linux only")
    monkeypatch.setattr("ecofed_sim.sweep_stream.forks_here", lambda: forks)
    trace, jobs = _recorded_and_jobs(tiny_dir, (2.0, 3.0))
    helper = StreamedResims()
    try:
        helper.begin(jobs, trace.learning_key)
        kind = type(helper._process)
        for r in trace.rounds:
            helper.round(r)
        got = {run_id: (results, err) for run_id, results, err in helper.results()}
    finally:
        helper.close()
    assert kind is (ForkedProcess if forks else subprocess.Popen)
    assert not helper.broken and sorted(got) == ["r2.0", "r3.0"]
    for job in jobs:
        results, err = got[job.run_id]
        assert err is None
        expected = resimulate(Scenario.model_validate(job.scenario), trace, base_dir=tiny_dir)
        pd.testing.assert_frame_equal(results.rounds, expected.rounds)

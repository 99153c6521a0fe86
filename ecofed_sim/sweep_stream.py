"""Re-simulations streamed beside their learning run: a sweep's second core at work.

A learning trace grows round by round, and re-playing round r of another run needs only
the trace up to round r. With ``--workers 1`` a sweep trains each learning group's first
run in this process, on ``training.threads`` torch threads (1 by default), which leaves
the machine's other cores idle. So one helper process re-plays the group's other runs as
each round's trace arrives (``Resimulation``); when the learning run ends, they are one
round from done. That round ends every run at once, on two idle cores: the helper forks,
and each process plays and writes half of them. A sweep of more points than the helper
keeps up with still has rounds to play when the learning run ends, often partway through
a round: the helper reads the sweep's news between any two rounds it plays, and once the
learning run is over it splits whatever is left the same way, by rounds to play. On
Linux the helper itself is forked from the sweep (``ecofed_sim.forked``). The tables are
those of re-simulating from the finished trace: the same ``Replayer`` plays the same
rounds in the same order.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ecofed_sim.forked import Finished, ForkedProcess, fork, forks_here
from ecofed_sim.trace import RoundTrace


class _SweepGone(Finished):
    """The sweep closed its end (it was killed, or it stopped waiting): nothing to report
    (a forked child that meets it exits with status 0)."""


def _next(conn: Connection) -> tuple:
    """The next message; a sweep that went away (killed) reads as ``stop``."""
    try:
        return conn.recv()
    except (EOFError, OSError):
        return ("stop",)


class _Reporter:
    """Sends each run's outcome to the sweep, one whole message at a time: a forked
    child playing half of a last round sends through the same socket (``lock``). A run
    the sweep asked it to write (``write_to``) is written here, and only that is sent."""

    def __init__(self, conn: Connection) -> None:
        self.conn, self.group = conn, 0
        self.write_to: dict[str, tuple[dict, Path]] = {}
        try:
            self.lock = multiprocessing.Lock()
        except (ImportError, OSError):  # no POSIX semaphores here: never fork
            self.lock = None
        self.can_fork = self.lock is not None and forks_here()

    def __call__(self, run_id: str, results: Any, err: BaseException | None) -> None:
        if results is not None and run_id in self.write_to:
            from ecofed_sim.sweep import write_run

            try:
                write_run(results, *self.write_to[run_id])
                results = None
            except Exception as failure:  # noqa: BLE001 (reported as the run's outcome)
                results, err = None, failure
        try:
            with self.lock or contextlib.nullcontext():
                self.conn.send(("result", self.group, run_id, results, err))
        except OSError as gone:  # BrokenPipeError, ConnectionResetError
            raise _SweepGone from gone


class _Group:
    """A learning group's re-simulations in the helper: the runs not yet ended, and every
    round of the trace received so far, which each run plays in order as far as it has
    got. ``ended``: the sweep sent ``end``, so no more rounds will come."""

    def __init__(self) -> None:
        self.sims: dict[str, Any] = {}
        self.received: list[RoundTrace] = []
        self.ended = False

    def to_play(self, run_id: str) -> int:
        """Rounds received that ``run_id`` has yet to play."""
        sim = self.sims[run_id]
        return min(len(self.received), sim.scenario.rounds) - sim.rounds_played

    def behind(self) -> list[str]:
        return [run_id for run_id in self.sims if self.to_play(run_id) > 0]

    def learning_over(self) -> bool:
        """No more rounds will come: the learning run has ended (or has sent every round
        its runs need), and left its core to this process's forked child."""
        return self.ended or all(len(self.received) >= sim.scenario.rounds
                                 for sim in self.sims.values())


def _play_next(group: _Group, run_id: str, report: _Reporter) -> None:
    """Play ``run_id``'s next round; report (and drop) it if that ends or fails it."""
    sim = group.sims[run_id]
    try:
        sim.play(group.received[sim.rounds_played])
        done = sim.rounds_played == sim.scenario.rounds
        if done:
            report(run_id, sim.results(), None)
    except _SweepGone:
        raise
    except Exception as err:  # noqa: BLE001 (reported as the run's outcome)
        report(run_id, None, err)
        done = True
    if done:
        del group.sims[run_id]


def _play_all(group: _Group, run_ids: list[str], report: _Reporter) -> None:
    """Play each of ``run_ids`` through every round received."""
    for run_id in run_ids:
        while run_id in group.sims and group.to_play(run_id) > 0:
            _play_next(group, run_id, report)


def _halves(group: _Group, run_ids: list[str]) -> tuple[list[str], list[str]]:
    """``run_ids`` in two parts of about equal work (rounds left to play, plus one for
    writing each), the longest placed first; order within each part kept."""
    loads, parts = [0, 0], [set(), set()]
    for run_id in sorted(run_ids, key=group.to_play, reverse=True):
        lighter = 0 if loads[0] <= loads[1] else 1
        parts[lighter].add(run_id)
        loads[lighter] += group.to_play(run_id) + 1
    return ([r for r in run_ids if r in parts[0]], [r for r in run_ids if r in parts[1]])


def _split(group: _Group, run_ids: list[str], report: _Reporter) -> None:
    """Play ``run_ids`` through every round received, half of the work in a forked child:
    called once the learning run is over, whose core is idle. The child reports its own
    runs, those the trace ended short of as errors. If it dies, this process still holds
    its runs as they were when it forked, and plays them."""
    ours, theirs = _halves(group, run_ids)

    def in_child() -> None:
        _play_all(group, theirs, report)
        _report_unfinished(group, [r for r in theirs if r in group.sims], report)

    child = fork(in_child)
    _play_all(group, ours, report)
    _, status = os.waitpid(child, 0)
    if status != 0:  # the sweep keeps the first outcome it got for a run
        _play_all(group, theirs, report)
    else:
        for run_id in theirs:
            del group.sims[run_id]


def _play_on(group: _Group, behind: list[str], report: _Reporter,
             news: Callable[[], bool]) -> None:
    """One step of work on the runs ``behind`` (``_Group.behind``): once the learning
    run is over, everything left, split with a forked child; before, the next round of
    the runs furthest behind (round by round, so every run is one round from done when
    the last arrives), run after run until ``news`` says a message waits (the learning
    run's end is seen between any two)."""
    if group.learning_over() and len(behind) >= 2 and report.can_fork:
        _split(group, behind, report)
        return
    furthest = min(group.sims[r].rounds_played for r in behind)
    for run_id in [r for r in behind if group.sims[r].rounds_played == furthest]:
        _play_next(group, run_id, report)
        if news():
            return


def _report_unfinished(group: _Group, run_ids: list[str], report: _Reporter) -> None:
    """The trace ended before these runs' last round."""
    for run_id in run_ids:
        played, rounds = group.sims[run_id].rounds_played, group.sims[run_id].scenario.rounds
        report(run_id, None, RuntimeError(f"the learning trace ended after {played} of "
                                          f"{rounds} rounds"))
        del group.sims[run_id]


def _poll(conn: Connection, wait: bool) -> tuple | None:
    """The sweep's next message; None if there is none yet and not ``wait``. Checked
    between any two rounds played, so ``end`` is seen the moment it is sent."""
    if wait or conn.poll(0):
        return _next(conn)
    return None


def _begin(message: tuple, folders: contextlib.ExitStack, report: _Reporter) -> _Group:
    from ecofed_sim.resimulate import Resimulation
    from ecofed_sim.scenario import Scenario
    from ecofed_sim.sweep import job_folder

    _, report.group, jobs, key, report.write_to = message
    group = _Group()
    for job in jobs:
        try:
            folder = folders.enter_context(job_folder(job))
            group.sims[job.run_id] = Resimulation(Scenario.model_validate(job.scenario), key,
                                                  base_dir=folder)
        except Exception as err:  # noqa: BLE001 (reported as the run's outcome)
            report(job.run_id, None, err)
    return group


def _serve(conn: Connection) -> None:
    """Helper side: begin a group's re-simulations, play each round sent, and send each
    run's results the moment its last round is played (or the error that stopped it)."""
    report, group = _Reporter(conn), _Group()
    folders = contextlib.ExitStack()
    try:
        while True:
            behind = group.behind()
            if group.ended and group.sims and not behind:
                _report_unfinished(group, list(group.sims), report)  # cut short
            message = _poll(conn, wait=not behind)
            if message is None:
                _play_on(group, behind, report, lambda: conn.poll(0))
                continue
            if message[0] == "stop":
                break
            if message[0] in ("begin", "abandon"):
                folders.close()
                group = _begin(message, folders, report) if message[0] == "begin" else _Group()
            elif message[0] == "round":
                group.received.append(message[1])
            elif message[0] == "end":
                group.ended = True
    except _SweepGone:
        pass
    finally:
        folders.close()


class StreamedResims:
    """One helper process re-playing the runs of a learning group while it learns. On
    Linux the helper is forked from this process when the first group begins: it starts
    with the package, torch and pandas already imported, where a fresh interpreter would
    spend some two seconds of CPU importing them on the core the learning run needs.
    Elsewhere it is a fresh interpreter (``python -m ecofed_sim.sweep_stream``). Neither
    is a multiprocessing child, so a user's script needs no ``__main__`` guard. If the
    helper cannot start or dies, ``broken`` is set and the caller re-simulates from the
    finished trace itself."""

    def __init__(self) -> None:
        self._conn: Connection | None = None
        self._process: subprocess.Popen | ForkedProcess | None = None
        self.broken = False
        self._group, self._expected = 0, 0

    def _start(self) -> Connection:
        if self._conn is None:
            ours, theirs = socket.socketpair()
            try:  # its own process group either way: Ctrl-C is the sweep's
                self._process = (_fork_helper(ours, theirs) if forks_here()
                                 else _spawn_helper(theirs))
            except BaseException:
                ours.close()
                raise
            finally:
                theirs.close()
            self._conn = Connection(ours.detach())
        return self._conn

    def _send(self, message: tuple) -> None:
        if self.broken:
            return
        try:
            self._start().send(message)
        except OSError:  # the helper died (or never started): the caller takes over
            self.broken = True

    def begin(self, jobs: list, learning_key: str,
              write_to: dict[str, tuple[dict, Path]] | None = None) -> None:
        """Start re-simulating ``jobs`` (``sweep.Job``) from rounds yet to come. A run
        in ``write_to`` (run id: its scenario as the user wrote it, its results folder)
        is written by the helper (``sweep.write_run``), not sent back: the last round's
        runs all end at once, and two processes write them faster than one."""
        self._group, self._expected = self._group + 1, len(jobs)
        self._send(("begin", self._group, jobs, learning_key, write_to or {}))

    def round(self, recorded: RoundTrace) -> None:
        """The learning run's next round: every run of the group plays it."""
        self._send(("round", recorded))

    def results(self) -> Iterator[tuple[str, Any, BaseException | None]]:
        """(run id, results, error) of each run of the group as the helper finishes it,
        once the learning run has sent its last round (a run the trace did not reach
        the end of is an error); results are None for a run the helper wrote. If the
        helper fails, sets ``broken`` and stops: the caller re-simulates the runs it did
        not get."""
        self._send(("end",))
        got: set[str] = set()
        while len(got) < self._expected and not self.broken:
            try:
                kind, group, run_id, results, err = self._conn.recv()
            except (OSError, EOFError):
                self.broken = True
                return
            # not an abandoned group's; a run's first outcome (a forked child that died
            # after reporting some runs has them all reported as errors too)
            if kind == "result" and group == self._group and run_id not in got:
                got.add(run_id)
                yield run_id, results, err

    def abandon(self) -> None:
        """The learning run failed: drop the group's re-simulations."""
        self._send(("abandon",))

    def stop(self) -> None:
        """Tell the helper to stop once it has played what it was sent, without waiting
        for it: it exits (a second or a tenth of one) while the sweep writes its tables."""
        if self._conn is not None:
            self._send(("stop",))
            self._conn.close()
            self._conn = None

    def close(self, stop_now: bool = False) -> None:
        """Stop the helper once it has played what it was sent, and wait for it to exit;
        ``stop_now`` (the sweep was interrupted): at once, with its forked child,
        whatever it still had queued. A run it was writing is left in a hidden folder,
        which the next sweep removes."""
        if stop_now and self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGTERM)
        self.stop()
        if self._process is not None:
            try:
                self._process.wait(timeout=30)
            except (subprocess.TimeoutExpired, TimeoutError):
                self._process.kill()
                self._process.wait()
            self._process = None


def _helper_main(conn: Connection) -> None:
    import torch

    # Re-playing needs no parallel kernels, and a process whose OpenMP pool has started
    # cannot safely use it again in a forked child (``_play_round``).
    torch.set_num_threads(1)
    _serve(conn)


def _fork_helper(ours: socket.socket, theirs: socket.socket) -> ForkedProcess:
    def in_child() -> None:
        ours.close()  # the sweep's end: its closing must reach the helper as EOF
        _helper_main(Connection(theirs.detach()))

    return ForkedProcess(fork(in_child, new_group=True, print_errors=True))


def _spawn_helper(theirs: socket.socket) -> subprocess.Popen:
    package_root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [package_root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.Popen(
        [sys.executable, "-m", "ecofed_sim.sweep_stream", str(theirs.fileno())],
        pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL,
        start_new_session=True)


if __name__ == "__main__":
    _helper_main(Connection(int(sys.argv[1])))
    # Everything is sent and its folders are gone: skip the interpreter's teardown, which
    # with torch loaded takes a second or two the sweep would wait for in ``close``.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)

"""Re-simulations streamed beside their learning run: a sweep's second core at work.

A learning trace grows round by round, and re-playing round r of another run needs only
the trace up to round r. With ``--workers 1`` a sweep trains each learning group's first
run in this process, on ``training.threads`` torch threads (1 by default), which leaves
the machine's other cores idle. So one helper process re-plays the group's other runs as
each round's trace arrives (``Resimulation``); when the learning run ends, they are one
round from done. The tables are those of re-simulating from the finished trace: the same
``Replayer`` plays the same rounds in the same order.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ecofed_sim.trace import RoundTrace


def _next(conn: Connection) -> tuple:
    """The next message; a sweep that went away (killed) reads as ``stop``."""
    try:
        return conn.recv()
    except (EOFError, OSError):
        return ("stop",)


def _serve(conn: Connection) -> None:
    """Helper side: begin a group's re-simulations, play each round sent, and send each
    run's results the moment its last round is played (or the error that stopped it)."""
    from ecofed_sim.resimulate import Resimulation
    from ecofed_sim.scenario import Scenario
    from ecofed_sim.sweep import job_folder

    def report(group: int, run_id: str, results: Any, err: BaseException | None) -> None:
        conn.send(("result", group, run_id, results, err))

    sims: dict[str, Any] = {}
    folders = contextlib.ExitStack()
    group = 0
    while (message := _next(conn))[0] != "stop":
        if message[0] in ("begin", "abandon"):
            folders.close()
            sims.clear()
        if message[0] == "begin":
            _, group, jobs, key = message
            for job in jobs:
                try:
                    folder = folders.enter_context(job_folder(job))
                    sims[job.run_id] = Resimulation(Scenario.model_validate(job.scenario),
                                                    key, base_dir=folder)
                except Exception as err:  # noqa: BLE001 (reported as the run's outcome)
                    report(group, job.run_id, None, err)
        elif message[0] == "round":
            for run_id, sim in list(sims.items()):
                try:
                    sim.play(message[1])
                    done = sim.rounds_played == sim.scenario.rounds
                    if done:
                        report(group, run_id, sim.results(), None)
                except Exception as err:  # noqa: BLE001
                    report(group, run_id, None, err)
                    done = True
                if done:
                    del sims[run_id]
        elif message[0] == "end":  # the trace ended before these runs' last round
            for run_id, sim in sims.items():
                report(group, run_id, None, RuntimeError(
                    f"the learning trace ended after {sim.rounds_played} of "
                    f"{sim.scenario.rounds} rounds"))
            sims.clear()
    folders.close()


class StreamedResims:
    """One helper process re-playing the runs of a learning group while it learns. The
    helper is a fresh interpreter (``python -m ecofed_sim.sweep_stream``), not a
    multiprocessing child, so a user's script needs no ``__main__`` guard. If the helper
    cannot start or dies, ``broken`` is set and the caller re-simulates from the finished
    trace itself."""

    def __init__(self) -> None:
        self._conn: Connection | None = None
        self._process: subprocess.Popen | None = None
        self.broken = False
        self._group, self._expected = 0, 0

    def _start(self) -> Connection:
        if self._conn is None:
            ours, theirs = socket.socketpair()
            package_root = str(Path(__file__).resolve().parent.parent)
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(
                [package_root, *filter(None, [os.environ.get("PYTHONPATH")])])}
            self._process = subprocess.Popen(
                [sys.executable, "-m", "ecofed_sim.sweep_stream", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL)
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

    def begin(self, jobs: list, learning_key: str) -> None:
        """Start re-simulating ``jobs`` (``sweep.Job``) from rounds yet to come."""
        self._group, self._expected = self._group + 1, len(jobs)
        self._send(("begin", self._group, jobs, learning_key))

    def round(self, recorded: RoundTrace) -> None:
        """The learning run's next round: every run of the group plays it."""
        self._send(("round", recorded))

    def results(self) -> Iterator[tuple[str, Any, BaseException | None]]:
        """(run id, results, error) of each run of the group as the helper finishes it,
        once the learning run has sent its last round (a run the trace did not reach
        the end of is an error). If the helper fails, sets ``broken`` and stops: the
        caller re-simulates the runs it did not get."""
        self._send(("end",))
        got = 0
        while got < self._expected and not self.broken:
            try:
                kind, group, run_id, results, err = self._conn.recv()
            except (OSError, EOFError):
                self.broken = True
                return
            if kind == "result" and group == self._group:  # not an abandoned group's
                got += 1
                yield run_id, results, err

    def abandon(self) -> None:
        """The learning run failed: drop the group's re-simulations."""
        self._send(("abandon",))

    def close(self) -> None:
        if self._conn is not None:
            self._send(("stop",))
            self._conn.close()
            self._conn = None
        if self._process is not None:
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])))
    # Everything is sent and its folders are gone: skip the interpreter's teardown, which
    # with torch loaded takes a second or two the sweep would wait for in ``close``.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)

"""Forked children (``ecofed_sim.forked``): exit statuses, errors on stderr, their own
process group, and a ``Popen``-like handle."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from ecofed_sim.forked import Finished, ForkedProcess, fork, forks_here

pytestmark = pytest.mark.skipif(not forks_here(), reason="forks on Linux only")


def _status(work, **options) -> int:
    return ForkedProcess(fork(work, **options)).wait(timeout=30)


def test_a_child_exits_0_when_its_work_is_done_or_finished_early():
    def finished():
        raise Finished

    assert _status(lambda: None) == 0
    assert _status(finished) == 0


def test_a_failing_child_exits_1_and_prints_its_traceback_only_if_asked(capfd):
    def fails():
        raise ValueError("the work failed")

    assert _status(fails) == 1
    assert capfd.readouterr().err == ""
    assert _status(fails, print_errors=True) == 1
    said = capfd.readouterr().err
    assert "Traceback" in said and "ValueError: the work failed" in said


def test_a_child_in_its_own_group_is_stopped_by_a_signal_to_that_group():
    """Set on both sides, the group exists when ``fork`` returns; SIGTERM's default
    action is restored in the child even where the parent ignores it."""
    ready_r, ready_w = os.pipe()

    def waits() -> None:
        os.write(ready_w, b"!")  # its handlers are set by now
        time.sleep(60)

    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        child = ForkedProcess(fork(waits, new_group=True))
    finally:
        signal.signal(signal.SIGTERM, previous)
    try:
        assert os.read(ready_r, 1) == b"!"
        assert os.getpgid(child.pid) == child.pid != os.getpgid(0)
        os.killpg(child.pid, signal.SIGTERM)
        assert child.wait(timeout=30) == -signal.SIGTERM
    finally:
        child.kill()
        os.close(ready_r)
        os.close(ready_w)


def test_the_handle_times_out_and_kills_as_popen_does():
    child = ForkedProcess(fork(lambda: time.sleep(60)))
    try:
        assert child.poll() is None
        with pytest.raises(TimeoutError):
            child.wait(timeout=0.05)
    finally:
        child.kill()
    assert child.wait(timeout=30) == -signal.SIGKILL
    child.kill()  # reaped already: nothing to do, no error
    assert child.returncode == -signal.SIGKILL


def test_output_buffered_before_the_fork_is_written_once(tmp_path):
    """``fork`` flushes first, and the child exits without flushing its copy."""
    out = tmp_path / "stdout"
    code = ("from ecofed_sim.forked import ForkedProcess, fork\n"
            "print('before', end='')\n"
            "ForkedProcess(fork(lambda: None)).wait(timeout=30)\n")
    with out.open("w") as f:
        subprocess.run([sys.executable, "-c", code], stdout=f, check=True, timeout=60)
    assert out.read_text() == "before"

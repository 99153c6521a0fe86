"""Forked worker processes for the streaming sweep (``ecofed_sim.sweep_stream``).

A forked child starts with everything its parent has imported and built, at the cost of
a few milliseconds; a fresh interpreter spends some two seconds of CPU importing torch,
pandas and the package first, on the core the learning run beside it needs. Forking is
used on Linux only: elsewhere forking a process that has loaded system frameworks is not
safe (Python spawns there for that reason).
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from collections.abc import Callable


class Finished(Exception):
    """Raised by a child's work to end it with status 0 before its work is done (the
    process it reports to went away: nothing to report)."""


def forks_here() -> bool:
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def fork(work: Callable[[], None], *, new_group: bool = False,
         print_errors: bool = False) -> int:
    """Run ``work`` in a forked child, which inherits its parent's state as it stands,
    and exits without any teardown (no ``atexit``, no buffers flushed twice): status 0,
    or 1 if ``work`` raised anything but ``Finished``. Returns the child's pid.
    ``new_group``: the child leads its own process group (set on both sides, so it is
    when this returns), so a Ctrl-C at the terminal reaches the parent alone; its default
    SIGINT and SIGTERM actions are restored, so a signal to its group stops it at once.
    ``print_errors``: a failure's traceback goes to stderr."""
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        status = 1
        try:
            if new_group:
                os.setpgid(0, 0)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
            work()
            status = 0
        except Finished:
            status = 0
        except BaseException:
            if print_errors:
                traceback.print_exc()
        finally:
            if print_errors:
                sys.stderr.flush()
            os._exit(status)
    if new_group:
        try:
            os.setpgid(child, child)
        except OSError:  # it has set its group itself, and may have exited already
            pass
    return child


class ForkedProcess:
    """A forked child, held as a ``subprocess.Popen`` is: ``pid``, ``wait``, ``kill``,
    ``returncode`` (negative: the signal that stopped it)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.returncode = pid, None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Its exit status; ``TimeoutError`` if it is still running after ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay_s = 0.001
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"process {self.pid} still running after {timeout} s")
            time.sleep(delay_s)
            delay_s = min(2 * delay_s, 0.05)
        return self.returncode

    def kill(self) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)

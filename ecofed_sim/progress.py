"""Progress of long work: a bar on a terminal, a log line every few seconds elsewhere.

On a terminal, tqdm draws a bar. When stderr is a file or a pipe (a batch job, CI, a
cluster's log), a bar would write carriage returns into the log; instead a line goes
through ``logging`` every ``ECOFED_SIM_LOG_EVERY_S`` seconds (default 30): what is done, of
how many, and the time left at the rate so far. ``--quiet`` silences both.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from tqdm import tqdm

log = logging.getLogger("ecofed_sim")


def _every_s() -> float:
    try:
        return max(0.0, float(os.environ.get("ECOFED_SIM_LOG_EVERY_S", "30")))
    except ValueError:
        return 30.0


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


class LogProgress:
    """tqdm's small interface (update, set_postfix, close), as periodic log lines."""

    def __init__(self, total: int, desc: str, unit: str, initial: int = 0) -> None:
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self._start_n, self._t0 = initial, time.monotonic()
        self._last = self._t0
        self._postfix = ""

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= _every_s() or self.n >= self.total:
            self._last = now
            log.info(self._line(now))

    def set_postfix(self, **values: object) -> None:
        self._postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def _line(self, now: float) -> str:
        done = self.n - self._start_n
        elapsed = now - self._t0
        eta = (f", {_clock(elapsed / done * (self.total - self.n))} left"
               if 0 < done and self.n < self.total else "")
        extra = f" ({self._postfix})" if self._postfix else ""
        return (f"{self.desc}: {self.n}/{self.total} {self.unit}s done, "
                f"{_clock(elapsed)} elapsed{eta}{extra}")

    def close(self) -> None:
        pass


def bar(total: int, desc: str, unit: str, enabled: bool, initial: int = 0):
    """A progress reporter: tqdm on a terminal, ``LogProgress`` otherwise, or silent."""
    if enabled and not sys.stderr.isatty():
        return LogProgress(total, desc, unit, initial)
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=False,
                disable=not enabled)


def configure(quiet: bool, verbose: bool) -> None:
    """The CLI's logging: warnings only with ``--quiet``, details with ``--verbose``."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("ecofed-sim: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False

"""Cubic's window between two losses (RFC 9438), as a fluid over round trips.

After a loss that found a window of ``W`` segments, Cubic keeps ``beta W`` and grows
back along ``W_cubic(t) = C (t - K)^3 + W_max`` (``C`` = 0.4 segments per second cubed,
``K`` the time to climb back to ``W_max``): concave up to the old window, then convex
beyond it. It never grows slower than the Reno-friendly line, ``beta W`` plus
``3 (1 - beta) / (1 + beta)`` segments per round trip (RFC 9438, section 4.3). On a
short path the line leads; on a long fat one the curve does, by far: after an early
loss at 100 segments on a 100 Mbit/s path of 100 ms, the line needs some 1,400 round
trips to fill the path's 826 segments, the curve 164. With fast convergence (RFC
9438, section 4.7; Linux ``fast_convergence=1``, ns-3's default too), a loss below the
last one's window sets ``W_max`` to ``W (1 + beta) / 2``, yielding to newer flows.

Time is counted in round trips ``tau``: ``W_cubic = C rtt^3 (tau - K')^3 + W_max`` with
``K'`` = ``K / rtt``. A round trip carries the window, but no more than ``ceiling``
segments (the bandwidth-delay product, or the largest window if smaller: beyond the
path the bottleneck is the limit, and the window queues, so its round trips last longer
and the line, counted per round trip, grows slower: ``queued_line``). The curve runs in
seconds, queue or not. Below the ceiling both are polynomials, so the segments carried
by any time are exact: the solver splits time where the leader changes (the roots of
their difference) and where the ceiling is reached, then solves the piece the epoch
ends in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CUBIC_C = 0.4  # segments per second cubed (RFC 9438 section 5.1; Linux bic_scale 41)


def _cbrt(x: float) -> float:
    """The real cube root, of either sign (``math.cbrt`` needs Python 3.11)."""
    return math.copysign(abs(x) ** (1 / 3), x)


def fast_convergence_max(window: float, last_max: float | None, beta: float) -> float:
    """``W_max`` after a loss that found ``window`` segments, the last loss having set
    ``last_max``: below it, ``window (1 + beta) / 2`` (RFC 9438 section 4.7)."""
    if last_max is not None and window < last_max:
        return window * (1 + beta) / 2
    return window


def queued_line(start: float, increase: float, ceiling: float, tau: float) -> float:
    """A window that grows ``increase`` segments per round trip, ``tau`` of the path's
    round trips after it was ``start``. Up to ``ceiling`` (the bandwidth-delay product)
    a round trip is the path's; beyond it the window queues at the bottleneck and a
    round trip lasts ``window / ceiling`` of the path's."""
    line = start + increase * tau
    if line <= ceiling:
        return line
    if start >= ceiling:
        return math.sqrt(start * start + 2 * increase * ceiling * tau)
    return math.sqrt(ceiling * ceiling + 2 * (line - ceiling) * ceiling)


@dataclass(frozen=True)
class CubicGrowth:
    """The window from ``start`` segments (``beta`` times the window at the loss) on,
    ``tau`` round trips after the loss: ``max(W_cubic, Reno-friendly)``, never beyond
    ``cap``; each round trip carries it, up to ``ceiling``."""

    start: float
    w_max: float
    c_per_round: float  # C rtt^3: segments per round trip cubed
    increase: float  # the Reno-friendly line's segments per round trip
    cap: float
    ceiling: float

    @classmethod
    def after_loss(cls, start: float, w_max: float, rtt_s: float, increase: float,
                   cap: float, ceiling: float) -> CubicGrowth:
        return cls(start, max(w_max, start), CUBIC_C * rtt_s**3, increase, cap,
                   min(ceiling, cap))

    @property
    def k(self) -> float:
        """Round trips until the curve is back at ``w_max``."""
        return ((self.w_max - self.start) / self.c_per_round) ** (1 / 3)

    def cubic(self, tau: float) -> float:
        return self.c_per_round * (tau - self.k) ** 3 + self.w_max

    def reno(self, tau: float) -> float:
        """The Reno-friendly line: ``increase`` segments per round trip, and a round trip
        of a window beyond the ceiling lasts ``window / ceiling`` of the path's (it
        queues), so there ``dW/dtau = increase ceiling / W``: W^2 grows linearly."""
        return queued_line(self.start, self.increase, self.ceiling, tau)

    def window(self, tau: float) -> float:
        return min(max(self.cubic(tau), self.reno(tau)), self.cap)

    def _line_leads(self) -> tuple[float, float]:
        """Where the line is above the curve: their difference is
        ``tau (c tau^2 - 3 c K tau + 3 c K^2 - increase)``, so between the quadratic's
        roots, if it has two (an empty interval otherwise)."""
        c, k = self.c_per_round, self.k
        disc = 4 * c * self.increase - 3 * c * c * k * k
        if disc <= 0:
            return 0.0, 0.0
        root = math.sqrt(disc)
        return max((3 * c * k - root) / (2 * c), 0.0), max((3 * c * k + root) / (2 * c), 0.0)

    def _full_at(self) -> float:
        """Round trips until a round trip carries the ceiling."""
        if self.start >= self.ceiling:
            return 0.0
        by_cubic = self.k + _cbrt((self.ceiling - self.w_max) / self.c_per_round)
        by_line = (self.ceiling - self.start) / self.increase
        return min(by_cubic, by_line)

    def pieces(self) -> list[tuple[float, float, str]]:
        """(from, to, which) in round trips: ``cubic``, ``reno`` or ``full``."""
        full = self._full_at()
        lead_from, lead_to = self._line_leads()
        cuts = sorted({0.0, min(lead_from, full), min(lead_to, full), full})
        out = []
        for a, b in zip(cuts, cuts[1:], strict=False):
            if b > a:
                mid = (a + b) / 2
                out.append((a, b, "reno" if lead_from < mid < lead_to else "cubic"))
        out.append((full, math.inf, "full"))
        return out

    def carried(self, which: str, a: float, b: float) -> float:
        """Segments carried from ``a`` to ``b`` round trips on one piece."""
        if which == "full":
            return self.ceiling * (b - a)
        if which == "reno":
            return self.start * (b - a) + self.increase * (b * b - a * a) / 2
        k = self.k
        return (self.c_per_round * ((b - k) ** 4 - (a - k) ** 4) / 4 + self.w_max * (b - a))

    def round_trips(self, segments: float) -> float:
        """Round trips until ``segments`` have been carried."""
        done = 0.0
        for a, b, which in self.pieces():
            here = self.carried(which, a, b) if math.isfinite(b) else math.inf
            if done + here >= segments:
                return self._solve(which, a, b, segments - done)
            done += here
        raise AssertionError("the last piece is unbounded")

    def _solve(self, which: str, a: float, b: float, segments: float) -> float:
        """Where, from ``a`` on, one piece has carried ``segments``."""
        if which == "full":
            return a + segments / self.ceiling
        if which == "reno":  # start t + increase t^2 / 2 from a: a quadratic in t
            w = self.start + self.increase * a
            return a + (math.sqrt(w * w + 2 * self.increase * segments) - w) / self.increase
        low, high = a, b  # the curve's quartic: carried grows with time, so bisect
        for _ in range(100):
            mid = (low + high) / 2
            if self.carried(which, a, mid) < segments:
                low = mid
            else:
                high = mid
            if high - low <= 1e-12 * max(high, 1.0):
                break
        return (low + high) / 2

"""Cubic's window between losses (``ecofed_sim.network.cubic``): the exact solver held
against a brute-force sum over small steps, and the rules of RFC 9438 it follows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ecofed_sim.network.cubic import CUBIC_C, CubicGrowth, fast_convergence_max, queued_line
from ecofed_sim.network.loss import epoch_round_trips, reno_friendly_increase

A = reno_friendly_increase(0.7)


def _brute_round_trips(growth: CubicGrowth, segments: float, step: float) -> float:
    """Oracle: add up ``min(window, ceiling)`` over steps of ``step`` round trips (at
    each step's middle) until ``segments`` are carried; interpolate in the last step."""
    tau, done = 0.0, 0.0
    while True:
        here = min(growth.window(tau + step / 2), growth.ceiling) * step
        if done + here >= segments:
            return tau + step * (segments - done) / here
        tau, done = tau + step, done + here


@pytest.mark.parametrize("case", range(12))
def test_the_exact_solver_matches_a_brute_force_sum(case):
    rng = np.random.default_rng(case)
    at_loss = float(rng.uniform(10, 600))
    rtt_s = float(rng.choice([0.01, 0.04, 0.1, 0.3]))
    bdp = float(rng.uniform(20, 900))
    cap = bdp + float(rng.uniform(0, 900)) if case % 3 else bdp / 2  # receive window
    w_max = at_loss * (0.85 if case % 2 else 1.0)
    growth = CubicGrowth.after_loss(min(0.7 * at_loss, cap), w_max, rtt_s, A, cap, bdp)
    for segments in (3.0, 80.0, 1_000.0, 20_000.0):
        got = growth.round_trips(segments)
        step = max(got, 1.0) / 4_000
        assert got == pytest.approx(_brute_round_trips(growth, segments, step), rel=2e-3)


def test_the_curve_climbs_back_to_w_max_in_k():
    """K = cbrt(W_max (1 - beta) / C): 100 segments at 0.7 take cbrt(75) = 4.22 s to
    climb back, 42.2 round trips of 0.1 s; beyond it the curve is convex."""
    growth = CubicGrowth.after_loss(70.0, 100.0, 0.1, A, 1e9, 1e9)
    assert growth.k * 0.1 == pytest.approx((100 * 0.3 / CUBIC_C) ** (1 / 3), rel=1e-12)
    assert growth.window(growth.k) == pytest.approx(100.0, rel=1e-12)
    assert growth.window(2 * growth.k) - 100 == pytest.approx(100 - 70, rel=1e-9)


def test_on_a_short_path_the_line_leads_and_matches_renos_epochs():
    """At 1 ms round trips the curve's climb takes thousands of them: the Reno-friendly
    line leads all but the first instants, and an epoch takes what the line alone gives
    (``epoch_round_trips``) to within those instants."""
    growth = CubicGrowth.after_loss(14.0, 20.0, 0.001, A, 1e9, 1e9)
    lead_from, lead_to = growth._line_leads()
    assert lead_from < 0.5 and lead_to > 1_000
    rounds, end = epoch_round_trips(14.0, 100.0, 1e9, 1e9, A)
    assert growth.round_trips(100.0) == pytest.approx(rounds, rel=1e-3)
    assert growth.window(growth.round_trips(100.0)) == pytest.approx(end, rel=1e-3)


def test_on_a_long_fat_path_the_curve_fills_it_far_sooner_than_the_line():
    """100 Mbit/s, 100 ms (825.6 segments), a loss at 100: the line needs
    (825.6 - 70) / 0.529 = 1,427 round trips to fill the path, the curve 164."""
    bdp = 1e8 * 0.1 / 12_112
    growth = CubicGrowth.after_loss(70.0, 100.0, 0.1, A, 1e9, bdp)
    full = growth.k + ((bdp - 100) / (CUBIC_C * 0.1**3)) ** (1 / 3)
    assert growth.pieces()[-1] == (pytest.approx(full, rel=1e-12), math.inf, "full")
    assert full == pytest.approx(164.13, abs=0.01)
    assert (bdp - 70) / A == pytest.approx(1427.3, abs=0.1)


def test_fast_convergence_yields_below_the_last_maximum():
    assert fast_convergence_max(100.0, None, 0.7) == 100.0
    assert fast_convergence_max(100.0, 90.0, 0.7) == 100.0
    assert fast_convergence_max(80.0, 90.0, 0.7) == pytest.approx(68.0, rel=1e-12)


def test_the_window_never_passes_the_cap_and_never_falls():
    growth = CubicGrowth.after_loss(70.0, 100.0, 0.1, A, 120.0, 90.0)
    windows = [growth.window(t) for t in np.linspace(0, 400, 2001)]
    assert max(windows) == 120.0
    assert all(b >= a for a, b in zip(windows, windows[1:], strict=False))


def test_the_line_slows_where_the_window_queues():
    """Below the path the line grows ``increase`` a round trip; beyond it a round trip
    lasts W / ceiling of the path's, so W^2 grows by 2 increase ceiling a round trip:
    from 30 on a path of 40 at 1 a round trip, 40 after 10, then sqrt(40^2 + 2 x 40 x 5)
    = sqrt(2,000) after 5 more (not 45)."""
    assert queued_line(30.0, 1.0, 40.0, 4.0) == 34.0
    assert queued_line(30.0, 1.0, 40.0, 10.0) == pytest.approx(40.0, rel=1e-12)
    assert queued_line(30.0, 1.0, 40.0, 15.0) == pytest.approx(math.sqrt(2000), rel=1e-12)
    assert queued_line(50.0, 1.0, 40.0, 5.0) == pytest.approx(math.sqrt(2900), rel=1e-12)
    growth = CubicGrowth.after_loss(30.0, 31.0, 0.001, 1.0, 1e9, 40.0)  # the line leads
    assert growth.window(15.0) == pytest.approx(math.sqrt(2000), rel=1e-12)

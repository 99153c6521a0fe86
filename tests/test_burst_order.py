"""A drop-tail bottleneck serves the bursts queued in it first in, first out.

Hand arithmetic as in ``test_tcp.py``: a segment is 1448 payload + 66 header bytes on the
wire. A 10,000-byte message is 6 full segments and a short 1,312-byte one: 10,462 bytes,
83,696 bits, 4.1848 ms at 20 Mbit/s.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import simpy
from helpers import two_messages_at_once

from ecofed_sim.network import Capacity, Network, TcpParams
from ecofed_sim.network.burst import serve_in_arrival_order

BITS = 83_696  # 10,000 bytes on the wire


def _uploads(tcp: TcpParams, device_mbps: float, server_mbps: float) -> dict[str, float]:
    """Two devices send 10,000 bytes at once on open connections (window 10 segments,
    no idle), one way 5 ms; when each message's last bit arrives."""
    net = Network(simpy.Environment(), Capacity("in", server_mbps * 1e6),
                  Capacity("out", 1e9), tcp=tcp)
    return two_messages_at_once(net, "up", 10_000, tcp.initial_window_bits, device_mbps)


def test_bursts_at_a_shared_bottleneck_are_served_in_the_order_they_came():
    """Each message fits its window, so it leaves as one burst; both queue at the
    server's 20 Mbit/s ingress. The first is through after its own bits (5 + 4.1848 ms),
    the second after both (5 + 8.3696 ms). Shared max-min, as the flow model and the
    ``burst_loss: false`` TCP model have it, both would end at 13.3696 ms."""
    assert _uploads(TcpParams(), 100, 20) == {
        "a": pytest.approx(0.005 + BITS / 20e6, abs=1e-12),
        "b": pytest.approx(0.005 + 2 * BITS / 20e6, abs=1e-12)}
    both = pytest.approx(0.005 + 2 * BITS / 20e6, abs=1e-12)
    assert _uploads(TcpParams(burst_loss=False), 100, 20) == {"a": both, "b": both}


def test_bursts_that_queue_at_their_own_links_still_share():
    """Devices at 10 Mbit/s, server at 15: each burst queues at its own link (the
    slowest on its path), so there is no shared queue to order; max-min gives each 7.5
    Mbit/s, both through at 5 + 83,696 / 7.5e6 ms."""
    both = pytest.approx(0.005 + BITS / 7.5e6, abs=1e-12)
    assert _uploads(TcpParams(), 10, 15) == {"a": both, "b": both}


def _flow(neck, other, rate_bps, seq):
    return SimpleNamespace(constraints=(other, neck) if other else (neck,), rate_bps=rate_bps,
                           burst_neck=neck if seq is not None else None, burst_seq=seq or 0)


def test_the_earliest_burst_takes_what_its_other_links_leave_spare():
    """Three bursts share a 30 Mbit/s neck at 10 each. The earliest (seq 0, listed last)
    crosses a 14 Mbit/s link it shares with a 2 Mbit/s flow: it can take 12. The next
    gets the 18 left of the pool, the last none. A flow that is not a burst keeps its
    rate; so does a burst alone at its neck."""
    neck, lone = Capacity("neck", 30e6), Capacity("lone", 5e6)
    own = Capacity("own", 14e6)
    first, second, third = (_flow(neck, own, 10e6, 0), _flow(neck, None, 10e6, 1),
                            _flow(neck, None, 10e6, 2))
    other = SimpleNamespace(constraints=(own,), rate_bps=2e6, burst_neck=None, burst_seq=0)
    alone = _flow(lone, None, 5e6, 3)
    serve_in_arrival_order([third, second, other, alone, first])
    assert [f.rate_bps for f in (first, second, third, other, alone)] == [
        pytest.approx(12e6), pytest.approx(18e6), 0.0, 2e6, 5e6]

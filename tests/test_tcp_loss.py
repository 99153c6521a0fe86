"""Random loss under the TCP transport: the first loss after 1/p segments, then the
sawtooth's epochs (``ecofed_sim.network.loss``), each derived by hand here.

A segment is 1448 payload + 66 header bytes = 12,112 bits on the wire. At 10 Mbit/s and
RTT 0.1 s the bandwidth-delay product is 1e6 bits = 82.5627 segments, the buffer one more
(above 64 packets), so what the path holds is 2e6 bits = 165.1255 segments. The RTO is
0.1 + 0.2 = 0.3 s (75 ticks of 4 ms).
"""

from __future__ import annotations

import copy
import math
import pickle

import pytest
import simpy

from ecofed_sim.network import Capacity, DeviceLink, Flow, Network, TcpParams
from ecofed_sim.network.loss import (
    LossEpochs,
    epoch_round_trips,
    loss_epochs,
    reno_friendly_increase,
)

SEG = 12_112
BDP = 1e6 / SEG  # segments, 10 Mbit/s x 0.1 s
TIMEOUT_S = 0.3 * (1 + 32 * 0.01**2)  # RTO x Padhye et al.'s (1 + 32 p^2), p = 1%


def test_the_increase_gives_any_beta_renos_rate():
    assert reno_friendly_increase(0.5) == 1.0  # Reno: one segment per round trip
    assert reno_friendly_increase(0.7) == pytest.approx(0.9 / 1.7, rel=1e-15)


def test_an_epoch_below_the_path_grows_as_a_fluid():
    # 10 t + t^2 / 2 = 100 segments: t = sqrt(300) - 10 round trips, ending at 10 + t
    rounds, end = epoch_round_trips(10, 100, bdp_segments=1000, cap_segments=1e9,
                                    increase=1.0)
    assert rounds == pytest.approx(math.sqrt(300) - 10, rel=1e-12)
    assert end == pytest.approx(math.sqrt(300), rel=1e-12)


def test_an_epoch_at_the_path_goes_at_its_rate():
    """A window of 50 on a path of 40: 100 segments take 2.5 of the path's round trips.
    The window queues beyond the path, so a round trip lasts W / 40 of the path's and
    the window grows dW / dt = 40 / W: W^2 = 50^2 + 2 x 40 x 2.5, sqrt(2,700) at the
    end. From 30: 10 round trips to fill the path (30 x 10 + 10^2 / 2 = 350 segments),
    then the other 150 of 500 at 40 a round trip: 13.75, the window sqrt(40^2 + 2 x 40
    x 3.75) = sqrt(1,900)."""
    assert epoch_round_trips(50, 100, 40, 1e9, 1.0) == pytest.approx(
        (2.5, math.sqrt(2700)), rel=1e-12)
    assert epoch_round_trips(30, 500, 40, 1e9, 1.0) == pytest.approx(
        (13.75, math.sqrt(1900)), rel=1e-12)
    # the window stops at what the path holds
    assert epoch_round_trips(50, 100, 40, 51, 1.0)[1] == 51


@pytest.mark.parametrize("sack, first_rate_bps", [(False, 9.594e6), (True, 9.779e6)])
def test_the_first_epochs_by_hand(sack, first_rate_bps):
    """1% loss at 10 Mbit/s, RTT 0.1 s; the first loss finds the full 165.1255 segments.
    The loss 100 segments later falls among the 165 sent before the first was detected:
    the same episode, no cut. The one at 200 cuts: epoch 1 sends 200 segments, 2 of them
    the lost ones again, so the transfer moves 198. It starts at 0.7 of 165.1255,
    115.5879, above the path's 82.5627: 200 segments take 200 / 82.5627 = 2.4224 round
    trips, and the window, queued beyond the path, ends at sqrt(115.5879^2 + 2 x 0.5294
    x 82.5627 x 2.4224) = 116.50; a timeout's chance at the loss is 3 / that window
    without selective acknowledgements, p = 0.01 with them. That window holds more than
    100 too, so epoch 2 sends 200 again, from 0.7 x 116.50 = 81.55, below the path:
    1.9126 round trips to fill it (81.55 t + 0.5294 t^2 / 2 = 156.94 segments), then
    the other 43.06 at the path's 82.5627, ending at sqrt(82.5627^2 + 2 x 82.5627 x
    0.5294 x 0.5215) = 82.84. (The Reno-friendly line alone: ``cubic_growth`` off.)"""
    tcp = TcpParams(sack=sack, cubic_growth=False)
    epochs = loss_epochs(tcp, 0.01, 0.1, 10e6, 2e6, 2e6)
    a = 0.9 / 1.7

    def chance(window: float) -> float:
        return 0.01 if sack else 3 / window

    start1 = 0.7 * 2e6 / SEG
    rounds1 = 200 / BDP
    end1 = math.sqrt(start1**2 + 2 * a * BDP * rounds1)
    rate1 = 198 * SEG / (rounds1 * 0.1 + chance(end1) * TIMEOUT_S)
    start2 = 0.7 * end1
    to_path = (BDP - start2) / a
    filling = start2 * to_path + a * to_path**2 / 2
    rounds2 = to_path + (200 - filling) / BDP
    end2 = math.sqrt(BDP**2 + 2 * BDP * a * (rounds2 - to_path))
    rate2 = 198 * SEG / (rounds2 * 0.1 + chance(end2) * TIMEOUT_S)
    assert (end1, start2, to_path, end2) == pytest.approx((116.500, 81.550, 1.9126, 82.838),
                                                          abs=1e-3)
    assert epochs.ends_segments[:2] == (198.0, 396.0)
    assert epochs.rates_bps[:2] == pytest.approx((rate1, rate2), rel=1e-12)
    assert rate1 == pytest.approx(first_rate_bps, rel=1e-3)  # the link's rate but timeouts
    assert epochs.ends_segments[2] == 495.0  # from 82.84: no loss joins the next episode
    assert epochs.at(250) == (epochs.rates_bps[1], 396.0)
    assert epochs.at(1e9) == (epochs.rates_bps[-1], math.inf)  # the last holds for ever


def test_cubic_epochs_by_hand():
    """The same path and first loss under Cubic's curve (RFC 9438): C rtt^3 = 0.4 x
    0.001 segments per round trip cubed, K = cbrt((165.1255 - 115.5879) / 4e-4) = 49.86
    round trips. Epoch 1 (200 segments sent, 2 of them resent, as above) goes at the
    path's rate, its start being above the path's 82.56, so it takes 200 / 82.5627 round
    trips; the curve, 165.1255 - 4e-4 (K - 2.4224)^3 = 122.46, is above the line (116.50)
    at its end. That window is below the last loss's 165.13, so fast convergence sets
    W_max to 0.85 of it (104.10); epoch 2 (200 sent again: 122.46 > 100) starts at 0.7
    of it (85.73), above the path again, and ends on its own curve at 89.21. Epoch 3
    sends 100 segments (89.21 < 100), one of them resent, from 62.44, below the path."""
    epochs = loss_epochs(TcpParams(), 0.01, 0.1, 10e6, 2e6, 2e6)
    c, a, full = 4e-4, 0.9 / 1.7, 2e6 / SEG

    def curve(w_max: float, start: float, tau: float) -> float:
        k = ((w_max - start) / c) ** (1 / 3)
        return c * (tau - k) ** 3 + w_max

    rounds = 200 / BDP
    end1 = curve(full, 0.7 * full, rounds)
    assert end1 == pytest.approx(122.46, abs=0.01)
    assert end1 > 0.7 * full + a * rounds
    end2 = curve(0.85 * end1, 0.7 * end1, rounds)
    rate2 = 198 * SEG / (rounds * 0.1 + 0.01 * TIMEOUT_S)
    assert epochs.ends_segments[:3] == (198.0, 396.0, 495.0)
    assert epochs.rates_bps[1] == pytest.approx(rate2, rel=1e-12)
    assert end2 == pytest.approx(89.21, abs=0.01)
    # the third epoch starts at 0.7 x 89.21 = 62.44, below the path: it grows on the curve
    # of W_max 0.85 x 89.21 (fast convergence again) for its 100 segments
    third = ((0.85 * end2 - 0.7 * end2) / c) ** (1 / 3)
    assert 0.7 * end2 < BDP and third > 10  # the curve climbs for a while: concave here
    carried = lambda tau: (c * ((tau - third) ** 4 - third**4) / 4  # noqa: E731
                           + 0.85 * end2 * tau)
    low, high = 0.0, 10.0
    for _ in range(200):
        low, high = ((low + high) / 2, high) if carried((low + high) / 2) < 100 else (
            low, (low + high) / 2)
    rate3 = 99 * SEG / (low * 0.1 + 0.01 * TIMEOUT_S)
    assert epochs.rates_bps[2] == pytest.approx(rate3, rel=1e-9)


@pytest.mark.parametrize("rtt_s, p", [(0.1, 0.01), (0.04, 0.001), (0.01, 0.02)])
def test_reno_settles_at_padhye_et_al(rtt_s, p):
    """Oracle: with beta 0.5 the fixed point is Mathis et al.'s window, sqrt(2 / 3p)
    round trips an epoch and a window of sqrt(8 / 3p) at each loss: without selective
    acknowledgements, Padhye et al.'s rate, timeouts and all. Their rate counts every
    segment sent; the transfer moves by those not lost, 1 - p of them. The path
    (1 Gbit/s) never limits it."""
    tcp = TcpParams(beta=0.5, cubic_growth=False, sack=False)
    epochs = loss_epochs(tcp, p, rtt_s, 1e9, 1e12, 1e9)
    assert epochs.rates_bps[-1] == pytest.approx(
        tcp.loss_rate_cap_bps(rtt_s, p) * (1 - p), rel=1e-3)
    assert 2 < len(epochs.rates_bps) < 60  # a descent, then the steady state


@pytest.mark.parametrize("rtt_s, p", [(0.1, 0.01), (0.04, 0.001), (0.01, 0.02)])
def test_reno_with_sack_times_out_only_on_a_lost_retransmission(rtt_s, p):
    """The same fixed point, 1/p segments sent (one resent) in sqrt(2 / 3p) round trips,
    with a timeout (RTO x (1 + 32 p^2), as Padhye et al.'s backoff) after a loss with
    chance p."""
    tcp = TcpParams(beta=0.5, cubic_growth=False)
    epochs = loss_epochs(tcp, p, rtt_s, 1e9, 1e12, 1e9)
    epoch_s = rtt_s * math.sqrt(2 / (3 * p)) + p * tcp.rto_s(rtt_s) * (1 + 32 * p**2)
    assert epochs.rates_bps[-1] == pytest.approx(SEG * (1 / p - 1) / epoch_s, rel=1e-3)
    without = TcpParams(beta=0.5, cubic_growth=False, sack=False)
    assert epochs.rates_bps[-1] > without.loss_rate_cap_bps(rtt_s, p)


def test_a_window_of_many_losses_is_cut_once_a_round_trip():
    """A window of 1,000 segments at 1% loss loses about ten in a round trip; TCP halves
    it once for them: the losses among the 1,000 segments sent after a lost one, before
    it was detected, join its episode. So epoch 1 sends 1,000 segments (10 resent, 990
    moved) from 500: 500 t + t^2 / 2 = 1,000, t = sqrt(252,000) - 500 = 1.996 round
    trips, ending at 501.996; epoch 2 sends the 600 (6 resent) it takes to pass that
    window, from 250.998; epoch 3, 300 (3 resent); later ones 100 each, once the window
    holds fewer."""
    tcp = TcpParams(beta=0.5, cubic_growth=False, sack=False)
    epochs = loss_epochs(tcp, 0.01, 0.1, 1e9, 1e12, 1000 * SEG)
    rounds1 = math.sqrt(252_000) - 500
    end1 = 500 + rounds1
    rounds2 = math.sqrt((end1 / 2) ** 2 + 2 * 600) - end1 / 2
    assert epochs.ends_segments[:3] == (990.0, 990.0 + 594, 990.0 + 594 + 297)
    assert epochs.rates_bps[:2] == pytest.approx(
        (990 * SEG / (rounds1 * 0.1 + 3 / end1 * 0.3 * 1.0032),
         594 * SEG / (rounds2 * 0.1 + 3 / (end1 / 2 + rounds2) * 0.3 * 1.0032)), rel=1e-12)
    gaps = [b - a for a, b in zip(epochs.ends_segments, epochs.ends_segments[1:],
                                  strict=False)]
    assert gaps[-1] == pytest.approx(99.0)  # 100 sent, one resent


def _lossy_warm_link() -> DeviceLink:
    """10 Mbit/s, one way 50 ms, 1% loss; the connection open with a 3 MiB window (the
    path caps it at 2e6 bits) and nothing sent yet."""
    link = DeviceLink.from_mbps("d", 10, 10, 50)
    link.loss_rate = 0.01
    link.connection.warm(TcpParams(), "up", 3 * 2**20 * 8)
    return link


def _through_epochs(epochs: LossEpochs, from_segments: float, bits: float) -> float:
    """Seconds to send ``bits`` from ``from_segments`` after the first loss, epoch by
    epoch at each one's rate."""
    seconds, at = 0.0, from_segments
    while bits > 1e-6:
        rate, end = epochs.at(at)
        chunk = min(bits, (end - at) * SEG)
        seconds, bits, at = seconds + chunk / rate, bits - chunk, at + chunk / SEG
    return seconds


def test_a_flow_crosses_the_epochs_at_their_rates():
    """Oracle: 1 MB (690 segments and one of 946 bytes: 8,364,848 bits) on the warm link:
    one way, the first 100 segments at the link's rate, then the rest through the epochs
    the first loss set. A second message goes on where the first left the sawtooth
    (691 segments sent: 591 after the first loss)."""
    env = simpy.Environment()
    net = Network(env, Capacity("in", 1e12), Capacity("out", 1e12), tcp=TcpParams())
    link = _lossy_warm_link()
    env.run(until=env.process(net.transfer(link, "up", 1_000_000)))
    epochs = link.connection.loss_epochs["up"]
    assert epochs == loss_epochs(TcpParams(), 0.01, 0.1, 10e6, 2e6, 2e6)
    first = 0.05 + 100 * SEG / 10e6 + _through_epochs(epochs, 0, 8_364_848 - 100 * SEG)
    assert env.now == pytest.approx(first, rel=1e-9)
    assert link.connection.segments_sent["up"] == 691
    t0 = env.now
    env.run(until=env.process(net.transfer(link, "up", 100_000)))  # 836,960 wire bits
    assert env.now - t0 == pytest.approx(0.05 + _through_epochs(epochs, 591, 836_960),
                                         rel=1e-9)


def test_each_direction_keeps_its_own_epochs():
    """A connection past its first loss both ways, each direction settled at its own
    steady rate: 100 KB up and 100 KB down at once each go at their direction's rate."""
    env = simpy.Environment()
    net = Network(env, Capacity("in", 1e12), Capacity("out", 1e12), tcp=TcpParams())
    link = DeviceLink.from_mbps("a", 100, 100, 50)
    link.loss_rate = 0.01
    for direction, rate in (("up", 2e6), ("down", 4e6)):
        link.connection.warm(net.tcp, direction, 3 * 2**20 * 8)
        link.connection.segments_sent[direction] = 1000
        link.connection.loss_epochs[direction] = LossEpochs((), (rate,))
    ends = {}

    def send(direction):
        yield from net.transfer(link, direction, 100_000)
        ends[direction] = env.now

    env.process(send("up"))
    env.process(send("down"))
    env.run()
    assert ends["up"] == pytest.approx(0.05 + 836_960 / 2e6, rel=1e-12)
    assert ends["down"] == pytest.approx(0.05 + 836_960 / 4e6, rel=1e-12)


def test_a_direction_keeps_its_latest_cap_and_memo_keys_never_collide():
    """A cap is reused while its rate holds; a new rate gets a new one, and the old is
    let go (drawn losses give every epoch its own rate). Memo keys name capacities by
    serial: a new capacity never takes an old one's, as it may take its id()."""
    link = DeviceLink.from_mbps("phone", 10, 10, 50)
    cap = link.loss_cap("up", 1e6)
    assert cap.name == "phone/up/loss" and cap.rate_bps == 1e6
    assert link.loss_cap("up", 1e6) is cap
    other = link.loss_cap("up", 2e6)
    assert other is not cap and link.loss_cap("up", 2e6) is other
    assert link.loss_cap("down", 1e6).name == "phone/down/loss"
    assert link._loss_caps == {"up": other, "down": link.loss_cap("down", 1e6)}
    serials = {cap.serial, other.serial}
    for rate in range(1000):  # freed and made again: ids recur, serials do not
        serials.add(link.loss_cap("up", 3e6 + rate).serial)
    assert len(serials) == 1002
    copied = pickle.loads(pickle.dumps(other))  # as if from another process
    assert copied.rate_bps == other.rate_bps and copied.serial not in serials
    assert copy.deepcopy(other).serial not in serials | {copied.serial}


def test_a_flow_changes_its_loss_cap_exactly_at_its_threshold():
    side, cap, other = Capacity("up", 1e8), Capacity("up/loss", 1e6), Capacity("up/loss", 2e6)
    flow = Flow((side,), 100.0, simpy.Environment().event(), loss_cap_at_bits=90.0)
    assert not flow.loss_cap_due(9.0)
    assert flow.loss_cap_due(10.0)  # 100 <= 90 + 10: reached at the boundary
    flow.set_loss_cap(cap)
    assert flow.constraints == (side, cap)
    flow.set_loss_cap(other)  # the next epoch replaces the cap; the path stays
    assert flow.constraints == (side, other) and flow.pattern == (side.serial, other.serial)
    cohort = Flow((side, cap), 1.0, None, weights=(1, 5))
    cohort.set_loss_cap(other)  # each member its own cap
    assert cohort.weights == (1, 5, 1)


def test_the_first_loss_finds_the_window_of_its_slow_start_round():
    """1% loss, 100 Mbit/s, RTT 0.1 s, a new connection: handshake to 0.1, one way to
    0.15; rounds of 10, 20 and 40 segments end at 0.25, 0.35 and 0.45. The next window
    (80) sends 30 segments at the link's rate to reach the 100th, the expected first
    loss. When it is detected, the 30 segments before it have grown that window to 110:
    the initial 10 plus the 100 delivered, as Linux's. The 50 left of the round go at
    the first epoch's rate (about 9.16 Mbit/s: Reno's timeouts, without selective
    acknowledgements, keep it below the window's rate) and are through before the round
    ends at 0.55, so the window holds the flow until then. The next window (160) is more
    than the epochs let through in a round trip: from 0.55 the rest of 1 MB's 8,364,848
    wire bits goes through the epochs without a pause."""
    env = simpy.Environment()
    tcp = TcpParams(sack=False)
    net = Network(env, Capacity("in", 1e12), Capacity("out", 1e12), tcp=tcp)
    link = DeviceLink.from_mbps("a", 100, 100, 50)
    link.loss_rate = 0.01
    env.run(until=env.process(net.transfer(link, "up", 1_000_000)))
    epochs = link.connection.loss_epochs["up"]
    expected_epochs = loss_epochs(tcp, 0.01, 0.1, 1e8, 2e7, 110 * SEG)
    assert epochs.ends_segments == expected_epochs.ends_segments
    assert epochs.rates_bps == pytest.approx(expected_epochs.rates_bps, rel=1e-12)
    loss_s = 0.45 + 30 * SEG / 1e8
    assert loss_s + 50 * SEG / epochs.rates_bps[0] < 0.55
    assert epochs.rates_bps[0] == pytest.approx(9.16e6, rel=1e-3)
    expected = 0.55 + _through_epochs(epochs, 50, 8_364_848 - 150 * SEG)
    assert env.now == pytest.approx(expected, rel=1e-9)


def _drawn_link(draws: list[float] | None) -> DeviceLink:
    """The 100 Mbit/s, 0.1 s RTT link of 1% loss above, its losses where ``draws`` say
    (segments between losses, the first loss's into the connection; None: every 1/p)."""
    link = DeviceLink.from_mbps("a", 100, 100, 50)
    link.loss_rate = 0.01
    if draws is not None:
        link.loss_rngs = {"up": _Scripted(draws)}
    return link


class _Scripted:
    """Stands for a generator: its ``geometric`` gives the scripted gaps in turn."""

    def __init__(self, gaps: list[float]) -> None:
        self.gaps = iter(gaps)

    def geometric(self, p: float) -> float:
        return next(self.gaps)


def _send_1mb(link: DeviceLink, tcp: TcpParams) -> float:
    env = simpy.Environment()
    net = Network(env, Capacity("in", 1e12), Capacity("out", 1e12), tcp=tcp)
    env.run(until=env.process(net.transfer(link, "up", 1_000_000)))
    return env.now


def test_drawn_losses_at_every_1_over_p_are_the_regular_sawtooth():
    """Oracle: random losses whose gaps all happen to be 1/p give the regular model's
    time and epochs on the same 1 MB transfer, timeouts and all."""
    tcp = TcpParams(sack=False)
    drawn, regular = _drawn_link([100.0] * 1000), _drawn_link(None)
    assert _send_1mb(drawn, tcp) == pytest.approx(_send_1mb(regular, tcp), rel=1e-12)
    assert drawn.connection.first_loss_segments["up"] == 100.0
    epochs, got = (link.connection.loss_epochs["up"] for link in (regular, drawn))
    for at in (0.0, 50.0, 150.0, 450.0):
        assert got.at(at) == pytest.approx(epochs.at(at), rel=1e-12)


def test_drawn_epochs_worked_out_lazily_are_the_regular_epochs_everywhere():
    """Oracle: drawn gaps of exactly 1/p, asked for in any order and far ahead, give the
    regular epochs' rate and end at every point, merged episodes included (a first
    window of 300 holds three gaps), until the regular ones settle."""
    from ecofed_sim.network.loss import DrawnLossEpochs, _Path

    tcp = TcpParams()
    regular = loss_epochs(tcp, 0.01, 0.1, 1e8, 2e7, 300 * SEG)
    path = _Path.of(tcp, 0.01, 0.1, 1e8, 2e7)
    drawn = DrawnLossEpochs(path, 300.0, lambda: 100.0)
    settled = regular.ends_segments[-2]  # the regular epochs hold for ever from here
    assert settled > 2000
    points = [settled - 1, 10.0, 297.0, 296.9, 1234.5, 0.0, settled - 700, 1500.0]
    for at in points:
        assert drawn.at(at) == pytest.approx(regular.at(at), rel=1e-12)
    # beyond, the drawn epochs go on, each at the regular steady rate
    assert drawn.at(3 * settled)[0] == pytest.approx(regular.rates_bps[-1], rel=1e-3)
    assert regular.ends_segments[0] == 297.0  # 300 sent, 3 resent


def test_the_first_drawn_loss_decides_where_slow_start_ends():
    """The same 1 MB with the first loss drawn at the 20th segment (10 into the second
    round, whose window is 20) and after it every gap 1/p: the epochs start from a
    window of 30 (the initial 10 plus the 20 delivered), not 110, and the transfer takes
    longer than the regular run, whose first loss came at the 100th."""
    tcp = TcpParams(sack=False)
    times = {}
    for name, link in (("early", _drawn_link([20.0] + [100.0] * 1000)),
                       ("regular", _drawn_link([100.0] * 1000))):
        times[name] = _send_1mb(link, tcp)
        if name == "early":  # its first epoch: 100 segments from the window of 30
            path = link.connection.loss_epochs["up"].path
            first_rate_bps = path.epoch(30.0, 100.0, resent=1).rate_bps
            assert link.connection.loss_epochs["up"].at(0.0)[0] == pytest.approx(
                first_rate_bps, rel=1e-12)
    assert times["early"] > times["regular"]


def test_drawn_gaps_are_geometric_of_mean_1_over_p():
    from ecofed_sim.seeding import LOSS, np_rng

    link = DeviceLink.from_mbps("a", 10, 10, 50)
    link.loss_rate = 0.01
    link.loss_rngs = {"up": np_rng(3, LOSS, 0, 0)}
    draw = link.loss_gap_draw(TcpParams(), "up")
    gaps = [draw() for _ in range(20_000)]
    assert min(gaps) >= 1 and all(g == int(g) for g in gaps)
    assert sum(gaps) / len(gaps) == pytest.approx(100, rel=0.03)
    assert link.loss_gap_draw(TcpParams(random_loss=False), "up") is None
    assert link.loss_gap_draw(TcpParams(), "down") is None  # no generator: regular


def test_time_messages_draws_losses_from_its_seed():
    """One run per seed, the same for the same seed; the regular model ignores the seed;
    the mean over seeds is slower than the regular run (time is convex in where the
    first loss falls: an early one cuts slow start short for the whole transfer)."""
    from ecofed_sim.network import time_messages

    def run(seed, **kw):
        return time_messages(100, 40, 2_000_000, "fresh", loss_rate=0.001, seed=seed, **kw)[0]

    drawn = [run(seed) for seed in range(40)]
    assert run(7) == drawn[7]
    # 2 MB is 1,382 segments: about a quarter of the seeds lose none of them
    lossless = time_messages(100, 40, 2_000_000, "fresh")[0]
    assert all(t >= lossless for t in drawn)
    assert 0 < drawn.count(lossless) < len(drawn) / 2
    regular = TcpParams(random_loss=False)
    assert run(0, tcp=regular) == run(1, tcp=regular)
    assert sum(drawn) / len(drawn) > run(0, tcp=regular)

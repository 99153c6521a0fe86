"""Time single messages and lock-step exchanges on one device link: the function the
network benchmark and the tests hold the model against, and that anyone can hold against
their own measurements."""

from __future__ import annotations

from collections.abc import Generator
from typing import Literal

import simpy

from ecofed_sim.network.flows import Network
from ecofed_sim.network.links import MBPS, Capacity, DeviceLink
from ecofed_sim.network.tcp import TcpParams
from ecofed_sim.seeding import LOSS, np_rng

SERVER_MBPS = 1000.0  # the scenario default of the server's access link


def time_messages(rate_mbps: float, rtt_ms: float, payload_bytes: int,
                  pattern: Literal["fresh", "warm", "exchange"], *, gap_s: float = 0.0,
                  count: int = 20, transport: Literal["tcp", "flow"] = "tcp",
                  tcp: TcpParams | None = None, loss_rate: float = 0.0,
                  seed: int = 0) -> list[float]:
    """Seconds per message on one device link of ``rate_mbps`` both ways and ``rtt_ms``
    round trip (one-way latency half of it), the server link at its scenario default.

    - ``fresh``: one message on a new connection, from the start of connect to the last
      byte received (handshake included); one value.
    - ``warm``: one message on a persistent connection whose window is fully open, with no
      idle restart; one value. The window is where a long transfer leaves it: the
      receive window if that binds, else the mean of Cubic's climb back to what the path
      holds (``TcpParams.steady_window_bits``).
    - ``exchange``: ``count`` lock-step exchanges on one connection opened beforehand
      (handshake not timed): ``payload_bytes`` device to server, the same back once all
      has arrived, then ``gap_s`` idle; each exchange's duration, first to last.

    ``loss_rate`` (tcp only) is the link's random segment loss: from the connection's
    first loss on, it caps the rate loss by loss (``ecofed_sim.network.loss``). Under
    ``TcpParams.random_loss`` (the default) the losses fall where ``seed`` draws them:
    one value is one run, and the mean over seeds is the expected time.
    """
    if loss_rate > 0 and transport != "tcp":
        raise ValueError("loss_rate is a tcp model: use transport='tcp'")
    env = simpy.Environment()
    params = (tcp or TcpParams()) if transport == "tcp" else None
    net = Network(env, Capacity("server/in", SERVER_MBPS * MBPS),
                  Capacity("server/out", SERVER_MBPS * MBPS), tcp=params)
    link = DeviceLink.from_mbps("device", rate_mbps, rate_mbps, rtt_ms / 2)
    link.rtt_s = rtt_ms / 1e3
    link.loss_rate = loss_rate
    if loss_rate > 0:
        link.loss_rngs = {d: np_rng(seed, LOSS, 0, i) for i, d in enumerate(("up", "down"))}
    if params is not None and pattern != "fresh":  # connected beforehand, not timed
        link.connection.open = True
        pipe_bits, cap_bits = params.pipe_and_cap_bits(rate_mbps * MBPS, rtt_ms / 1e3, None)
        for d in ("up", "down"):
            if pattern == "warm":  # opened by a long transfer, which grew the send buffer
                link.connection.warm(params, d, params.steady_window_bits(cap_bits, pipe_bits))
            else:
                link.connection.window_bits[d] = params.initial_window_bits
                link.connection.last_send_end_s[d] = 0.0
    times: list[float] = []

    def one(direction: str) -> Generator:
        t0 = env.now
        yield from net.transfer(link, direction, payload_bytes)
        return env.now - t0

    def play() -> Generator:
        if pattern != "exchange":
            times.append((yield from one("up")))
            return
        for _ in range(count):
            t0 = env.now
            yield from one("up")
            yield from one("down")
            times.append(env.now - t0)
            if gap_s > 0:
                yield env.timeout(gap_s)

    env.run(until=env.process(play()))
    return times

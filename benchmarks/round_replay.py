"""Whole rounds against real TCP: replay a simulated round's transfers over the delay line.

The simulator runs a small scenario (5 clients on one server link of 20 Mbit/s, 40 ms
round trip, real training) and records every message: client, direction, bytes, and when
it was issued and delivered. The same messages then cross a real path: two network
namespaces joined by the delay line of ``tcp_fidelity.py`` (each direction serialised at
20 Mbit/s behind a one-BDP drop-tail buffer, held 20 ms). Each client has one persistent
TCP connection (Cubic), as the simulator's ``connections: persistent``. The connections
are opened before the first round and left unused: its first message waits one round trip
(the handshake) and starts from the initial window, as on a new connection. Opening them
at that moment instead would charge the network with what a Python connect and accept
across threads costs here, about 20 ms beyond the handshake's 40 (the handshake alone
takes 40.8 ms; the grid of ``tcp_fidelity.py`` times fresh connections with it).

Timing is causal, not a fixed schedule: a message is issued after the last message of its
client that had been delivered when the simulator issued it, by the same delay as in the
simulation (device or server compute, queueing); a client's first message of a round
follows the round's start by its simulated offset, and a round starts when the real
previous one ended, plus the simulated aggregation. Compute is slept, not run, so only
the network can make the real round differ. Printed per method and round: the real round
time, the simulated one under ``tcp`` and under ``flow``, and their ratios. Then, per
method, each kind of message (direction and size) over all the replays, real against
the model: the 10th percentile, median and 90th percentile of its durations
(``by_kind``). A round at a shared bottleneck ends with its slowest client and is
chaotic, so the kinds' distributions say more about the transport than one round does.
For the same reason the median of a few replays moves between invocations by more than
5%: with 6 repeats or more, each round's real median gets a distribution-free 95%
confidence interval (order statistics), and each model's round is called within 5% of
it, outside, or undecided (``median_interval``, ``verdict``).

    python benchmarks/round_replay.py [--methods fedavg splitfed ecofed] [--rounds 2]
                                      [--repeats 3] [--tcp-info]
                                      [--model-draws K] [--jitter-ms 0.5]
                                      [--line-rate-mbps 1000]

A round at a shared bottleneck is chaotic in the model too: a tenth of a millisecond of
latency more or less reorders who meets whom, and one run of the model is one draw, as
one replay is. ``--model-draws K`` runs the model K times more (timing only), each
message's latency jittered by up to ``--jitter-ms`` (0.5 ms by default, seeds 0 to K-1),
and holds the median of those draws against the real median and its interval, and each
kind of message over the draws against the replays'.

``--line-rate-mbps R`` puts a first hop of R Mbit/s before the bottleneck on the delay
line (``tcp_fidelity.py``) and gives the model the same (``network.line_rate_mbps``).

``--tcp-info`` prints, per client and direction, the sender's congestion window and
slow-start threshold (in segments) as each message started, and the segments resent
before it: what the transport's windows can be held against.

Needs root, iproute2, gcc and /dev/net/tun (as ``tcp_fidelity.py``).
"""

from __future__ import annotations

import argparse
import ctypes
import math
import os
import socket
import statistics
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tcp_fidelity import IP_SRV, NS_DEV, NS_SRV, Path_, Unavailable  # noqa: E402

import ecofed_sim  # noqa: E402
from ecofed_sim.scenario import scenario_from_dict  # noqa: E402
from ecofed_sim.shipped import shipped  # noqa: E402

RATE_MBPS, RTT_MS, CLIENTS, PORT = 20.0, 40.0, 5, 50079
MIN_SEGMENTS = 10  # smaller messages (model weights, labels) fit any window
MSS_BYTES = 1448


def is_kind(nbytes: int) -> bool:
    """Whether a message is long enough to be set among the kinds (``by_kind``)."""
    return math.ceil(nbytes / MSS_BYTES) >= MIN_SEGMENTS
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def scenario(method: str, rounds: int, transport: str, jitter_ms: float = 0.0,
             seed: int | None = None, line_rate_mbps: float | None = None) -> dict:
    """The quickstart's model and data on 5 clients behind one 20 Mbit/s server link;
    with ``jitter_ms``, each message's latency gets up to that much more (a draw per
    message from a generator seeded by ``seed`` and the device), and nothing trains.
    ``line_rate_mbps``: the hop before the bottleneck (``network.line_rate_mbps``)."""
    raw = yaml.safe_load(shipped()["quickstart"].read_text())
    raw.update(rounds=rounds, name=f"replay-{method}")
    if seed is not None:
        raw["seed"] = seed
    raw["method"] = {"name": method, "split": 4}
    if method == "fedavg":
        raw["method"] = {"name": "fedavg"}
    raw["data"]["partition"]["samples_per_client"] = 200
    raw["population"] = {"clients": CLIENTS, "clients_per_round": CLIENTS, "devices": [
        {"profile": "rpi4b", "count": CLIENTS,
         "link": {"uplink_mbps": 10_000, "downlink_mbps": 10_000, "rtt_ms": RTT_MS}}]}
    raw["server"]["link"] = {"ingress_mbps": RATE_MBPS, "egress_mbps": RATE_MBPS}
    raw["network"] = {"transport": transport}
    if line_rate_mbps and transport == "tcp":
        raw["network"]["line_rate_mbps"] = line_rate_mbps
    if jitter_ms > 0:
        raw["population"]["devices"][0]["link"]["latency_jitter_ms"] = jitter_ms
        raw["learning"] = "none"  # the clocks are those of the trained run
    return raw


@dataclass
class Message:
    index: int  # position in the client's sequence
    direction: str
    nbytes: int
    sim_start_s: float
    sim_end_s: float
    after: int | None  # the message it follows (None: the round's start)
    delay_s: float  # after that message's delivery (or the round's start)
    done: threading.Event = field(default_factory=threading.Event)
    real_end_s: float = 0.0
    # the sender's (cwnd, ssthresh, segments retransmitted, smoothed RTT in microseconds)
    tcp_info: tuple[int, int, int, int] | None = None
    sent_s: float = 0.0  # when its bytes went to the socket
    device_port: int = 0  # the device end of its connection (to find it in a capture)


def per_message(transfers):
    """The transfers table with one row per message (a message may be sent in parts):
    its client, direction, bytes, start and end, in issue order."""
    return transfers.groupby("message_id").agg(
        client=("client", "first"), direction=("direction", "first"),
        nbytes=("payload_bytes", "sum"), start=("t_start_s", "first"),
        end=("t_end_s", "first")).sort_values(["start", "message_id"])


def client_messages(transfers, round_start_s: float) -> dict[int, list[Message]]:
    """Each client's messages in issue order, each tied to its causal predecessor."""
    out: dict[int, list[Message]] = {}
    for client, rows in per_message(transfers).groupby("client", sort=True):
        msgs: list[Message] = []
        for i, row in enumerate(rows.itertuples()):
            done = [m for m in msgs if m.sim_end_s <= row.start]
            prev = max(done, key=lambda m: m.sim_end_s) if done else None
            ref = prev.sim_end_s if prev else round_start_s
            msgs.append(Message(i, row.direction, int(row.nbytes), row.start, row.end,
                                prev.index if prev else None, row.start - ref))
        out[int(client)] = msgs
    return out


def in_namespace(name: str):
    """Switch this thread's network namespace; returns the previous one's fd."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    if _libc.setns(target, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), f"setns {name}")
    os.close(target)
    return own


def back(own: int) -> None:
    _libc.setns(own, CLONE_NEWNET)
    os.close(own)


def cubic_socket() -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"cubic")
    return s


def recv_exact(conn: socket.socket, n: int) -> None:
    while n > 0:
        chunk = conn.recv(min(1 << 20, n))
        if not chunk:
            raise ConnectionError("peer closed early")
        n -= len(chunk)


class Connections:
    """One persistent connection per client, opened on its first message."""

    def __init__(self) -> None:
        own = in_namespace(NS_SRV)
        self.listener = cubic_socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((IP_SRV, PORT))
        self.listener.listen(CLIENTS)
        back(own)
        self.pairs: dict[int, tuple[socket.socket, socket.socket]] = {}
        self.device_ports: dict[int, int] = {}  # each client's end, to find it in a capture
        self.ready: dict[int, threading.Event] = {c: threading.Event() for c in range(CLIENTS)}
        self._accepted: dict[int, socket.socket] = {}  # by the device's port
        self._cv = threading.Condition()

    def open(self, client: int) -> None:
        """Connect from the device's namespace; clients connecting at the same moment
        each find their own accepted socket by port."""
        own = in_namespace(NS_DEV)
        dev = cubic_socket()
        back(own)
        dev.connect((IP_SRV, PORT))
        port = dev.getsockname()[1]
        with self._cv:
            while port not in self._accepted:
                conn, (_, peer_port) = self.listener.accept()
                self._accepted[peer_port] = conn
                self._cv.notify_all()
            srv = self._accepted.pop(port)
        for s in (dev, srv):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pairs[client] = (dev, srv)
        self.device_ports[client] = port
        self.ready[client].set()

    def ends(self, client: int, direction: str) -> tuple[socket.socket, socket.socket]:
        self.ready[client].wait()
        dev, srv = self.pairs[client]
        return (dev, srv) if direction == "up" else (srv, dev)

    def close(self) -> None:
        for dev, srv in self.pairs.values():
            dev.close()
            srv.close()
        self.listener.close()


def sender_state(s: socket.socket) -> tuple[int, int, int, int]:
    """Linux ``TCP_INFO`` as a message starts: (congestion window and slow-start threshold
    in segments, segments retransmitted so far on the connection, smoothed RTT in
    microseconds)."""
    raw = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return tuple(struct.unpack_from("<I", raw, offset)[0] for offset in (80, 76, 100, 68))


def print_windows(method: str, round_index: int, msgs: dict[int, list[Message]],
                  out=print) -> None:
    """Each client's windows as its messages started, per direction: cwnd/ssthresh
    ('-' unset), and '+N' where N segments were resent since its previous message."""
    for client, cm in sorted(msgs.items()):
        for direction in ("up", "down"):
            mine = [m for m in cm if m.direction == direction and m.tcp_info is not None]
            cells, before = [], mine[0].tcp_info[2] if mine else 0
            for m in mine:
                cwnd, ssthresh, resent, _ = m.tcp_info
                cells.append(f"{cwnd}/{ssthresh if ssthresh < 1 << 30 else '-'}"
                             + (f"+{resent - before}" if resent > before else ""))
                before = resent
            out(f"{method:<9} round {round_index} client {client} {direction:<4} "
                + " ".join(cells))


def replay_round(conns: Connections, msgs: dict[int, list[Message]], not_before: float,
                 first_round: bool) -> tuple[float, float]:
    """Send one round's messages for real; returns (when the round started, when its last
    message was delivered). It starts at ``not_before``, or once its threads are ready if
    that is later: the harness's own set-up is not the network's time."""
    go, start = threading.Event(), [not_before]

    def issue_time(client_msgs: list[Message], m: Message) -> float:
        if m.after is None:
            return start[0] + m.delay_s
        prev = client_msgs[m.after]
        prev.done.wait()
        return prev.real_end_s + m.delay_s

    def sender(client: int, direction: str) -> None:
        go.wait()
        cm = msgs[client]
        for m in (m for m in cm if m.direction == direction):
            at = issue_time(cm, m)
            time.sleep(max(0.0, at - time.monotonic()))
            if first_round and m.index == 0:  # the handshake belongs to the first message
                time.sleep(RTT_MS / 1e3)  # (its connection is open already, unused)
            tx, _ = conns.ends(client, direction)
            m.tcp_info = sender_state(tx)
            m.device_port = conns.device_ports[client]
            m.sent_s = time.monotonic()
            tx.sendall(b"x" * m.nbytes)

    def receiver(client: int, direction: str) -> None:
        for m in (m for m in msgs[client] if m.direction == direction):
            _, rx = conns.ends(client, direction)
            recv_exact(rx, m.nbytes)
            m.real_end_s = time.monotonic()
            m.done.set()

    threads = [threading.Thread(target=f, args=(c, d), daemon=True)
               for c in msgs for d in ("up", "down") for f in (sender, receiver)]
    for t in threads:
        t.start()
    start[0] = max(not_before, time.monotonic())
    go.set()
    for t in threads:
        t.join(timeout=600)
    return start[0], max(m.real_end_s for cm in msgs.values() for m in cm)


def simulate(method: str, rounds: int, transport: str, jitter_ms: float = 0.0,
             seed: int | None = None, line_rate_mbps: float | None = None):
    raw = scenario(method, rounds, transport, jitter_ms, seed, line_rate_mbps)
    return ecofed_sim.run(scenario_from_dict(raw, f"{raw['name']}.yaml"),
                          source=f"{raw['name']}.yaml", base_dir=None)


def network_times_s(results) -> dict[int, float]:
    """Each round's time from its start to its last message's arrival, by round: what a
    replay times (the aggregation after it is the same in both). Rounds in which nothing
    crossed the network are left out."""
    out = {}
    for r, rnd in results.rounds.iterrows():
        sent = results.transfers[results.transfers["round"] == r]
        if len(sent):
            out[int(r)] = float(sent.t_end_s.max() - (rnd.sim_time_s - rnd.round_time_s))
    return out


def model_draws(method: str, rounds: int, draws: int, jitter_ms: float,
                line_rate_mbps: float | None = None) -> dict:
    """The model's rounds and messages over ``draws`` runs whose latencies differ by a
    jitter of up to ``jitter_ms``, seeds 0 to ``draws - 1``: at a shared bottleneck a
    round is chaotic, so one run of the model is one draw, as one replay is. Returns
    each round's network times over the draws, by round (``network_times_s``), and the
    durations of each kind of message of ``MIN_SEGMENTS`` or more, as ``by_kind``
    groups them."""
    rounds_s: dict[int, list[float]] = {}
    kinds: dict[tuple[str, int], list[float]] = {}
    for seed in range(draws):
        res = simulate(method, rounds, "tcp", jitter_ms, seed, line_rate_mbps)
        for r, seconds in network_times_s(res).items():
            rounds_s.setdefault(r, []).append(seconds)
        for row in per_message(res.transfers).itertuples():
            if is_kind(row.nbytes):
                kinds.setdefault((row.direction, int(row.nbytes)), []).append(
                    row.end - row.start)
    return {"rounds_s": rounds_s, "kinds": kinds}


def replay(method: str, rounds: int, out=print, windows: bool = False,
           replayed: list | None = None, line_rate_mbps: float | None = None) -> list[dict]:
    """Simulate ``rounds`` of ``method`` and send each round's messages over the delay
    line; with ``windows``, also print the senders' TCP windows (``print_windows``).
    ``replayed``, if given, receives each replayed round's messages, client by client.
    ``line_rate_mbps``: the first hop the delay line was given, given to the model too."""
    tcp = simulate(method, rounds, "tcp", line_rate_mbps=line_rate_mbps)
    flow = simulate(method, rounds, "flow")
    tcp_s, flow_s = network_times_s(tcp), network_times_s(flow)
    plans = []  # worked out before anything is sent: no pandas between real rounds
    for r, rnd in tcp.rounds.iterrows():
        start_s = rnd.sim_time_s - rnd.round_time_s
        sent = tcp.transfers[tcp.transfers["round"] == r]
        plans.append((r, start_s, client_messages(sent, start_s), sent.t_end_s.max()))
    conns = Connections()
    for client in range(CLIENTS):
        conns.open(client)
    rows, t0, last_sim_end = [], time.monotonic() + 0.2, None
    real_end = t0
    try:
        for r, start_s, msgs, sim_end_s in plans:
            if last_sim_end is not None:  # aggregation and the rest, as simulated
                t0 = real_end + (start_s - last_sim_end)
            if not msgs:
                out(f"{method:<9} round {r}: no messages (nothing crosses the network)")
                continue
            t0, real_end = replay_round(conns, msgs, t0, first_round=r == 0)
            if replayed is not None:
                replayed.append(msgs)
            last_sim_end = sim_end_s
            real_s, sim_tcp_s, sim_flow_s = real_end - t0, tcp_s[r], flow_s[r]
            rows.append({"method": method, "round": r, "real_s": real_s, "tcp_s": sim_tcp_s,
                         "flow_s": sim_flow_s, "tcp_ratio": sim_tcp_s / real_s,
                         "flow_ratio": sim_flow_s / real_s,
                         "messages": int(sum(len(v) for v in msgs.values()))})
            out(f"{method:<9} round {r}: {rows[-1]['messages']:>4} messages  real "
                f"{real_s:8.3f} s  tcp {sim_tcp_s:8.3f} s ({sim_tcp_s / real_s:5.2f}x)  "
                f"flow {sim_flow_s:8.3f} s ({sim_flow_s / real_s:5.2f}x)")
            if windows:
                print_windows(method, r, msgs, out)
    finally:
        conns.close()
    return rows


def percentiles_ms(values_s: list[float]) -> tuple[float, float, float]:
    """10th percentile, median and 90th percentile, ms (of at least one value)."""
    ms = sorted(v * 1e3 for v in values_s)
    low, high = (ms[min(int(q * len(ms)), len(ms) - 1)] for q in (0.1, 0.9))
    return low, statistics.median(ms), high


def quantiles_ms(values_s: list[float]) -> str:
    return "{:7.1f} {:7.1f} {:7.1f}".format(*percentiles_ms(values_s))


def by_kind(rounds: list[dict]) -> list[str]:
    """Each kind of message (direction and size, of ``MIN_SEGMENTS`` segments or more),
    real against the model, as distributions: n, then the 10th percentile, median and
    90th percentile of the durations, ms (real: the sender's first byte to the
    receiver's last; the model: the message's start to its end in the simulation).
    Which message meets which others at the bottleneck differs between the two (a round
    at a shared bottleneck is chaotic), so the same message is not compared with
    itself: the kinds' distributions are what the model should reproduce."""
    kinds: dict[tuple[str, int], list] = {}
    for msgs in rounds:
        for client_msgs in msgs.values():
            for m in client_msgs:
                if is_kind(m.nbytes):
                    kinds.setdefault((m.direction, m.nbytes), []).append(m)
    lines = [f"{'kind':<18} {'n':>4}   {'real: p10':>9} {'median':>7} {'p90':>7}   "
             f"{'model: p10':>10} {'median':>7} {'p90':>7}"]
    for (direction, nbytes), msgs in sorted(kinds.items()):
        real = [m.real_end_s - m.sent_s for m in msgs]
        model = [m.sim_end_s - m.sim_start_s for m in msgs]
        lines.append(f"{direction + f' {nbytes:,} B':<18} {len(msgs):>4}   "
                     f"{quantiles_ms(real):>25}   {quantiles_ms(model):>26}")
    return lines


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """A distribution-free confidence interval for the median of what ``values`` were
    drawn from: the k-th smallest and k-th largest value, for the largest k whose
    binomial tail, P(Binomial(n, 1/2) < k), is at most half of ``1 - confidence`` (each
    value falls below the median with probability 1/2). None when n is too small for
    any (fewer than 6 values at 95%). 15 values give the 4th and 12th: 96.5%."""
    n, tail, k = len(values), (1 - confidence) / 2, 0
    below = 0.0  # P(Binomial(n, 1/2) < k + 1)
    while k < n // 2:
        below += math.comb(n, k) / 2 ** n
        if below > tail:
            break
        k += 1
    if k == 0:
        return None
    ordered = sorted(values)
    return ordered[k - 1], ordered[n - k]


def verdict(model_s: float, interval: tuple[float, float] | None, goal: float = 0.05) -> str:
    """Whether a model's round is within ``goal`` of the real median, given the median's
    confidence interval: ``within`` if it is for every median the interval admits,
    ``outside`` if for none, else ``undecided`` (the replays cannot tell)."""
    if interval is None:
        return "undecided"
    low, high = interval  # ratio model / median within 1 +- goal: median in [lo, hi]
    lo, hi = model_s / (1 + goal), model_s / (1 - goal)
    if lo <= low and high <= hi:
        return "within"
    if high < lo or low > hi:
        return "outside"
    return "undecided"


def tally(verdicts: list[str]) -> str:
    """How many rounds got each verdict (``verdict``), e.g. '3 within, 0 outside, ...'."""
    return ", ".join(f"{verdicts.count(v)} {v}" for v in ("within", "outside", "undecided"))


def with_draws(row: dict, draws_s: list[float]) -> dict:
    """``row`` (``median_row``) with the model's median over its jittered draws, its
    range, its ratio to the real median and its verdict against the median's interval."""
    median = statistics.median(draws_s)
    return {**row, "draws_s": median, "draws_min_s": min(draws_s),
            "draws_max_s": max(draws_s), "draws_ratio": median / row["real_s"],
            "draws_verdict": verdict(median, row["median_interval_s"])}


def median_row(repeats: list[dict]) -> dict:
    """One round over its repeats: the median real time, its spread, the ratios to it,
    whether each model's round lies within the replays' range (``tcp_inside``,
    ``flow_inside``), and whether it is within 5% of the real median with 95% confidence
    (``tcp_verdict``, ``flow_verdict``): a round at a shared bottleneck is chaotic, and
    its real time moves from one replay to the next by more than 5%, so the median of a
    few replays moves too."""
    real = [r["real_s"] for r in repeats]
    median = statistics.median(real)
    interval = median_interval(real)
    row = {**repeats[0], "real_s": median, "spread": (max(real) - min(real)) / median,
           "real_min_s": min(real), "real_max_s": max(real), "median_interval_s": interval}
    for model in ("tcp", "flow"):
        row[f"{model}_ratio"] = row[f"{model}_s"] / median
        row[f"{model}_inside"] = min(real) <= row[f"{model}_s"] <= max(real)
        row[f"{model}_verdict"] = verdict(row[f"{model}_s"], interval)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", default=["fedavg", "splitfed", "ecofed"])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--tcp-info", action="store_true", help="also print each sender's "
                   "congestion window and slow-start threshold as each message started, "
                   "and the segments it resent (Linux TCP_INFO)")
    p.add_argument("--model-draws", type=int, default=0, metavar="K",
                   help="also run the model K times with latencies jittered by up to "
                   "--jitter-ms (seeds 0 to K-1, timing only) and hold the median of its "
                   "rounds against the real median")
    p.add_argument("--jitter-ms", type=float, default=0.5)
    p.add_argument("--line-rate-mbps", type=float, help="a first hop of this rate before "
                   "the bottleneck, on the delay line and in the model (default: none)")
    p.add_argument("--repeats", type=int, default=3, help="real replays per method; the "
                   "median round time is compared (6 or more also give the median a "
                   "95%% confidence interval; 15 take about 4 minutes)")
    args = p.parse_args()
    started = time.time()
    rows, kinds = [], {}
    for method in args.methods:
        runs, replayed = [], []
        for _ in range(args.repeats):
            try:
                path = Path_(RATE_MBPS, RTT_MS, line_rate_mbps=args.line_rate_mbps)
            except Unavailable as err:
                sys.exit(f"skipped: {err}")
            try:
                runs.append(replay(method, args.rounds, windows=args.tcp_info,
                                   replayed=replayed, line_rate_mbps=args.line_rate_mbps))
            finally:
                path.teardown()
        method_rows = [median_row([run[i] for run in runs]) for i in range(len(runs[0]))]
        kinds[method] = by_kind(replayed)
        if args.model_draws:
            drawn = model_draws(method, args.rounds, args.model_draws, args.jitter_ms,
                                args.line_rate_mbps)
            method_rows = [with_draws(row, drawn["rounds_s"][row["round"]])
                           for row in method_rows]
            kinds[method] += [f"the model over {args.model_draws} draws:"] + [
                f"{d + f' {n:,} B':<18} {len(v):>4}   {'':>25}   {quantiles_ms(v):>26}"
                for (d, n), v in sorted(drawn["kinds"].items())]
        rows += method_rows
    print("median of the repeats:")
    for r in rows:
        print(f"{r['method']:<9} round {r['round']}: real {r['real_s']:8.3f} s (spread "
              f"{r['spread']:.0%}: {r['real_min_s']:.3f}-{r['real_max_s']:.3f})  tcp "
              f"{r['tcp_s']:8.3f} s ({r['tcp_ratio']:5.2f}x)  flow "
              f"{r['flow_s']:8.3f} s ({r['flow_ratio']:5.2f}x)")
        if r["median_interval_s"] is not None:
            print(f"{'':<18}the real median lies in {r['median_interval_s'][0]:.3f}-"
                  f"{r['median_interval_s'][1]:.3f} s (95% confidence): tcp "
                  f"{r['tcp_verdict']}, flow {r['flow_verdict']} 5% of it")
        if "draws_s" in r:
            print(f"{'':<18}tcp over {args.model_draws} draws ({args.jitter_ms:g} ms jitter): "
                  f"median {r['draws_s']:.3f} s ({r['draws_min_s']:.3f}-"
                  f"{r['draws_max_s']:.3f}), {r['draws_ratio']:.2f}x: {r['draws_verdict']}")
    for model in ("tcp", "flow"):
        worst = max(rows, key=lambda r: abs(r[f"{model}_ratio"] - 1))
        within = sum(abs(r[f"{model}_ratio"] - 1) <= 0.05 for r in rows)
        inside = sum(r[f"{model}_inside"] for r in rows)
        print(f"{model:>4}: {within}/{len(rows)} rounds within 5%; worst "
              f"{worst[f'{model}_ratio']:.2f}x ({worst['method']} round {worst['round']}); "
              f"{inside}/{len(rows)} within the replays' range")
        verdicts = [r[f"{model}_verdict"] for r in rows]
        print(f"{'':>6}with 95% confidence in the real medians: {tally(verdicts)}"
              + ("" if args.repeats >= 6 else " (6 repeats or more can decide)"))
    if args.model_draws:
        within = sum(abs(r["draws_ratio"] - 1) <= 0.05 for r in rows)
        verdicts = [r["draws_verdict"] for r in rows]
        print(f"tcp, median of {args.model_draws} draws: {within}/{len(rows)} rounds within 5% "
              f"of the real median; with 95% confidence: {tally(verdicts)}")
    print(f"each kind of message over the {args.repeats} replays, real against the model "
          "(durations in ms):")
    for method, lines in kinds.items():
        if len(lines) > 1:
            print(f"{method}:\n" + "\n".join(lines))
    print(f"{len(rows)} rounds in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()

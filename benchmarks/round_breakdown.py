"""Where a replayed round's time goes, message by message: real Linux TCP against the model.

``round_replay.py`` compares whole rounds; a round ends with its slowest client, so one
number hides why. This replays one method's rounds once over the same delay line (5
clients sharing a 20 Mbit/s server link, 40 ms RTT) and sets side by side, for every
message of ten segments or more, the sender's congestion window as the message started,
whether segments were resent (lost, in the model) while it went, and how long it took
from the sender's first byte to the receiver's last:

- Linux: ``TCP_INFO`` read just before the message is written (``snd_cwnd``,
  ``total_retrans``, ``srtt``); a message resent segments if the sender's count grew by
  its next message in the same direction (the last one of each direction is left out);
- the model: the window ``Connection.start`` gives the message, the connection's smoothed
  RTT then, and the segments its first burst lost (``Window.lost_segments``), read by
  wrapping the transport's ``Connection`` for the simulation.

Then each kind of message (direction and size) as distributions, real against the
model: the 10th percentile, median and 90th percentile of its durations. A round at a
shared bottleneck is chaotic (one loss more or less reorders who meets whom), so these,
not a message set against its own simulated self, are what the model should match.

Messages are also grouped by the flights their window needs (``ceil(segments / window)``: 1
is the whole message in one burst) and by loss, and each direction's losses are counted
(messages, segments, the largest). Then the senders' smoothed RTTs as the
messages started (median, 10th and 90th percentiles): it sets when the loss probe and
the RTO fire, so whether a window restarts after idle. ``--capture N`` also sniffs the devices'
namespace (``delayline/capture.py``) and prints, for the first N uploads that resent
segments, when the device sent each segment, resent one, and got an acknowledgement.
The sniffer is a Python process: it takes CPU from the replay, so its round times are
not the ones to quote.

``--queues`` logs the delay line's queue (``delayline/queue_log.py``): the wait packets
found ahead of them in each direction over the replay, and in the ``--capture``
timelines the wait each run of an upload's segments found, and its acknowledgements'.

    python benchmarks/round_breakdown.py [--method splitfed] [--rounds 2] [--capture N]
                                         [--queues]

Needs root, iproute2, gcc and /dev/net/tun (as ``tcp_fidelity.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import round_replay as rr  # noqa: E402
from round_replay import by_kind, percentiles_ms  # noqa: E402
from tcp_fidelity import Path_, Unavailable  # noqa: E402

sys.path.insert(0, str(HERE / "delayline"))
import queue_log  # noqa: E402

from ecofed_sim.network import tcp as transport  # noqa: E402

MIN_SEGMENTS = rr.MIN_SEGMENTS


@contextlib.contextmanager
def model_messages(out: list[dict]) -> Iterator[None]:
    """Record each message the transport times: window at start (segments), segments its
    first burst lost, seconds from its first byte to its last."""
    start, finish = transport.Connection.start, transport.Connection.finish
    open_at: dict[tuple[int, str], tuple[float, float]] = {}

    def on_start(self, tcp, direction, now_s, rtt_s, *args):
        window, cap = start(self, tcp, direction, now_s, rtt_s, *args)
        open_at[id(self), direction] = (now_s, window / tcp.segment_bits,
                                        self.srtt_s.get(direction, rtt_s))
        return window, cap

    def on_finish(self, tcp, direction, arrived_s, latency_s, rtt_s, rate_bps, buffer_bytes,
                  window, sent_bits, total_bits):
        finish(self, tcp, direction, arrived_s, latency_s, rtt_s, rate_bps, buffer_bytes,
               window, sent_bits, total_bits)
        began_s, cwnd, srtt_s = open_at.pop((id(self), direction))
        out.append({"segments": math.ceil(total_bits / tcp.segment_bits - 1e-9),
                    "cwnd": cwnd, "resent": window.lost_segments,
                    "duration_s": arrived_s - began_s, "srtt_s": srtt_s,
                    "direction": direction})

    transport.Connection.start, transport.Connection.finish = on_start, on_finish
    try:
        yield
    finally:
        transport.Connection.start, transport.Connection.finish = start, finish


def real_messages(rounds: list[dict]) -> list[dict]:
    """The replayed messages, with what each sender resent before its next message."""
    rows = []
    for msgs in rounds:
        for client_msgs in msgs.values():
            for direction in ("up", "down"):
                mine = [m for m in client_msgs if m.direction == direction]
                for m, after in zip(mine, mine[1:], strict=False):
                    rows.append({"segments": math.ceil(m.nbytes / 1448), "cwnd": m.tcp_info[0],
                                 "resent": after.tcp_info[2] - m.tcp_info[2],
                                 "duration_s": m.real_end_s - m.sent_s,
                                 "srtt_s": m.tcp_info[3] / 1e6, "message": m,
                                 "direction": direction})
    return rows


def flights(row: dict) -> int:
    return min(math.ceil(row["segments"] / max(row["cwnd"], 1)), 4)


def describe(rows: list[dict]) -> str:
    if not rows:
        return f"{0:>4} {'':>8} {'':>8}"
    ms = [r["duration_s"] * 1e3 for r in rows]
    return f"{len(rows):>4} {statistics.mean(ms):>8.1f} {statistics.median(ms):>8.1f}"


def table(real: list[dict], model: list[dict]) -> list[str]:
    real = [r for r in real if r["segments"] >= MIN_SEGMENTS]
    model = [r for r in model if r["segments"] >= MIN_SEGMENTS]
    head = f"{'':<24} {'real: n':>7} {'mean ms':>8} {'median':>8}   {'model: n':>8} " \
           f"{'mean ms':>8} {'median':>8}"
    lines = [head]
    groups = [("window: one flight", lambda r: flights(r) == 1),
              ("two flights", lambda r: flights(r) == 2),
              ("three flights", lambda r: flights(r) == 3),
              ("four or more", lambda r: flights(r) == 4),
              ("resent nothing", lambda r: r["resent"] == 0),
              ("resent (model: lost)", lambda r: r["resent"] > 0),
              ("all", lambda r: True)]
    for label, keep in groups:
        lines.append(f"{label:<24} {describe([r for r in real if keep(r)]):>25}   "
                     f"{describe([r for r in model if keep(r)]):>26}")
    lines.append(f"{'smoothed RTT at start':<24} {spread(real):>25}   {spread(model):>26}")
    return lines


def losses(real: list[dict], model: list[dict], largest: int = 4) -> list[str]:
    """Per direction, messages of ten segments or more: how many lost segments (Linux:
    resent them), how many segments in all, and the largest losses as (window at the
    start, segments). Where several connections' bursts meet in one buffer, who loses
    how much decides which client a round waits for."""
    lines = []
    for direction in ("up", "down"):
        for side, rows in (("real", real), ("model", model)):
            lossy = sorted(((r["cwnd"], r["resent"]) for r in rows
                            if r["direction"] == direction and r["segments"] >= MIN_SEGMENTS
                            and r["resent"] > 0), key=lambda pair: (-pair[1], pair[0]))
            kept = sum(1 for r in rows
                       if r["direction"] == direction and r["segments"] >= MIN_SEGMENTS)
            top = ", ".join(f"{round(w)}:{lost}" for w, lost in lossy[:largest])
            lines.append(f"{direction:<5} {side:<6} {len(lossy):>3} of {kept:>3} messages lost "
                         f"{sum(lost for _, lost in lossy):>4} segments; largest "
                         f"(window:lost) {top}")
    return lines


def spread(rows: list[dict]) -> str:
    """Median, 10th and 90th percentiles of the smoothed RTTs, ms."""
    if not rows:
        return ""
    low, median, high = percentiles_ms([r["srtt_s"] for r in rows])
    return f"{median:.1f} ({low:.1f}-{high:.1f})"


def timeline(message, packets: list, mss: int = 1448, queues: dict | None = None,
             one_way_s: float = 0.0) -> list[str]:
    """One upload's packets seen on the device: runs of segments sent (and resent) and
    the acknowledgements that moved, in milliseconds from its first byte. With the delay
    line's ``queues`` (``delayline/queue_log.py``), each run of segments also shows the
    wait it found in the upload direction, and the wait its acknowledgements found in the
    download direction (``one_way_s`` and that first wait later)."""
    port, t0, t1 = message.device_port, message.sent_s, message.real_end_s
    mine = [p for p in packets if t0 - 1e-3 <= p[0] <= t1 + 1e-3
            and ((p[1] == 4 and p[2] == port and p[6] > 0) or (p[1] == 0 and p[3] == port))]
    sends = [p for p in mine if p[1] == 4]
    if not sends:
        return ["  (no packets captured)"]
    first, seen, events, acked = min(p[4] for p in sends), set(), [], None
    for t, kind, _, _, seq, ack, _ in mine:
        at_ms = (t - t0) * 1e3
        if kind == 4:
            index = (seq - first) // mss
            what = "resent" if seq in seen else "sent"
            seen.add(seq)
            if events and events[-1][1] == what and at_ms - events[-1][0] < 1.0 \
                    and events[-1][3] == index - 1:
                events[-1][3] = index
            else:
                events.append([at_ms, what, index, index])
        elif ack != acked:
            acked = ack
            events.append([at_ms, "acked up to", (ack - first) / mss, None])
    out = []
    for at_ms, what, a, b in events:
        span = f"{a:.1f}" if b is None else (f"{a}" if a == b else f"{a}-{b}")
        line = f"  {at_ms:8.1f} ms  {what} {span}"
        if queues is not None and b is not None:
            at_s = t0 + at_ms / 1e3
            up_s = queue_log.wait_at_s(queues["up"], at_s)
            back_s = queue_log.wait_at_s(queues["down"], at_s + up_s + one_way_s)
            line = f"{line:<34} queued behind: {up_s * 1e3:5.1f} ms, its ACK {back_s * 1e3:5.1f} ms"
        out.append(line)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="splitfed")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--capture", type=int, default=0, metavar="N",
                   help="print the packet timelines of the first N uploads that resent")
    p.add_argument("--queues", action="store_true", help="log the delay line's queue: "
                   "print the wait packets found in each direction, and with --capture "
                   "the waits of each upload's segments and their acknowledgements")
    args = p.parse_args()
    log = Path(tempfile.mkdtemp()) / "queue.bin" if args.queues else None
    model: list[dict] = []
    with model_messages(model):
        rr.simulate(args.method, args.rounds, "tcp")
    try:
        path = Path_(rr.RATE_MBPS, rr.RTT_MS, queue_log=log)
    except Unavailable as err:
        sys.exit(f"skipped: {err}")
    replayed: list[dict] = []  # each round's messages, client by client
    sniffer = None
    try:
        if args.capture:
            sniffer = subprocess.Popen(
                ["ip", "netns", "exec", rr.NS_DEV, sys.executable,
                 str(HERE / "delayline" / "capture.py"), "sniff", str(10 * args.rounds + 5)],
                stdout=subprocess.PIPE, text=True)
            sniffer.stdout.readline()  # "ready"
        rr.replay(args.method, args.rounds, replayed=replayed)
        packets = json.loads(sniffer.stdout.readlines()[-1]) if sniffer else []
    finally:
        if sniffer is not None:
            sniffer.kill()
        path.teardown()
    queues = queue_log.read(log, rr.RATE_MBPS * 1e6) if log else None
    real = real_messages(replayed)
    print(f"{args.method}, {args.rounds} rounds, messages of {MIN_SEGMENTS} segments or more; "
          "one replay against the model (tcp)")
    print("\n".join(table(real, model)))
    print("losses (Linux: segments resent before the connection's next message):")
    print("\n".join(losses(real, model)))
    print("each kind of message, real against the model (durations in ms):")
    print("\n".join(by_kind(replayed)))
    if queues is not None:
        print("the delay line's queue over the replay (20 Mbit/s each way, one BDP of buffer):")
        print("\n".join(queue_log.summary(queues)))
    lossy = [r for r in real if r["resent"] > 0 and r["message"].direction == "up"]
    for r in lossy[:args.capture]:
        m = r["message"]
        print(f"upload of {m.nbytes:,} B, window {r['cwnd']}, resent {r['resent']}: "
              f"{r['duration_s'] * 1e3:.0f} ms (model, in its own round: "
              f"{(m.sim_end_s - m.sim_start_s) * 1e3:.0f} ms)")
        print("\n".join(timeline(m, packets, queues=queues, one_way_s=rr.RTT_MS / 2e3)))


if __name__ == "__main__":
    main()

"""Hold the simulator's transports against real Linux TCP on a path with round-trip delay.

Two network namespaces are joined by a userspace delay line (``delayline/delayline.c``,
compiled on first use: these machines have no netem qdisc): each direction is serialised
at the rate with a drop-tail buffer of one bandwidth-delay product, then held for half the
RTT. Real TCP (Cubic, set per socket) sends messages in three patterns, as
``ecofed_sim.network.time_messages`` times them: on a new connection (``fresh``), on an
open window (``warm``), and lock-step exchanges after idle gaps (``exchange``). Each case
is repeated; the minimum and the median are reported, and a case whose median is more than
10% above its minimum is flagged as disturbed (a busy machine). Printed per case: measured,
simulated under ``tcp`` and ``flow``, the ratios; then the worst cases and the share within
10%. Needs root, iproute2, gcc and /dev/net/tun.

    python benchmarks/tcp_fidelity.py [--quick] [--rates 5 20 100] [--rtts 10 40 100]
                                      [--patterns fresh warm exchange] [--repeats 3]
                                      [--sizes BYTES ...] [--line-rate-mbps 1000]

``--line-rate-mbps`` puts a first hop of that rate before the bottleneck's buffer on the
delay line, as a sender's network card serialises its bursts (the TUN device hands them
over within microseconds), and gives the model the same (``network.line_rate_mbps``).

Each row keeps every repeat's value (``measured_runs_s``): where real TCP itself has two
outcomes (a lost tail, an RTO crossed or not), the median of an even number of repeats
lies between them. Exchange rows also keep every exchange of every repeat and the
model's (``measured_exchanges_s``, ``tcp_exchanges_s``), scored each on its own after
the summary: the first, the second, the later ones.
"""

from __future__ import annotations

import argparse
import atexit
import fcntl
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NS_DEV, NS_SRV = "efs_tcp_dev", "efs_tcp_srv"
IP_DEV, IP_SRV, PORT = "10.78.0.1", "10.78.0.2", 50078
PEER = HERE / "delayline" / "peer.py"
LOCK = Path(tempfile.gettempdir()) / "ecofed_sim_delayline.lock"  # one path at a time


class Unavailable(RuntimeError):
    """Namespaces, TUN or a compiler are missing here."""


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


def build_delayline() -> Path:
    out = Path(tempfile.gettempdir()) / "ecofed_sim_delayline"
    src = HERE / "delayline" / "delayline.c"
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        if not shutil.which("gcc"):
            raise Unavailable("needs gcc to build the delay line")
        sh("gcc", "-O2", "-o", str(out), str(src))
    return out


class Path_:
    """Both namespaces and the delay line between them, at one rate and RTT. Their
    names are fixed, so one process at a time holds them (``LOCK``): a second benchmark
    would tear down the first one's path mid-measurement."""

    def __init__(self, rate_mbps: float, rtt_ms: float, queue_log: Path | None = None,
                 line_rate_mbps: float | None = None) -> None:
        """``queue_log``: the delay line logs every packet it reads there, with the bytes
        queued ahead of it (``delayline/queue_log.py`` reads it once ``teardown`` is done).
        ``line_rate_mbps``: a first hop of that rate before the bottleneck's buffer, as a
        sender's network card (None: a burst reaches the buffer at once)."""
        self.line = None
        self.line_rate_mbps = line_rate_mbps
        self.lock = LOCK.open("w")
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.lock.close()
            raise Unavailable(f"another delay-line benchmark is running ({LOCK} is "
                              "locked)") from None
        atexit.register(self.teardown)
        try:
            self._build(rate_mbps, rtt_ms, queue_log)
        except BaseException:
            self.teardown()  # and let the next one have the lock
            raise

    def _build(self, rate_mbps: float, rtt_ms: float, queue_log: Path | None) -> None:
        self.clean()
        try:
            for ns in (NS_DEV, NS_SRV):
                sh("ip", "netns", "add", ns)
                sh("ip", "-n", ns, "link", "set", "lo", "up")
        except subprocess.CalledProcessError as err:
            raise Unavailable(err.stderr.strip()) from None
        bdp = int(rate_mbps * 1e6 * rtt_ms / 1e3 / 8)
        self.line = subprocess.Popen([str(build_delayline()), NS_DEV, NS_SRV,
                                      str(rate_mbps * 1e6), str(int(rtt_ms * 500)),
                                      str(max(bdp, 64 * 1514)), str(queue_log or "-"),
                                      str((self.line_rate_mbps or 0) * 1e6)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if self.line.stdout.readline().strip() != "ready":
            raise Unavailable(f"delay line did not start: {self.line.stderr.read().strip()}")
        for ns, ip in ((NS_DEV, IP_DEV), (NS_SRV, IP_SRV)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "dl0")
            # the TUN device's own queue (txqueuelen, 500 packets) would drop a burst
            # before the delay line reads it: the path's only buffer is the delay line's
            sh("ip", "-n", ns, "link", "set", "dl0", "txqueuelen", "100000", "up")

    @staticmethod
    def clean() -> None:
        """Remove the namespaces and stop the delay line (a crashed run's too)."""
        subprocess.run(["pkill", "-f", "ecofed_sim_delayline"], capture_output=True)
        for ns in (NS_DEV, NS_SRV):
            sh("ip", "netns", "del", ns, check=False)

    def teardown(self) -> None:
        if not self.lock.closed:
            if self.line is not None and self.line.poll() is None:
                self.line.terminate()  # it writes out its queue log, then exits
                try:
                    self.line.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.line.kill()
            self.clean()
            self.lock.close()  # releases the lock

    def measure(self, pattern: str, nbytes: int, gap_s: float, count: int) -> list[float]:
        srv = subprocess.Popen(["ip", "netns", "exec", NS_SRV, sys.executable, str(PEER),
                                "server", IP_SRV, str(PORT), pattern, str(nbytes),
                                str(count)], stdout=subprocess.PIPE, text=True)
        srv.stdout.readline()  # listening
        cli = sh("ip", "netns", "exec", NS_DEV, sys.executable, str(PEER), "client", IP_SRV,
                 str(PORT), pattern, str(nbytes), str(count), str(gap_s))
        client = json.loads(cli.stdout.strip().splitlines()[-1])
        if pattern == "exchange":
            srv.wait(timeout=60)
            return client["durations"]
        server = json.loads(srv.stdout.readline())
        srv.wait(timeout=60)
        return [server["end"] - client["start"]]


def kernel_facts() -> dict:
    facts = {}
    for key in ("tcp_slow_start_after_idle", "tcp_congestion_control", "tcp_rmem",
                "tcp_wmem", "tcp_no_metrics_save"):
        out = sh("ip", "netns", "exec", NS_DEV, "sysctl", "-n", f"net.ipv4.{key}",
                 check=False)
        facts[key] = out.stdout.strip()
    return facts


def simulated(rate: float, rtt: float, nbytes: int, pattern: str, gap_s: float,
              count: int, line_rate_mbps: float | None = None
              ) -> tuple[list[float], list[float]]:
    """The model's times under ``tcp`` and ``flow``; ``line_rate_mbps`` is the path's
    first hop (``network.line_rate_mbps``), as the delay line was given it."""
    from ecofed_sim.network import TcpParams, time_messages

    args = dict(gap_s=gap_s, count=count)
    tcp = TcpParams(line_rate_mbps=line_rate_mbps or math.inf)
    return (time_messages(rate, rtt, nbytes, pattern, transport="tcp", tcp=tcp, **args),
            time_messages(rate, rtt, nbytes, pattern, transport="flow", **args))


PATTERNS = ("fresh", "warm", "exchange")


def cases(quick: bool, rates, rtts, only=PATTERNS, sizes=None) -> list[tuple]:
    sizes = sizes or ([100_000, 1_000_000] if quick else
                      [10_000, 100_000, 1_000_000, 10_000_000])
    patterns = [("fresh", 0.0), ("warm", 0.0), ("exchange", 0.0), ("exchange", 0.5)]
    if not quick:
        patterns.insert(3, ("exchange", 0.1))
    return [(r, t, n, p, g) for r in rates for t in rtts for n in sizes for p, g in patterns
            if p in only and not (n >= 10_000_000 and r < 20 and p == "exchange")]


def run_case(path: Path_, rate, rtt, nbytes, pattern, gap_s, repeats: int, count: int):
    """Median over repeats of each value (a fresh or warm message, or the exchanges
    after the first), with the spread that flags a disturbed case."""
    runs, exchanges = [], []
    for _ in range(repeats):
        values = path.measure(pattern, nbytes, gap_s, count)
        runs.append(statistics.median(values[1:]) if pattern == "exchange" else values[0])
        exchanges.append(values)
    tcp, flow = simulated(rate, rtt, nbytes, pattern, gap_s, count, path.line_rate_mbps)
    sim_tcp = statistics.median(tcp[1:]) if pattern == "exchange" else tcp[0]
    sim_flow = statistics.median(flow[1:]) if pattern == "exchange" else flow[0]
    measured = statistics.median(runs)
    row = {"rate_mbps": rate, "rtt_ms": rtt, "bytes": nbytes, "pattern": pattern,
           "gap_s": gap_s, "measured_runs_s": runs, "measured_min_s": min(runs),
           "measured_s": measured,
           "tcp_s": sim_tcp, "flow_s": sim_flow, "tcp_ratio": sim_tcp / measured,
           "flow_ratio": sim_flow / measured,
           "disturbed": (measured - min(runs)) / min(runs) > 0.10}
    if path.line_rate_mbps:
        row["line_rate_mbps"] = path.line_rate_mbps
    if pattern == "exchange":
        row.update(count=count, measured_exchanges_s=exchanges, tcp_exchanges_s=tcp,
                   flow_exchanges_s=flow)
    return row


def report(rates, rtts, quick: bool = True, repeats: int = 3, count: int = 6,
           out=print, patterns=PATTERNS, sizes=None,
           line_rate_mbps: float | None = None) -> list[dict]:
    rows = []
    for rate in rates:
        for rtt in rtts:
            path = Path_(rate, rtt, line_rate_mbps=line_rate_mbps)
            try:
                if not rows:
                    out(f"kernel: {json.dumps(kernel_facts())}")
                for case in cases(quick, [rate], [rtt], patterns, sizes):
                    row = run_case(path, *case[:5], repeats=repeats, count=count)
                    rows.append(row)
                    out(f"{row['rate_mbps']:>4g} Mb/s {row['rtt_ms']:>4g} ms "
                        f"{row['bytes']:>9,d} B {row['pattern']:<8} gap {row['gap_s']:<4g}"
                        f" measured {row['measured_s']:8.4f} s  tcp {row['tcp_s']:8.4f} "
                        f"({row['tcp_ratio']:5.2f}x)  flow {row['flow_s']:8.4f} "
                        f"({row['flow_ratio']:5.2f}x){'  DISTURBED' if row['disturbed'] else ''}")
            finally:
                path.teardown()
    return rows


def summary(rows: list[dict]) -> str:
    """Per pattern and over all: the share within 10% under each transport, the worst
    case of each, and every case ``tcp`` misses by more than 10%."""
    lines = [f"{'pattern':<18} {'tcp within 10%':>15} {'flow within 10%':>16} "
             f"{'worst tcp':>10}"]
    groups: dict[str, list[dict]] = {}
    for r in rows:
        label = r["pattern"] + (f" gap {r['gap_s']:g}" if r["pattern"] == "exchange" else "")
        groups.setdefault(label, []).append(r)
    for label, part in [*groups.items(), ("all", rows)]:
        within = {m: sum(abs(r[f"{m}_ratio"] - 1) <= 0.10 for r in part) for m in ("tcp", "flow")}
        worst = max(part, key=lambda r: abs(r["tcp_ratio"] - 1))["tcp_ratio"]
        lines.append(f"{label:<18} {within['tcp']:>9}/{len(part):<5} "
                     f"{within['flow']:>10}/{len(part):<5} {worst:>9.2f}x")
    for model in ("tcp", "flow"):
        worst = max(rows, key=lambda r: abs(r[f"{model}_ratio"] - 1))
        lines.append(f"worst {model}: {worst[f'{model}_ratio']:.2f}x ({worst['rate_mbps']:g} "
                     f"Mb/s, {worst['rtt_ms']:g} ms, {worst['bytes']:,} B, "
                     f"{worst['pattern']}, gap {worst['gap_s']:g})")
    missed = [r for r in rows if abs(r["tcp_ratio"] - 1) > 0.10]
    if missed:
        lines.append(f"beyond 10% under tcp ({len(missed)}):")
    for r in missed:
        runs = r.get("measured_runs_s", [])
        lines.append(f"  {r['rate_mbps']:>4g} Mb/s {r['rtt_ms']:>4g} ms {r['bytes']:>10,} B "
                     f"{r['pattern']:<8} gap {r['gap_s']:<4g} measured "
                     f"{r['measured_s'] * 1e3:8.1f} ms (min {r['measured_min_s'] * 1e3:.1f})"
                     f"  tcp {r['tcp_s'] * 1e3:8.1f} ms ({r['tcp_ratio']:.2f}x)"
                     + (f"  repeats {'/'.join(f'{x * 1e3:.0f}' for x in runs)} ms, nearest "
                        f"{nearest_ratio(r['tcp_s'], runs):.2f}x" if runs else "")
                     + ("  TWO OUTCOMES" if two_outcomes(runs) else "")
                     + ("  DISTURBED" if r["disturbed"] else ""))
    beyond = [r for r in missed if abs(r["tcp_ratio"] - 1) > 0.25]
    split = [r for r in beyond if two_outcomes(r.get("measured_runs_s", []))]
    near = [r for r in split if abs(nearest_ratio(r["tcp_s"], r["measured_runs_s"]) - 1) <= 0.10]
    if missed:
        lines.append(f"beyond 25% under tcp: {len(beyond)}; of them, real TCP's repeats "
                     f"differ by more than {SPAN_NO_TIME_FITS:.2f}x (no time is within 25% "
                     f"of all) in {len(split)}, and tcp is within 10% of one of their "
                     f"repeats in {len(near)}")
    return "\n".join(lines)


# A time within 25% of both a and b > a needs b * 0.75 <= t <= a * 1.25: none once b / a
# passes 1.25 / 0.75.
SPAN_NO_TIME_FITS = 1.25 / 0.75


def two_outcomes(runs: list[float]) -> bool:
    """Whether a case's repeats spread so far that no single time is within 25% of each:
    real TCP landed on both sides of a threshold (a lost last segment or not, an RTO
    crossed or not), and the median of a few repeats is whichever side came up more."""
    return len(runs) > 1 and max(runs) / min(runs) > SPAN_NO_TIME_FITS


def nearest_ratio(model_s: float, runs: list[float]) -> float:
    """The model's time over the repeat nearest it (by ratio)."""
    return min((model_s / x for x in runs), key=lambda ratio: abs(math.log(ratio)))


def by_exchange(rows: list[dict]) -> str:
    """Each exchange on its own, where rows keep them (``measured_exchanges_s``): the
    median over repeats of the first, the second and each later exchange of a case
    against the model's. The grid's figure, the median of the exchanges after the
    first, does not see the second exchange, where a connection's first message with
    a window beyond its send buffer is (``network.send_buffer_segments``)."""
    kept = [r for r in rows if r.get("measured_exchanges_s")]
    if not kept:
        return ""
    scores: dict[str, dict[str, list[bool]]] = {}
    for r in kept:
        for i, runs in enumerate(zip(*r["measured_exchanges_s"], strict=True)):
            label = ("first", "second")[i] if i < 2 else "later"
            measured = statistics.median(runs)
            for model in ("tcp", "flow"):
                ratio = r[f"{model}_exchanges_s"][i] / measured
                scores.setdefault(label, {}).setdefault(model, []).append(
                    abs(ratio - 1) <= 0.10)
    lines = [f"{'exchange, alone':<18} {'tcp within 10%':>15} {'flow within 10%':>16}"]
    for label, by_model in scores.items():
        tcp, flow = by_model["tcp"], by_model["flow"]
        lines.append(f"{label:<18} {sum(tcp):>9}/{len(tcp):<5} {sum(flow):>10}/{len(flow):<5}")
    return "\n".join(lines)


def by_total(rows: list[dict]) -> str:
    """The exchanges of a case together, where rows keep them: the median over repeats of
    their total time (what a training run of that many lock-step exchanges pays) against
    the model's total. Where Linux has several outcomes for one exchange (a lost last
    segment or not, the send buffer grown a round trip earlier or later), the grid's
    median of the exchanges after the first can flip between them; the total weighs
    each exchange by its time."""
    kept = [r for r in rows if r.get("measured_exchanges_s")]
    if not kept:
        return ""
    ratios: dict[str, list[tuple[float, dict]]] = {"tcp": [], "flow": []}
    for r in kept:
        measured = statistics.median(sum(runs) for runs in r["measured_exchanges_s"])
        for model in ratios:
            ratios[model].append((sum(r[f"{model}_exchanges_s"]) / measured, r))
    lines = [f"{'exchanges, total':<18} {'tcp within 10%':>15} {'flow within 10%':>16} "
             f"{'worst tcp':>10}"]
    within = {m: sum(abs(x - 1) <= 0.10 for x, _ in v) for m, v in ratios.items()}
    worst, r = max(ratios["tcp"], key=lambda xr: abs(xr[0] - 1))
    beyond = sum(abs(x - 1) > 0.25 for x, _ in ratios["tcp"])
    lines.append(f"{'all':<18} {within['tcp']:>9}/{len(kept):<5} {within['flow']:>10}/"
                 f"{len(kept):<5} {worst:>9.2f}x ({r['rate_mbps']:g} Mb/s, {r['rtt_ms']:g} "
                 f"ms, {r['bytes']:,} B, gap {r['gap_s']:g}); beyond 25%: {beyond}")
    return "\n".join(lines)


def rescore(rows: list[dict], count: int) -> list[dict]:
    """Stored measurements against the current model (the measured values stand). A
    row that recorded its exchanges per case (``count``) is simulated with as many."""
    out = []
    for r in rows:
        tcp, flow = simulated(r["rate_mbps"], r["rtt_ms"], r["bytes"], r["pattern"],
                              r["gap_s"], r.get("count", count), r.get("line_rate_mbps"))
        pick = (lambda v: statistics.median(v[1:])) if r["pattern"] == "exchange" else (
            lambda v: v[0])
        sim_tcp, sim_flow = pick(tcp), pick(flow)
        row = {**r, "tcp_s": sim_tcp, "flow_s": sim_flow,
               "tcp_ratio": sim_tcp / r["measured_s"],
               "flow_ratio": sim_flow / r["measured_s"]}
        if "measured_exchanges_s" in r:
            row.update(tcp_exchanges_s=tcp, flow_exchanges_s=flow)
        out.append(row)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="100 KB and 1 MB, fewer gaps")
    p.add_argument("--rates", type=float, nargs="+", default=[5, 20, 100])
    p.add_argument("--rtts", type=float, nargs="+", default=[10, 40, 100])
    p.add_argument("--repeats", type=int, default=3,
                   help="runs per case (odd: the median is one of them)")
    p.add_argument("--patterns", nargs="+", choices=PATTERNS, default=list(PATTERNS),
                   help="only these patterns")
    p.add_argument("--count", type=int, default=6, help="exchanges per case")
    p.add_argument("--sizes", type=int, nargs="+", help="only these payloads, bytes")
    p.add_argument("--line-rate-mbps", type=float,
                   help="a first hop of this rate before the bottleneck, on the delay line "
                        "and in the model (default: a burst reaches the buffer at once)")
    p.add_argument("--json", type=Path,
                   help="also write the rows here (with --rescore: the rescored rows)")
    p.add_argument("--rescore", type=Path, metavar="JSON",
                   help="no measuring: hold rows written by --json against the current model")
    args = p.parse_args()
    if args.rescore:
        rows = rescore(json.loads(args.rescore.read_text()), args.count)
        print("\n".join(filter(None, [summary(rows), by_exchange(rows), by_total(rows)])))
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
        return
    started = time.time()
    try:
        rows = report(args.rates, args.rtts, args.quick, args.repeats, args.count,
                      patterns=args.patterns, sizes=args.sizes,
                      line_rate_mbps=args.line_rate_mbps)
    except Unavailable as err:
        sys.exit(f"skipped: {err}")
    print("\n".join(filter(None, [summary(rows), by_exchange(rows), by_total(rows)])))
    print(f"{len(rows)} cases in {time.time() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

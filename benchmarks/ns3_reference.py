"""Hold the TCP transport against ns-3, a packet-level reference, with and without loss.

Two ns-3 nodes share one point-to-point link of the rate and half the round-trip time
each way, behind a drop-tail queue of one bandwidth-delay product (at least 64 packets).
One TCP connection (``TcpCubic`` or ``TcpNewReno``; MSS 1448, initial window 10,
timestamps on, selective acknowledgements on, every segment acknowledged as Linux's
quick-ACK mode does early on, Linux's 200 ms minimum RTO) sends
one message from connect to the last byte received: the ``fresh`` pattern of
``ecofed_sim.network.time_messages``. A ``RateErrorModel`` on the receiver drops data
packets at random with the loss rate, as ``link.loss_rate`` assumes. Printed per case:
ns-3, the ``tcp`` transport and the ratio; then the share within 10%. With loss, ns-3's
time is the mean over ``--seeds`` runs (at 0.1% loss a 10 MB transfer sees about seven
losses, and one seed's time can be several times another's), with the runs' range, and
how many of the sender's loss episodes (entries into fast recovery or into loss) were
retransmission timeouts. The model's is the mean over ``--model-seeds`` runs with the
losses drawn at random (``network.loss_gaps: random``, the default), and, for
comparison, its one run with a loss every 1/p segments (``regular``). At 0.1% the times
are heavy-tailed (one seed's can be ten times another's), so the medians and deciles of
both are printed too: a mean over 30 ns-3 runs can move by a third between invocations.

ns-3 is an optional extra (``pip install -e .[validate]``, which gives ns-3 3.44 for
Python). Known differences from Linux: ns-3 has no restart after idle (these cases have
no idle periods), NewReno has no HyStart, and ns-3's recovery from a burst of losses is
slower than Linux's (no RACK or proportional rate reduction).

    python benchmarks/ns3_reference.py [--quick] [--cc cubic|newreno] [--seeds 30]
        [--json FILE]
    python benchmarks/ns3_reference.py --rescore FILE   # saved runs against the model now
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import NamedTuple

HEADER_BYTES = 20 + 32 + 2  # IPv4, TCP with timestamps, PPP: the point-to-point frame

_CALLBACKS = """
namespace efs {
double done_s = -1; uint64_t target = 0, got = 0;
int timeouts = 0, recoveries = 0;  // the sender's entries into CA_LOSS and CA_RECOVERY
void on_rx(ns3::Ptr<const ns3::Packet> p, const ns3::Address &) {
    got += p->GetSize();
    if (done_s < 0 && got >= target) done_s = ns3::Simulator::Now().GetSeconds();
}
void on_state(ns3::TcpSocketState::TcpCongState_t, ns3::TcpSocketState::TcpCongState_t to) {
    if (to == ns3::TcpSocketState::CA_LOSS) timeouts++;
    if (to == ns3::TcpSocketState::CA_RECOVERY) recoveries++;
}
void hook_sender() {  // once the bulk sender has made its socket
    ns3::Config::ConnectWithoutContext(
        "/NodeList/0/$ns3::TcpL4Protocol/SocketList/0/CongState", ns3::MakeCallback(&on_state));
}
void watch(ns3::Ptr<ns3::Application> sink, uint64_t bytes, double sender_start_s) {
    done_s = -1; got = 0; target = bytes; timeouts = 0; recoveries = 0;
    sink->TraceConnectWithoutContext("Rx", ns3::MakeCallback(&on_rx));
    ns3::Simulator::Schedule(ns3::Seconds(sender_start_s + 1e-6), &hook_sender);
}
}
"""


class Ns3Run(NamedTuple):
    seconds: float  # connect to last byte received
    timeouts: int  # the sender's entries into loss (retransmission timeouts)
    recoveries: int  # and into fast recovery


class Unavailable(RuntimeError):
    """ns-3 is not installed here."""


def load_ns3():
    try:
        import cppyy  # optional, slow to import
        from ns import ns
    except ImportError as err:
        raise Unavailable(f"ns-3 is not installed ({err}); pip install -e .[validate]") from None
    if not hasattr(cppyy.gbl, "efs"):
        cppyy.cppdef(_CALLBACKS)
    return ns, cppyy.gbl.efs


def ns3_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"ns3 {version('ns3')}"
    except PackageNotFoundError:
        return "ns3"


def ns3_run(rate_mbps: float, rtt_ms: float, nbytes: int, loss_rate: float,
            cc: str = "cubic", seed: int = 1) -> Ns3Run:
    """One message on a new connection in ns-3: its time, and the sender's loss
    episodes."""
    ns, efs = load_ns3()
    ns.Simulator.Destroy()
    ns.RngSeedManager.SetSeed(seed)
    ns.RngSeedManager.SetRun(seed)
    kind = {"cubic": "ns3::TcpCubic", "newreno": "ns3::TcpNewReno"}[cc]
    ns.Config.SetDefault("ns3::TcpL4Protocol::SocketType", ns.StringValue(kind))
    for name, value in (("SegmentSize", 1448), ("InitialCwnd", 10), ("DelAckCount", 1)):
        ns.Config.SetDefault(f"ns3::TcpSocket::{name}", ns.UintegerValue(value))
    for name in ("SndBufSize", "RcvBufSize"):
        ns.Config.SetDefault(f"ns3::TcpSocket::{name}", ns.UintegerValue(1 << 26))
    # Linux's minimum RTO (ns-3's default is RFC 6298's 1 s)
    ns.Config.SetDefault("ns3::TcpSocketBase::MinRto", ns.TimeValue(ns.MilliSeconds(200)))
    # selective acknowledgements, as Linux (ns-3's default too; the model's network.sack)
    ns.Config.SetDefault("ns3::TcpSocketBase::Sack", ns.BooleanValue(True))
    bdp_packets = max(64, math.ceil(rate_mbps * 1e6 * rtt_ms / 1e3 / 8 / 1500))
    nodes = ns.NodeContainer()
    nodes.Create(2)
    p2p = ns.PointToPointHelper()
    p2p.SetDeviceAttribute("DataRate", ns.StringValue(f"{rate_mbps}Mbps"))
    p2p.SetChannelAttribute("Delay", ns.StringValue(f"{rtt_ms / 2}ms"))
    p2p.SetQueue("ns3::DropTailQueue<Packet>", "MaxSize",
                 ns.QueueSizeValue(ns.QueueSize(f"{bdp_packets}p")))
    devices = p2p.Install(nodes)
    if loss_rate > 0:
        errors = ns.CreateObject[ns.RateErrorModel]()
        errors.SetAttribute("ErrorRate", ns.DoubleValue(loss_rate))
        errors.SetAttribute("ErrorUnit", ns.StringValue("ERROR_UNIT_PACKET"))
        devices.Get(1).SetAttribute("ReceiveErrorModel", ns.PointerValue(errors))
    ns.InternetStackHelper().Install(nodes)
    addresses = ns.Ipv4AddressHelper()
    addresses.SetBase(ns.Ipv4Address("10.1.1.0"), ns.Ipv4Mask("255.255.255.0"))
    interfaces = addresses.Assign(devices)
    port = 50000
    sink_helper = ns.PacketSinkHelper("ns3::TcpSocketFactory",
                                      ns.InetSocketAddress(ns.Ipv4Address.GetAny(),
                                                           port).ConvertTo())
    sink = sink_helper.Install(nodes.Get(1))
    sink.Start(ns.Seconds(0.0))
    bulk = ns.BulkSendHelper("ns3::TcpSocketFactory",
                             ns.InetSocketAddress(interfaces.GetAddress(1), port).ConvertTo())
    bulk.SetAttribute("MaxBytes", ns.UintegerValue(nbytes))
    bulk.SetAttribute("SendSize", ns.UintegerValue(1448))
    sender = bulk.Install(nodes.Get(0))
    start_s = 1.0
    sender.Start(ns.Seconds(start_s))
    efs.watch(sink.Get(0), nbytes, start_s)
    ns.Simulator.Stop(ns.Seconds(start_s + 600))
    ns.Simulator.Run()
    done, timeouts, recoveries = efs.done_s, efs.timeouts, efs.recoveries
    ns.Simulator.Destroy()
    if done < 0:
        raise RuntimeError(f"ns-3 did not deliver {nbytes} bytes in 600 s")
    return Ns3Run(done - start_s, timeouts, recoveries)


def model_runs(rate_mbps: float, rtt_ms: float, nbytes: int, loss_rate: float,
               cc: str = "cubic", seeds: int = 1, random_loss: bool = True) -> list[float]:
    """The ``tcp`` transport on the same path, one time per seed (0, 1, ...: where the
    losses fall), or one time without random loss; NewReno keeps half its window at a
    loss and grows it back a segment a round trip (``cubic_growth`` off)."""
    from ecofed_sim.network import TcpParams, time_messages

    params = TcpParams(header_bytes=HEADER_BYTES, slow_start_after_idle=False,
                       beta=0.5 if cc == "newreno" else TcpParams.beta,
                       cubic_growth=cc != "newreno", random_loss=random_loss)
    runs = seeds if loss_rate > 0 and random_loss else 1
    return [time_messages(rate_mbps, rtt_ms, nbytes, "fresh", tcp=params,
                          loss_rate=loss_rate, seed=seed)[0] for seed in range(runs)]


def _spread(runs: list[float]) -> str:
    """Median and the 10th to 90th percentile of ``runs``."""
    deciles = statistics.quantiles(runs, n=10)
    return f"median {statistics.median(runs):.2f}, p10-p90 {deciles[0]:.2f}-{deciles[-1]:.2f} s"


def cases(quick: bool) -> list[tuple]:
    rates, rtts = [5, 20, 100], [10, 40, 100]
    clean = [(r, t, n, 0.0) for r in rates for t in rtts
             for n in ((100_000, 1_000_000) if quick else (100_000, 1_000_000, 10_000_000))]
    lossy = [(r, t, 10_000_000, p) for r in rates for t in rtts
             for p in ((0.01,) if quick else (0.001, 0.01))]
    return clean + lossy


def measure(quick: bool, cc: str, seeds: int) -> list[dict]:
    """ns-3's runs of every case: seconds per seed, timeouts and loss episodes."""
    measured, todo = [], cases(quick)
    for done, (rate, rtt, nbytes, loss) in enumerate(todo, 1):
        started = time.time()
        got = [ns3_run(rate, rtt, nbytes, loss, cc, s)
               for s in (range(1, seeds + 1) if loss > 0 else [1])]
        print(f"ns-3 case {done}/{len(todo)}: {rate:g} Mb/s, {rtt:g} ms, {nbytes:,} B, loss "
              f"{loss:g}: {len(got)} runs in {time.time() - started:.0f} s", file=sys.stderr,
              flush=True)
        timeouts = sum(g.timeouts for g in got)
        measured.append({"rate_mbps": rate, "rtt_ms": rtt, "bytes": nbytes, "loss": loss,
                         "ns3_s": [g.seconds for g in got], "timeouts": timeouts,
                         "episodes": timeouts + sum(g.recoveries for g in got)})
    return measured


def report(measured: list[dict], cc: str, model_seeds: int) -> None:
    """Hold the model against ns-3's runs, case by case, then the summary lines."""
    rows = []
    for case in measured:
        rate, rtt, nbytes, loss = (case[k] for k in ("rate_mbps", "rtt_ms", "bytes", "loss"))
        runs = case["ns3_s"]
        ref = statistics.mean(runs)
        drawn = model_runs(rate, rtt, nbytes, loss, cc, model_seeds)
        sim = statistics.mean(drawn)
        regular = model_runs(rate, rtt, nbytes, loss, cc, random_loss=False)[0]
        medians = (statistics.median(runs), statistics.median(drawn))
        rows.append((rate, rtt, nbytes, loss, ref, sim, regular, *medians))
        print(f"{rate:>4g} Mb/s {rtt:>4g} ms {nbytes:>11,d} B loss {loss:<6g} ns-3 {ref:9.4f} s"
              f"  tcp {sim:9.4f} s ({sim / ref:5.2f}x)", flush=True)
        if len(runs) > 1:
            print(f"    ns-3 {len(runs)} runs: {_spread(runs)}, standard error of the mean "
                  f"{statistics.stdev(runs) / math.sqrt(len(runs)) / ref:.0%}, timeouts "
                  f"{case['timeouts']}/{case['episodes']} loss episodes\n"
                  f"    tcp {len(drawn)} runs: {_spread(drawn)} (median "
                  f"{medians[1] / medians[0]:.2f}x); a loss every 1/p segments "
                  f"(loss_gaps: regular): {regular:.4f} s ({regular / ref:.2f}x the mean, "
                  f"{regular / medians[0]:.2f}x the median)", flush=True)
    for label, keep, col, of in (("no loss", lambda r: r[3] == 0, 5, 4),
                                 ("random loss, means", lambda r: r[3] > 0, 5, 4),
                                 ("random loss, medians", lambda r: r[3] > 0, 8, 7),
                                 ("random loss, regular gaps against the mean",
                                  lambda r: r[3] > 0, 6, 4),
                                 ("random loss, regular gaps against the median",
                                  lambda r: r[3] > 0, 6, 7),
                                 ("all, means", lambda r: True, 5, 4)):
        part = [r for r in rows if keep(r)]
        if not part:
            continue
        within = sum(abs(r[col] / r[of] - 1) <= 0.10 for r in part)
        worst = max(part, key=lambda r: abs(r[col] / r[of] - 1))
        print(f"{label}: {within}/{len(part)} within 10%; worst {worst[col] / worst[of]:.2f}x "
              f"({worst[0]:g} Mb/s, {worst[1]:g} ms, {worst[2]:,} B, loss {worst[3]:g})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer sizes and loss rates")
    p.add_argument("--cc", choices=["cubic", "newreno"], default="newreno",
                   help="ns-3's congestion control (NewReno: the law Mathis et al. derive)")
    p.add_argument("--seeds", type=int, default=30, help="ns-3 runs per lossy case (mean)")
    p.add_argument("--model-seeds", type=int, default=200,
                   help="the model's runs per lossy case (mean)")
    p.add_argument("--json", metavar="FILE", help="also save ns-3's runs to FILE")
    p.add_argument("--rescore", metavar="FILE",
                   help="hold ns-3 runs saved with --json against the model as it is now "
                        "(no ns-3 needed; --cc, --quick and --seeds come from the file)")
    args = p.parse_args()
    started = time.time()
    if args.rescore:
        try:
            saved = json.loads(Path(args.rescore).read_text())
            measured, cc = saved["cases"], saved["cc"]
        except (OSError, ValueError, KeyError) as err:
            print(f"error: {args.rescore}: not a file saved with --json ({err})",
                  file=sys.stderr)
            sys.exit(2)
        print(f"ns-3 {cc}, runs saved {saved.get('date', '?')} ({saved.get('ns3', '?')})")
    else:
        try:
            load_ns3()
        except Unavailable as err:
            sys.exit(f"skipped: {err}")
        cc, measured = args.cc, measure(args.quick, args.cc, args.seeds)
        if args.json:
            Path(args.json).write_text(json.dumps(
                {"cc": cc, "date": time.strftime("%Y-%m-%d"), "ns3": ns3_version(),
                 "seeds": args.seeds, "cases": measured}, indent=1) + "\n")
    report(measured, cc, args.model_seeds)
    print(f"ns-3 {cc}, {len(measured)} cases in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()

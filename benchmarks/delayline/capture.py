"""Packet trace of one "warm" message over the delay line: which segments were lost, and
how Linux recovered them.

``tcp_fidelity.py`` times messages; this shows why a case takes what it takes. It sets up
the same path, starts a raw-socket sniffer on the TUN device of each namespace, sends one
message on a warm connection (``peer.py``'s 4 MiB warm-up first), and prints, relative to
the message's start, every data segment the sender sent after the first burst and every
acknowledgement it received, with retransmissions marked, and the sender's TCP_INFO
(cwnd, srtt, retransmissions) before and after.

    python benchmarks/delayline/capture.py RATE_MBPS RTT_MS BYTES [--runs K]

``--runs K`` traces K messages one after another on the same path, as the fidelity grid
sends its repeats: with ``tcp_no_metrics_save=0`` each connection after the first starts
from the metrics (RTT, slow-start threshold) the kernel cached from the one before.

Needs root, iproute2, gcc and /dev/net/tun (as ``tcp_fidelity.py``).
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
from pathlib import Path

from peer import WARMUP_BYTES, accept_one, now, recv_exact, tcp_socket

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tcp_fidelity import IP_SRV, NS_DEV, NS_SRV, Path_  # noqa: E402

HERE = Path(__file__).resolve().parent
PORT = 50091


def sniff(seconds: float) -> None:
    """Print, as one JSON line, (time, packet type, sport, dport, seq, ack, payload bytes)
    of every TCP/IPv4 packet seen on dl0 for ``seconds``."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
    s.bind(("dl0", 0))
    s.settimeout(0.05)
    print("ready", flush=True)
    end, seen = now() + seconds, []
    while now() < end:
        try:
            pkt, addr = s.recvfrom(70000)
        except TimeoutError:
            continue
        t = now()
        if len(pkt) < 40 or pkt[0] >> 4 != 4 or pkt[9] != 6:
            continue
        ihl = (pkt[0] & 15) * 4
        sport, dport, seq, ack = struct.unpack_from("!HHII", pkt, ihl)
        payload = struct.unpack_from("!H", pkt, 2)[0] - ihl - (pkt[ihl + 12] >> 4) * 4
        seen.append((t, addr[2], sport, dport, seq, ack, payload))
    print(json.dumps(seen), flush=True)


def tcp_info(s: socket.socket) -> dict:
    raw = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    field = {"rto_us": 8, "srtt_us": 68, "ssthresh": 76, "cwnd": 80, "total_retrans": 100}
    return {k: struct.unpack_from("<I", raw, off)[0] for k, off in field.items()}


def server(host: str, n: int) -> None:
    """peer.py's warm pattern, then a one-byte reply once the message is in."""
    conn = accept_one(host, PORT)
    recv_exact(conn, WARMUP_BYTES)
    conn.sendall(b"k")
    recv_exact(conn, n)
    print(json.dumps({"end": now()}), flush=True)
    conn.sendall(b"d")
    conn.recv(1)


def client(host: str, n: int) -> None:
    s = tcp_socket()
    s.connect((host, PORT))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(b"w" * WARMUP_BYTES)
    recv_exact(s, 1)
    before, start = tcp_info(s), now()
    s.sendall(b"x" * n)
    recv_exact(s, 1)
    print(json.dumps({"start": start, "before": before, "after": tcp_info(s)}), flush=True)
    s.close()


def in_ns(ns: str, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, __file__, *args],
                            stdout=subprocess.PIPE, text=True, **kw)


def show(packets: list, start: float) -> None:
    data = [p for p in packets if p[0] >= start and p[3] == PORT and p[6] > 0 and p[1] == 4]
    first = min(p[4] for p in data)
    sent: set[int] = set()
    for t, kind, sport, dport, seq, ack, size in packets:
        if t < start:
            continue
        if dport == PORT and size > 0 and kind == 4:  # sent by this host
            again = seq in sent
            sent.add(seq)
            if again or t - start > 0.002:
                print(f"{(t - start) * 1e3:8.2f} ms  sent  seq +{seq - first:<8d} {size:5d} B"
                      f"{'  retransmission' if again else ''}")
        elif sport == PORT and kind == 0:  # an acknowledgement received
            print(f"{(t - start) * 1e3:8.2f} ms  ack   +{ack - first}")
    print(f"first burst: {sum(1 for p in data if p[0] - start <= 0.002)} segments")


def trace_one(rate: float, n: int) -> tuple[dict, float, list]:
    """One warm message on the path set up, traced: the client's facts, the time its last
    byte arrived, and the packets seen."""
    warmup_s = WARMUP_BYTES * 8 / (rate * 1e6)  # the warm-up, then the message's 6 s
    sniffer = in_ns(NS_DEV, "sniff", str(warmup_s + 6))
    sniffer.stdout.readline()
    srv = in_ns(NS_SRV, "server", IP_SRV, str(n))
    srv.stdout.readline()
    cli = in_ns(NS_DEV, "client", IP_SRV, str(n))
    c = json.loads(cli.stdout.readline())
    end = json.loads(srv.stdout.readline())["end"]
    packets = json.loads(sniffer.stdout.readlines()[-1])
    for p in (cli, srv, sniffer):
        p.wait(timeout=30)
    return c, end, packets


def main() -> None:
    args = sys.argv[1:]
    runs = 1
    if "--runs" in args:
        at = args.index("--runs")
        runs = int(args[at + 1])
        del args[at:at + 2]
    rate, rtt, n = float(args[0]), float(args[1]), int(args[2])
    path = Path_(rate, rtt)
    try:
        traced = [trace_one(rate, n) for _ in range(runs)]
    finally:
        path.teardown()
    for i, (c, end, packets) in enumerate(traced, 1):
        print(f"{'' if runs == 1 else f'run {i}: '}{rate:g} Mbit/s, {rtt:g} ms, {n:,} B: "
              f"last byte after {(end - c['start']) * 1e3:.1f} ms\nbefore {c['before']}\n"
              f"after  {c['after']}")
        show(packets, c["start"])


if __name__ == "__main__":
    if sys.argv[1] == "sniff":
        sniff(float(sys.argv[2]))
    elif sys.argv[1] in ("server", "client"):
        (server if sys.argv[1] == "server" else client)(sys.argv[2], int(sys.argv[3]))
    else:
        main()

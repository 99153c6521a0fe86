"""Lock-step exchanges on the delay line, with each end's congestion state after each one.

``tcp_fidelity.py`` times exchanges; this shows what each side's congestion control did
in them. The client sends BYTES, the server echoes BYTES once all has arrived, COUNT
times on one connection (``time_messages``' ``exchange`` pattern), idle GAP_S seconds
between exchanges (default 0). After each exchange it prints the duration and, from
``TCP_INFO``, the client's (uploads) and the server's (downloads) congestion window and
slow-start threshold in segments, retransmissions so far, smoothed RTT, RTT variance and
RTO, the peer's receive window (``snd_wnd``) and the socket's send buffer
(``SO_SNDBUF``, bytes of memory). The server reads its own after the next message has
arrived (its reply is then acknowledged), just before it sends the next reply: the state
that reply starts from.

``--flights`` also traces the server's packets (``capture.py``'s sniffer) and prints the
flights each reply left in: segments sent less than 1 ms apart, a round trip or more
between flights. A reply whose window exceeds the send buffer leaves as what the buffer
holds (about 60 segments until it first grows) and the rest a round trip later.

    python benchmarks/delayline/exchange_info.py RATE_MBPS RTT_MS BYTES [COUNT [GAP_S]]
                                                 [--flights] [--line-rate-mbps R]

``--line-rate-mbps R``: a first hop of R Mbit/s before the bottleneck's buffer, as
``tcp_fidelity.py --line-rate-mbps`` puts one.

Needs root, iproute2, gcc and /dev/net/tun (as ``tcp_fidelity.py``).
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from peer import accept_one, now, recv_exact, tcp_socket

HERE = Path(__file__).resolve().parent
PORT = 50093


def tcp_info(s: socket.socket) -> dict:
    raw = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 232)
    fields = {"rto_us": 8, "srtt_us": 68, "rttvar_us": 72, "ssthresh": 76, "cwnd": 80,
              "retrans": 100, "rcv_ssthresh": 64, "snd_wnd": 228}
    # an older kernel's tcp_info is shorter: what it lacks is left out
    info = {k: struct.unpack_from("<I", raw, off)[0] for k, off in fields.items()
            if off + 4 <= len(raw)}
    if len(raw) >= 184:
        info["rwnd_limited_ms"] = struct.unpack_from("<Q", raw, 176)[0] / 1e3
    info["sndbuf"] = s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    for key in ("rto", "srtt", "rttvar"):
        info[f"{key}_ms"] = info.pop(f"{key}_us") / 1e3
    return info


def server(host: str, n: int, count: int) -> None:
    conn, after = accept_one(host, PORT), []
    for i in range(count):
        recv_exact(conn, n)
        if i:
            after.append(tcp_info(conn))  # the previous reply is acknowledged by now
        conn.sendall(b"x" * n)
    conn.recv(1)  # the client closes once it has the last reply
    after.append(tcp_info(conn))
    print(json.dumps(after), flush=True)


def client(host: str, n: int, count: int, gap_s: float) -> None:
    s = tcp_socket()
    s.connect((host, PORT))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rows = []
    for _ in range(count):
        start = now()
        s.sendall(b"x" * n)
        recv_exact(s, n)
        rows.append(((now() - start) * 1e3, tcp_info(s)))
        time.sleep(gap_s)
    print(json.dumps(rows), flush=True)
    s.close()


def in_ns(ns: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, __file__, *args],
                            stdout=subprocess.PIPE, text=True)


def flights(packets: list, n: int, count: int) -> list[str]:
    """Per reply, the sizes of the flights it left the server in (``+`` between them), a
    resent segment marked ``r``: from the sniffer's packets, data sent from ``PORT``."""
    sent = [(t, seq) for t, kind, sport, _, seq, _, size in packets
            if kind == 4 and sport == PORT and size > 0]
    if not sent:
        return ["?"] * count
    first, seen = sent[0][1], set()
    replies: list[list[list]] = [[] for _ in range(count)]
    last_t = -1.0
    for t, seq in sent:
        i = min(((seq - first) % 2**32) // n, count - 1)
        resent = seq in seen
        seen.add(seq)
        if replies[i] and t - last_t < 0.001:
            replies[i][-1][0] += 1
            replies[i][-1][1] += resent
        else:
            replies[i].append([1, int(resent)])
        last_t = t
    return ["+".join(f"{k}{'r' * bool(r)}" for k, r in reply) for reply in replies]


def main() -> None:
    sys.path.insert(0, str(HERE.parent))
    from tcp_fidelity import IP_SRV, NS_DEV, NS_SRV, Path_

    args = [a for a in sys.argv[1:] if a != "--flights"]
    traced = "--flights" in sys.argv
    line_rate_mbps = None
    if "--line-rate-mbps" in args:
        at = args.index("--line-rate-mbps")
        line_rate_mbps = float(args[at + 1])
        del args[at:at + 2]
    rate, rtt, n = float(args[0]), float(args[1]), int(args[2])
    count = int(args[3]) if len(args) > 3 else 6
    gap_s = float(args[4]) if len(args) > 4 else 0.0
    path = Path_(rate, rtt, line_rate_mbps=line_rate_mbps)
    try:
        sniffer = None
        if traced:  # long enough for every exchange at a fifth of the rate, and the gaps
            seconds = count * (gap_s + 2 * rtt / 1e3 + 40 * n * 8 / (rate * 1e6)) + 2
            sniffer = subprocess.Popen(["ip", "netns", "exec", NS_SRV, sys.executable,
                                        str(HERE / "capture.py"), "sniff", f"{seconds:.1f}"],
                                       stdout=subprocess.PIPE, text=True)
            sniffer.stdout.readline()  # ready
        srv = in_ns(NS_SRV, "server", IP_SRV, str(n), str(count))
        srv.stdout.readline()  # listening
        cli = in_ns(NS_DEV, "client", IP_SRV, str(n), str(count), str(gap_s))
        rows = json.loads(cli.stdout.readline())
        downs = json.loads(srv.stdout.readline())
        for p in (cli, srv):
            p.wait(timeout=30)
        shown = (flights(json.loads(sniffer.stdout.readlines()[-1]), n, count) if traced
                 else None)
    finally:
        path.teardown()
    print(f"{rate:g} Mbit/s, {rtt:g} ms, {n:,} B exchanges, {gap_s:g} s apart")
    for i, ((ms, up), down) in enumerate(zip(rows, downs, strict=True)):
        print(f"{i + 1:3d} {ms:8.1f} ms  up {up}  down {down}")
        if shown:
            print(f"    reply {i + 1} left the server in flights of {shown[i]} segments")


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif sys.argv[1] == "client":
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
    else:
        main()

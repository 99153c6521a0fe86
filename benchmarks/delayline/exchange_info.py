"""Lock-step exchanges on the delay line, with each end's congestion state after each one.

``tcp_fidelity.py`` times exchanges; this shows what each side's congestion control did
in them. The client sends BYTES, the server echoes BYTES once all has arrived, COUNT
times on one connection (``time_messages``' ``exchange`` pattern), idle GAP_S seconds
between exchanges (default 0). After each exchange it prints the duration and, from
``TCP_INFO``, the client's (uploads) and the server's (downloads) congestion window and
slow-start threshold in segments, smoothed RTT and retransmissions so far. The server
reads its own after the next message has arrived (its reply is then acknowledged).

    python benchmarks/delayline/exchange_info.py RATE_MBPS RTT_MS BYTES [COUNT [GAP_S]]

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
    raw = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    fields = {"srtt_us": 68, "ssthresh": 76, "cwnd": 80, "retrans": 100}
    info = {k: struct.unpack_from("<I", raw, off)[0] for k, off in fields.items()}
    info["srtt_ms"] = info.pop("srtt_us") / 1e3
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


def main() -> None:
    sys.path.insert(0, str(HERE.parent))
    from tcp_fidelity import IP_SRV, NS_DEV, NS_SRV, Path_

    rate, rtt, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 6
    gap_s = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    path = Path_(rate, rtt)
    try:
        srv = in_ns(NS_SRV, "server", IP_SRV, str(n), str(count))
        srv.stdout.readline()  # listening
        cli = in_ns(NS_DEV, "client", IP_SRV, str(n), str(count), str(gap_s))
        rows = json.loads(cli.stdout.readline())
        downs = json.loads(srv.stdout.readline())
        for p in (cli, srv):
            p.wait(timeout=30)
    finally:
        path.teardown()
    print(f"{rate:g} Mbit/s, {rtt:g} ms, {n:,} B exchanges, {gap_s:g} s apart")
    for i, ((ms, up), down) in enumerate(zip(rows, downs, strict=True)):
        print(f"{i + 1:3d} {ms:8.1f} ms  up {up}  down {down}")


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif sys.argv[1] == "client":
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
    else:
        main()

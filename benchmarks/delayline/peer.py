"""One end of a real TCP measurement over the delay line (run inside a namespace).

    peer.py server HOST PORT PATTERN BYTES COUNT     # prints CLOCK_MONOTONIC times
    peer.py client HOST PORT PATTERN BYTES COUNT GAP_S

Patterns as ``ecofed_sim.network.time_messages``: ``fresh`` (client prints the time it
starts connecting, server the time the last byte arrived), ``warm`` (a warm-up transfer
acknowledged by one byte opens the window; the client prints when it starts the message,
the server when the last byte arrived), ``exchange`` (the server echoes each message; the
client prints each exchange's duration). Cubic is set per socket (namespaces default to
BBR here); the client also prints the kernel facts that matter.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time

WARMUP_BYTES = 4 * 2**20


def now() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def recv_exact(conn: socket.socket, n: int) -> None:
    got = 0
    while got < n:
        chunk = conn.recv(min(1 << 20, n - got))
        if not chunk:
            raise ConnectionError("peer closed early")
        got += len(chunk)


def tcp_socket() -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"cubic")
    return s


def accept_one(host: str, port: int) -> socket.socket:
    """Listen (Cubic), say so on stdout, and return the first connection (no Nagle)."""
    lsock = tcp_socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((host, port))
    lsock.listen(1)
    print("listening", flush=True)
    conn, _ = lsock.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def server(host: str, port: int, pattern: str, n: int, count: int) -> None:
    conn = accept_one(host, port)
    if pattern == "warm":
        recv_exact(conn, WARMUP_BYTES)
        conn.sendall(b"k")
    if pattern in ("fresh", "warm"):
        recv_exact(conn, n)
        print(json.dumps({"end": now()}), flush=True)
        conn.sendall(b"d")  # the client closes only once all has arrived
    else:
        for _ in range(count):
            recv_exact(conn, n)
            conn.sendall(b"x" * n)
    conn.recv(1)  # until the client closes


def client(host: str, port: int, pattern: str, n: int, count: int, gap_s: float) -> None:
    s = tcp_socket()
    t0 = now()
    s.connect((host, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    facts = {"mss": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG),
             "congestion": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION,
                                        16).split(b"\0")[0].decode()}
    payload = b"x" * n
    if pattern == "warm":
        s.sendall(b"w" * WARMUP_BYTES)
        recv_exact(s, 1)
        info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        facts["cwnd_segments"] = struct.unpack_from("<I", info, 80)[0]
        facts["ssthresh"] = struct.unpack_from("<I", info, 76)[0]
        t0 = now()
    if pattern in ("fresh", "warm"):
        s.sendall(payload)
        print(json.dumps({"start": t0, **facts}), flush=True)
        # Closing before the message is in would send a FIN after it: a segment beyond a
        # lost tail, acknowledged before the loss probe would fire, that starts recovery
        # early (a 5 Mbit/s, 100 ms, 100 KB warm message took 0.86 s where one left open
        # takes 0.55 or 1.06 s). The server's one byte says all has arrived.
        recv_exact(s, 1)
    else:
        durations = []
        for _ in range(count):
            t = now()
            s.sendall(payload)
            recv_exact(s, n)
            durations.append(now() - t)
            time.sleep(gap_s)
        print(json.dumps({"durations": durations, **facts}), flush=True)
    s.close()


if __name__ == "__main__":
    role, host, port, pattern, n, count = sys.argv[1:7]
    if role == "server":
        server(host, int(port), pattern, int(n), int(count))
    else:
        client(host, int(port), pattern, int(n), int(count), float(sys.argv[7]))

#!/usr/bin/env python3
"""Loopback TCP round trip between two cores, for reading the load benchmark's Δp50.

A proxy in the benchmark's layout (load generator and fake upstream on one core, the
proxy on the other) makes every request cross between the cores four times, twice per
round trip, where the direct run crosses none. What one such round trip costs on the
machine, with nothing but a one-byte echo on the far side, is therefore part of every
proxy's Δp50 before it does any work. This prints it, next to the same echo on one
core, with the client pausing between round trips as the load generator does at a
fixed rate (an idle core may have to be woken).

Usage: hop.py CORE_A CORE_B GAP_SECONDS [GAP_SECONDS ...]
Output: one tab-separated line per gap and layout: layout gap_s n p50_us p90_us
"""

import os
import socket
import sys
import time

ROUNDS = 2000


def echo(listener: socket.socket) -> None:
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        data = conn.recv(64)
        if not data:
            return
        conn.sendall(data)


def measure(server_core: int, client_core: int, gap: float) -> list:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    pid = os.fork()
    if pid == 0:
        os.sched_setaffinity(0, {server_core})
        try:
            echo(listener)
        finally:
            os._exit(0)
    listener.close()
    os.sched_setaffinity(0, {client_core})
    conn = socket.create_connection(("127.0.0.1", port))
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    times = []
    for i in range(ROUNDS + 100):
        start = time.perf_counter()
        conn.sendall(b"x")
        conn.recv(64)
        if i >= 100:  # the first round trips warm both sides up
            times.append(time.perf_counter() - start)
        if gap:
            time.sleep(gap)
    conn.close()
    os.waitpid(pid, 0)
    times.sort()
    return times


def main() -> None:
    a, b = int(sys.argv[1]), int(sys.argv[2])
    for gap in (float(g) for g in sys.argv[3:]):
        for layout, server in (("cross", a), ("same", b)):
            t = measure(server, b, gap)
            p50, p90 = t[len(t) // 2], t[int(len(t) * 0.9)]
            print(f"{layout}\t{gap}\t{len(t)}\t{p50 * 1e6:.1f}\t{p90 * 1e6:.1f}", flush=True)


if __name__ == "__main__":
    main()

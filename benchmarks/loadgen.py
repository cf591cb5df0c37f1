"""A bare gevent load process (no locust): persistent or connect-per-request socklab traffic.

    python -m benchmarks.loadgen --port P --server-pid PID --mode persistent|connect \
        --connections 50 --seconds 3 --warmup 1

Greenlets loop send-request / read-reply for warm-up + measured seconds.  At the
window's edges it reads the server process tree's CPU times (psutil, ~0.05 ms), so
requests and server CPU cover exactly the same window.  Prints one JSON line.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
import psutil  # noqa: E402

from servers.protocol import Op, encode_request  # noqa: E402


def tree_cpu(proc: psutil.Process) -> tuple[float, float]:
    """(user, system) CPU seconds of a process and its children."""
    user = system = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            user += t.user
            system += t.system
        except psutil.Error:
            pass
    return user, system


def recv_reply(sock: socket.socket, buf: bytearray) -> None:
    """Read one reply frame (5-byte header + body)."""
    recv = sock.recv
    while len(buf) < 5:
        data = recv(65536)
        if not data:
            raise ConnectionError("closed")
        buf += data
    need = 4 + int.from_bytes(buf[:4], "big")
    while len(buf) < need:
        data = recv(65536)
        if not data:
            raise ConnectionError("closed")
        buf += data
    del buf[:need]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--server-pid", type=int, required=True)
    ap.add_argument("--mode", choices=["persistent", "connect"], default="persistent")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--payload-bytes", type=int, default=64)
    args = ap.parse_args()
    frame = encode_request(Op.ECHO, 0, b"x" * args.payload_bytes)
    address = (args.host, args.port)
    counts = [0]
    errors = [0]
    stop_at = time.monotonic() + args.warmup + args.seconds + 60

    def persistent() -> None:
        sock = socket.create_connection(address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray()
        while time.monotonic() < stop_at:
            sock.sendall(frame)
            recv_reply(sock, buf)
            counts[0] += 1
        sock.close()

    def connect_per_request() -> None:
        while time.monotonic() < stop_at:
            try:
                sock = socket.create_connection(address)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(frame)
                recv_reply(sock, bytearray())
                sock.close()
                counts[0] += 1
            except OSError:
                errors[0] += 1

    server = psutil.Process(args.server_pid)
    body = persistent if args.mode == "persistent" else connect_per_request
    greenlets = [gevent.spawn(body) for _ in range(args.connections)]
    gevent.sleep(args.warmup)
    c0, cpu0, t0 = counts[0], tree_cpu(server), time.perf_counter()
    own0 = psutil.Process().cpu_times()
    gevent.sleep(args.seconds)
    c1, cpu1, t1 = counts[0], tree_cpu(server), time.perf_counter()
    own1 = psutil.Process().cpu_times()
    gevent.killall(greenlets, timeout=2)
    n = max(c1 - c0, 1)
    user, system = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    print(
        json.dumps(
            {
                "requests": c1 - c0,
                "seconds": t1 - t0,
                "rps": (c1 - c0) / (t1 - t0),
                "server_cpu_s": user + system,
                "server_cpu_us_per_request": (user + system) / n * 1e6,
                "server_user_us_per_request": user / n * 1e6,
                "server_sys_us_per_request": system / n * 1e6,
                "client_cpu_us_per_request": ((own1.user + own1.system) - (own0.user + own0.system)) / n * 1e6,
                "errors": errors[0],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()

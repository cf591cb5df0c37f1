"""A bare gevent load process (no locust): persistent or connect-per-request socklab traffic.

    python -m benchmarks.loadgen --port P [--server-pid PID] --mode persistent|connect \
        --connections 50 --seconds 3 --warmup 1

Greenlets run the same ``loadtest.client.socket_client.SocklabClient`` code the Locust users
run, back to back, for warm-up + measured seconds; its callback only counts.  So
this is both the server-cost load and the reference the Locust load generator is
measured against (benchmarks.loadgen_cost).  ``--client minimal`` runs instead the
floor any raw-socket load generator has: send the frame, recv until the reply is
whole, check its status, repeat — the other reference of loadgen_cost.  At the window's edges it reads the
server process tree's CPU times (psutil, ~0.05 ms; with --server-pid) and its own,
so requests and CPU cover exactly the same window.  Prints one JSON line.
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

from loadtest.client.socket_client import RequestFailure, SocklabClient  # noqa: E402
from loadtest.declare.kinds import CONNECT  # noqa: E402
from servers.protocol import Op, encode_request  # noqa: E402


def tree_cpu(proc: psutil.Process | None) -> tuple[float, float]:
    """(user, system) CPU seconds of a process tree, children it reaped included."""
    if proc is None:
        return 0.0, 0.0
    user = system = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            user += t.user + t.children_user
            system += t.system + t.children_system
        except psutil.Error:
            pass
    return user, system


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--server-pid", type=int, default=0, help="the server's pid, to measure its CPU")
    ap.add_argument("--mode", choices=["persistent", "connect"], default="persistent")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--payload-bytes", type=int, default=64)
    ap.add_argument(
        "--client",
        choices=["socklab", "minimal"],
        default="socklab",
        help="socklab: loadtest.client.socket_client, as the Locust users run it; minimal: a bare send/recv loop",
    )
    args = ap.parse_args()
    frame = encode_request(Op.ECHO, 0, b"x" * args.payload_bytes)
    counts = [0]
    errors = [0]

    def count(kind: str, name: str, seconds: float, length: int, exc: BaseException | None) -> None:
        if exc is not None:
            errors[0] += 1
        elif kind != CONNECT:
            counts[0] += 1

    def minimal() -> None:
        """The floor: what any raw-socket load generator must do per request, and nothing more."""
        sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.connect((args.host, args.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # send(), not sendall(): gevent's sendall asks the kernel for SO_SNDBUF on every call, a cost no
        # load generator has to pay (socklab's client does the same); a 73-byte frame always goes whole.
        send, recv = sock.send, sock.recv
        while True:
            if send(frame) != len(frame):
                raise RuntimeError("a short send of a 73-byte frame")
            data = recv(65536)
            while len(data) < 5 or len(data) < 4 + int.from_bytes(data[:4], "big"):
                more = recv(65536)
                if not more:
                    errors[0] += 1
                    return
                data += more
            if data[4] != 0:
                errors[0] += 1
            else:
                counts[0] += 1

    def minimal_connect() -> None:
        address = (args.host, args.port)  # no name to resolve: create_connection would ask getaddrinfo each time
        while True:
            sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
            sock.connect(address)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if sock.send(frame) != len(frame):
                raise RuntimeError("a short send of a 73-byte frame")
            data = sock.recv(65536)
            while len(data) < 5 or len(data) < 4 + int.from_bytes(data[:4], "big"):
                more = sock.recv(65536)
                if not more:
                    break
                data += more
            sock.close()
            if len(data) >= 5 and data[4] == 0:
                counts[0] += 1
            else:
                errors[0] += 1

    def persistent() -> None:
        client = SocklabClient(args.host, args.port, on_request=count)
        request = client.request
        while True:
            if request(Op.ECHO, name="persistent", frame=frame) is None:
                gevent.sleep(0.01)  # failed (counted): don't spin on a dead server

    def connect_per_request() -> None:
        client = SocklabClient(args.host, args.port, on_request=count)
        while True:
            try:
                client.connect()
            except RequestFailure:
                gevent.sleep(0.01)
                continue
            client.request(Op.ECHO, name="connect", frame=frame)
            client.close()

    server = psutil.Process(args.server_pid) if args.server_pid else None
    bodies = {
        ("socklab", "persistent"): persistent,
        ("socklab", "connect"): connect_per_request,
        ("minimal", "persistent"): minimal,
        ("minimal", "connect"): minimal_connect,
    }
    body = bodies[(args.client, args.mode)]
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
                "client_user_us_per_request": (own1.user - own0.user) / n * 1e6,
                "client_sys_us_per_request": (own1.system - own0.system) / n * 1e6,
                "client_cpu_percent": 100 * ((own1.user + own1.system) - (own0.user + own0.system)) / (t1 - t0),
                "errors": errors[0],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()

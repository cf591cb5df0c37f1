"""Connections held at once: N connections on a pre-forked event-loop design, from several load processes.

    python -m benchmarks.many_connections --connections 50000 [--design preforked-selectors] [--load-processes 4]
                                          [--hold 10]

Root only. It runs in a private network namespace of its own. There it widens the ephemeral port range
to 1024–65535 (the host's is never touched), past the default range's 28,232 connections from one
address, and raises the fd limit for itself and its children.

The server is the design with a worker per core, `--max-connections` room for every connection, and no
idle timeout. Each load process opens its share of the connections, sends one 64-byte ECHO on each and
reads the reply (a connection counts as a failure if it does not connect or is not answered), then holds
them all while the monitor samples at 1 Hz.

It prints one JSON line:
- `established`: the server's ESTABLISHED sockets on its port once all are held (inet_diag: the kernel's table);
- `failures`;
- `rss_per_connection_bytes`: the server tree's RSS at the peak less before, ÷ connections;
- `monitor_cpu_percent`: the monitor's CPU over the hold, % of one core;
- `seconds`: from the first connect to the last one answered.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import socket
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import psutil

from loadtest.hosts.isolate import IsolationError, enter_private_netns, set_sysctls
from loadtest.matrix.processes import MonitorProcess, ServerProcess
from loadtest.measure.sockdiag import SockDiag
from servers.protocol import Op, encode_request

FRAME = encode_request(Op.ECHO, 0, b"x" * 64)
REPLY_BYTES = 4 + 1 + 64


IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h: bind() takes the address only; connect() picks the port


def hold(port: int, count: int, source: str, ready: mp.Queue, release: mp.Event) -> None:  # type: ignore[type-arg]
    """One load process: `count` connections from its own loopback address, each answered once, held until
    `release`. An address of its own gives each process a whole ephemeral range: connect()'s search for a free
    port slows as a range fills (50,000 from 127.0.0.1 alone took 24 s, 45 s of it the kernel's)."""
    socks, failures = [], 0
    for _ in range(count):
        s = socket.socket()
        try:
            s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((source, 0))
            s.connect(("127.0.0.1", port))
            socks.append(s)
        except OSError:
            failures += 1
            s.close()
    answered = []
    for s in socks:
        try:
            s.sendall(FRAME)
            got = b""
            while len(got) < REPLY_BYTES:
                chunk = s.recv(REPLY_BYTES - len(got))
                if not chunk:
                    raise ConnectionError("closed")
                got += chunk
            answered.append(s)
        except OSError:
            failures += 1
            s.close()
    ready.put((len(answered), failures))
    release.wait()
    for s in answered:
        s.close()


def tree_rss(pid: int) -> int:
    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in (root, *root.children(recursive=True)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.many_connections", description=__doc__.split("\n")[0])
    ap.add_argument("--connections", type=int, default=50_000)
    ap.add_argument("--design", default="preforked-selectors")
    ap.add_argument("--load-processes", type=int, default=4)
    ap.add_argument(
        "--workers",
        type=int,
        default=0,
        help="server workers (default: one per core, or more if a "
        "worker would need more fds than RLIMIT_NOFILE's hard limit allows)",
    )
    ap.add_argument("--hold", type=float, default=20.0, help="seconds the connections are held, monitored")
    args = ap.parse_args(argv)
    try:
        enter_private_netns()
    except IsolationError as exc:
        ap.error(f"{exc.strerror}: it needs root, for a namespace of its own")
    problem = set_sysctls({"net.ipv4.ip_local_port_range": "1024 65535"})
    if problem:
        ap.error(problem)
    n = args.connections
    # Each process's fds are capped by RLIMIT_NOFILE's hard limit, which only CAP_SYS_RESOURCE raises (20,000 here,
    # without it): the soft limit goes up to it, and the connections are spread so no process needs more.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    per_process = hard - 1_000  # room for the process's own files
    workers = args.workers or max(os.cpu_count() or 2, -(-n // per_process))
    loaders = max(args.load_processes, -(-n // per_process))
    server = ServerProcess.start(
        args.design,
        extra_args=["--workers", str(workers), "--max-connections", str(n), "--backlog", "4096", "--read-timeout", "0"],
    )
    folder = Path(tempfile.mkdtemp(prefix="socklab-many-"))
    monitor = None
    release = mp.Event()
    ready: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    processes: list[mp.Process] = []
    try:
        idle_rss = tree_rss(server.pid)
        monitor = MonitorProcess.start(server.pid, server.port, folder / "monitor.csv", interval=1.0)
        shares = [n // loaders + (i < n % loaders) for i in range(loaders)]
        started = time.monotonic()
        processes = [
            mp.Process(target=hold, args=(server.port, share, f"127.0.0.{i + 2}", ready, release))
            for i, share in enumerate(shares)
        ]
        for p in processes:
            p.start()
        results = [ready.get(timeout=600) for _ in processes]
        seconds = time.monotonic() - started
        established = SockDiag().count(server.port).server.get("ESTABLISHED", 0)  # the kernel's, all held now
        peak_rss = tree_rss(server.pid)
        watcher = psutil.Process(monitor.proc.pid)
        before = sum(watcher.cpu_times()[:2])
        time.sleep(args.hold)
        monitor_cpu = 100 * (sum(watcher.cpu_times()[:2]) - before) / args.hold
        peak_rss = max(peak_rss, tree_rss(server.pid))
    finally:
        release.set()
        for p in processes:
            p.join(30)
        if monitor is not None:
            monitor.stop()
        server.stop()
    samples = pd.read_csv(folder / "monitor.csv")
    held = sum(r[0] for r in results)
    print(
        json.dumps(
            {
                "connections": n,
                "design": args.design,
                "workers": workers,
                "load_processes": loaders,
                "fd_limit": hard,
                "established": max(established, int(samples["server_ESTABLISHED"].max())),
                "failures": sum(r[1] for r in results),
                "rss_per_connection_bytes": round((peak_rss - idle_rss) / max(held, 1)),
                "monitor_cpu_percent": round(monitor_cpu, 2),
                "monitor_sample_ms_max": float(samples["sample_cost_ms"].max()),
                "seconds": round(seconds, 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
- `established`: the peak of the server's ESTABLISHED sockets on its port (inet_diag, the monitor's);
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
from servers.protocol import Op, encode_request

FRAME = encode_request(Op.ECHO, 0, b"x" * 64)
REPLY_BYTES = 4 + 1 + 64


def hold(port: int, count: int, ready: mp.Queue, release: mp.Event) -> None:  # type: ignore[type-arg]
    """One load process: `count` connections, each answered once, held until `release`."""
    socks, failures = [], 0
    for _ in range(count):
        s = socket.socket()
        try:
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
    ap.add_argument("--hold", type=float, default=10.0, help="seconds the connections are held, monitored")
    args = ap.parse_args(argv)
    try:
        enter_private_netns()
    except IsolationError as exc:
        ap.error(f"{exc.strerror}: it needs root, for a namespace of its own")
    problem = set_sysctls({"net.ipv4.ip_local_port_range": "1024 65535"})
    if problem:
        ap.error(problem)
    n = args.connections
    limit = n + 10_000  # each side's sockets, and room: this process and its children inherit it
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    workers = os.cpu_count() or 2
    server = ServerProcess.start(
        args.design,
        extra_args=["--workers", str(workers), "--max-connections", str(n), "--backlog", "4096", "--read-timeout", "0"],
    )
    folder = Path(tempfile.mkdtemp(prefix="socklab-many-"))
    monitor = None
    release = mp.Event()
    ready: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    loaders = []
    try:
        idle_rss = tree_rss(server.pid)
        monitor = MonitorProcess.start(server.pid, server.port, folder / "monitor.csv", interval=1.0)
        shares = [n // args.load_processes + (i < n % args.load_processes) for i in range(args.load_processes)]
        started = time.monotonic()
        loaders = [mp.Process(target=hold, args=(server.port, share, ready, release)) for share in shares]
        for p in loaders:
            p.start()
        results = [ready.get(timeout=600) for _ in loaders]
        seconds = time.monotonic() - started
        peak_rss = tree_rss(server.pid)
        watcher = psutil.Process(monitor.proc.pid)
        before = sum(watcher.cpu_times()[:2])
        time.sleep(args.hold)
        monitor_cpu = 100 * (sum(watcher.cpu_times()[:2]) - before) / args.hold
        peak_rss = max(peak_rss, tree_rss(server.pid))
    finally:
        release.set()
        for p in loaders:
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
                "load_processes": args.load_processes,
                "established": int(samples["server_ESTABLISHED"].max()),
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

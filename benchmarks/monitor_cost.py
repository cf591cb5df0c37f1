"""Monitor cost and exactness with 10,000 open connections.

    python -m benchmarks.monitor_cost [--connections 10000] [--seconds 15]

A `selectors` server holds N idle connections opened by this process (2N
sockets on the port).  The monitor runs as its own process at 1 sample/s;
its CPU over the window (psutil, user+system) is reported as % of one core.
Side by side, in this process: one monitor sample (inet_diag) against one
``psutil.net_connections('tcp')`` call filtered to the port (the obvious way),
and the monitor's per-state counts against ``ss`` read at the same moment.
Goals: monitor CPU <= 2% of a core; counts equal to ss.
"""

from __future__ import annotations

import argparse
import csv
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil

from loadtest.matrix.processes import MonitorProcess, ServerProcess
from loadtest.measure.monitor import Monitor

SS_STATES = {
    "ESTAB": "ESTABLISHED",
    "TIME-WAIT": "TIME_WAIT",
    "SYN-SENT": "SYN_SENT",
    "SYN-RECV": "SYN_RECV",
    "FIN-WAIT-1": "FIN_WAIT1",
    "FIN-WAIT-2": "FIN_WAIT2",
    "CLOSE-WAIT": "CLOSE_WAIT",
    "LAST-ACK": "LAST_ACK",
    "CLOSING": "CLOSING",
}


def ss_counts(port: int) -> tuple[Counter[str], Counter[str]]:
    out = subprocess.run(
        ["ss", "-tanH", f"( sport = :{port} or dport = :{port} )"], capture_output=True, text=True, check=True
    ).stdout
    server: Counter[str] = Counter()
    client: Counter[str] = Counter()
    for line in out.splitlines():
        state, _, _, local, _peer = line.split()[:5]
        if state == "LISTEN":
            continue
        side = server if local.rsplit(":", 1)[1] == str(port) else client
        side[SS_STATES.get(state, state)] += 1
    return server, client


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=15.0)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.connections + 1000)), hard))
    ok = True
    with ServerProcess.start("selectors", backlog=4096, extra_args=["--read-timeout", "0"]) as server:
        clients = []
        for _ in range(args.connections):
            clients.append(socket.create_connection(("127.0.0.1", server.port)))
        time.sleep(1.0)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "monitor.csv"
            monitor = MonitorProcess.start(server.pid, server.port, out, interval=1.0)
            time.sleep(1.0)  # imports and the first sample are start-up, not the steady cost
            proc = psutil.Process(monitor.proc.pid)
            c0, t0 = proc.cpu_times(), time.monotonic()
            time.sleep(args.seconds)
            c1, t1 = proc.cpu_times(), time.monotonic()
            monitor.stop(10)
            rows = list(csv.DictReader(out.open()))
        cpu_percent = 100 * ((c1.user + c1.system) - (c0.user + c0.system)) / (t1 - t0)
        sample_ms = sorted(float(r["sample_cost_ms"]) for r in rows)[len(rows) // 2]

        in_process = Monitor(server.pid, server.port, [])
        in_process.sample()
        t = time.perf_counter()
        row = in_process.sample()
        ours_ms = (time.perf_counter() - t) * 1000
        ss_server, ss_client = ss_counts(server.port)
        t = time.perf_counter()
        conns = [
            c for c in psutil.net_connections("tcp") if server.port in (c.laddr.port, c.raddr.port if c.raddr else 0)
        ]
        psutil_ms = (time.perf_counter() - t) * 1000
        for c in clients:
            c.close()
    equal = all(
        int(row[f"server_{s}"]) == ss_server.get(s, 0) and int(row[f"client_{s}"]) == ss_client.get(s, 0)
        for s in set(SS_STATES.values())
    )
    print(
        f"{args.connections:,} connections ({2 * args.connections:,} sockets on the port), 1 sample/s for "
        f"{args.seconds:g} s"
    )
    print(f"monitor process CPU: {cpu_percent:.2f}% of one core (goal <= 2%: {'ok' if cpu_percent <= 2 else 'MISSED'})")
    print(f"median sample cost (wall, in the monitor): {sample_ms:.1f} ms")
    print(
        f"one full sample in-process: {ours_ms:.1f} ms; psutil.net_connections('tcp') for the same port: "
        f"{psutil_ms:.1f} ms ({len(conns):,} sockets) — {psutil_ms / ours_ms:.0f}x"
    )
    print(
        f"per-state counts equal to ss at the same moment: {'yes' if equal else 'NO'} "
        f"(monitor server ESTABLISHED {row['server_ESTABLISHED']}, ss {ss_server['ESTABLISHED']}; "
        f"client ESTABLISHED {row['client_ESTABLISHED']}, ss {ss_client['ESTABLISHED']})"
    )
    ok = cpu_percent <= 2 and equal
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

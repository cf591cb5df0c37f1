"""Run inside a private network namespace: a listener that never accepts, B + 6 clients, the monitor.

    python -m loadtest.hosts.isolate -- python -m tests.scenarios.overflow --backlog B --out DIR

Prints one JSON object: the monitor's rows and this namespace's own kernel counters.
"""

from __future__ import annotations

import argparse
import csv
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from loadtest.measure.kernel_counters import read_kernel_counters


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backlog", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(args.backlog)  # and never accept()
    port = listener.getsockname()[1]
    out = args.out / "monitor.csv"
    monitor = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loadtest.measure.monitor",
            "--pid",
            str(__import__("os").getpid()),
            "--port",
            str(port),
            "--interval",
            "0.2",
            "--out",
            str(out),
        ]
    )
    deadline = time.monotonic() + 10
    while not (out.exists() and out.read_text().count("\n") >= 2):  # header + first row: baseline taken
        assert time.monotonic() < deadline, "monitor never wrote a row"
        time.sleep(0.05)
    clients = []
    for _ in range(args.backlog + 6):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        clients.append(c)
    time.sleep(1.5)  # long enough for one round of SYN retries
    for c in clients:
        c.close()  # no more retries: the counters stop moving
    time.sleep(0.3)
    monitor.send_signal(signal.SIGTERM)
    monitor.wait(10)
    counters = read_kernel_counters()
    rows = list(csv.DictReader(out.open()))
    print(json.dumps({"backlog": args.backlog, "rows": rows, "counters": counters}))


if __name__ == "__main__":
    main()

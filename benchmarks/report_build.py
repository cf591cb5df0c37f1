"""Report build time for a 1-hour run sampled every 0.5 s (generated data).

    python -m benchmarks.report_build [--hours 1] [--interval 0.5]

Takes the recorded run in tests/fixtures, stretches its monitor and Locust
history to the given length with plausible values (7,200 monitor rows and
3,600 history rows per hour), and times build_run_report.  Goal: <= 5 s.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from loadtest.measure.monitor import COLUMNS
from loadtest.report import build_run_report

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "blocking_conn_storm"


def generate(run_dir: Path, hours: float, interval: float) -> int:
    rng = np.random.default_rng(7)
    info = json.loads((run_dir / "run.json").read_text())
    start = float(info["window"]["start"])
    seconds = hours * 3600
    info["window"] = {"start": start, "stop": start + seconds, "seconds": seconds}
    (run_dir / "run.json").write_text(json.dumps(info))
    n = int(seconds / interval)
    with (run_dir / "monitor.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        cpu = 0.0
        for i in range(n):
            cpu += interval * 0.4
            row = {c: 0 for c in COLUMNS}
            row.update(
                timestamp=f"{start + i * interval:.3f}",
                elapsed_s=f"{i * interval:.3f}",
                server_cpu_user_s=f"{cpu * 0.3:.2f}",
                server_cpu_system_s=f"{cpu * 0.7:.2f}",
                server_cpu_percent=f"{40 + rng.normal(0, 3):.1f}",
                server_rss_bytes=15_000_000,
                server_threads=1,
                server_fds=5,
                server_ESTABLISHED=int(rng.integers(0, 4)),
                client_TIME_WAIT=int(rng.integers(13000, 15000)),
                accept_queue=int(rng.integers(0, 4)),
                backlog=2,
                TcpExt_ListenOverflows=i // 10,
                TcpExt_ListenDrops=i // 10,
                counters_scope="shared",
                loadgen_processes=1,
                loadgen_cpu_percent_max=f"{95 + rng.normal(0, 2):.1f}",
                sample_cost_ms="2.0",
            )
            w.writerow([row[c] for c in COLUMNS])
    with (run_dir / "locust_stats_history.csv").open() as f:
        header = next(csv.reader(f))
    with (run_dir / "locust_stats_history.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for s in range(int(seconds)):
            for kind, name, rate in (
                ("ECHO", "connect-per-request", 9600),
                ("CONNECT", "connect", 9600),
                ("", "Aggregated", 19200),
            ):
                row = dict.fromkeys(header, 0)
                row.update(
                    {
                        "Timestamp": int(start) + s,
                        "User Count": 10,
                        "Type": kind,
                        "Name": name,
                        "Requests/s": rate,
                        "Total Request Count": rate * s,
                    }
                )
                w.writerow([row[c] for c in header])
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--interval", type=float, default=0.5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "long_run"
        shutil.copytree(FIXTURE, run_dir)
        rows = generate(run_dir, args.hours, args.interval)
        short = Path(tmp) / "short_run"
        shutil.copytree(FIXTURE, short)
        build_run_report(short)  # warm-up: imports and plotly's first figure
        t = time.perf_counter()
        build_run_report(short)
        short_s = time.perf_counter() - t
        t = time.perf_counter()
        build_run_report(run_dir)
        long_s = time.perf_counter() - t
        size = (run_dir / "report.html").stat().st_size
    print(
        f"{args.hours:g} h at {args.interval:g} s: {rows:,} monitor rows -> report built in {long_s:.2f} s "
        f"(goal <= 5 s: {'ok' if long_s <= 5 else 'MISSED'}); the 3 s fixture run: {short_s:.2f} s; "
        f"report.html {size / 1e6:.1f} MB"
    )
    return 0 if long_s <= 5 else 1


if __name__ == "__main__":
    sys.exit(main())

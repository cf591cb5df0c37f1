"""Run inside a private network namespace: a connection storm captured with tcpdump.

    python -m loadtest.hosts.isolate -- python -m tests.scenarios.syn_capture --out DIR

ConnectPerRequestUser × 50 against `blocking` at backlog 10 for 4 s, every packet on loopback
captured.  Prints one JSON object: the capture's retransmitted SYNs and SYN-ACKs (up to the
monitor's last sample and in all), this namespace's TCPSynRetrans after the run, and the summary.
"""

from __future__ import annotations

import argparse
import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from loadtest.measure.kernel_counters import read_kernel_counters
from tests.pcap import ACK, SYN, retransmitted, segments

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--backlog", type=int, default=10)
    ap.add_argument("--sleep-ms", type=int, default=0, help="SLEEP this long per request (0: ECHO)")
    args = ap.parse_args()
    pcap = args.out / "capture.pcap"
    dump = subprocess.Popen(
        ["tcpdump", "-i", "lo", "-n", "-U", "-s", "128", "-w", str(pcap), "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert dump.stderr is not None
    dump.stderr.readline()  # "listening on lo …": the capture is on
    before = read_kernel_counters()["TcpExt_TCPSynRetrans"]
    report = args.out / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(ROOT / "loadtest" / "locustfile.py"),
            "ConnectPerRequestUser",
            "--headless",
            "-u",
            str(args.users),
            "-r",
            str(args.users),
            "-t",
            f"{args.seconds}s",
            "--server",
            "blocking",
            "--backlog",
            str(args.backlog),
            "--monitor-interval",
            "0.25",
            "--report-dir",
            str(report),
            "--only-summary",
            *(["--op", "SLEEP", "--sleep-ms", str(args.sleep_ms)] if args.sleep_ms else []),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=args.out,
    )
    time.sleep(0.3)  # the server is stopped: its listener and its request sockets are gone
    after = read_kernel_counters()["TcpExt_TCPSynRetrans"]
    counted_at = time.time()  # the capture's segments after this are not in `after`
    dump.send_signal(signal.SIGINT)
    dump.wait(10)
    with (report / "summary.csv").open() as f:
        row = next(csv.DictReader(f))
    with (report / "monitor.csv").open() as f:
        last_sample = float(list(csv.DictReader(f))[-1]["timestamp"])
    packets = segments(pcap)
    syns = [s for s in packets if s.has(SYN) and not s.flags & ACK]
    synacks = [s for s in packets if s.has(SYN, ACK)]
    print(
        json.dumps(
            {
                "returncode": done.returncode,
                "stderr": done.stderr[-2000:],
                "syns": len(syns),
                "syn_retransmitted": retransmitted(syns),
                "synack_retransmitted": retransmitted(synacks),
                "synack_retransmitted_by_last_sample": retransmitted([s for s in synacks if s.time <= last_sample]),
                "counter_delta": after - before,
                "summary": row,
                "pcap": str(pcap),
                "run": str(report),
                "retransmitted_by_counter": retransmitted([s for s in syns if s.time <= counted_at])
                + retransmitted([s for s in synacks if s.time <= counted_at]),
                "last_segment_after_counter_s": max((s.time for s in packets), default=0.0) - counted_at,
            }
        )
    )


if __name__ == "__main__":
    main()

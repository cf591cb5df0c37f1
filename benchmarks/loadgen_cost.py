"""Load-generator cost: one Locust process running PersistentUser vs a bare gevent loop.

    python -m benchmarks.loadgen_cost [--users 50] [--seconds 8] [--rounds 3]

Both run the same loadtest.client socket code (64 B ECHO, 50 users) against
the same `selectors` server process, alternately, in the same run.  Locust's
side has µs recording on (it is always on).  Each side measures its own window
from its own process: requests ÷ wall time, and its CPU µs per request.
Goal: Locust rps ÷ bare rps >= 0.90.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from loadtest.client import format_target
from loadtest.processes import ServerProcess

ROOT = Path(__file__).resolve().parent.parent


def bare(port: int, users: int, seconds: float) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.loadgen", "--port", str(port), "--connections", str(users),
         "--seconds", str(seconds), "--warmup", "0"],
        capture_output=True, text=True, check=True, cwd=ROOT, timeout=seconds + 60,
    )  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {"rps": result["rps"], "cpu_us_per_request": result["client_cpu_us_per_request"],
            "cpu_percent": result["client_cpu_percent"]}  # fmt: skip


def locust(port: int, users: int, seconds: float, profile: str | None = None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, "-m", "locust", "-f", str(ROOT / "loadtest" / "locustfile.py"), "--headless",
            "-u", str(users), "-r", str(users), "-t", f"{seconds:g}s", "--server", "none",
            "--host", format_target("127.0.0.1", port), "--report-dir", tmp, "--only-summary", "--loglevel", "WARNING",
        ]  # fmt: skip
        if profile:
            cmd = [sys.executable, "-m", "cProfile", "-o", profile, *cmd[1:]]
        subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT, timeout=seconds + 60)
        return json.loads((Path(tmp) / "run.json").read_text())["loadgen"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    ratios, rows = [], []
    with ServerProcess.start("selectors") as server:
        for i in range(args.rounds):
            b = bare(server.port, args.users, args.seconds)
            lo = locust(server.port, args.users, args.seconds)
            ratios.append(lo["rps"] / b["rps"])
            rows.append((b, lo))
            print(f"round {i + 1}: bare {b['rps']:9,.0f} req/s {b['cpu_us_per_request']:5.1f} µs CPU/req "
                  f"({b['cpu_percent']:3.0f}% CPU) | locust {lo['rps']:9,.0f} req/s "
                  f"{lo['cpu_us_per_request']:5.1f} µs CPU/req ({lo['cpu_percent']:3.0f}% CPU) | "
                  f"ratio {ratios[-1]:.3f}")  # fmt: skip
    ratio = statistics.median(ratios)
    bare_cpu = statistics.median(b["cpu_us_per_request"] for b, _ in rows)
    locust_cpu = statistics.median(lo["cpu_us_per_request"] for _, lo in rows)
    print(
        f"\nmedian: Locust/bare rps = {ratio:.3f} (goal >= 0.90: {'ok' if ratio >= 0.9 else 'MISSED'}); "
        f"load generator CPU per request: Locust {locust_cpu:.1f} µs, bare {bare_cpu:.1f} µs"
    )
    return 0 if ratio >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())

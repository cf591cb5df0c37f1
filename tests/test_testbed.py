"""Several hosts on one machine: the server host and two worker hosts as network namespaces joined by
real interfaces (loadtest.hosts.testbed), with Locust's master/worker mode across them.

Runs where network namespaces can be made (root and iproute2, as on the CI machine); skipped with the
reason elsewhere.  Addresses are 198.51.100.0/24 (TEST-NET-2), which exist only inside the namespaces.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from loadtest.hosts.testbed import can_build

ROOT = Path(__file__).resolve().parent.parent
CAN_BUILD, WHY_NOT = can_build()
needs_namespaces = pytest.mark.skipif(not CAN_BUILD, reason=f"no network namespaces here: {WHY_NOT}")


def bed(tmp: Path, prefix: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadtest.hosts.testbed", "--prefix", prefix, *args],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_nothing_left(prefix: str, tmp: Path) -> None:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in listed, listed
    left = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if p.pid != os.getpid() and ("198.51.100." in cmd or str(tmp) in cmd or "loadtest.hosts.wire" in cmd):
            left.append(cmd)
    assert not left, left


def latency(run: Path) -> dict[tuple[str, str], dict[str, str]]:
    with (run / "socklab_latency.csv").open() as f:
        return {(r["type"], r["measure"]): r for r in csv.DictReader(f)}


@needs_namespaces
def test_two_worker_hosts_against_threaded_on_the_server_host(tmp_path: Path) -> None:
    prefix = f"slt{os.getpid()}a"
    run = tmp_path / "run"
    out = bed(
        tmp_path, prefix, "--", "-u", "4", "-r", "4", "-t", "6s", "--server", "threaded", "--report-dir", str(run)
    )
    assert out.returncode == 0, out.stdout[-1500:] + out.stderr[-3000:]
    assert "namespaces, links and processes removed" in out.stdout
    info = json.loads((run / "run.json").read_text())
    # The server listened on the server host's address, and the workers were told that address.
    assert info["host"].startswith("tcp://198.51.100.1:") and info["server"]["host"] == "198.51.100.1"
    # The counters are the server host's own namespace, made for this run.
    assert info["counters_scope"] == "isolated" and info["counters_from"]["netns"] == f"{prefix}-srv"
    # Both workers' requests are in the merged µs histograms: their count is Locust's total.
    assert info["latency_total"] == info["locust"]["requests"] > 0 and info["locust"]["failures"] == 0
    workers = info["load_processes"]
    assert sorted(w["netns"] for w in workers) == [f"{prefix}-w1", f"{prefix}-w2"]
    assert all(w["requests"] > 0 for w in workers)
    assert sum(w["locust_events"] for w in workers) == info["locust"]["requests"]
    with (run / "summary.csv").open() as f:
        assert sum(w["requests"] for w in workers) == int(next(csv.DictReader(f))["requests"])
    # The monitor ran on the server host: every user is an ESTABLISHED server-side socket there.
    with (run / "monitor.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert rows and rows[-1]["counters_scope"] == "isolated"
    assert max(int(r["server_ESTABLISHED"]) for r in rows) == 4
    assert sum(int(r["server_ESTABLISHED"]) == 4 for r in rows) >= len(rows) // 2
    # The clients are on other hosts: the server host sees no client ends of its port.
    assert max(int(r["client_ESTABLISHED"]) for r in rows) == 0
    assert "Load processes" in (run / "report.html").read_text()
    assert_nothing_left(prefix, tmp_path)


@needs_namespaces
def test_a_slow_link_shows_in_latency_and_connect_time(tmp_path: Path) -> None:
    prefix = f"slt{os.getpid()}b"
    run = tmp_path / "run"
    out = bed(
        tmp_path,
        prefix,
        "--workers",
        "1",
        "--link-delay-ms",
        "20",
        "--",
        "-u",
        "2",
        "-r",
        "2",
        "-t",
        "4s",
        "--server",
        "threaded",
        "--report-dir",
        str(run),
    )
    assert out.returncode == 0, out.stdout[-1500:] + out.stderr[-3000:]
    assert "20 ms" in out.stdout
    rows = latency(run)
    # 20 ms each way on each host's link: a round trip of 40 ms, the handshake included.
    assert float(rows[("ECHO", "latency")]["p50_us"]) >= 40_000, rows[("ECHO", "latency")]
    assert float(rows[("CONNECT", "latency")]["p50_us"]) >= 40_000, rows[("CONNECT", "latency")]
    assert float(rows[("ECHO", "latency")]["p50_us"]) < 80_000  # and not much more: the wire adds no stall
    assert_nothing_left(prefix, tmp_path)


@needs_namespaces
def test_a_worker_that_cannot_reach_the_server_fails_classified_and_the_run_says_so(tmp_path: Path) -> None:
    prefix = f"slt{os.getpid()}c"
    run = tmp_path / "run"
    # The classic mistake: the server bound to loopback, so the workers are sent their own loopback.
    out = bed(
        tmp_path,
        prefix,
        "--",
        "-u",
        "2",
        "-r",
        "2",
        "-t",
        "3s",
        "--server",
        "threaded",
        "--server-bind",
        "127.0.0.1",
        "--report-dir",
        str(run),
    )
    assert out.returncode == 1, out.stdout[-1500:] + out.stderr[-3000:]
    assert "a loopback address" in out.stderr and "--server-bind ADDR" in out.stderr
    failures = json.loads((run / "run.json").read_text())["failures"]
    assert failures and {f["class"] for f in failures} <= {"refused", "connect timeout"}
    assert "testbed: master exited 1" in out.stdout
    assert_nothing_left(prefix, tmp_path)


def test_a_bed_run_must_end_by_itself(tmp_path: Path) -> None:
    out = bed(tmp_path, f"slt{os.getpid()}d", "--", "-u", "1", timeout=30)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "-t 10s" in out.stderr, out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--server-bind", "0.0.0.0"], "add --server-advertise ADDR"),
        (["--server-bind", "server.example"], "is not an IP address"),
    ],
)
def test_server_bind_is_an_address_the_workers_can_use(tmp_path: Path, args: list[str], message: str) -> None:
    locust = str(Path(sys.executable).with_name("locust"))
    out = subprocess.run(
        [
            locust,
            "-f",
            str(ROOT / "loadtest" / "locustfile.py"),
            "--headless",
            "-t",
            "1s",
            *args,
            "--report-dir",
            str(tmp_path / "run"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and message in out.stderr, out.stderr[-1000:]
    said = [line for line in out.stderr.splitlines() if line.startswith("socklab:")]
    assert len(said) == 1 and said[0] == out.stderr.strip().splitlines()[-1]


@needs_namespaces
def test_a_killed_bed_is_removed_by_the_next_one(tmp_path: Path) -> None:
    import time

    # The default prefix, sl<pid>: the owner's pid is in the bed's names.
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loadtest.hosts.testbed",
            "--workers",
            "1",
            "--",
            "-u",
            "1",
            "-r",
            "1",
            "-t",
            "20s",
            "--server",
            "threaded",
            "--report-dir",
            str(tmp_path / "first"),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    prefix = f"sl{first.pid}"
    deadline = time.monotonic() + 30
    while not (tmp_path / "first" / "run.json").exists():
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.2)
    first.kill()  # SIGKILL: no teardown
    first.wait()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"{prefix}-srv" in listed and f"{prefix}-w1" in listed  # left behind, as before the fix
    out = bed(
        tmp_path,
        f"slt{os.getpid()}e",
        "--workers",
        "1",
        "--",
        "-u",
        "1",
        "-r",
        "1",
        "-t",
        "2s",
        "--server",
        "threaded",
        "--report-dir",
        str(tmp_path / "second"),
    )
    assert out.returncode == 0, out.stdout[-1500:] + out.stderr[-3000:]
    assert f"removed a bed left behind by pid {first.pid}" in out.stdout, out.stdout
    assert_nothing_left(prefix, tmp_path / "first")

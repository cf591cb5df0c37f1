"""What several test files share, kept here so no test module imports another: raw frames over real
loopback sockets, the registered designs, a headless Locust run checked for leftovers, and `socklab
compare` run or started with its outputs read."""

from __future__ import annotations

import csv
import json
import socket
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from servers import speaking
from servers.protocol import encode_request
from servers.protocol import read_response as protocol_read_response

# Every registered design that answers socklab's frames runs through the suites, listed nowhere else; the
# seed, which reads one message and closes, has its own (tests/test_protocols.py).
DESIGNS = speaking("socklab")


def connect(port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    return protocol_read_response(sock.recv)


def call(sock: socket.socket, op: int, arg: int = 0, payload: bytes = b"", reply_len: int = 0) -> tuple[int, bytes]:
    sock.sendall(encode_request(op, arg, payload, reply_len))
    return read_response(sock)


def closed_by_peer(sock: socket.socket) -> bool:
    """True once the server has closed: EOF or a reset."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def raw_header(length: int, op: int, arg: int = 0, reply_len: int = 0) -> bytes:
    return struct.pack("!IBII", length, op, arg, reply_len)


# -- headless Locust runs ---------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = ROOT / "loadtest" / "locustfile.py"


@dataclass
class LocustRun:
    returncode: int
    stdout: str
    stderr: str
    report_dir: Path

    def latency(self) -> dict[tuple[str, str], dict[str, str]]:
        with (self.report_dir / "socklab_latency.csv").open() as f:
            return {(r["type"], r["name"]): r for r in csv.DictReader(f) if r["measure"] == "latency"}

    def locust_stats(self) -> dict[tuple[str, str], dict[str, str]]:
        with (self.report_dir / "locust_stats.csv").open() as f:
            return {(r["Type"], r["Name"]): r for r in csv.DictReader(f)}

    def manifest(self) -> dict[str, Any]:
        return json.loads((self.report_dir / "run.json").read_text())


def locust_command(users: int, seconds: int, *args: str) -> list[str]:
    """A headless Locust run of the real locustfile: USERS spawned at once, for SECONDS."""
    head = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless"]
    return [*head, "-u", str(users), "-r", str(users), "-t", f"{seconds}s", *args]


def run_locust(
    tmp_path: Path, *args: str, users: int = 5, seconds: int = 2, timeout: float = 60, page: bool = False
) -> LocustRun:
    """A headless run of the real locustfile, left-over processes checked.  It ends with its data files only
    (``--report data``, as a compare cell does); with ``page`` its summary.csv, checks.csv and report.html are
    then built here by the same function the Locust process would call (``build_run_report``), in this warm
    process, as compare builds its cells' pages: built in a fresh Locust process they cost ~1.3 s a run of
    the suite's time (pandas and plotly imported cold).  A test of the Locust process's own page passes
    ``--report page``; the interrupted-run tests build it there too."""
    report_dir = tmp_path / "run"
    cmd = locust_command(
        users,
        seconds,
        "--report-dir",
        str(report_dir),
        "--csv",
        str(report_dir / "locust"),
        "--only-summary",
        *([] if "--report" in args else ["--report", "data"]),
        *args,
    )
    before = {p.pid for p in psutil.process_iter()}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=tmp_path)
    leftover = [p for p in psutil.process_iter(["cmdline"]) if p.pid not in before and _ours(p)]
    assert not leftover, f"left running: {[p.info['cmdline'] for p in leftover]}"
    if page and "--report" not in args and (report_dir / "run.json").exists():
        from loadtest.report import build_run_report

        build_run_report(report_dir)
    return LocustRun(done.returncode, done.stdout, done.stderr, report_dir)


def _ours(proc: psutil.Process) -> bool:
    cmdline = " ".join(proc.info.get("cmdline") or [])
    return any(name in cmdline for name in OURS)


OURS = ("locust", "-m servers", "socklab-tracer", "nginx", "redis-server", "seed-c")  # what the harness may start


# -- socklab compare ---------------------------------------------------------------------------------
def compare(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadtest.cli", "compare", *args], capture_output=True, text=True, timeout=timeout
    )


def start_compare(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "loadtest.cli", "compare", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def summary(out: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    with (out / "summary.csv").open() as f:
        return {(r["scenario"], r["design"], r["users"]): r for r in csv.DictReader(f)}


def ours_running() -> list[str]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info.get("cmdline") or [])
        if (
            ("locust" in cmd and "loadtest/locustfile.py" in cmd)
            or " -m servers " in f"{cmd} "
            or "socklab-tracer" in cmd
        ):
            found.append(cmd)
    return found

"""Promises kept under abuse and faults: one test per defect an independent probe found.

1 a zero-length compare window · 2 SIGTERM/SIGHUP to compare and locust · 3 how long one client may
hold a connection · 4 threaded's stop after a storm of closes · 5 values the server would refuse ·
6 --max-connections and the wildcard warning · 7 flags of a run whose server died.
"""

from __future__ import annotations

import csv
import json
import random
import resource
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from loadtest.matrix.processes import ServerProcess
from loadtest.measure.sockdiag import SockDiag
from servers import design_class
from servers.base import DEFAULT_MAX_CONNECTIONS
from servers.protocol import Op, Status, encode_request
from tests.helpers import (
    DESIGNS,
    call,
    compare,
    connect,
    locust_command,
    ours_running,
    run_locust,
    start_compare,
    summary,
)

TCP_ESTABLISHED = 1


def tcp_state(sock: socket.socket) -> int:
    return struct.unpack("B", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[:1])[0]


def until(pred, timeout: float) -> float | None:  # type: ignore[no-untyped-def]
    """Seconds until pred() held, or None if it did not within timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if pred():
            return time.monotonic() - started
        time.sleep(0.05)
    return None


# 1 -----------------------------------------------------------------------------------------
def test_zero_duration_is_refused() -> None:
    done = compare("--designs", "selectors", "--users", "2", "--duration", "0s", timeout=30)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--duration" in lines[0], done.stderr


# 2 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_compare_stops_cleanly_on_sigint_sigterm_and_sighup(tmp_path: Path, sig: signal.Signals) -> None:
    # Ctrl-C, a kill and a closed terminal: the running cell stops within seconds, the finished one is kept
    # and compared, nothing is left running, and the exit status is 128 + the signal.
    out = tmp_path / "cmp"
    proc = start_compare(
        "--designs",
        "blocking,selectors",
        "--users",
        "2",
        "--scenario",
        "echo",
        "--duration",
        "2s",
        "--warmup",
        "0s",
        "--out",
        str(out),
    )
    deadline = time.monotonic() + 60
    while not (out / "echo-blocking-u2" / "summary.csv").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    time.sleep(random.uniform(0.5, 2.0))  # somewhere in the second cell
    started = time.monotonic()
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - started < 10
    assert proc.returncode == 128 + sig, stdout + stderr
    assert f"interrupted: kept 1 of 2 cells ({sig.name})" in stdout
    assert list(summary(out)) == [("echo", "blocking", "2")] and (out / "compare.html").exists()
    time.sleep(0.5)
    assert ours_running() == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_locust_stopped_at_a_random_point_leaves_nothing_behind(tmp_path: Path, sig: signal.Signals) -> None:
    report = tmp_path / "run"
    proc = subprocess.Popen(
        locust_command(
            5,
            30,
            "--report-dir",
            str(report),
            "--only-summary",
            "ConnectPerRequestUser",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    assert until(lambda: (report / "run.json").exists(), 30) is not None, proc.communicate()
    server_pid = json.loads((report / "run.json").read_text())["server"]["pid"]
    ours = [p for p in psutil.Process(proc.pid).children(recursive=True)]
    time.sleep(random.uniform(0.2, 3.0))
    proc.send_signal(sig)
    proc.communicate(timeout=30)
    gone = until(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in ours), 10)
    assert gone is not None, [p.cmdline() for p in ours if p.is_running()]
    assert not psutil.pid_exists(server_pid) or psutil.Process(server_pid).status() == psutil.STATUS_ZOMBIE
    info = json.loads((report / "run.json").read_text())
    assert info["window"]["seconds"] > 0 and info["server_stopped"] is not None  # finished, not abandoned


# 3 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("design", DESIGNS)
def test_a_trickling_client_cannot_hold_a_connection(design: str) -> None:
    with ServerProcess.start(design, extra_args=["--read-timeout", "0.5"]) as server, connect(server.port) as sock:
        frame = encode_request(Op.ECHO, payload=b"x" * 64)
        stop = threading.Event()

        def trickle() -> None:  # one byte every 0.2 s: each resets an idle timer, none completes a request
            for i in range(len(frame) - 1):
                if stop.is_set():
                    return
                try:
                    sock.send(frame[i : i + 1])
                except OSError:
                    return
                time.sleep(0.2)

        t = threading.Thread(target=trickle)
        t.start()
        try:
            held = until(lambda: tcp_state(sock) != TCP_ESTABLISHED, 8)
        finally:
            stop.set()
            t.join()
        assert held is not None and held <= 2.5, f"held {held} s"  # 0.5 s bound + the once-a-second sweep


@pytest.mark.parametrize("design", DESIGNS)
def test_a_client_that_never_reads_cannot_hold_a_connection(design: str) -> None:
    # The probe is the server's own fds (its whole process tree): its close() of the connection is
    # what frees it (the client stays ESTABLISHED: the server's FIN waits behind replies never taken).
    with ServerProcess.start(design, extra_args=["--read-timeout", "0.5"]) as server:

        def server_fds() -> int:
            root = psutil.Process(server.pid)
            return sum(p.num_fds() for p in [root, *root.children(recursive=True)])

        time.sleep(0.2)  # a pool's workers are up
        baseline = server_fds()
        with connect(server.port) as sock:
            sock.sendall(encode_request(Op.ECHO, reply_len=1 << 20) * 1000)  # 1,000 replies of 1 MiB, never read
            started = time.monotonic()
            assert until(lambda: server_fds() > baseline, 5) is not None
            held = until(lambda: server_fds() <= baseline, 8)
            assert held is not None and held <= 2.5, f"held {time.monotonic() - started:.1f} s"
            if design_class(design).serves_one_at_a_time:  # and the next client is served again
                with connect(server.port) as other:
                    assert call(other, Op.ECHO, payload=b"next") == (Status.OK, b"next")


# 4 -----------------------------------------------------------------------------------------
def test_threaded_stops_within_three_seconds_after_a_storm_of_closes() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 12000)), hard))
    # A long idle bound: under load threaded accepts slowly (a thread each), and the first connections
    # must not time out and make room for more before the storm.
    server = ServerProcess.start("threaded", backlog=4096, extra_args=["--read-timeout", "120"])
    try:
        clients = []
        for _ in range(5000):  # past the default --max-connections: the rest are closed at once
            clients.append(socket.create_connection(server.address, timeout=10))
        assert until(lambda: psutil.Process(server.pid).num_threads() > DEFAULT_MAX_CONNECTIONS, 20) is not None
        # Every connection accepted (served or rejected) before the storm: one still queued when a thread
        # ends would be served instead of rejected, and the counts below would be off by a race.
        diag = SockDiag()
        assert until(lambda: diag.count(server.port).accept_queue == 0, 20) is not None
        for c in clients:
            c.close()  # thousands of threads wake at once to end their connections …
        started = time.monotonic()
        stopped = server.stop(timeout=10)  # … and SIGTERM arrives in the middle of it
        took = time.monotonic() - started
    finally:
        server.stop()
    # 2,048 threads ending at once on 2 cores: about a second alone, 2.32 s once late in a full suite run (CI).
    assert stopped is not None and took <= 3.0, f"stop took {took:.2f} s"
    assert stopped["connections"] == DEFAULT_MAX_CONNECTIONS and stopped["rejected"] == 5000 - DEFAULT_MAX_CONNECTIONS


# 5 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--host", "tcp://127.0.0.1:99999"], "port 99999 out of range 1–65535"),
        (["--op", "SLEEP", "--sleep-ms", "999999"], "--sleep-ms 999999 is over the server's cap of 10000"),
        (["--reply-bytes", "99999999"], "--reply-bytes 99999999 is over the server's cap of 1048576"),
    ],
)
def test_locust_refuses_values_the_server_would_refuse(tmp_path: Path, args: list[str], words: str) -> None:
    run = run_locust(tmp_path, *args, seconds=1)
    assert run.returncode == 2 and words in run.stderr, run.stderr[-1000:]
    if "cap" in words:  # and it names the fix, an option this run can pass to the server it starts
        assert "or raise --max-" in run.stderr, run.stderr[-1000:]


def test_a_raised_cap_reaches_the_server_socklab_starts(tmp_path: Path) -> None:
    # --max-sleep-ms is a socklab option now: it becomes the started server's flag, so a SLEEP over
    # the default cap is served, not refused.
    run = run_locust(
        tmp_path,
        "--server",
        "threaded",
        "--op",
        "SLEEP",
        "--sleep-ms",
        "11000",
        "--max-sleep-ms",
        "12000",
        "--reply-timeout",
        "20",
        users=1,
        seconds=1,
    )
    assert run.returncode == 0, run.stderr[-1500:]
    argv = run.manifest()["server"]["argv"]
    assert argv[argv.index("--max-sleep-ms") + 1] == "12000", argv


def test_the_old_read_timeout_spelling_works_with_a_notice(tmp_path: Path) -> None:
    run = run_locust(tmp_path, "--server", "threaded", "--read-timeout", "7", users=1, seconds=1)
    assert run.returncode == 0, run.stderr[-1500:]
    notices = [line for line in run.stderr.splitlines() if "--read-timeout is deprecated" in line]
    assert len(notices) == 1 and "--reply-timeout 7" in notices[0], run.stderr[-1500:]
    assert run.manifest()["options"]["reply_timeout"] == 7


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--scenario", "io-wait", "--sleep-ms", "999999"], "--sleep-ms 999999 is over the server's cap"),
        (["--reply-bytes", "99999999"], "--reply-bytes 99999999 is over the server's cap"),
    ],
)
def test_compare_refuses_values_the_server_would_refuse(args: list[str], words: str) -> None:
    done = compare(*args, timeout=30)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], done.stderr


def test_a_cell_whose_every_request_failed_makes_compare_exit_1(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    done = compare(
        "--designs",
        "threaded",
        "--users",
        "2",
        "--scenario",
        "io-wait",
        "--sleep-ms",
        "500",
        "--read-timeout",
        "0.1",
        "--duration",
        "2s",
        "--warmup",
        "0s",
        "--out",
        str(out),
    )
    assert done.returncode == 1, done.stdout[-2000:]
    assert "EVERY REQUEST FAILED" in done.stdout and "cells that did not run cleanly" in done.stdout


# 6 -----------------------------------------------------------------------------------------
# A one-at-a-time server and a fixed pool bound themselves (the rest wait in the accept queue).
@pytest.mark.parametrize(
    "design", [v for v in DESIGNS if not (design_class(v).serves_one_at_a_time or design_class(v).pooled)]
)
def test_max_connections_accepts_and_closes_the_rest(design: str) -> None:
    # A design of several processes applies the cap in each (nginx's worker_connections): one worker here.
    one = ["--workers", "1"] if design_class(design).uses_processes else []
    with ServerProcess.start(design, extra_args=["--max-connections", "3", *one]) as server:
        held = [connect(server.port) for _ in range(3)]
        for sock in held:
            assert call(sock, Op.ECHO, payload=b"in") == (Status.OK, b"in")
        extra = [connect(server.port) for _ in range(2)]
        for sock in extra:  # accepted and closed at once: EOF, not a wait in the accept queue
            sock.settimeout(5)
            assert sock.recv(1) == b""
        for sock in held + extra:
            sock.close()
        stopped = server.stop()
    assert stopped is not None and (stopped["connections"], stopped["rejected"]) == (3, 2)


def test_a_wildcard_bind_warns() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "servers", "selectors", "--host", "0.0.0.0", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert json.loads(proc.stdout.readline())["event"] == "listening"  # type: ignore[union-attr]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert "warning: --host 0.0.0.0 listens on every interface" in err


# 7 -----------------------------------------------------------------------------------------
def test_flags_of_a_run_whose_server_died_cover_only_its_life(tmp_path: Path) -> None:
    report = tmp_path / "run"
    proc = subprocess.Popen(
        locust_command(
            5,
            6,
            "--server",
            "threaded",
            "--report-dir",
            str(report),
            "--only-summary",
            "--monitor-interval",
            "0.25",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    assert until(lambda: (report / "run.json").exists(), 30) is not None, proc.communicate()
    time.sleep(2.5)
    psutil.Process(json.loads((report / "run.json").read_text())["server"]["pid"]).kill()
    proc.communicate(timeout=60)
    with (report / "summary.csv").open() as f:
        row = next(csv.DictReader(f))
    died = float(row["server_died_at_s"])
    assert 1.0 <= died <= 3.5, row
    info = json.loads((report / "run.json").read_text())
    with (report / "monitor.csv").open() as f:
        start = info["window"]["start"]
        alive = [
            float(r["loadgen_cpu_percent_max"])
            for r in csv.DictReader(f)
            if start <= float(r["timestamp"]) <= start + died + 0.002
        ]
    alive.sort()
    median = (alive[(len(alive) - 1) // 2] + alive[len(alive) // 2]) / 2
    assert float(row["loadgen_median_cpu_percent"]) == pytest.approx(median)
    assert "did not stop cleanly" in (report / "report.html").read_text()

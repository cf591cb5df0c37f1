"""The monitor against real servers, real sockets and the kernel's own counters."""

from __future__ import annotations

import csv
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from loadtest.hosts.isolate import can_isolate
from loadtest.matrix.processes import MonitorProcess, ServerProcess
from loadtest.measure.monitor import COLUMNS, Monitor
from servers.protocol import Op
from tests.helpers import call, connect

ISOLATION, WHY_NOT = can_isolate()
needs_netns = pytest.mark.skipif(not ISOLATION, reason=f"no private network namespace here: {WHY_NOT}")


def start_monitor(server: ServerProcess, out: Path, interval: float = 0.2) -> subprocess.Popen[bytes]:
    return MonitorProcess.start(server.pid, server.port, out, interval=interval, wait_first_row=0, capture=True).proc


def rows_of(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def wait_rows(path: Path, n: int, timeout: float = 10) -> list[dict[str, str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count("\n") > n:
            return rows_of(path)
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} rows in {path}")


@needs_netns
@pytest.mark.parametrize("backlog", [1, 5])
def test_overflow_truth_in_private_namespace(tmp_path: Path, backlog: int) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtest.hosts.isolate",
            "--",
            sys.executable,
            "-m",
            "tests.scenarios.overflow",
            "--backlog",
            str(backlog),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    rows = result["rows"]
    assert {r["counters_scope"] for r in rows} == {"isolated"}
    assert max(int(r["accept_queue"]) for r in rows) == backlog + 1
    assert {int(r["backlog"]) for r in rows} == {backlog}
    last = rows[-1]
    own = result["counters"]["TcpExt_ListenOverflows"]
    assert own > 0
    assert int(last["TcpExt_ListenOverflows"]) == own
    assert int(last["TcpExt_ListenDrops"]) == result["counters"]["TcpExt_ListenDrops"]
    # Each dropped SYN and each retry counts: at least the 5 clients beyond the queue, once.
    assert own >= 5


def test_time_wait_matches_ss(tmp_path: Path) -> None:
    with ServerProcess.start("threaded") as server:
        stop = time.monotonic() + 2.0
        while time.monotonic() < stop:  # connect-per-request: the client closes first, holds TIME_WAIT
            with connect(server.port) as sock:
                call(sock, Op.ECHO, payload=b"x")
        time.sleep(0.2)
        monitor = Monitor(server.pid, server.port, [])
        row = monitor.sample()
        ss = subprocess.run(
            ["ss", "-tanH", "state", "time-wait", f"( dport = :{server.port} )"], capture_output=True, text=True
        ).stdout
    counted = int(row["client_TIME_WAIT"])  # type: ignore[call-overload]
    by_ss = len(ss.splitlines())
    assert counted > 500
    assert abs(counted - by_ss) <= 5, (counted, by_ss)
    assert row["server_TIME_WAIT"] == 0


def test_threaded_server_holding_200_idle_connections(tmp_path: Path) -> None:
    out = tmp_path / "monitor.csv"
    with ServerProcess.start("threaded") as server:
        clients = [connect(server.port) for _ in range(200)]
        time.sleep(0.3)
        monitor = start_monitor(server, out)
        rows = wait_rows(out, 2)
        monitor.send_signal(signal.SIGTERM)
        assert monitor.wait(5) == 0
        for c in clients:
            c.close()
    last = rows[-1]
    assert int(last["server_threads"]) >= 200
    assert int(last["server_ESTABLISHED"]) == 200
    assert int(last["client_ESTABLISHED"]) == 200
    assert int(last["server_fds"]) >= 200
    assert int(last["backlog"]) == 128 and int(last["accept_queue"]) == 0


def test_kill_9_leaves_only_complete_rows_and_exits_with_server(tmp_path: Path) -> None:
    out = tmp_path / "monitor.csv"
    server = ServerProcess.start("selectors")
    try:
        load_stop = threading.Event()

        def load() -> None:
            while not load_stop.is_set():
                with connect(server.port) as sock:
                    call(sock, Op.ECHO, payload=b"x")

        loader = threading.Thread(target=load)
        loader.start()
        monitor = start_monitor(server, out, interval=0.02)
        wait_rows(out, 5)
        monitor.send_signal(signal.SIGKILL)
        monitor.wait(5)
        load_stop.set()
        loader.join()
        text = out.read_text()
        assert text.endswith("\n")
        rows = rows_of(out)
        assert len(rows) >= 5 and list(rows[0]) == COLUMNS
        assert all(None not in r and all(v != "" for v in r.values()) for r in rows)
        assert all(float(r["elapsed_s"]) >= 0 and int(r["server_fds"]) > 0 for r in rows)

        second = start_monitor(server, tmp_path / "second.csv")
        wait_rows(tmp_path / "second.csv", 1)
    finally:
        server.stop()
    assert second.wait(5) == 0  # the server went away: the monitor leaves by itself


def test_bad_pid_or_port_exit_2(tmp_path: Path) -> None:
    out = str(tmp_path / "m.csv")
    gone = subprocess.run(
        [sys.executable, "-m", "loadtest.measure.monitor", "--pid", "4194303", "--port", "1", "--out", out],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert gone.returncode == 2 and len(gone.stderr.strip().splitlines()) == 1
    assert "no process with pid 4194303" in gone.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        idle = subprocess.run(
            [
                sys.executable,
                "-m",
                "loadtest.measure.monitor",
                "--pid",
                str(__import__("os").getpid()),
                "--port",
                str(port),
                "--out",
                out,
            ],
            capture_output=True,
            text=True,
            timeout=20,
        )
    assert idle.returncode == 2 and len(idle.stderr.strip().splitlines()) == 1
    assert f"nothing listens on TCP port {port}" in idle.stderr


@needs_netns
def test_locust_run_in_private_namespace_has_isolated_counters(tmp_path: Path) -> None:
    report = tmp_path / "run"
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtest.hosts.isolate",
            "--",
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(root / "loadtest" / "locustfile.py"),
            "--headless",
            "-u",
            "5",
            "-r",
            "5",
            "-t",
            "2s",
            "--report-dir",
            str(report),
            "--only-summary",
            "--monitor-interval",
            "0.25",
            "ConnectPerRequestUser",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = rows_of(report / "monitor.csv")
    assert {r["counters_scope"] for r in rows} == {"isolated"}
    latency = {(r["type"], r["name"]): r for r in csv.DictReader((report / "socklab_latency.csv").open())}
    row = latency[("CONNECT", "connect")]
    connects = int(row["count"]) + int(row["failures"]) + int(row["unfinished"])  # every connect() of the window
    # In its own namespace, every active open is one of this run's connects.  The last sample inside the
    # window: users go on connecting after it closes (until Locust stops them), uncounted.
    stop = json.loads((report / "run.json").read_text())["window"]["stop"]
    opens = int([r for r in rows if float(r["timestamp"]) <= stop][-1]["Tcp_ActiveOpens"])
    assert 0 < opens <= connects
    assert opens >= connects * 0.8  # samples every 0.25 s of a 2 s window
    # The load generator's CPU while it ran (the last sample may come after it stopped: 0 % there).
    assert max(float(r["loadgen_cpu_percent_max"]) for r in rows) > 10


def test_the_kernel_tracer_says_when_it_measured_and_when_it_died(tmp_path: Path) -> None:
    """Stopped normally, it reports its events and the lost ones (0 here: no traffic); killed during the run,
    its trace is not a measurement: the status says so and no event count is given."""
    import os
    import signal

    from loadtest.measure.tracer import KernelTracer, netns_inode, unavailable_reason

    if unavailable_reason():
        pytest.skip(unavailable_reason())
    quiet = KernelTracer.start(1, [netns_inode()], tmp_path / "quiet")
    assert quiet.wait_attached(), quiet.status
    assert quiet.stop() == {
        "status": "measured",
        "mechanism": "libbpf ring buffer (loadtest/measure/bpf)",
        "events": 0,
        "lost_events": 0,
        "port": 1,
    }
    dying = KernelTracer.start(1, [netns_inode()], tmp_path / "dying")
    assert dying.wait_attached() and dying.proc is not None
    os.kill(dying.proc.pid, signal.SIGKILL)
    dying.proc.wait()
    info = dying.stop()
    assert info["status"].startswith("unavailable: the tracer exited during the run") and "lost_events" not in info


def test_the_socket_walk_counts_alike_in_numpy_and_in_python(monkeypatch: pytest.MonkeyPatch) -> None:
    # A chunk of many same-size messages is decoded as one numpy array, a short one walked in Python (so a run
    # with few sockets never imports numpy): both give the same counts, the ones made here — 150 connections,
    # each an ESTABLISHED server end and client end, and 40 closed by the client first (its TIME_WAIT).
    from loadtest.measure import sockdiag

    listener = socket.create_server(("127.0.0.1", 0), backlog=256)
    port = listener.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(150)]
    served = [listener.accept()[0] for _ in clients]
    try:
        for c, s in zip(clients[:40], served[:40], strict=True):
            c.close()
            s.close()
        time.sleep(0.1)
        counts = {}
        for name, threshold in (("numpy", 1), ("python", 10**9)):
            monkeypatch.setattr(sockdiag, "NUMPY_FROM", threshold)
            found = sockdiag.SockDiag().count(port)
            counts[name] = (dict(found.server), dict(found.client))
        assert counts["numpy"] == counts["python"], counts
        server, client = counts["python"]
        assert server["ESTABLISHED"] == 110 and client["ESTABLISHED"] == 110, counts
        assert client.get("TIME_WAIT", 0) == 40 and server.get("TIME_WAIT", 0) == 0, counts
    finally:
        for sock in (*clients, *served, listener):
            sock.close()


def test_the_walk_by_state_is_spaced_only_after_two_dear_walks_in_a_row() -> None:
    # In a run's own namespace a walk of the sockets by state that costs 50 ms of CPU or more is spaced to 1.5 % of a
    # core.  One dear walk alone (the first, importing numpy under a loaded CI) froze a 5 s run's counts at 0.27 s;
    # now it takes two in a row, and the cost is the walk's own CPU, not a wait for a busy core.
    from loadtest.measure import monitor as monitor_module

    listener = socket.create_server(("127.0.0.1", 0))
    monitor = Monitor(0, listener.getsockname()[1], [])
    monitor.scope = "isolated"
    count, dear = monitor.diag.count, [True, False, True, True, False]

    def counted(port: int, states: bool = True) -> object:
        if states and dear.pop(0):
            spin = time.thread_time() + 1.2 * monitor_module.STATES_WALK_CHEAP_S
            while time.thread_time() < spin:
                pass
        return count(port, states=states)

    monitor.diag.count = counted  # type: ignore[method-assign]
    try:
        walked = []
        for _ in range(4):
            due = monitor.states_due
            monitor.sample()
            walked.append(monitor.states_due > due)
            time.sleep(0.01)
        # dear then cheap: not spaced; dear then dear: spaced from the fourth sample on
        assert walked == [False, False, False, True] and dear == [False], (walked, dear)
        assert monitor.states_due - time.monotonic() > 1.0  # 60 ms ÷ 1.5 % of a core: seconds away
    finally:
        listener.close()

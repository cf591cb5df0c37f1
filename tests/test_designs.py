"""The classic designs beyond the first three: process trees, their CPU, bring-your-own servers, and
Stevens' chapter 30 end to end.  (Every registered design also runs the whole server and Locust suites.)"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from loadtest.matrix.processes import ServerProcess
from loadtest.measure.monitor import Monitor
from servers import DESIGNS, design_class
from servers.protocol import Op, Status, encode_request
from tests.helpers import call, compare, connect, ours_running, run_locust

PROCESS_DESIGNS = [v for v in DESIGNS if design_class(v).uses_processes]
POOLED = [v for v in DESIGNS if design_class(v).pooled]


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def gone(procs: list[psutil.Process], timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in procs):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("design", PROCESS_DESIGNS)
def test_no_process_of_the_tree_outlives_a_stop(design: str) -> None:
    server = ServerProcess.start(design)
    for payload in (b"a", b"b"):  # answered by children, counted in the parent's stopped line
        with connect(server.port) as sock:
            assert call(sock, Op.ECHO, payload=payload) == (Status.OK, payload)
    # Children busy mid-request when the stop comes.  (Two connections held at once may hash to the
    # same preforked-reuseport child, the second waiting in that child's queue: so no reply is awaited.)
    busy = [connect(server.port) for _ in range(2)]
    for sock in busy:
        sock.sendall(encode_request(Op.SLEEP, 5000))
    time.sleep(0.2)
    procs = tree(server.pid)
    assert len(procs) >= 2
    started = time.monotonic()
    stopped = server.stop()
    took = time.monotonic() - started
    for sock in busy:
        sock.close()
    assert took <= 2.0, f"stop took {took:.2f} s"
    assert stopped is not None and stopped["requests"] >= 2
    assert gone(procs), [p.pid for p in procs if p.is_running()]


@pytest.mark.parametrize("design", PROCESS_DESIGNS)
def test_no_process_of_the_tree_outlives_a_killed_harness(tmp_path: Path, design: str) -> None:
    # The harness (the process that started the server) dies by SIGKILL: no clean-up of its own runs.
    harness = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from loadtest.matrix.processes import ServerProcess; "
            f"s = ServerProcess.start({design!r}); print(s.pid, s.port, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    pid, port = map(int, harness.stdout.readline().split())  # type: ignore[union-attr]
    with connect(port) as sock:
        assert call(sock, Op.ECHO, payload=b"x") == (Status.OK, b"x")
        procs = tree(pid)
        harness.kill()
        harness.wait()
        assert gone(procs), [p.cmdline() for p in procs if p.is_running()]


def test_children_that_exited_are_in_the_servers_cpu() -> None:
    # Twenty connections, each served by a forked child that burns 20 ms of CPU and exits: the
    # server's CPU (parent + reaped children) holds at least the 0.4 s the children burned.
    with ServerProcess.start("forking") as server:
        monitor = Monitor(server.pid, server.port, [])
        before = monitor.sample()
        for _ in range(20):
            with connect(server.port) as sock:
                assert call(sock, Op.WORK, 20_000) == (Status.OK, b"")
        time.sleep(0.3)  # the last child exits and is reaped
        assert psutil.Process(server.pid).children() == []
        after = monitor.sample()

    def cpu(row: dict[str, object]) -> float:
        return float(row["server_cpu_user_s"]) + float(row["server_cpu_system_s"])  # type: ignore[arg-type]

    assert cpu(after) - cpu(before) >= 0.4 - 0.02  # clock ticks are 10 ms


@pytest.mark.parametrize("design", POOLED)
def test_pool_size_is_announced_and_bounds_concurrency(design: str) -> None:
    with ServerProcess.start(design, extra_args=["--workers", "2"]) as server:
        assert server.workers == 2
        # Three SLEEP 300 ms at once on a pool of two: the third waits for a worker.
        import threading

        def one() -> None:
            with connect(server.port) as sock:
                assert call(sock, Op.SLEEP, 300)[0] == Status.OK

        threads = [threading.Thread(target=one) for _ in range(3)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert time.perf_counter() - started >= 0.6


def test_reuseport_children_each_have_a_listener() -> None:
    from loadtest.measure.sockdiag import SockDiag

    with ServerProcess.start("preforked-reuseport", backlog=16, extra_args=["--workers", "3"]) as server:
        sockets = SockDiag().count(server.port)
        assert sockets.listening and sockets.backlog == 3 * 16  # three accept queues of 16
        with connect(server.port) as sock:
            assert call(sock, Op.ECHO, payload=b"r") == (Status.OK, b"r")


def test_server_cmd_brings_your_own_server(tmp_path: Path) -> None:
    script = Path(__file__).parent.parent / "benchmarks" / "reference_servers.py"
    cmd = f"{sys.executable} {script} asyncio --port {{port}}"
    run = run_locust(tmp_path, "--server-cmd", f"ref-asyncio={cmd}", users=3, seconds=2)
    assert run.returncode == 0, run.stderr[-2000:]
    info = json.loads((run.report_dir / "run.json").read_text())
    assert info["design"] == "ref-asyncio" and info["server"]["command"][-1].isdigit()
    assert info["server_stopped"]["event"] == "exited"
    assert int(run.latency()[("ECHO", "persistent")]["count"]) > 100
    assert (run.report_dir / "monitor.csv").exists()


def test_server_cmd_that_exits_at_once_is_one_clear_line(tmp_path: Path) -> None:
    command = f"{sys.executable} -c 'import sys; sys.exit(\"no such thing\")' {{port}}"
    run = run_locust(tmp_path, "--server-cmd", command, seconds=1)
    assert run.returncode == 2
    last = run.stderr.strip().splitlines()[-1]
    assert "could not start the cmd server: the server command exited at once (status 1): no such thing" in last


def test_unp30_lays_out_the_books_table(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    # 1,000 connections: the iterative server's CPU passes 2 ticks (10 ms each), below which it is not measured.
    done = compare(
        "--scenario",
        "unp30",
        "--designs",
        "blocking,forking,preforked",
        "--connections",
        "1000",
        "--out",
        str(out),
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    page = (out / "compare.html").read_text()
    assert "Reproducing Stevens, UNP vol. 1 chapter 30" in page
    assert "Fork per client is by far the most expensive" in page
    assert "Pools cut process-control CPU" in page
    import csv

    with (out / "summary.csv").open() as f:
        rows = {r["design"]: r for r in csv.DictReader(f)}
    for design in ("blocking", "forking", "preforked"):
        assert int(rows[design]["requests"]) == 1000, rows[design]  # counted, not timed: exactly 1,000
    assert float(rows["forking"]["server_cpu_us_per_request"]) > float(rows["blocking"]["server_cpu_us_per_request"])
    assert ours_running() == []


def test_sigint_to_a_pooled_server_stops_it(tmp_path: Path) -> None:
    with ServerProcess.start("preforked") as server:
        server.proc.send_signal(signal.SIGINT)
        server.proc.wait(5)
        assert server.proc.returncode == 0

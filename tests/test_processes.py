"""The process machinery under every design: counters across processes, stop by process group,
and the CPU of children that have already exited."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil

from loadtest.matrix.processes import ServerProcess
from loadtest.measure.monitor import Monitor
from servers.counters import LockedCounters, SharedCounters

# A stand-in server: speaks the listening/stopped lines, forks a child that ignores SIGTERM
# (a careless worker), and on SIGTERM exits without waiting for it.
FORKING_SERVER = textwrap.dedent("""
    import json, os, signal, socket, sys, time
    listener = socket.create_server(("127.0.0.1", 0))
    child = os.fork()
    if child == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            time.sleep(1)
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])  # so that sigwait, not death, takes it
    print(json.dumps({"event": "listening", "design": "careless", "host": "127.0.0.1",
                      "port": listener.getsockname()[1], "backlog": 128, "pid": os.getpid(),
                      "child": child}), flush=True)
    signal.sigwait([signal.SIGTERM])
    print(json.dumps({"event": "stopped", "connections": 0, "requests": 0, "errors": 0}), flush=True)
""")

# A server whose child burns CPU, exits and is reaped; the parent then idles.
REAPING_SERVER = textwrap.dedent("""
    import json, os, socket, sys, time
    listener = socket.create_server(("127.0.0.1", 0))
    print(json.dumps({"event": "listening", "design": "reaping", "host": "127.0.0.1",
                      "port": listener.getsockname()[1], "backlog": 128, "pid": os.getpid()}), flush=True)
    child = os.fork()
    if child == 0:
        end = time.process_time() + 0.6
        while time.process_time() < end:
            pass
        os._exit(0)
    os.waitpid(child, 0)
    print(json.dumps({"event": "reaped"}), flush=True)
    time.sleep(60)
""")


def test_shared_counters_sum_every_process() -> None:
    counters = SharedCounters()
    children = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            for _ in range(1000):
                counters.add(requests=1)
            counters.add(connections=1, errors=2)
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    assert counters.snapshot() == {"connections": 4, "requests": 4000, "errors": 8, "rejected": 0}


def test_request_cells_count_across_fork_even_from_a_child_that_dies() -> None:
    # A cell writes through to shared memory as it counts: a child that exits without handing its cell back
    # has still counted every request it answered.  Pooled workers (1, 2) each own a slot, lock-free; children
    # forked per connection (worker 0, several at once) share the locked count; a worker forked to replace
    # one that exited goes on from its count.
    counters = SharedCounters()
    children = []
    for worker, n in ((1, 500), (2, 300), (0, 200), (0, 100), (1, 40)):
        pid = os.fork()
        if pid == 0:
            cell = counters.requests_cell(worker)
            for _ in range(n):
                cell[0] += 1
            cell[0] += 7
            os._exit(0)  # no fold()
        children.append(pid)
        if worker == 1:
            os.waitpid(pid, 0)  # worker 1 exits before its replacement starts: one writer a slot
    for pid in children:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    counters.add(requests=2)
    assert counters.requests == 500 + 300 + 200 + 100 + 40 + 5 * 7 + 2
    assert counters.snapshot()["requests"] == counters.requests


def test_request_cells_of_threads_add_up_while_they_count_and_after() -> None:
    # Each serving thread counts into its own cell with no lock; a snapshot taken while they count sums the
    # live cells and the folded ones, and is never more than was counted.
    counters = LockedCounters()
    counted, seen = [0] * 8, []
    start = threading.Barrier(9)

    def serve(i: int) -> None:
        cell = counters.requests_cell()
        start.wait()
        for _ in range(20_000 + i):
            cell[0] += 1
        counted[i] = cell[0]
        if i % 2:
            counters.fold(cell)  # half hand theirs back (their connection ended), half are still serving

    threads = [threading.Thread(target=serve, args=(i,)) for i in range(8)]
    first, second = counters.requests_cell(), counters.requests_cell()  # equal (0 each), still two cells
    counters.fold(second)
    first[0] += 28
    counters.fold(first)
    for t in threads:
        t.start()
    start.wait()
    while any(t.is_alive() for t in threads):
        seen.append(counters.snapshot()["requests"])
    for t in threads:
        t.join()
    counters.add(requests=3)
    assert counters.snapshot()["requests"] == sum(counted) + 28 + 3 == 8 * 20_000 + 28 + 28 + 3
    assert seen == sorted(seen) and all(n <= sum(counted) + 28 for n in seen)


def test_stop_takes_the_whole_process_group() -> None:
    server = ServerProcess.launch([sys.executable, "-c", FORKING_SERVER], "careless")
    child = psutil.Process(server.pid).children()[0]
    stopped = server.stop(timeout=2)
    assert stopped is not None and stopped["event"] == "stopped"
    deadline = time.monotonic() + 5
    while child.is_running() and child.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, "a child outlived its server"


def test_monitor_counts_cpu_of_children_already_reaped(tmp_path: Path) -> None:
    server = ServerProcess.launch([sys.executable, "-c", REAPING_SERVER], "reaping")
    try:
        assert server.proc.stdout is not None
        fd = server.proc.stdout.fileno()
        os.set_blocking(fd, True)
        assert b"reaped" in os.read(fd, 4096)
        assert psutil.Process(server.pid).children() == []  # nothing left alive to sum
        row = Monitor(server.pid, server.port, []).sample()
        cpu = float(row["server_cpu_user_s"]) + float(row["server_cpu_system_s"])  # type: ignore[arg-type]
        assert cpu >= 0.55, row
    finally:
        server.stop()


def test_listening_port_is_real() -> None:
    server = ServerProcess.launch([sys.executable, "-c", FORKING_SERVER], "careless")
    try:
        with socket.create_connection(server.address, timeout=5):
            pass
    finally:
        server.stop(timeout=2)

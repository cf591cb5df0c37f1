"""The monitor: a sampler in its own OS process, one CSV row per sample.

    python -m loadtest.measure.monitor [--pid PID] --port PORT [--interval 0.5] --out FILE.csv
                               [--loadgen-pid PID ...]

Each row holds the server process tree's cost (psutil: CPU, RSS, threads, fds,
children; /proc/PID/status: anonymous RSS), the TCP sockets of the server's
port by state — server ends and client ends counted apart — with the listener's
accept-queue depth and backlog (inet_diag, see loadtest.measure.sockdiag), kernel TCP
counters as deltas since the monitor started (/proc/net/netstat and
/proc/net/snmp), the load generator's CPU, and the sample's own cost.

Why a process of its own: a psutil scan inside Locust would block every user
for its duration, and the monitor must live in the server's network namespace
(psutil and inet_diag see only their own).  The columns, their units, meanings and sources are
declared in :mod:`loadtest.declare.columns`.  Rows are appended with one write()
each and flushed, so a ``kill -9`` loses at most the row being written.  The
monitor exits by itself when the server exits, and on SIGINT/SIGTERM after
writing one last row.

The sockets by state are counted every sample while that is cheap.  In the run's own network namespace,
where the table holds the run's sockets alone, they are counted less often at many thousands of sockets, so
that the walk costs at most 1.5 % of a core (``STATES_BUDGET``); a row between two walks repeats the last
counts, and ``states_counted_at`` says when they were taken.  In a shared namespace every sample walks: the
table's size there is every socket on the machine, and spacing the walk left a short run's counts stale.

Without ``--pid`` (a server socklab did not start, and whose process it was not told) a row has the
port's figures only — sockets, queue, counters — and the server's own columns stay empty, never 0; the
monitor then exits when nothing listens on the port any more.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
import time
from pathlib import Path

import psutil

from loadtest.declare.columns import MONITOR_NAMES, TCP_COUNTERS, TCPEXT_COUNTERS
from loadtest.declare.kinds import REPORTED_STATES
from loadtest.hosts.isolate import in_private_netns
from loadtest.measure.kernel_counters import read_kernel_counters
from loadtest.measure.sockdiag import SockDiag
from servers.cli import OneLineParser

COLUMNS = list(MONITOR_NAMES)  # declared, with their units and meanings, in loadtest.declare.columns
STATES_BUDGET = 0.015  # the share of a core the sockets-by-state walk may take, once it is not cheap (the rest of a
# sample, psutil and the counters, stays under half a percent at 1 Hz)
STATES_WALK_CHEAP_S = 0.05  # under this (~40,000 sockets on the port) the walk is taken at every sample


def count_fds(proc: psutil.Process) -> int:
    """Open fds.  Since Linux 6.2 stat() of /proc/PID/fd gives the count as its size, in
    microseconds; psutil lists the directory (~8 ms at 10,000 fds)."""
    try:
        size = os.stat(f"/proc/{proc.pid}/fd").st_size
    except OSError:
        size = 0
    return size if size > 0 else proc.num_fds()


def rss_anon_bytes(pid: int) -> int | None:
    """Anonymous resident memory of one process, bytes: /proc/PID/status RssAnon — its heap, stacks and
    private pages, without the file-backed (RssFile) and shared-memory (RssShmem) pages that RSS also
    counts, such as socklab's connection log, a file every worker maps shared.  None on a kernel that
    does not give it (before Linux 4.5); OSError when the process is gone."""
    with open(f"/proc/{pid}/status", "rb") as f:
        status = f.read()
    at = status.find(b"\nRssAnon:")
    if at < 0:
        return None
    return int(status[at + 9 : status.index(b"kB", at)]) * 1024


class Monitor:
    def __init__(self, pid: int, port: int, loadgen_pids: list[int]) -> None:
        self.server = psutil.Process(pid) if pid else None  # None: the port's figures only
        self.port = port
        self.loadgen_roots = [psutil.Process(p) for p in loadgen_pids if psutil.pid_exists(p)]
        self._loadgen: dict[int, psutil.Process] = {}
        self.diag = SockDiag()
        self.scope = "isolated" if in_private_netns() else "shared"
        self.baseline = read_kernel_counters()
        self.started_wall = time.time()
        self.started = time.monotonic()
        self._last_cpu: tuple[float, float] | None = None  # (monotonic, tree cpu seconds)
        self.states_due = 0.0  # when the port's sockets are next counted by state (monotonic)
        self._last_walk_cost = 0.0  # the CPU seconds the last walk of them took
        self.states: dict[str, object] = {}  # the last such count, and when (states_counted_at)
        for p in self._loadgen_processes():
            p.cpu_percent(None)  # the first call only sets psutil's reference point

    def listening(self) -> bool:
        return self.diag.count(self.port).listening

    def _server_tree(self) -> list[psutil.Process]:
        if self.server is None:
            return []
        try:
            return [self.server, *self.server.children(recursive=True)]
        except psutil.Error:
            return [self.server]

    def _loadgen_processes(self, server_tree: list[psutil.Process] | None = None) -> list[psutil.Process]:
        # The load generator's tree, less what it started that is not load: the server, us.
        not_load = {os.getpid(), *(p.pid for p in (server_tree or self._server_tree()))}
        found: dict[int, psutil.Process] = {}
        for root in self.loadgen_roots:
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            for p in procs:
                if p.pid in not_load:
                    continue
                # Keep the same Process objects: cpu_percent() measures since their last call.
                found[p.pid] = self._loadgen.get(p.pid, p)
        self._loadgen = found
        return list(found.values())

    def sample(self) -> dict[str, object]:
        t0 = time.perf_counter()
        now = time.monotonic()
        row: dict[str, object] = {"timestamp": f"{time.time():.3f}", "elapsed_s": f"{now - self.started:.3f}"}
        tree = self._server_tree()
        if self.server is not None:
            row.update(self._server_figures(tree, now))
        # The listeners' queues every sample (under a millisecond); the port's sockets by state when due: that walk
        # costs ~1.2 µs a socket, so once it costs 50 ms it is spaced to STATES_BUDGET of a core (every ~10 s at
        # 100,000), and the rows between repeat its counts, saying when they were taken (states_counted_at).
        walk = now >= self.states_due
        started = time.thread_time()  # the walk's own CPU (user and system), not a wait for a busy core
        sockets = self.diag.count(self.port, states=walk)
        cost = time.thread_time() - started
        if walk:
            self.states = {f"server_{s}": sockets.server.get(s, 0) for s in REPORTED_STATES}
            self.states.update({f"client_{s}": sockets.client.get(s, 0) for s in REPORTED_STATES})
            self.states["states_counted_at"] = row["elapsed_s"]
            # Spaced only in the run's own namespace, where the table holds the run's sockets alone: in a shared one
            # its cost is everybody's sockets, and the run's counts would go stale for them.  And only once two walks
            # in a row cost that much: one dear walk (the first, importing numpy: CI saw a 5 s run's counts frozen
            # at 0.27 s) must not freeze a short run's counts.
            costly = min(cost, self._last_walk_cost)
            if self.scope == "isolated" and costly >= STATES_WALK_CHEAP_S:
                self.states_due = now + costly / STATES_BUDGET
            self._last_walk_cost = cost
        row.update(self.states)
        row["accept_queue"] = sockets.accept_queue
        row["deepest_accept_queue"] = sockets.deepest_queue
        row["listeners"] = sockets.listeners
        row["backlog"] = sockets.backlog
        row.update(self.counters())
        loads = []
        for p in self._loadgen_processes(tree):
            try:
                loads.append(p.cpu_percent(None))
            except psutil.Error:
                continue
        row["loadgen_processes"] = len(loads)
        row["loadgen_cpu_percent_max"] = f"{max(loads, default=0.0):.1f}"
        row["loadgen_cpu_percent_total"] = f"{sum(loads):.1f}"
        row["sample_cost_ms"] = f"{(time.perf_counter() - t0) * 1000:.2f}"
        return row

    def _server_figures(self, tree: list[psutil.Process], now: float) -> dict[str, object]:
        """The server process tree's CPU, memory, threads, fds and children (psutil, /proc)."""
        user = system = 0.0
        rss = threads = fds = 0
        anon: int | None = 0  # None once a process of the tree has no RssAnon
        for p in tree:
            try:
                with p.oneshot():
                    t = p.cpu_times()
                    # children_*: CPU of children this process has reaped (Stevens' pr_cpu_time adds
                    # RUSAGE_CHILDREN for this reason): a forked child's work stays counted after it exits.
                    user += t.user + t.children_user
                    system += t.system + t.children_system
                    rss += p.memory_info().rss
                    own = rss_anon_bytes(p.pid)
                    anon = None if anon is None or own is None else anon + own
                    threads += p.num_threads()
                    fds += count_fds(p)
            except (psutil.Error, OSError):  # the process is gone (OSError: its /proc/PID/status)
                continue
        cpu_percent = 0.0
        if self._last_cpu is not None and now > self._last_cpu[0]:
            cpu_percent = 100 * (user + system - self._last_cpu[1]) / (now - self._last_cpu[0])
        self._last_cpu = (now, user + system)
        return dict(
            server_cpu_user_s=f"{user:.2f}",
            server_cpu_system_s=f"{system:.2f}",
            server_cpu_percent=f"{max(cpu_percent, 0.0):.1f}",
            server_rss_bytes=rss,
            server_rss_anon_bytes="" if anon is None else anon,
            server_threads=threads,
            server_fds=fds,
            server_children=len(tree) - 1,
        )

    def counters(self) -> dict[str, object]:
        """The kernel counters since the monitor started, and when they were read (CLOCK_MONOTONIC: the
        kernel trace's SYN-ACK re-sends are cut at this moment to cover the same span)."""
        row: dict[str, object] = {"counters_read_at": f"{time.monotonic():.6f}"}
        counters = read_kernel_counters()
        for name in (*(f"TcpExt_{c}" for c in TCPEXT_COUNTERS), *(f"Tcp_{c}" for c in TCP_COUNTERS)):
            row[name] = counters.get(name, 0) - self.baseline.get(name, 0)
        row["counters_scope"] = self.scope
        return row

    def server_alive(self) -> bool:
        if self.server is None:
            return self.listening()
        try:
            return self.server.is_running() and self.server.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


class CsvSink:
    """Rows appended with one write() each: a kill -9 leaves only whole rows behind."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        os.write(self.fd, (",".join(COLUMNS) + "\n").encode())

    def write(self, row: dict[str, object]) -> None:
        os.write(self.fd, (",".join(str(row.get(c, "")) for c in COLUMNS) + "\n").encode())

    def close(self) -> None:
        os.close(self.fd)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m loadtest.measure.monitor", description="Sample a socklab server into a CSV file.")
    p.add_argument("--pid", type=int, default=0, help="the server's pid (default: none, the port's figures only)")
    p.add_argument("--port", type=int, required=True, help="the server's listening port")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between samples (default 0.5)")
    p.add_argument("--out", type=Path, required=True, help="CSV file to write")
    p.add_argument(
        "--loadgen-pid",
        type=int,
        action="append",
        default=[],
        help="a load-generator pid (its children count too); repeatable",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.interval <= 0:
        parser.error("--interval must be > 0 seconds")
    if args.pid and not psutil.pid_exists(args.pid):
        parser.error(f"no process with pid {args.pid}; give the server's pid (run.json's server.pid in a run folder)")
    monitor = Monitor(args.pid, args.port, args.loadgen_pid)
    if not monitor.listening():
        parser.error(f"nothing listens on TCP port {args.port} in this network namespace; give the server's port")

    # Signals wake the sleep through a pipe; the loop then writes one last row and leaves.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    stopping: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: stopping.append(signum))

    sink = CsvSink(args.out)
    try:
        next_at = time.monotonic()
        while True:
            if not monitor.server_alive():
                return 0
            sink.write(monitor.sample())
            if stopping:
                return 0
            next_at += args.interval
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind (a slow sample): skip, don't burst
                next_at = time.monotonic()
                delay = 0
            select.select([wake_r], [], [], delay)
            if stopping:
                if monitor.server_alive():
                    sink.write(monitor.sample())
                return 0
    finally:
        sink.close()


if __name__ == "__main__":
    sys.exit(main())

"""One socklab run, as the master (or local runner) owns it: the run folder, the measured
window, the server and monitor processes, the merged µs histograms, and ``run.json``.

``run.json`` is the run's single manifest: what ran and how to repeat it, the
server's address and traits, and at the end the measured window, the server's
final counters, the load generator's own cost and the failures by class.  No
fact is written to two files, and nothing here writes a file to read it back.

The Locust event listeners in :mod:`loadtest.glue.plugin` are thin calls into this
class, so the order of a run reads top to bottom here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

from loadtest.client.accounting import AccountsStore, own_cpu
from loadtest.client.connections import ConnectionFile
from loadtest.client.latency import LatencyStore
from loadtest.declare import options as opts
from loadtest.declare.kernel import KERNEL_FILE
from loadtest.declare.kinds import OP_NAMES
from loadtest.declare.target import format_target, local_port, split_named_command
from loadtest.matrix.manifest import CLIENT_CONNECTIONS, SERVER_CONNECTIONS, RunFiles
from loadtest.matrix.processes import MonitorProcess, ServerProcess
from loadtest.matrix.window import Window
from loadtest.measure.live import LiveFeed, UserFigures
from loadtest.measure.tracer import KernelTracer, netns_inode
from servers.config import flags as server_flags
from servers.connlog import mark_window

log = logging.getLogger("socklab")


class Run(RunFiles):
    """What the master or local runner owns for one run; the files it writes are :class:`RunFiles`'."""

    def __init__(self, environment: Any, folder: Path, design: str) -> None:
        self.environment = environment
        self.options = environment.parsed_options
        self.folder = folder
        self.design = design  # the design started, or "external"
        self.window = Window()
        self.store = LatencyStore()
        self.accounts = AccountsStore()
        self.server: ServerProcess | None = None
        self.monitor: MonitorProcess | None = None
        self.tracer: KernelTracer | None = None
        self.kernel_trace: dict[str, Any] = {"status": "unavailable: not started"}  # run.json's kernel_trace
        self.manifest: dict[str, Any] = {}
        self.loadgen: dict[str, Any] | None = None
        self.load_processes: dict[str, dict[str, Any]] = {}  # each load process's own figures, by worker id
        self.feed = LiveFeed()  # what the web UI's socklab tab, the live charts and the live line show
        self.connections = ConnectionFile(folder / CLIENT_CONNECTIONS)  # every connection, client side
        self.finished = False

    # -- start ---------------------------------------------------------------------------
    def start_server(self) -> None:
        """Start the design on a free loopback port and point Locust at it."""
        options = self.options
        if options.server_cmd:
            self.server = ServerProcess.start_command(split_named_command(options.server_cmd)[1], self.design)
        else:
            conn_log = server_flags(conn_log=str(self.folder / SERVER_CONNECTIONS)) if options.conn_log_cap > 0 else []
            self.server = ServerProcess.start(
                self.design, host=options.server_bind, extra_args=[*opts.server_args(options, self.design), *conn_log]
            )
        self.environment.host = self.options.host = self.target
        log.info("socklab: started %s server pid %d on %s", self.design, self.server.pid, self.environment.host)

    def start_monitor(self) -> None:
        """The monitor samples the server and this load generator (with its workers): a server socklab started,
        or a listener on this host it did not (its port's sockets, queue and counters; its process with
        --server-pid)."""
        if self.options.monitor_interval <= 0:
            return
        if self.server is not None:
            pid, port = self.server.pid, self.server.port
        else:
            port = local_port(self.environment.host or "")[0]
            pid = int(getattr(self.options, "server_pid", 0) or 0)
        if port is None:
            return
        out = self.folder / "monitor.csv"
        self.monitor = MonitorProcess.start(
            pid, port, out, interval=self.options.monitor_interval, loadgen_pids=[os.getpid()]
        )
        if self.monitor.rows_written() < 1:
            log.warning("socklab: the monitor did not start (exit status %s); no monitor.csv", self.monitor.proc.poll())
        self.feed.attach_monitor(out)

    def start_watchers(self) -> None:
        """The kernel tracer and the monitor, the tracer's compile (about a second) overlapping the monitor's
        first sample; both watching before any load starts."""
        (self.folder / KERNEL_FILE).unlink(missing_ok=True)  # an earlier run's, in a folder used again
        self.start_tracer()
        self.start_monitor()
        tracer = self.tracer
        if tracer is not None and tracer.proc is not None and not tracer.wait_attached():
            log.warning("socklab: the kernel tracer did not start: %s", tracer.status)
        if tracer is not None:
            self.kernel_trace = {"status": tracer.status}

    def start_tracer(self) -> None:
        """Trace the server's port in its namespace (and this one's, where the clients are): a server socklab
        started, or one on this host it did not."""
        port, why = self.traced_port()
        if port is None:
            self.kernel_trace = {"status": f"unavailable: {why}"}
            return
        spaces = {netns_inode()}
        if self.server is not None:
            with contextlib.suppress(OSError):  # gone already: the run fails on its own
                spaces.add(netns_inode(self.server.pid))
        self.tracer = KernelTracer.start(port, sorted(spaces), self.folder)
        self.kernel_trace = {"status": self.tracer.status}

    def traced_port(self) -> tuple[int | None, str]:
        """The port to trace, or None and why not."""
        if getattr(self.options, "kernel_trace", "auto") == "off":
            return None, "turned off (--kernel-trace off)"
        if self.server is not None:
            return self.server.port, ""
        return local_port(self.environment.host or "")

    @property
    def target(self) -> str | None:
        """The tcp://HOST:PORT of the server this run started, if it started one."""
        if self.server is None:
            return None
        return format_target(self.options.server_advertise or self.server.host, self.server.port)

    def restart_server(self, design: str, options: Any) -> None:
        """Between two tests in the web UI: the server options changed, so a new server (and monitor),
        started from `options`' values of every option that restarts it."""
        for o in opts.restarting_options():
            setattr(self.options, o.dest, getattr(options, o.dest))
        self.stop_processes()
        self.design = design
        self.manifest.pop("server_stopped", None)
        self.start_server()
        self.start_watchers()
        self.write_manifest()

    def drop_server(self) -> None:
        """Between two tests in the web UI: the user named a server of their own; ours goes."""
        self.stop_processes()
        self.feed.attach_monitor(None)
        self.design = "external"
        self.manifest.pop("server_stopped", None)
        self.write_manifest()

    def add_load_process(
        self,
        source: str,
        counts: dict[str, Any] | None,
        users: dict[str, Any] | None,
        ledger: dict[str, Any] | None,
        connections: dict[str, Any] | None = None,
    ) -> None:
        """What one load process (a worker, or the local runner) reports: its µs counts since its last
        report, its users' ledgers, its own figures, and the records of the connections it ended."""
        if counts:
            self.add_counts(counts)
        if users is not None:
            self.accounts.add(source, users)
        if ledger is not None:
            self.load_processes[source] = ledger
        self.connections.add(source, connections)

    def add_counts(self, data: dict[str, Any]) -> None:
        """µs counts from a load process: into the window's histograms and the live view's interval."""
        self.store.add(data)
        self.feed.add_counts(data)

    def user_figures(self) -> UserFigures | None:
        rows = list(self.accounts.users.values())
        return UserFigures.of(rows) if rows else None

    def write_manifest(self) -> None:
        self.manifest = self.describe()
        self._write()

    # -- the measured window ---------------------------------------------------------------
    def open_window(self, measure_own_cost: bool, warmup: bool = False) -> None:
        """Fresh histograms and user figures, the window's wall-clock start, our CPU reading (``warmup``: this
        is the warm-up's, which the measured window replaces when it ends)."""
        self.store = LatencyStore()
        self.accounts = AccountsStore()
        self.load_processes = {}
        self.window.open(measure_own_cost)
        self.feed.open_window()
        # The server's log counts each request's service inside the window from now (servers.connlog); not in
        # a warm-up (the audit found it counted: 4.86 s of service in a 3.9 s window).
        mark_window(self.folder / SERVER_CONNECTIONS, start=0.0 if warmup else self.window.monotonic_start)

    def close_window(self) -> None:
        self.window.close()
        if self.window.monotonic_stop is not None:
            mark_window(self.folder / SERVER_CONNECTIONS, stop=self.window.monotonic_stop)
        if self.window.perf_at_start is None or self.window.cpu_at_start is None:
            return
        # A local runner measures its own cost: the load generator's CPU per request.
        wall = time.perf_counter() - self.window.perf_at_start
        cpu = own_cpu() - self.window.cpu_at_start
        self.window.perf_at_start = self.window.cpu_at_start = None
        # Requests are ops, as everywhere (Locust's total also counts the CONNECT events).
        ops = [e for (_, method), e in self.environment.runner.stats.entries.items() if method in OP_NAMES]
        requests, failures = sum(e.num_requests for e in ops), sum(e.num_failures for e in ops)
        self.loadgen = {
            "processes": 1,
            "wall_s": wall,
            "cpu_s": cpu,
            "requests": requests,
            "failures": failures,
            "rps": requests / wall if wall else 0.0,
            "cpu_us_per_request": cpu / requests * 1e6 if requests else None,
            "cpu_percent": 100 * cpu / wall if wall else 0.0,
        }

    # -- the end ---------------------------------------------------------------------------
    def finish(self, own_counts: dict[str, Any]) -> None:
        """After the last worker report: write the latency files, stop monitor and server, finish run.json."""
        if self.finished:
            return
        self.finished = True
        self.store.add(own_counts)
        self.store.add_unfinished(self.accounts.unfinished)
        self._write_users()
        self._write_load_processes()
        self.connections.write()
        csv_path = self.folder / "socklab_latency.csv"
        self.store.write(csv_path, self.folder / "socklab_latency_hist.json")
        log.info("socklab: wrote %s (%d requests)", csv_path, self.store.total())
        self.stop_processes()
        self._finish_manifest()
        self._write()

    def stop_processes(self) -> None:
        """Monitor first (its last row sees the server), then the kernel tracer (its SYN-ACK re-sends are
        counted up to the monitor's last read), then the server.  Safe to call twice."""
        monitor, self.monitor = self.monitor, None
        if monitor is not None:
            monitor.stop()
        tracer, self.tracer = self.tracer, None
        if tracer is not None:
            tracer.interrupt()  # after the monitor's last read of the counters; it exits as the server stops
        server, self.server = self.server, None
        if server is not None:
            self.manifest["server_stopped"] = server.stop()
        if tracer is not None:
            self.kernel_trace = self.manifest["kernel_trace"] = tracer.stop()

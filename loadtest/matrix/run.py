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
import csv
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from loadtest.client.accounting import AccountsStore, own_cpu
from loadtest.client.connections import ConnectionFile
from loadtest.client.failures import failure_class
from loadtest.client.latency import LatencyStore
from loadtest.declare import options as opts
from loadtest.declare.columns import LOAD_PROCESSES, USERS
from loadtest.declare.kernel import KERNEL_FILE
from loadtest.declare.kinds import OP_NAMES
from loadtest.declare.settings import parse_sysctls
from loadtest.declare.target import format_target, local_port, split_named_command
from loadtest.hosts.isolate import in_private_netns, netns_label
from loadtest.matrix.processes import MonitorProcess, ServerProcess
from loadtest.matrix.window import Window
from loadtest.measure.live import LiveFeed, UserFigures
from loadtest.measure.machine import sysctls, versions
from loadtest.measure.tracer import KernelTracer, netns_inode
from servers.config import flags as server_flags
from servers.connlog import mark_window

log = logging.getLogger("socklab")

USERS_CSV_COLUMNS = [c.name for c in USERS]  # declared in loadtest.declare.columns
CLIENT_CONNECTIONS = "connections_client.csv"  # each connection as its client saw it (loadtest.client.connections)
SERVER_CONNECTIONS = "server_connections.bin"  # each connection as the server saw it (servers.connlog)


class Run:
    """What the master or local runner owns for one run."""

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

    def _write_users(self) -> None:
        """socklab_users.csv: one row per user of the measured window, across every load process."""
        with (self.folder / "socklab_users.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=USERS_CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(self.accounts.rows())

    def _write_load_processes(self) -> None:
        """socklab_load_processes.csv: per load process (each worker, or the local runner) its requests,
        CPU and where it ran — one saturated worker shows as such even when the rest idle."""
        rows = [load_process_row(worker_id, facts) for worker_id, facts in sorted(self.load_processes.items())]
        with (self.folder / "socklab_load_processes.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=LOAD_PROCESS_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        self.manifest["load_processes"] = rows

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

    def _finish_manifest(self) -> None:
        info = self.manifest
        info["window"] = {
            **self.window.describe(),
            "in_flight_at_open_s": round(sum(self.accounts.open_in_flight.values()), 6),
        }
        info["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        runner = self.environment.runner
        if runner is not None:
            stats = runner.stats
            info["locust"] = {"requests": stats.total.num_requests, "failures": stats.total.num_failures}
            info["failures"] = [
                {
                    "type": e.method,
                    "name": e.name,
                    "class": failure_class(e.error),
                    "error": str(e.error),
                    "occurrences": e.occurrences,
                }
                for e in stats.errors.values()
            ]
        info["latency_total"] = self.store.total()
        server_log = self.folder / SERVER_CONNECTIONS
        info["connections"] = {
            "client": self.connections.describe(),
            "server_log": server_log.name if server_log.exists() else None,
        }
        late, lag = self.accounts.late_total()
        info["open_loop"] = (
            {
                "arrival_rate": self.options.arrival_rate,
                "arrivals": self.options.arrivals,
                "late_arrivals": late,
                "late_lag_s": round(lag, 6),
            }
            if self.options.arrival_rate > 0
            else None
        )
        if self.loadgen is not None:
            info["loadgen"] = self.loadgen

    def _write(self) -> None:
        (self.folder / "run.json").write_text(json.dumps(self.manifest, indent=1, default=str))

    def describe(self) -> dict[str, Any]:
        """What is needed to understand and repeat the run."""
        options, env = self.options, self.environment
        return {
            "format": "socklab-run/1",
            "run_id": self.folder.name,
            "scenario": options.scenario,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": sys.argv,
            "design": self.design,
            "variant": self.design,  # its name before "design" was the one word: kept for one release
            "server": None if self.server is None else self.server.describe(),
            "host": env.host,
            "user_classes": [cls.__name__ for cls in env.user_classes],
            "users": options.num_users,
            "spawn_rate": options.spawn_rate,
            "run_time_s": options.run_time,
            "processes": options.processes,
            "headless": options.headless,
            "options": opts.option_values(options),
            "counters_scope": "isolated" if in_private_netns() else "shared",
            # Whose counters they are: the monitor runs beside this process, in its namespace.
            "counters_from": {"host": socket.gethostname(), "netns": netns_label()},
            "cpus": os.cpu_count(),
            "versions": versions(),
            "sysctl": sysctls(),
            "sysctl_set": parse_sysctls(getattr(options, "sysctl", "") or ""),  # by --sysctl, in this namespace
            "kernel_trace": self.kernel_trace,  # the tracer's status; its figures when it stops
        }


# requests, failures and rps count ops, as the summary does; locust_events is every Locust request event
# (ops and CONNECTs, successes and failures): what Locust's own total counts.
LOAD_PROCESS_COLUMNS = [c.name for c in LOAD_PROCESSES]  # declared in loadtest.declare.columns


def load_process_row(worker_id: str, facts: dict[str, Any]) -> dict[str, Any]:
    wall = float(facts.get("wall_s") or 0.0)
    cpu_percent = 100 * float(facts.get("cpu_s") or 0.0) / wall if wall else 0.0
    requests, failures = int(facts.get("requests", 0)), int(facts.get("failures", 0))
    return {
        "worker_id": worker_id,
        "host": facts.get("host", ""),
        "netns": facts.get("netns", ""),
        "pid": facts.get("pid", ""),
        "requests": requests,
        "failures": failures,
        "rps": round((requests - failures) / wall, 1) if wall else 0.0,
        "locust_events": int(facts.get("locust_events", requests)),
        "syn_retrans": int(facts.get("syn_retrans", 0)),
        "syn_retried": int(facts.get("syn_retried", 0)),
        "boot_id": facts.get("boot_id", ""),
        "clock_offset": facts.get("clock_offset", ""),
        "cpu_percent": round(cpu_percent, 1),
    }

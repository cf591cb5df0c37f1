"""The files of a run folder, written once at the end: ``run.json``, the users' and the load processes' CSVs.

``run.json`` is the run's single manifest: what ran and how to repeat it (:meth:`RunFiles.describe`,
written as the run starts), and at the end the measured window, the server's final counters, the load
generator's own cost and the failures by class.  No fact is written to two files.  :class:`RunFiles` is
the part of :class:`loadtest.matrix.run.Run` that writes them; the run's processes and window are there.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from loadtest.client.accounting import AccountsStore
from loadtest.client.connections import ConnectionFile
from loadtest.client.failures import failure_class
from loadtest.client.latency import LatencyStore
from loadtest.declare import options as opts
from loadtest.declare.columns import LOAD_PROCESSES, USERS
from loadtest.declare.settings import parse_sysctls
from loadtest.hosts.isolate import in_private_netns, netns_label
from loadtest.matrix.window import Window
from loadtest.measure.machine import sysctls, versions

USERS_CSV_COLUMNS = [c.name for c in USERS]  # declared in loadtest.declare.columns
CLIENT_CONNECTIONS = "connections_client.csv"  # each connection as its client saw it (loadtest.client.connections)
SERVER_CONNECTIONS = "server_connections.bin"  # each connection as the server saw it (servers.connlog)


class RunFiles:
    """Writes a run's files from what :class:`loadtest.matrix.run.Run` holds."""

    environment: Any
    options: Any
    folder: Path
    design: str
    window: Window
    store: LatencyStore
    accounts: AccountsStore
    connections: ConnectionFile
    server: Any
    kernel_trace: dict[str, Any]
    manifest: dict[str, Any]
    loadgen: dict[str, Any] | None
    load_processes: dict[str, dict[str, Any]]

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
        "window_s": round(wall, 3),
    }

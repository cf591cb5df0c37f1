"""One cell runner for ``socklab compare`` and ``socklab sweep``: a cell is one headless Locust run.

Each cell is exactly what a user would run by hand — a headless ``locust -f loadtest/locustfile.py``
subprocess with the scenario's options — so it starts its own server and monitor, writes its own
run folder and its per-run report.  When it can (root), each cell runs in a private network
namespace of its own (``python -m loadtest.hosts.isolate``): its kernel counters are exact, and one cell's
TIME_WAIT sockets cannot slow the next.  Cells run one after another, never side by side: on a
2-core machine two load tests at once measure each other.

:class:`CellRunner` owns what every matrix needs — the output folder, the isolation check, and the
signals: Ctrl-C, SIGTERM and SIGHUP all stop the running cell the way Ctrl-C stops it (it gets
SIGINT: it writes its report and stops its server) and end the matrix with the finished cells
kept.  A cell's result is returned as a value (:class:`Outcome`), never set on the cell.
"""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console

from loadtest.declare import options as opts
from loadtest.declare.scenarios import Workload
from loadtest.declare.settings import LOCUSTFILE
from loadtest.hosts.isolate import can_isolate
from loadtest.report import build_run_report, load_bound, load_run, summarize
from loadtest.report.load import RunData
from loadtest.report.rules.findings import waiting
from loadtest.report.rules.summary import shown

MAX_LOAD_PROCESSES = 4  # a cell whose one Locust process gave out runs again with one per core, up to this
CELL_OVERHEAD_S = 2.5  # Locust start-up, server and monitor start, the cell's page: for the ETA (measured 2.3 s)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
COUNTED_CELL_LIMIT_S = 120  # a cell that ends on a count still stops by itself


@dataclass
class Cell:
    scenario: Workload  # a scenario, or the experiment whose arm this is
    design: str
    users: int
    folder: Path
    server_cmd: str = ""  # a --server-cmd NAME='COMMAND {port}' server instead of a registered design
    options: dict[str, Any] = field(default_factory=dict)  # this cell's own options, over everything else

    @property
    def name(self) -> str:
        return f"{self.scenario.name}/{self.design}/{self.users}u"


@dataclass
class Outcome:
    """What one cell came to."""

    cell: Cell
    status: str  # done, failed, interrupted
    note: str = ""
    run: RunData | None = None
    row: dict[str, Any] | None = None  # its summary row, when it ran
    server_died: bool = False
    all_failed: bool = False  # it ran, but not one request succeeded

    @property
    def clean(self) -> bool:
        return self.status == "done" and not self.server_died and not self.all_failed


class Interrupted(Exception):
    pass


def cell_command(cell: Cell, args: Any, isolate: bool) -> list[str]:
    options = {**cell.scenario.options, **opts.overrides(args), **cell.options}
    run_time, warmup = f"{math.ceil(args.warmup + args.duration)}s", args.warmup
    if cell.scenario.connections:  # counted, not timed: the time limit is only a safety bound
        options["connections-total"] = getattr(args, "connections", None) or cell.scenario.connections
        run_time, warmup = f"{COUNTED_CELL_LIMIT_S}s", 0
    server = ["--server-cmd", cell.server_cmd] if cell.server_cmd else ["--server", cell.design]
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        cell.scenario.user_class,
        "--headless",
        "-u",
        str(cell.users),
        "-r",
        f"{cell.scenario.spawn_rate or cell.users:g}",
        "-t",
        run_time,
        "--warmup",
        str(warmup),
        "--stop-timeout",
        "0",
        *server,
        "--report-dir",
        str(cell.folder),
        "--scenario",
        cell.scenario.name,
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--report",
        "data",  # the page: outcome_of, here, warm
    ]
    for name, value in options.items():
        if isinstance(value, bool):  # a switch: the flag alone when on
            cmd += [f"--{name}"] if value else []
        else:
            cmd += [f"--{name}", str(value)]
    if getattr(args, "processes", 0) > 1:  # 1: one process, the local runner, and never more
        cmd += ["--processes", str(args.processes)]
    if isolate:
        cmd = [sys.executable, "-m", "loadtest.hosts.isolate", "--", *cmd]
    return cmd


def outcome_of(cell: Cell, status: str, note: str = "") -> Outcome:
    """A finished cell read back from its folder: its summary row and what went wrong, if anything."""
    if status != "done":
        return Outcome(cell, status, note)
    run = load_run(cell.folder)
    row = summarize(run)
    build_run_report(cell.folder, (run, row))  # the cell's own page, built here where the modules are loaded
    died = bool(run.info.get("server")) and run.info.get("server_stopped") is None
    all_failed = bool(row["requests"]) and not row["rps"]
    return Outcome(cell, status, note, run, row, died, all_failed)


def result_line(outcome: Outcome) -> str:
    """One line for a finished cell: its rate, latency, who was served, what overflowed, what bound it."""
    cell, row = outcome.cell, outcome.row
    if outcome.status != "done" or row is None or outcome.run is None:
        return f"{cell.name:32} {outcome.status.upper()}: {outcome.note}"
    bits = [f"{row['rps']:>9,.0f} req/s", f"p50 {shown(row, 'latency_p50_ms')}", f"p99 {shown(row, 'latency_p99_ms')}"]
    if (row.get("pipeline") or 1) > 1:
        bits.append(f"pipelined ×{row['pipeline']}")
    if (row.get("load_processes") or 1) > 1:
        bits.append(f"{row['load_processes']} load processes")
    if isinstance(row["users_starved"], int) and row["users_starved"]:
        bits.append(f"served {row['users_served']}/{row['users_served'] + row['users_starved']}")
    if waited := waiting(outcome.run):  # only work that waited longer than the finished p99 is news
        bits.append(waited)
    if row["failures"]:
        bits.append(f"failures {row['failure_classes']}")
    if outcome.all_failed:
        bits.append("EVERY REQUEST FAILED")
    if isinstance(row["listen_overflows"], int) and row["listen_overflows"]:
        bits.append(f"ListenOverflows {row['listen_overflows']:,} ({row['counters_scope']})")
    if bound := load_bound(row, outcome.run.info.get("cpus")):
        bits.append(bound)
    if outcome.server_died:
        bits.append("SERVER DIED during the cell")
    return f"{cell.name:32} " + " · ".join(bits)


class CellRunner:
    """The output folder, the isolation and the signals of a matrix of cells; :meth:`run` runs one."""

    def __init__(self, out: Path, args: Any, console: Console) -> None:
        self.out, self.args, self.console = out, args, console
        self.interrupted: list[int] = []
        self.isolate = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> CellRunner:
        self.out.mkdir(parents=True, exist_ok=True)
        if getattr(self.args, "no_isolate", False):
            self.console.print(
                "note: --no-isolate: cells share the host's kernel counters, marked 'shared' in the summary"
            )
        else:
            ok, why = can_isolate()
            self.isolate = ok
            if not ok:
                self.console.print(
                    f"note: no private network namespace here ({why}); cells share the host's "
                    "counters, marked 'shared' in the summary"
                )
        self._previous = {
            sig: signal.signal(sig, lambda signum, _f: self.interrupted.append(signum)) for sig in STOP_SIGNALS
        }
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return kind is Interrupted  # an interrupted matrix ends here, its finished cells kept

    @property
    def stopped_by(self) -> int:
        """128 + the signal that stopped the matrix (the shell's convention), or 0."""
        return 128 + self.interrupted[0] if self.interrupted else 0

    def run(self, cell: Cell) -> Outcome:
        """Run one cell to its end; raises Interrupted (after stopping it) when a stop signal came."""
        timeout = self.args.warmup + self.args.duration + CELL_OVERHEAD_S + 90
        if cell.scenario.connections:
            timeout = COUNTED_CELL_LIMIT_S + 30
        status, note = self._run(cell, cell_command(cell, self.args, self.isolate), timeout)
        return outcome_of(cell, status, note)

    def _run(self, cell: Cell, cmd: list[str], timeout: float) -> tuple[str, str]:
        cell.folder.mkdir(parents=True, exist_ok=True)
        log_path = cell.folder / "locust.log"
        with log_path.open("w") as log:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            deadline = time.monotonic() + timeout
            while proc.poll() is None:
                if self.interrupted:
                    proc.send_signal(signal.SIGINT)  # whatever stopped us, the cell stops the way Ctrl-C stops it
                    try:
                        proc.wait(5)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                    why = f"stopped by {signal.Signals(self.interrupted[0]).name}"
                    self.console.print(result_line(Outcome(cell, "interrupted", why)))
                    raise Interrupted
                if time.monotonic() > deadline:
                    proc.kill()
                    proc.wait()
                    return "failed", f"did not finish within {timeout:.0f} s; killed"
                time.sleep(0.1)
        if proc.returncode not in (0, 1):  # 1 = the run had failures: still a result
            tail = log_path.read_text(errors="replace").strip().splitlines()
            return "failed", tail[-1] if tail else f"exit status {proc.returncode}"
        if not (cell.folder / "run.json").exists():
            return "failed", "no run.json written"
        return "done", ""

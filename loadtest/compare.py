"""``socklab compare``: a matrix of variants × loads × scenarios, one isolated cell at a time.

Each cell is exactly what a user would run by hand — a headless
``locust -f loadtest/locustfile.py`` subprocess with the scenario's options —
so it starts its own server and monitor, writes its own run folder and its
per-run report.  When it can (root), each cell runs in a private network
namespace of its own (``python -m loadtest.netns``): its kernel counters are
exact, and one cell's TIME_WAIT sockets cannot slow the next.  At the end,
or after Ctrl-C with the cells finished so far, the comparison is built from
the cells' folders.

Cells run one after another, never side by side: on a 2-core machine two load
tests at once measure each other.
"""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from loadtest import options as opts
from loadtest.netns import can_isolate
from loadtest.report import build_compare, load_bound, load_run, summarize
from loadtest.report.summary import shown
from servers import VARIANTS

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
CELL_OVERHEAD_S = 4.0  # Locust start-up, server and monitor start, report building: for the ETA
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
COUNTED_CELL_LIMIT_S = 120  # a cell that ends on a count still stops by itself


@dataclass(frozen=True)
class Scenario:
    """A named question, the Locust options that ask it, and what the answer should look like."""

    name: str
    question: str
    expect: str
    user_class: str
    options: dict[str, Any] = field(default_factory=dict)
    users: tuple[int, ...] = (10, 50)
    connections: int = 0  # > 0: the cell ends after this many connections, not on a timer (no warm-up)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "echo",
            "What does one request cost?",
            "persistent 64 B ECHO: the load generator is usually the bottleneck (client_bound), and the report says so",
            "PersistentUser",
            {"op": "ECHO", "payload-bytes": 64},
        ),
        Scenario(
            "io-wait",
            "What happens when requests wait on I/O?",
            "SLEEP 20 ms: blocking serializes at about 50 req/s whatever the users; threaded and selectors scale "
            "with users",
            "PersistentUser",
            {"op": "SLEEP", "sleep-ms": 20},
        ),
        Scenario(
            "conn-storm",
            "What happens when clients connect faster than the server accepts?",
            "connect-per-request at backlog 10, users arriving at once: listen overflows on blocking, SYN-retry "
            "clusters at ~1, 2, 3 s in connect and first-reply time, TIME_WAIT on the client side",
            "ConnectPerRequestUser",
            {"op": "ECHO", "backlog": 10},
        ),
        Scenario(
            "arrivals",
            "What happens when connections arrive on a schedule, whether or not the server keeps up?",
            "open loop, 2,000 connections/s at backlog 10: a design that accepts too slowly overflows its queue at "
            "the rate chosen, latency counts from each intended start, and late arrivals are counted",
            "ConnectPerRequestUser",
            {"op": "ECHO", "arrival-rate": 2000, "backlog": 10},
            users=(10,),
        ),
        Scenario(
            "unp30",
            "Stevens' chapter 30: what does each design cost per connection?",
            "his client: 10 users, each connecting, asking for 4,000 bytes, reading them and closing, 5,000 "
            "connections per cell; server user and system CPU per connection, compared with the iterative "
            "baseline — fork per client by far the dearest, pools cheaper, threads cheaper than processes",
            "ConnectPerRequestUser",
            {"op": "ECHO", "payload-bytes": 0, "reply-bytes": 4000},
            users=(10,),
            connections=5000,
        ),
        Scenario(
            "cpu",
            "What happens when requests compute?",
            "WORK 2 ms: the GIL — threaded is no better than blocking; selectors stalls its loop",
            "PersistentUser",
            {"op": "WORK", "work-us": 2000},
        ),
        Scenario(
            "many-idle",
            "What does a connection cost when it mostly waits?",
            "IdleUser, thousands of connections: threads, RSS and fds per connection",
            "IdleUser",
            # The question is the cost, not the overflow or the cap: room for every user.
            {"idle-interval": 5, "backlog": 4096, "max-connections": 4096},
            users=(1000, 3000),
        ),
    )
}
DEFAULT_SCENARIOS = ("echo", "io-wait", "conn-storm")


@dataclass
class Cell:
    scenario: Scenario
    variant: str
    users: int
    folder: Path
    server_cmd: str = ""  # a --server-cmd NAME='COMMAND {port}' server instead of a registered variant
    options: dict[str, Any] = field(default_factory=dict)  # this cell's own options, over everything else
    status: str = "pending"  # pending, done, failed, interrupted
    note: str = ""
    server_died: bool = False
    all_failed: bool = False  # it ran, but not one request succeeded

    @property
    def name(self) -> str:
        return f"{self.scenario.name}/{self.variant}/{self.users}u"


def plan(
    variants: list[str],
    users: list[int] | None,
    scenarios: list[str],
    out: Path,
    commands: dict[str, str] | None = None,
) -> list[Cell]:
    """Every cell, in order; `commands` adds --server-cmd servers (NAME → COMMAND) beside the variants."""
    servers = [(v, "") for v in variants] + [(name, f"{name}={cmd}") for name, cmd in (commands or {}).items()]
    cells = []
    for name in scenarios:
        scenario = SCENARIOS[name]
        for n in users or scenario.users:
            for variant, server_cmd in servers:
                cells.append(Cell(scenario, variant, n, out / f"{name}-{variant}-u{n}", server_cmd))
    return cells


def over_caps(args: Any) -> str | None:
    """A value that the cells' servers would refuse on every request, checked before any cell runs."""
    for name in args.scenario:
        merged = {o.dest: o.default for o in opts.OPTIONS}
        merged.update({k.replace("-", "_"): v for k, v in SCENARIOS[name].options.items()})
        merged.update({k.replace("-", "_"): v for k, v in opts.overrides(args).items()})
        problem = opts.over_server_caps(SimpleNamespace(**merged))
        if problem:
            return problem
    return None


def cell_command(cell: Cell, args: Any, isolate: bool) -> list[str]:
    options = {**cell.scenario.options, **opts.overrides(args), **cell.options}
    run_time, warmup = f"{math.ceil(args.warmup + args.duration)}s", args.warmup
    if cell.scenario.connections:  # counted, not timed: the time limit is only a safety bound
        options["connections-total"] = args.connections or cell.scenario.connections
        run_time, warmup = f"{COUNTED_CELL_LIMIT_S}s", 0
    server = ["--server-cmd", cell.server_cmd] if cell.server_cmd else ["--server", cell.variant]
    cmd = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), cell.scenario.user_class, "--headless",
        "-u", str(cell.users), "-r", str(cell.users), "-t", run_time, "--warmup", str(warmup),
        "--stop-timeout", "0", *server, "--report-dir", str(cell.folder), "--scenario", cell.scenario.name,
        "--only-summary", "--loglevel", "WARNING",
    ]  # fmt: skip
    for name, value in options.items():
        cmd += [f"--{name}", str(value)]
    if args.processes:
        cmd += ["--processes", str(args.processes)]
    if isolate:
        cmd = [sys.executable, "-m", "loadtest.netns", "--", *cmd]
    return cmd


class Interrupted(Exception):
    pass


def run_cell(cell: Cell, cmd: list[str], timeout: float, interrupted: list[int]) -> None:
    """One Locust run; on Ctrl-C it gets SIGINT (it writes its report and stops its server)."""
    cell.folder.mkdir(parents=True, exist_ok=True)
    log = (cell.folder / "locust.log").open("w")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None:
            if interrupted:
                proc.send_signal(signal.SIGINT)  # whatever stopped us, the cell stops the way Ctrl-C stops it
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                cell.status, cell.note = "interrupted", f"stopped by {signal.Signals(interrupted[0]).name}"
                raise Interrupted
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                cell.status, cell.note = "failed", f"did not finish within {timeout:.0f} s; killed"
                return
            time.sleep(0.1)
    finally:
        log.close()
    if proc.returncode not in (0, 1):  # 1 = the run had failures: still a result
        tail = (cell.folder / "locust.log").read_text(errors="replace").strip().splitlines()
        cell.status, cell.note = "failed", (tail[-1] if tail else f"exit status {proc.returncode}")
        return
    if not (cell.folder / "run.json").exists():
        cell.status, cell.note = "failed", "no run.json written"
        return
    cell.status = "done"


def describe(cell: Cell) -> str:
    """One result line for a finished cell."""
    if cell.status != "done":
        return f"{cell.name:32} {cell.status.upper()}: {cell.note}"
    run = load_run(cell.folder)
    row = summarize(run)
    bits = [f"{row['rps']:>9,.0f} req/s", f"p50 {shown(row, 'latency_p50_ms')}", f"p99 {shown(row, 'latency_p99_ms')}"]
    if isinstance(row["users_starved"], int) and row["users_starved"]:
        bits.append(f"served {row['users_served']}/{row['users_served'] + row['users_starved']}")
    if row["unfinished_connects"] or row["unfinished_requests"]:
        bits.append(f"unfinished {row['unfinished_connects']} connects, {row['unfinished_requests']} requests")
    if row["failures"]:
        bits.append(f"failures {row['failure_classes']}")
    if row["requests"] and not row["rps"]:
        bits.append("EVERY REQUEST FAILED")
        cell.all_failed = True
    if isinstance(row["listen_overflows"], int) and row["listen_overflows"]:
        bits.append(f"ListenOverflows {row['listen_overflows']:,} ({row['counters_scope']})")
    if bound := load_bound(row, run.info.get("cpus")):
        bits.append(bound)
    if run.info.get("server") and run.info.get("server_stopped") is None:
        bits.append("SERVER DIED during the cell")
        cell.server_died = True
    return f"{cell.name:32} " + " · ".join(bits)


def main(args: Any) -> int:
    console = Console(highlight=False, soft_wrap=True)
    out: Path = args.out or Path("reports") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    isolate = not args.no_isolate
    if isolate:
        ok, why = can_isolate()
        if not ok:
            console.print(f"note: no private network namespace here ({why}); cells share the host's counters, "
                          "marked 'shared' in the summary")  # fmt: skip
            isolate = False
    else:
        console.print("note: --no-isolate: cells share the host's kernel counters, marked 'shared' in the summary")
    cells = plan(args.variants, args.users, args.scenario, out, dict(args.server_cmd or []))
    per_cell = args.warmup + args.duration + CELL_OVERHEAD_S
    console.print(f"socklab compare: {len(cells)} cells ({', '.join(args.scenario)} × {', '.join(args.variants)} × "
                  f"users {', '.join(map(str, args.users)) if args.users else 'per scenario'}), "
                  f"~{len(cells) * per_cell / 60:.1f} min; output in {out}")  # fmt: skip

    # Ctrl-C, SIGTERM and SIGHUP all stop the matrix the same way: the running cell gets SIGINT
    # (it writes its report and stops its server), the finished cells are compared.
    interrupted: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: interrupted.append(signum)) for sig in STOP_SIGNALS}
    try:
        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=True,
        ) as progress:  # fmt: skip
            task = progress.add_task("starting", total=len(cells))
            for cell in cells:
                progress.update(task, description=cell.name)
                try:
                    run_cell(cell, cell_command(cell, args, isolate), per_cell + 90, interrupted)
                except Interrupted:
                    progress.console.print(describe(cell))
                    break
                progress.console.print(describe(cell))
                progress.advance(task)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    finished = [c for c in cells if c.status == "done"]
    stopped_by = 128 + interrupted[0] if interrupted else 0  # the shell's convention: 130 for SIGINT
    if not finished:
        console.print("no cell finished: nothing to compare")
        return stopped_by or 1
    summary, page = build_compare([c.folder for c in finished], out)
    console.print(f"summary: {summary}")
    console.print(f"compare report: {page.resolve()}")
    if interrupted:
        name = signal.Signals(interrupted[0]).name
        console.print(f"interrupted: kept {len(finished)} of {len(cells)} cells ({name})")
        return stopped_by
    troubled = [c.name for c in cells if c.status != "done" or c.server_died or c.all_failed]
    if troubled:
        console.print(f"cells that did not run cleanly: {', '.join(troubled)}")
        return 1
    return 0


def parse_duration(text: str) -> float:
    """'10s', '2m', '1.5' (seconds) → seconds."""
    text = text.strip().lower()
    scale = {"s": 1, "m": 60, "h": 3600}.get(text[-1:])
    value = float(text[:-1] if scale else text)
    if value < 0:
        raise ValueError
    return value * (scale or 1)


parse_duration.__name__ = "duration (e.g. 10s, 1m)"


def positive_duration(text: str) -> float:
    """A measured window: 0 would reach Locust as `-t 0s`, which means no time limit at all."""
    value = parse_duration(text)
    if value <= 0:
        raise ValueError
    return value


positive_duration.__name__ = "duration > 0 (e.g. 10s, 1m)"


def named_command(text: str) -> tuple[str, str]:
    """--server-cmd NAME='COMMAND … {port} …' → (NAME, COMMAND)."""
    name, sep, command = text.partition("=")
    if not sep or not name or " " in name or "{port}" not in command or name in VARIANTS:
        raise ValueError
    return name, command.strip()


named_command.__name__ = "NAME='COMMAND … {port} …' (a name that is not a registered variant)"


def variant_list(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        raise ValueError
    return names


variant_list.__name__ = f"variant list (from {', '.join(VARIANTS)})"


def users_list(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise ValueError
    return values


users_list.__name__ = "users list (e.g. 1,10,100)"

"""socklab's Locust wiring: options, the embedded server, µs histograms across workers.

Imported by loadtest/locustfile.py.  Locust fires init/test_start/quitting/quit
in the master *and* in every worker, so everything with a side effect here
(starting the server, writing files) happens only where the runner is not a
WorkerRunner: the local runner, or the master under ``--processes N`` or
``--master``.  Workers learn the target from the host the master sends with
each spawn message.

Order at the end of a run (Locust 2.47's ``shutdown()``): ``quitting`` fires,
then the master's ``runner.quit()`` collects the workers' final reports, then
``quit`` fires.  So the latency CSV is written on ``quit`` — after the last
worker report — and only then is the server stopped, so no user sees its own
server vanish.  An ``atexit`` hook and the server's PR_SET_PDEATHSIG cover
crashes and ``kill -9``.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from locust import events
from locust.runners import LocalRunner, WorkerRunner

from loadtest.client import format_target, parse_target
from loadtest.latency import LatencyStore
from loadtest.server_process import ServerProcess, ServerStartError, die_with_parent
from loadtest.users import RECORDER, USER_MODES
from servers import VARIANTS

log = logging.getLogger("socklab")
DEFAULT_VARIANT = "selectors"
SERVER_CHOICES = ["auto", *VARIANTS, "none"]
REPORT_KEY = "socklab_latency"


class RunState:
    """What the master or local runner owns for this run."""

    def __init__(self) -> None:
        self.server: ServerProcess | None = None
        self.monitor: subprocess.Popen[bytes] | None = None
        self.store = LatencyStore()
        self.report_dir: Path | None = None
        self.finished = False
        self.load_started: tuple[float, float] | None = None  # (wall, cpu) at test_start


STATE = RunState()


@events.init_command_line_parser.add_listener
def add_options(parser: Any) -> None:
    # No side effects here: Locust calls this again on every web-UI page load.
    g = parser.add_argument_group("socklab", "socklab load and server options")
    g.add_argument(
        "--user-mode",
        choices=list(USER_MODES),
        default="persistent",
        help="which user class runs when none is named on the command line (default persistent)",
    )
    g.add_argument("--op", choices=["ECHO", "SLEEP", "WORK"], default="ECHO", help="request op (default ECHO)")
    g.add_argument("--payload-bytes", type=int, default=64, help="request payload size (default 64)")
    g.add_argument("--reply-bytes", type=int, default=0, help="reply body size, 0 = echo the payload (default 0)")
    g.add_argument("--sleep-ms", type=int, default=20, help="SLEEP argument in ms (default 20)")
    g.add_argument("--work-us", type=int, default=1000, help="WORK argument in µs (default 1000)")
    g.add_argument("--connect-timeout", type=float, default=5.0, help="connect() timeout in s (default 5)")
    g.add_argument("--read-timeout", type=float, default=10.0, help="reply timeout in s (default 10)")
    g.add_argument(
        "--idle-interval", type=float, default=5.0, help="IdleUser: seconds between its small requests (default 5)"
    )
    g.add_argument(
        "--server",
        choices=SERVER_CHOICES,
        default="auto",
        help=f"server variant to start for this run; auto = {DEFAULT_VARIANT} unless --host is given; "
        "none = use --host only",
    )
    g.add_argument("--backlog", type=int, default=128, help="listen() backlog of the started server (default 128)")
    g.add_argument(
        "--monitor-interval",
        type=float,
        default=0.5,
        help="seconds between monitor samples of the started server; 0 = no monitor (default 0.5)",
    )
    g.add_argument("--report-dir", default="", help="folder for socklab's output (default reports/<run-id>)")


def fail(message: str) -> None:
    """CLI misuse: one line, exit status 2."""
    sys.stderr.write(f"socklab: {message}\n")
    sys.stderr.flush()
    sys.exit(2)


def validate(options: Any, host: str | None) -> None:
    if host:
        try:
            parse_target(host)
        except ValueError as exc:
            fail(str(exc))
    if options.server == "none" and not host:
        fail("--server none needs --host tcp://HOST:PORT of a running server")
    if options.server not in ("auto", "none") and host:
        fail(f"--server {options.server} and --host {host} both name a target; drop one")
    for name in ("payload_bytes", "reply_bytes", "sleep_ms", "work_us", "backlog"):
        if getattr(options, name) < 0:
            fail(f"--{name.replace('_', '-')} must be >= 0")
    for name in ("connect_timeout", "read_timeout", "idle_interval"):
        if getattr(options, name) <= 0:
            fail(f"--{name.replace('_', '-')} must be > 0")


@events.init.add_listener
def on_init(environment: Any, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return
    options = environment.parsed_options
    if options is None:  # a library use of Locust without the command line
        return
    validate(options, environment.host)
    if not options.user_classes:
        # Run the one class --user-mode names, not every class in the locustfile.
        environment.user_classes = [USER_MODES[options.user_mode]]
    variant = DEFAULT_VARIANT if options.server == "auto" else options.server
    STATE.report_dir = Path(options.report_dir or f"reports/{time.strftime('%Y%m%d-%H%M%S')}-{variant}")
    STATE.report_dir.mkdir(parents=True, exist_ok=True)
    if options.server != "none" and not (options.server == "auto" and environment.host):
        try:
            STATE.server = ServerProcess.start(variant, backlog=options.backlog)
        except ServerStartError as exc:
            fail(f"could not start the {variant} server: {exc}")
        atexit.register(_stop_server)
        environment.host = options.host = format_target(STATE.server.host, STATE.server.port)
        (STATE.report_dir / "server.json").write_text(json.dumps(
            {"variant": variant, "host": STATE.server.host, "port": STATE.server.port,
             "backlog": STATE.server.backlog, "pid": STATE.server.pid}))  # fmt: skip
        log.info("socklab: started %s server pid %d on %s", variant, STATE.server.pid, environment.host)
        if options.monitor_interval > 0:
            STATE.monitor = start_monitor(STATE.server, STATE.report_dir / "monitor.csv", options.monitor_interval)


def start_monitor(server: ServerProcess, out: Path, interval: float) -> subprocess.Popen[bytes]:
    """The monitor as its own process, sampling the server and this load generator (and its workers)."""
    cmd = [
        sys.executable, "-m", "loadtest.monitor", "--pid", str(server.pid), "--port", str(server.port),
        "--interval", str(interval), "--out", str(out), "--loadgen-pid", str(os.getpid()),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent, start_new_session=True)
    atexit.register(_stop_monitor)
    return proc


@events.test_start.add_listener
def on_test_start(environment: Any, **_: Any) -> None:
    # Locust clears its stats when a test starts; so do we, so both count the same requests.
    RECORDER.drain()
    if isinstance(environment.runner, WorkerRunner):
        return
    STATE.store = LatencyStore()
    options = environment.parsed_options
    if options is not None and not options.user_classes:
        environment.user_classes = [USER_MODES[options.user_mode]]  # the web UI may have changed it
    if isinstance(environment.runner, LocalRunner):
        STATE.load_started = (time.perf_counter(), _own_cpu())


@events.test_stop.add_listener
def on_test_stop(environment: Any, **_: Any) -> None:
    # A local runner measures its own cost: the load generator's CPU per request.
    if STATE.load_started is None or STATE.report_dir is None:
        return
    wall = time.perf_counter() - STATE.load_started[0]
    cpu = _own_cpu() - STATE.load_started[1]
    STATE.load_started = None
    total = environment.runner.stats.total
    requests = total.num_requests
    (STATE.report_dir / "loadgen.json").write_text(json.dumps({
        "processes": 1, "wall_s": wall, "cpu_s": cpu, "requests": requests, "failures": total.num_failures,
        "rps": requests / wall if wall else 0.0,
        "cpu_us_per_request": cpu / requests * 1e6 if requests else None,
        "cpu_percent": 100 * cpu / wall if wall else 0.0,
    }, indent=1))  # fmt: skip


def _own_cpu() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


@events.report_to_master.add_listener
def on_report_to_master(data: dict[str, Any], **_: Any) -> None:
    data[REPORT_KEY] = RECORDER.drain()


@events.worker_report.add_listener
def on_worker_report(data: dict[str, Any], **_: Any) -> None:
    if REPORT_KEY in data:
        STATE.store.add(data[REPORT_KEY])


@events.quit.add_listener
def on_quit(**_: Any) -> None:
    # After runner.quit(): every worker's final report has been merged.
    if STATE.report_dir is None or STATE.finished:
        return
    STATE.finished = True
    STATE.store.add(RECORDER.drain())  # a local runner's own counts
    csv_path = STATE.report_dir / "socklab_latency.csv"
    STATE.store.write(csv_path, STATE.report_dir / "socklab_latency_hist.json")
    log.info("socklab: wrote %s (%d requests)", csv_path, STATE.store.total())
    _stop_monitor()
    _stop_server()


def _stop_monitor() -> None:
    monitor, STATE.monitor = STATE.monitor, None
    if monitor is not None and monitor.poll() is None:
        monitor.send_signal(signal.SIGTERM)  # it writes one last row, then exits
        try:
            monitor.wait(5)
        except subprocess.TimeoutExpired:
            monitor.kill()
            monitor.wait()


def _stop_server() -> None:
    server, STATE.server = STATE.server, None
    if server is not None:
        stopped = server.stop()
        if STATE.report_dir is not None and stopped:
            (STATE.report_dir / "server_stopped.json").write_text(json.dumps(stopped))

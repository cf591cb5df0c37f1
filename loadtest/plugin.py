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
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gevent
import psutil
from locust import events
from locust.runners import LocalRunner, WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSVFileWriter

from loadtest.client import format_target, parse_target
from loadtest.latency import LatencyStore
from loadtest.netns import in_private_netns
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
        self.run_info: dict[str, Any] = {}
        self.window: list[float] = []  # wall-clock start (and stop) of the measured window
        self.environment: Any = None
        self.csv_writer: Any = None
        self.csv_greenlet: Any = None


STATE = RunState()


@events.init_command_line_parser.add_listener
def add_options(parser: Any) -> None:
    # No side effects here: Locust calls this again on every web-UI page load.
    # On the parser itself, not a group: Locust's web UI lists only the parser's own
    # arguments (those that carry include_in_web_ui), with a dropdown for choices.
    g = parser
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
    g.add_argument(
        "--warmup",
        type=float,
        default=0.0,
        help="seconds after the start whose requests are not counted (stats reset then; default 0)",
    )
    g.add_argument("--scenario", default="", include_in_web_ui=False, help="a label recorded in run.json")
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
    if options.warmup < 0:
        fail("--warmup must be >= 0 seconds")
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
    STATE.environment = environment
    _select_user_class(environment)
    starts_server = options.server != "none" and not (options.server == "auto" and environment.host)
    variant = (DEFAULT_VARIANT if options.server == "auto" else options.server) if starts_server else "external"
    STATE.report_dir = Path(options.report_dir or f"reports/{time.strftime('%Y%m%d-%H%M%S')}-{variant}")
    STATE.report_dir.mkdir(parents=True, exist_ok=True)
    _route_locust_outputs(environment, STATE.report_dir)
    if starts_server:
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
    STATE.run_info = describe_run(environment, variant, STATE.server)
    write_run_info()


def _route_locust_outputs(environment: Any, report_dir: Path) -> None:
    """Locust's CSVs, HTML report and JSON go into the run folder unless the user named them."""
    options = environment.parsed_options
    if not options.html_file:
        options.html_file = str(report_dir / "locust_report.html")
    if not options.json_file:
        options.json_file = str(report_dir / "locust_stats")  # Locust adds ".json"
    if not options.csv_prefix:
        # Locust made its CSV writer before `init`; we run one of our own, same class.
        STATE.csv_writer = StatsCSVFileWriter(environment, PERCENTILES_TO_REPORT, str(report_dir / "locust"), True)
        STATE.csv_greenlet = gevent.spawn(STATE.csv_writer.stats_writer)


def start_monitor(server: ServerProcess, out: Path, interval: float) -> subprocess.Popen[bytes]:
    """The monitor as its own process, sampling the server and this load generator (and its workers)."""
    cmd = [
        sys.executable, "-m", "loadtest.monitor", "--pid", str(server.pid), "--port", str(server.port),
        "--interval", str(interval), "--out", str(out), "--loadgen-pid", str(os.getpid()),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent, start_new_session=True)
    atexit.register(_stop_monitor)
    # Wait for its first row before any user starts: the kernel-counter baseline and the idle
    # server's RSS must be taken before the load, not half a second into it.
    deadline = time.monotonic() + 15
    while proc.poll() is None and time.monotonic() < deadline:
        if out.exists() and out.read_bytes().count(b"\n") >= 2:
            break
        time.sleep(0.02)
    else:
        log.warning("socklab: the monitor did not start (exit status %s); no monitor.csv", proc.poll())
    return proc


@events.test_start.add_listener
def on_test_start(environment: Any, **_: Any) -> None:
    # Locust clears its stats when a test starts; so do we, so both count the same requests.
    RECORDER.drain()
    if isinstance(environment.runner, WorkerRunner):
        return
    _select_user_class(environment)  # the web UI may have changed --user-mode
    _open_window(measure_own_cost=isinstance(environment.runner, LocalRunner))
    options = environment.parsed_options
    if options is not None and options.warmup > 0:
        gevent.spawn_later(options.warmup, _end_warmup, environment)


def _select_user_class(environment: Any) -> None:
    """Run the one class --user-mode names, not every class in the locustfile, unless classes were named."""
    options = environment.parsed_options
    if options is not None and not options.user_classes:
        environment.user_classes = [USER_MODES[options.user_mode]]


def _open_window(measure_own_cost: bool) -> None:
    """Start the measured window: fresh histograms, its wall-clock start, our CPU reading."""
    RECORDER.drain()
    STATE.store = LatencyStore()
    STATE.window = [time.time()]
    STATE.load_started = (time.perf_counter(), _own_cpu()) if measure_own_cost else None


def _end_warmup(environment: Any) -> None:
    """Forget what the warm-up recorded: Locust's stats, our histograms, the window's start."""
    environment.runner.stats.reset_all()
    _open_window(measure_own_cost=STATE.load_started is not None)
    log.info("socklab: warm-up over; counting from now")


@events.test_stop.add_listener
def on_test_stop(environment: Any, **_: Any) -> None:
    if len(STATE.window) == 1:
        STATE.window.append(time.time())
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
    if STATE.csv_greenlet is not None:
        STATE.csv_greenlet.kill(block=True)
        STATE.csv_writer.close_files()
    finish_run_info(STATE.environment)
    write_run_info()
    try:
        from loadtest.report import build_run_report

        build_run_report(STATE.report_dir)
        log.info("socklab: report %s", STATE.report_dir / "report.html")
    except Exception as exc:  # the run's data are safe on disk; `socklab report` can retry
        log.error("socklab: could not build the report (%s); try: socklab report %s", exc, STATE.report_dir)


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
            STATE.run_info["server_stopped"] = stopped
        elif stopped is None:
            STATE.run_info["server_stopped"] = None


def write_run_info() -> None:
    if STATE.report_dir is not None:
        (STATE.report_dir / "run.json").write_text(json.dumps(STATE.run_info, indent=1, default=str))


def describe_run(environment: Any, variant: str, server: ServerProcess | None) -> dict[str, Any]:
    """What is needed to understand and repeat the run."""
    options = environment.parsed_options
    ours = (
        "user_mode", "op", "payload_bytes", "reply_bytes", "sleep_ms", "work_us", "connect_timeout",
        "read_timeout", "idle_interval", "server", "backlog", "monitor_interval", "warmup", "report_dir",
    )  # fmt: skip
    return {
        "format": "socklab-run/1",
        "run_id": STATE.report_dir.name if STATE.report_dir else "",
        "scenario": options.scenario,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": sys.argv,
        "variant": variant,
        "server": None if server is None else
        {"host": server.host, "port": server.port, "backlog": server.backlog, "pid": server.pid},
        "host": environment.host,
        "user_classes": [cls.__name__ for cls in environment.user_classes],
        "users": options.num_users,
        "spawn_rate": options.spawn_rate,
        "run_time_s": options.run_time,
        "processes": options.processes,
        "headless": options.headless,
        "options": {name: getattr(options, name) for name in ours},
        "counters_scope": "isolated" if in_private_netns() else "shared",
        "cpus": os.cpu_count(),
        "versions": versions(),
        "sysctl": sysctls(),
    }  # fmt: skip


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    def of(pkg: str) -> str:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return "unknown"

    return {"socklab": of("socklab"), "locust": of("locust"), "python": platform.python_version(),
            "kernel": platform.release(), "psutil": of("psutil")}  # fmt: skip


SYSCTLS = ("net.core.somaxconn", "net.ipv4.tcp_syncookies", "net.ipv4.tcp_max_syn_backlog",
           "net.ipv4.tcp_abort_on_overflow", "net.ipv4.tcp_tw_reuse", "net.ipv4.ip_local_port_range")  # fmt: skip


def sysctls() -> dict[str, str]:
    out = {}
    for name in SYSCTLS:
        try:
            out[name] = Path("/proc/sys", *name.split(".")).read_text().strip()
        except OSError:
            out[name] = "unknown"
    return out


def finish_run_info(environment: Any) -> None:
    info = STATE.run_info
    now = time.time()
    start = STATE.window[0] if STATE.window else now
    stop = STATE.window[1] if len(STATE.window) > 1 else now
    info["window"] = {"start": start, "stop": stop, "seconds": max(stop - start, 0.0)}
    info["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    stats = environment.runner.stats if environment is not None and environment.runner else None
    if stats is not None:
        info["locust"] = {"requests": stats.total.num_requests, "failures": stats.total.num_failures}
        info["failures"] = [
            {"type": e.method, "name": e.name, "class": failure_class(e.error), "error": str(e.error),
             "occurrences": e.occurrences}
            for e in stats.errors.values()
        ]  # fmt: skip
    info["latency_total"] = STATE.store.total()
    loadgen = STATE.report_dir / "loadgen.json" if STATE.report_dir else None
    if loadgen is not None and loadgen.exists():
        info["loadgen"] = json.loads(loadgen.read_text())


def failure_class(error: Any) -> str:
    """The stable class of a failure message: 'refused: nothing listening …' → 'refused'."""
    text = str(error)
    return text.split(":", 1)[0].strip() if ":" in text else text

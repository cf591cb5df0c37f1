"""socklab's Locust wiring: thin event listeners that call into one :class:`~loadtest.run.Run`.

Imported by loadtest/locustfile.py.  Locust fires init/test_start/quitting/quit
in the master *and* in every worker, so everything with a side effect
(starting the server, writing files) happens only where the runner is not a
WorkerRunner: the local runner, or the master under ``--processes N`` or
``--master``.  Workers learn the target from the host the master sends with
each spawn message, and ship their µs counts with every Locust report.

Order at the end of a run (Locust 2.47's ``shutdown()``): ``quitting`` fires,
then the master's ``runner.quit()`` collects the workers' final reports, then
``quit`` fires.  So the run is finished on ``quit`` — after the last worker
report — and only then is the server stopped, so no user sees its own server
vanish.  An ``atexit`` hook and the server's PR_SET_PDEATHSIG cover crashes and
``kill -9``.
"""

from __future__ import annotations

import atexit
import csv
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import gevent
import gevent.event
from locust import events
from locust.runners import LocalRunner, WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSVFileWriter

from loadtest import live, webui
from loadtest import options as opts
from loadtest.client import parse_target
from loadtest.processes import ServerStartError
from loadtest.run import Run
from loadtest.users import ACCOUNTS, LOAD_PROCESS, RECORDER, USER_MODES, TestState

log = logging.getLogger("socklab")
REPORT_KEY = "socklab_latency"
USERS_KEY = "socklab_users"
LOAD_PROCESS_KEY = "socklab_load_process"
WINDOW_MESSAGE = "socklab_window_open"  # master → workers: the warm-up is over, count from now

# The run this process owns (None in a worker): the listeners below are thin calls into it.
_run: Run | None = None


@events.init_command_line_parser.add_listener
def add_options(parser: Any) -> None:
    opts.add_locust_arguments(parser)  # no side effects: Locust calls this on every web-UI page load


def fail(message: str) -> None:
    """CLI misuse: one line, exit status 2."""
    sys.stderr.write(f"socklab: {message}\n")
    sys.stderr.flush()
    sys.exit(2)


def check(options: Any, host: str | None) -> None:
    problem = opts.run_problem(options, host)
    if problem:
        fail(problem)


@events.init.add_listener
def on_init(environment: Any, **_: Any) -> None:
    global _run
    if isinstance(environment.runner, WorkerRunner):
        environment.runner.register_message(WINDOW_MESSAGE, lambda *_, **__: _open_own_window())
        return
    options = environment.parsed_options
    if options is None:  # a library use of Locust without the command line
        return
    for notice in opts.apply_deprecated(options):
        log.warning("socklab: %s", notice)
    check(options, environment.host)
    # SIGHUP (a closed terminal) ends the run like SIGTERM: Locust's own shutdown, then ours.
    gevent.signal_handler(signal.SIGHUP, lambda: os.kill(os.getpid(), signal.SIGTERM))
    _select_user_class(environment)
    starts_server = opts.starts_server(options, environment.host)
    variant = opts.variant_of(options, environment.host)
    folder = Path(options.report_dir or f"reports/{time.strftime('%Y%m%d-%H%M%S')}-{variant}")
    folder.mkdir(parents=True, exist_ok=True)
    _run = run = Run(environment, folder, variant)
    _route_locust_outputs(environment, folder)
    atexit.register(run.stop_processes)
    if starts_server:
        try:
            run.start_server()
        except ServerStartError as exc:
            fail(f"could not start the {variant} server: {exc}")
        run.start_monitor()
    run.write_manifest()
    if environment.web_ui is not None:
        webui.install(environment, lambda: _run)
    gevent.spawn(_live_loop, environment)


def _live_loop(environment: Any) -> None:
    """Every tick: the local runner's own µs counts and ledgers into the run, a latency point per
    request type, and with ``--headless`` the live line every ``--live-interval`` seconds."""
    options = environment.parsed_options
    every = float(options.live_interval or 0)
    print_line = bool(options.headless and not getattr(options, "only_summary", False) and every > 0)
    last_line = time.monotonic()
    while True:
        gevent.sleep(min(live.TICK_S, every) if print_line else live.TICK_S)
        run = _run
        if run is None or run.finished:
            return
        if isinstance(environment.runner, LocalRunner):
            run.add_counts(_drain())
            run.accounts.add("local", ACCOUNTS.snapshot())
            run.load_processes["local"] = LOAD_PROCESS.snapshot()
        run.feed.tick()
        if print_line and time.monotonic() - last_line >= every - 0.01:
            last_line = time.monotonic()
            log.info(live.live_line(run.feed, run.user_figures()))


_csv: dict[str, Any] = {}  # our StatsCSVFileWriter and its greenlet


def _route_locust_outputs(environment: Any, folder: Path) -> None:
    """Locust's CSVs, HTML report and JSON go into the run folder unless the user named them.

    The CSVs and the JSON file are written by us, at the very end, after the last worker report:
    Locust's own CSV writer stops before those arrive, and its ``--json-file`` writer calls
    ``get_stripped_report()``, which resets every entry — written before our ``quit`` listener,
    it would leave the final CSV reading zeros.  So we stand both down and write them ourselves,
    the JSON last.  The CSVs are still rewritten every few seconds while the run goes on.
    """
    options = environment.parsed_options
    if not options.html_file:
        options.html_file = str(folder / "locust_report.html")
    _csv["json"] = options.json_file or str(folder / "locust_stats")  # Locust adds ".json"; so do we
    options.json_file = None
    prefix = options.csv_prefix or str(folder / "locust")
    full_history = True if not options.csv_prefix else bool(options.stats_history_enabled)
    options.csv_prefix = None  # Locust made its writer before `init` and spawns it only if this is set
    writer = StatsCSVFileWriter(environment, PERCENTILES_TO_REPORT, prefix, full_history)
    _csv.update(writer=writer, prefix=prefix, greenlet=gevent.spawn(writer.stats_writer))


def _write_final_outputs(environment: Any) -> None:
    """Stop the periodic writer; write the stats, failures and exceptions once more, then the JSON."""
    writer, greenlet = _csv.pop("writer", None), _csv.pop("greenlet", None)
    if writer is None:
        return
    greenlet.kill(block=True)
    writer.close_files()
    prefix = _csv["prefix"]
    for suffix, columns, rows in (
        ("_stats.csv", writer.requests_csv_columns, writer._requests_data_rows),
        ("_failures.csv", writer.failures_columns, writer._failures_data_rows),
        ("_exceptions.csv", writer.exceptions_columns, writer._exceptions_data_rows),
    ):
        with open(prefix + suffix, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(columns)
            rows(out)
    # Last: serialize_stats() resets each entry as it strips it.
    with open(f"{_csv['json']}.json", "w") as f:
        json.dump(environment.runner.stats.serialize_stats(), f, indent=4)


def _open_own_window() -> None:
    """This load process counts from now: fresh µs counts, every user's ledger from zero."""
    RECORDER.drain()
    ACCOUNTS.open_window()
    LOAD_PROCESS.open()


def _drain() -> dict[str, Any]:
    """This process's µs counts since the last drain, counted into its own ledger on the way."""
    drained = RECORDER.drain()
    LOAD_PROCESS.count(drained)
    return drained


@events.test_start.add_listener
def on_test_start(environment: Any, **_: Any) -> None:
    # Locust clears its stats when a test starts; so do we, so both count the same requests.
    environment.socklab_test = TestState()  # this test's own counts, in every load process
    _open_own_window()
    if isinstance(environment.runner, WorkerRunner):
        _warn_if_unreachable(environment)
    if _run is None:
        return
    if not environment.host and _run.target:  # an empty Host field in the web UI: the server socklab started
        environment.host = _run.target
    _select_user_class(environment)  # the web UI may have changed --user-mode
    _open_window(environment)
    options = environment.parsed_options
    if options is not None and options.warmup > 0:
        gevent.spawn_later(options.warmup, _end_warmup, environment)


def _warn_if_unreachable(environment: Any) -> None:
    """A worker on another host told to load a loopback address loads its own loopback: say so."""
    options = environment.parsed_options
    master = str(getattr(options, "master_host", "") or "127.0.0.1")
    try:
        target, _ = parse_target(environment.host or "")
        remote_master = not ipaddress.ip_address(socket.gethostbyname(master)).is_loopback
        loopback_target = ipaddress.ip_address(target).is_loopback
    except (ValueError, OSError):
        return
    if remote_master and loopback_target:
        log.error("socklab: the master at %s sends %s, a loopback address: from this worker that is its own "
                  "machine, not the server's. Start the master with --server-bind ADDR, an address of the "
                  "server's host that the workers reach", master, environment.host)  # fmt: skip


def _open_window(environment: Any) -> None:
    assert _run is not None
    _open_own_window()
    _run.open_window(measure_own_cost=isinstance(environment.runner, LocalRunner))


def _end_warmup(environment: Any) -> None:
    """Forget what the warm-up recorded: Locust's stats, our histograms and ledgers, the window's start."""
    environment.runner.stats.reset_all()
    _open_window(environment)
    if not isinstance(environment.runner, LocalRunner):
        environment.runner.send_message(WINDOW_MESSAGE)  # the workers' users count from now too
    log.info("socklab: warm-up over; counting from now")


def _select_user_class(environment: Any) -> None:
    """Run the one class --user-mode names, not every class in the locustfile, unless classes were named."""
    options = environment.parsed_options
    if options is not None and not options.user_classes:
        environment.user_classes = [USER_MODES[options.user_mode]]


@events.test_stopping.add_listener
def on_test_stopping(environment: Any, **_: Any) -> None:
    # Before the users are stopped: what is still in flight now is unfinished, with its age.
    ACCOUNTS.close_window()
    LOAD_PROCESS.close()
    if _run is not None:
        _run.close_window()


@events.test_stop.add_listener
def on_test_stop(environment: Any, **_: Any) -> None:
    if _run is not None:
        _run.close_window()  # a no-op when test_stopping closed it; here for runs that skip it


@events.report_to_master.add_listener
def on_report_to_master(data: dict[str, Any], **_: Any) -> None:
    data[REPORT_KEY] = _drain()
    data[USERS_KEY] = ACCOUNTS.snapshot()
    data[LOAD_PROCESS_KEY] = LOAD_PROCESS.snapshot()


@events.worker_report.add_listener
def on_worker_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
    if _run is None:
        return
    if REPORT_KEY in data:
        _run.add_counts(data[REPORT_KEY])
    if USERS_KEY in data:
        _run.accounts.add(client_id, data[USERS_KEY])
    if LOAD_PROCESS_KEY in data:
        _run.load_processes[client_id] = data[LOAD_PROCESS_KEY]


_finished = gevent.event.Event()  # set once the run is finished (files written, processes stopped)


@events.quit.add_listener
def on_quit(**_: Any) -> None:
    # After runner.quit(): every worker's final report has been merged.
    if _run is None:
        return
    if _run.finished:
        # On SIGTERM Locust runs shutdown() twice: in the signal's greenlet and again in main()
        # once runner.quit() has ended the main greenlet.  The second one's sys.exit() must not
        # cut the first one's clean-up short (it yields while the server stops).
        _finished.wait(30)
        return
    try:
        _run.accounts.add("local", ACCOUNTS.close_window())  # this process's own users (none on a master)
        own = _drain()
        if isinstance(_run.environment.runner, LocalRunner):
            _run.load_processes["local"] = LOAD_PROCESS.close()
        _run.finish(own)
        _write_final_outputs(_run.environment)
        try:
            from loadtest.report import build_run_report

            build_run_report(_run.folder)
            log.info("socklab: report %s", _run.folder / "report.html")
        except Exception as exc:  # the run's data are safe on disk; `socklab report` can retry
            log.error("socklab: could not build the report (%s); try: socklab report %s", exc, _run.folder)
    finally:
        _finished.set()

"""socklab's Locust wiring: one :class:`Socklab` object per Locust environment.

Imported by loadtest/locustfile.py.  The object owns what one load process keeps — the µs
recorder, the per-user accounts, the load-process ledger, this test's own counts — and, in the
process that runs the test (the local runner, or the master under ``--processes N`` or
``--master``), the :class:`~loadtest.matrix.run.Run`.  Its listeners are bound methods added to the
environment's events when Locust fires ``init``, so no module holds state that outlives a test:
a test started after another (the web UI's Stop, then Start) starts from a fresh window and a
fresh :class:`~loadtest.glue.state.TestState`.

Locust fires init/test_start/quitting/quit in the master *and* in every worker, so everything
with a side effect (starting the server, writing files) happens only where the runner is not a
WorkerRunner.  Workers learn the target from the host the master sends with each spawn message,
and ship their µs counts, accounts and ledger with every Locust report.

Order at the end of a run (Locust 2.47's ``shutdown()``): ``quitting`` fires, then the master's
``runner.quit()`` collects the workers' final reports, then ``quit`` fires.  So the run is
finished on ``quit`` — after the last worker report — and only then is the server stopped, so no
user sees its own server vanish.  An ``atexit`` hook and the server's PR_SET_PDEATHSIG cover
crashes and ``kill -9``.
"""

from __future__ import annotations

import atexit
import ipaddress
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
from locust import events
from locust.runners import LocalRunner, WorkerRunner

from loadtest.declare import options as opts
from loadtest.declare.commands import DATE_TIME, output_folder
from loadtest.declare.settings import parse_sysctls
from loadtest.declare.target import parse_target
from loadtest.glue import locust_private, webui
from loadtest.glue.outputs import FinalOutputs
from loadtest.glue.state import LoadState, TestState, quiet_gc
from loadtest.glue.users import USER_CLASSES
from loadtest.hosts.isolate import set_sysctls
from loadtest.matrix.processes import ServerStartError
from loadtest.matrix.run import Run
from loadtest.measure import live

log = logging.getLogger("socklab")
REPORT_KEY = "socklab_latency"
USERS_KEY = "socklab_users"
LOAD_PROCESS_KEY = "socklab_load_process"
CONNECTIONS_KEY = "socklab_connections"
WINDOW_MESSAGE = "socklab_window_open"  # master → workers: the warm-up is over, count from now
CLOSE_MESSAGE = "socklab_window_close"  # master → workers: the window is over, count nothing more
# master → workers, as the test starts: when the window will open (the warm-up's end) and close (wall clock).  Each
# worker opens and closes its own then, on its own timers, the messages above only a fallback: told by them alone, a
# busy worker closed ~100 ms late and counted the connects its users started after the close as unfinished (an
# audit: 50 unfinished connects where 39 were at the close).
PLAN_MESSAGE = "socklab_window_plan"
# The window closes on socklab's own timer this long before Locust's --run-time stop, so it ends on load that
# ran undisturbed: Locust's stop() first calls inspect.stack(), which stalled every user 27–55 ms (CI) just
# before the users' in-flight requests were aged — that stall was the printed p99.
CLOSE_AHEAD_S = 0.1
FLUSH_S = 0.1  # how often finished requests reach Locust's statistics


@events.init_command_line_parser.add_listener
def add_options(parser: Any) -> None:
    opts.add_locust_arguments(parser)  # no side effects: Locust calls this on every web-UI page load


@events.init.add_listener
def on_init(environment: Any, **_: Any) -> None:
    Socklab.of(environment).init()


def fail(message: str) -> None:
    """CLI misuse: one line, exit status 2."""
    sys.stderr.write(f"socklab: {message}\n")
    sys.stderr.flush()
    sys.exit(2)


class Socklab(LoadState):
    """What socklab keeps for one Locust environment (one load process, or the master): the load
    state, the listeners, and — where the test is run from — the run."""

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.run: Run | None = None  # where the test is run from: the local runner or the master
        self.outputs: FinalOutputs | None = None
        self.finished = gevent.event.Event()  # set once the run is finished (files written, processes stopped)

    @property
    def local(self) -> bool:
        return isinstance(self.environment.runner, LocalRunner)

    # -- init --------------------------------------------------------------------------------
    def init(self) -> None:
        env = self.environment
        for event, handler in (
            (env.events.test_start, self.test_start),
            (env.events.test_stopping, self.stopping),
            (env.events.test_stop, self.stopped),
            (env.events.report_to_master, self.report),
            (env.events.worker_report, self.worker_report),
            (env.events.quit, self.quit),
        ):
            event.add_listener(handler)
        self.feed_locust(env.parsed_options)
        locust_private.warm_stop_path()
        gevent.spawn(self.flush_loop)
        if isinstance(env.runner, WorkerRunner):
            env.runner.register_message(WINDOW_MESSAGE, lambda *_, **__: self.worker_window_opens())
            env.runner.register_message(CLOSE_MESSAGE, lambda *_, **__: self.close_own_window())
            env.runner.register_message(PLAN_MESSAGE, self.worker_plans_window)
            return
        options = env.parsed_options
        if options is None:  # a library use of Locust without the command line
            return
        for notice in opts.apply_deprecated(options):
            log.warning("socklab: %s", notice)
        problem = opts.run_problem(options, env.host) or set_sysctls(parse_sysctls(options.sysctl or ""))
        if problem:
            fail(problem)
        # SIGHUP (a closed terminal) ends the run like SIGTERM: Locust's own shutdown, then ours.
        gevent.signal_handler(signal.SIGHUP, lambda: os.kill(os.getpid(), signal.SIGTERM))
        self.select_user_class()
        design = opts.design_of(options, env.host)
        folder = output_folder(options.report_dir, f"{DATE_TIME}-{design}")
        folder.mkdir(parents=True, exist_ok=True)
        self.run = run = Run(env, folder, design)
        self.outputs = FinalOutputs.route(env, folder)
        atexit.register(run.stop_processes)
        if opts.starts_server(options, env.host):
            try:
                run.start_server()
            except ServerStartError as exc:
                fail(f"could not start the {design} server: {exc}")
        run.start_watchers()
        run.write_manifest()
        if env.web_ui is not None:
            webui.install(env, lambda: self.run)
        gevent.spawn(self.live_loop)

    def feed_locust(self, options: Any) -> None:
        """Requests reach Locust's statistics in bulk (each flush), unless --request-events asks for an event
        each — then the users fire them, and there is nothing to flush into Locust."""
        each = bool(getattr(options, "request_events", False)) if options is not None else False
        self.recorder.sink = None if each else locust_private.stats_sink(self.environment)

    def flush_loop(self) -> None:
        """Every FLUSH_S: this process's finished requests into Locust's statistics (its table, charts and
        CSVs stay as fresh as Locust's own, which writes its CSVs every second), on the tenths of a second
        of the wall clock, so that no flush spans a second's boundary (its requests' second, see
        LatencyRecorder)."""
        while True:
            gevent.sleep(FLUSH_S - time.time() % FLUSH_S)
            self.recorder.flush()

    def select_user_class(self) -> None:
        """Run the one class --user-mode names, not every class in the locustfile, unless classes were named."""
        options = self.environment.parsed_options
        if options is not None and not options.user_classes:
            self.environment.user_classes = [USER_CLASSES[options.user_mode]]

    def live_loop(self) -> None:
        """Every tick: the local runner's own µs counts and ledgers into the run, a latency point per
        request type, and with ``--headless`` the live line every ``--live-interval`` seconds."""
        options = self.environment.parsed_options
        every = float(options.live_interval or 0)
        print_line = bool(options.headless and not getattr(options, "only_summary", False) and every > 0)
        last_line = time.monotonic()
        while True:
            gevent.sleep(min(live.TICK_S, every) if print_line else live.TICK_S)
            run = self.run
            if run is None or run.finished:
                return
            if self.local:
                run.add_load_process(
                    "local",
                    self.drain(),
                    self.accounts.snapshot(),
                    self.load_process.snapshot(),
                    self.connections.drain(),
                )
            run.feed.tick()
            if print_line and time.monotonic() - last_line >= every - 0.01:
                last_line = time.monotonic()
                waiting = live.waiting_now(self.accounts.in_flight(), run.store) if self.local else ""
                log.info(live.live_line(run.feed, run.user_figures(), waiting))

    # -- the measured window -----------------------------------------------------------------------
    def drain(self) -> dict[str, Any]:
        """This process's µs counts since the last drain, counted into its own ledger on the way."""
        drained = self.recorder.drain()
        self.load_process.count(drained)
        return drained

    def open_own_window(self) -> None:
        """This load process counts from now: fresh µs counts, every user's ledger from zero."""
        self.recorder.reset()
        self.accounts.open_window()
        self.load_process.open()

    def worker_window_opens(self) -> None:
        """A worker, at the warm-up's end: its own Locust stats are reset too, so that the warm-up's requests it
        has not yet reported (a worker reports every 3 s) do not reach the master's stats after their reset.  Once a
        test: its timer and the master's word both call it."""
        if self.test.warmed_up:
            return
        self.test.warmed_up = True
        self.recorder.reset()
        self.environment.runner.stats.reset_all()
        self.open_own_window()

    def worker_plans_window(self, environment: Any, msg: Any, **_: Any) -> None:
        """A worker, told when the window opens and closes: it does both then, on its own timers — for this test
        only (a web-UI test stopped in its warm-up must not open the next one's window)."""
        test = self.test

        def then(act: Callable[[], None]) -> Callable[[], None]:
            return lambda: act() if self.test is test else None

        for key, act in (("open_at", self.worker_window_opens), ("close_at", self.close_own_window)):
            if key in msg.data:
                gevent.spawn_later(max(float(msg.data[key]) - time.time(), 0.0), then(act))

    def close_window(self) -> None:
        """The measured window ends here, and in every worker; idempotent."""
        self.close_own_window()
        if self.run is not None:
            self.run.close_window()
        runner = self.environment.runner
        if not self.local and not isinstance(runner, WorkerRunner):
            runner.send_message(CLOSE_MESSAGE)

    def test_start(self, environment: Any, **_: Any) -> None:
        # Locust clears its stats when a test starts; so do we, so both count the same requests.
        self.test = TestState()
        quiet_gc()
        self.feed_locust(environment.parsed_options)  # the master's options reach a worker by now
        self.open_own_window()
        if isinstance(environment.runner, WorkerRunner):
            self.warn_if_unreachable()
        run = self.run
        if run is None:
            return
        if not environment.host and run.target:  # an empty Host field in the web UI: the server socklab started
            environment.host = run.target
        self.select_user_class()  # the web UI may have changed --user-mode
        options = environment.parsed_options
        self.open_window(warmup=options is not None and options.warmup > 0)
        plan, now = {}, time.time()
        if options is not None and options.warmup > 0:
            gevent.spawn_later(options.warmup, self.end_warmup)
            plan["open_at"] = now + options.warmup
        if options is not None and options.headless and options.run_time:
            # Locust's own stop comes at (about) this test's start + --run-time: close first, undisturbed.
            close_in = max(options.run_time - CLOSE_AHEAD_S, 0.0)
            gevent.spawn_later(close_in, self.close_window)
            plan["close_at"] = now + close_in
        if plan and not self.local:
            environment.runner.send_message(PLAN_MESSAGE, plan)

    def open_window(self, warmup: bool = False) -> None:
        assert self.run is not None
        self.open_own_window()
        self.run.open_window(measure_own_cost=self.local, warmup=warmup)

    def end_warmup(self) -> None:
        """Forget what the warm-up recorded: Locust's stats, our histograms and ledgers, the window's start."""
        self.recorder.flush()  # the warm-up's last requests into Locust's stats, which are reset now
        self.environment.runner.stats.reset_all()
        self.open_window()
        if not self.local:
            self.environment.runner.send_message(WINDOW_MESSAGE)  # the workers' users count from now too
        log.info("socklab: warm-up over; counting from now")

    def warn_if_unreachable(self) -> None:
        """A worker on another host told to load a loopback address loads its own loopback: say so."""
        environment = self.environment
        master = str(getattr(environment.parsed_options, "master_host", "") or "127.0.0.1")
        try:
            target, _ = parse_target(environment.host or "")
            remote_master = not ipaddress.ip_address(socket.gethostbyname(master)).is_loopback
            loopback_target = ipaddress.ip_address(target).is_loopback
        except (ValueError, OSError):
            return
        if remote_master and loopback_target:
            log.error(
                "socklab: the master at %s sends %s, a loopback address: from this worker that is its own "
                "machine, not the server's. Start the master with --server-bind ADDR, an address of the "
                "server's host that the workers reach",
                master,
                environment.host,
            )

    def stopping(self, **_: Any) -> None:
        # Before the users are stopped (a no-op when socklab's own timer closed it already): what is still
        # in flight now is unfinished, with its age.
        self.close_own_window()
        if self.run is not None:
            self.run.close_window()

    def stopped(self, **_: Any) -> None:
        if self.run is not None:
            self.run.close_window()  # a no-op when test_stopping closed it; here for runs that skip it

    # -- reports from the workers ------------------------------------------------------------------
    def report(self, data: dict[str, Any], **_: Any) -> None:
        data[REPORT_KEY] = self.drain()
        data[USERS_KEY] = self.accounts.snapshot()
        data[LOAD_PROCESS_KEY] = self.load_process.snapshot()
        data[CONNECTIONS_KEY] = self.connections.drain()

    def worker_report(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        if self.run is not None:
            self.run.add_load_process(
                client_id,
                data.get(REPORT_KEY),
                data.get(USERS_KEY),
                data.get(LOAD_PROCESS_KEY),
                data.get(CONNECTIONS_KEY),
            )

    # -- the end -----------------------------------------------------------------------------------
    def quit(self, **_: Any) -> None:
        # After runner.quit(): every worker's final report has been merged.
        run = self.run
        if run is None:
            return
        if run.finished:
            # On SIGTERM Locust runs shutdown() twice: in the signal's greenlet and again in main()
            # once runner.quit() has ended the main greenlet.  The second one's sys.exit() must not
            # cut the first one's clean-up short (it yields while the server stops).
            self.finished.wait(30)
            return
        try:
            own = self.drain()
            ledger = self.load_process.close() if self.local else None
            # A master has no users and no connections of its own.
            run.add_load_process("local", None, self.accounts.close_window(), ledger, self.connections.drain())
            run.finish(own)
            if self.outputs is not None:
                self.outputs.write(self.environment)
            try:
                if getattr(self.environment.parsed_options, "report", "page") == "page":
                    from loadtest.report import build_run_report

                    build_run_report(run.folder)
                    log.info("socklab: report %s", run.folder / "report.html")
            except Exception as exc:  # the run's data are safe on disk; `socklab report` can retry
                log.error("socklab: could not build the report (%s); try: socklab report %s", exc, run.folder)
        finally:
            self.finished.set()

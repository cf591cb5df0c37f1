"""What one load process keeps, per Locust environment: its µs recorder, its users' accounts, its own
ledger, its connections' records, and this test's counts.  The users read it; the plugin
(``loadtest.glue.plugin.Socklab``, a subclass) adds the Locust listeners and, where the test is run from,
the run.  No locust import."""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Any

from gevent.lock import BoundedSemaphore

from loadtest.client.accounting import Accounts, LoadProcessLedger
from loadtest.client.connections import ConnectionBook
from loadtest.client.latency import LatencyRecorder


@dataclass
class TestState:
    """What a load process counts for one test, kept with the test, not with a class: a test started
    after another (the web UI's Stop, then Start) begins from zero.  A new one on every ``test_start``."""

    started: int = 0  # connections this load process has started (--connections-total)
    completed: int = 0  # … and completed
    connecting: BoundedSemaphore | None = None  # open loop, ConnectPerRequestUser: --max-connecting
    warmed_up: bool = False  # a worker: its window opened at the warm-up's end (by its timer or the master's word)


class LoadState:
    def __init__(self, environment: Any) -> None:
        self.environment = environment
        self.recorder = LatencyRecorder()  # this process's µs counts; shipped to the master with each report
        self.accounts = Accounts()  # this process's users and open-loop lateness; shipped likewise
        self.load_process = LoadProcessLedger()  # this process's requests and CPU in the window; likewise
        self.test = TestState()  # this test's own counts (--connections-total, --max-connecting)
        self.connections = ConnectionBook()  # each connection as its client saw it; shipped likewise

    def close_own_window(self) -> None:
        """This load process stops counting now: what is in flight is unfinished, with its age now."""
        if self.recorder.closed:
            return
        self.recorder.close()
        self.accounts.close_window()
        self.load_process.close()

    def close_window(self) -> None:
        """The measured window ends now (the plugin's object also ends the run's, and every worker's)."""
        self.close_own_window()

    @classmethod
    def of(cls, environment: Any) -> Any:
        """The environment's state (the plugin's object when the plugin made it), made on first use."""
        state = getattr(environment, "socklab", None)
        if state is None:
            state = environment.socklab = cls(environment)
        return state


# Python's cycle collector runs a young collection every 700 new container objects: a connect-per-request
# user makes a record, tuples and a socket object per connection, so it ran every ~50 connections and,
# as the records held for the next report piled up, older generations were re-scanned with them.
# Fewer, later collections cost 3–5 % of a connect-per-request load process less (benchmarks.loadgen_cost).
GC_THRESHOLDS = (50_000, 20, 100)


def quiet_gc() -> None:
    """At a test's start: what exists now (modules, Locust, the server's handles) out of every future
    collection, and young collections far rarer; memory still freed by reference counting at once."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)

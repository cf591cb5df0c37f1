"""A run's measured window: its edges on the wall clock and on CLOCK_MONOTONIC (the clock of every
connection record, client's and server's), the kernel's TCP counters of the run's namespace at each edge
(so the window's drops are its own, not the warm-up's burst nor the shutdown's), and the run's own CPU
at the open when it measures its cost.  :class:`~loadtest.matrix.run.Run` opens and closes it."""

from __future__ import annotations

import time
from dataclasses import dataclass

from loadtest.client.accounting import own_cpu
from loadtest.declare.columns import TCPEXT_COUNTERS
from loadtest.measure.kernel_counters import read_kernel_counters


def window_counters() -> dict[str, int]:
    """This namespace's TcpExt counters now (the ones the summary reports)."""
    counters = read_kernel_counters()
    return {name: counters.get(f"TcpExt_{name}", 0) for name in TCPEXT_COUNTERS}


@dataclass
class Window:
    """The measured window: wall-clock start and stop, and our own CPU at the start."""

    start: float | None = None
    stop: float | None = None
    cpu_at_start: float | None = None  # this process's CPU seconds, when it measures its own cost
    perf_at_start: float | None = None
    # The same edges on CLOCK_MONOTONIC, the clock of the connection records (client and server).
    monotonic_start: float | None = None
    monotonic_stop: float | None = None
    # The kernel's TCP counters of this namespace at the window's edges: the window's own drops, not the
    # warm-up's start-up burst nor the shutdown's (read by the run, 0.5 ms, after the users are aged).
    counters_open: dict[str, int] | None = None
    counters_close: dict[str, int] | None = None

    def open(self, measure_own_cost: bool) -> None:
        self.start, self.stop = time.time(), None
        self.monotonic_start, self.monotonic_stop = time.perf_counter(), None
        self.counters_open, self.counters_close = window_counters(), None
        if measure_own_cost:
            self.cpu_at_start, self.perf_at_start = own_cpu(), time.perf_counter()
        else:
            self.cpu_at_start = self.perf_at_start = None

    def close(self) -> None:
        if self.start is not None and self.stop is None:
            self.stop, self.monotonic_stop = time.time(), time.perf_counter()
            self.counters_close = window_counters()

    def describe(self) -> dict[str, float]:
        now, mono = time.time(), time.perf_counter()
        start = self.start if self.start is not None else now
        stop = self.stop if self.stop is not None else now
        return {
            "start": start,
            "stop": stop,
            "seconds": max(stop - start, 0.0),
            "monotonic_start": self.monotonic_start if self.monotonic_start is not None else mono,
            "monotonic_stop": self.monotonic_stop if self.monotonic_stop is not None else mono,
            "counters": {"open": self.counters_open, "close": self.counters_close}
            if self.counters_open and self.counters_close
            else None,
        }

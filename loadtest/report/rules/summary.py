"""The summary's arithmetic and the rules read off a row: what a run's figures are computed from
(:class:`Reading`), CPU per request to the digits its ticks allow, percentiles with their lower bounds, and the
client-/machine-bound rule.  Every column of summary.csv, each with its computation, is declared in
:mod:`loadtest.report.rules.summary_columns`, which makes the row (``summarize``)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from hdrh.histogram import HdrHistogram

from loadtest.client.latency import recorded
from loadtest.declare.columns import MONITOR_NAMES, Column
from loadtest.declare.kinds import OPS
from loadtest.report.load import RunData, merged_histogram, unfinished_ages, window_rows
from loadtest.report.rules import account

CLIENT_BOUND_PERCENT = 90.0
SERVER_CPU_FULL = 85.0  # % of a core: a server at this much is out of CPU (the knee, the headlines)
# Counted over the whole run, warm-up included: TCPSynRetrans is split into the clients' SYNs and the server's
# SYN-ACKs with the clients' own counts, which cover the whole run (a retry cluster falls on the window's
# open, 1 s after the start-up burst, too close to call per segment).
WHOLE_RUN_COUNTERS = ("TCPSynRetrans",)
# The kernel counts a process's CPU time in clock ticks (/proc/PID/stat, which psutil reads): 10 ms on
# every Linux there is, and the monitor writes it to 0.01 s.
CPU_TICK_S = max(1 / os.sysconf("SC_CLK_TCK"), 0.01)
MIN_CPU_TICKS = 2


def tick_rounded(cpu_seconds: float, requests: int, *, per_core: bool = False) -> float:
    """CPU per request in µs (``per_core``: requests per CPU-second) to the digits its ticks allow.

    A CPU-time reading is a count of whole ticks, so ``cpu_seconds`` is uncertain by one tick, a relative
    uncertainty of one tick ÷ ``cpu_seconds``, and a figure made from it by dividing (either way) carries
    the same.  The figure is rounded at the decimal place of that uncertainty's leading digit, keeping at
    least one significant figure: 4 ticks (0.04 s, ±25 %) over 195 requests is 210 µs, not 205.13; 12.34 s
    over 1e6 requests (±0.08 %) keeps 12.34 µs.  NaN with no requests, and NaN below ``MIN_CPU_TICKS``:
    one tick may be anything from a sliver to nearly two ticks of work (±100 %), and none is not "free",
    only less than a tick — such a figure would rank designs by the phase of the kernel's clock.
    """
    if not requests or not cpu_seconds >= MIN_CPU_TICKS * CPU_TICK_S:  # `not >=`: NaN fails too
        return math.nan
    value = requests / cpu_seconds if per_core else cpu_seconds / requests * 1e6
    uncertainty = value * CPU_TICK_S / cpu_seconds
    decimals = max(-math.floor(math.log10(uncertainty)), -math.floor(math.log10(value)))
    return float(round(value, decimals))


def ms_at(hist: HdrHistogram | None, percentile: float | None) -> float:
    """A percentile (None = max) in ms with µs precision; NaN without data."""
    if hist is None or hist.get_total_count() == 0:
        return math.nan
    us = hist.get_max_value() if percentile is None else hist.get_value_at_percentile(percentile)
    return round(us / 1000, 3)


def lowest_ms(hist: HdrHistogram, value_ms: float) -> float:
    """A lower bound's value: the lowest of its histogram bucket (a percentile reads the highest, up to 0.1 %
    above what was recorded: '≥ 4,898.815 ms' for an age of 4,898.371 ms would claim too much)."""
    return round(hist.get_lowest_equivalent_value(int(value_ms * 1000)) / 1000, 3)


def bounded(hist: HdrHistogram | None, percentile: float | None, ages: list[int]) -> tuple[float, bool]:
    """A percentile in ms (None: the maximum) over what finished and what was in flight at the window's close
    (``ages`` in µs, already in ``hist`` as lower bounds), and whether that unfinished work makes it a lower
    bound: then its value is the lowest of its bucket."""
    value = ms_at(hist, percentile)
    if not ages or value != value or hist is None:
        return value, False
    if percentile is None:  # the maximum: an unfinished operation may take any time yet
        return lowest_ms(hist, value), True
    # Unfinished operations younger than the value may still end above it, each moving the percentile up by at
    # most one rank: if the percentile that many ranks higher is larger, the value is only a lower bound.
    below = sum(1 for age in ages if age / 1000 < value)
    shifted = min(100.0, percentile + 100.0 * below / hist.get_total_count())
    # The value is itself an unfinished operation's age (to the histogram's 0.1 % precision) …
    is_an_age = any(abs(age / 1000 - value) <= 0.002 * value for age in ages)
    # … or unfinished operations below it, rising, would move it up.
    if is_an_age or (below and ms_at(hist, shifted) > value):
        return lowest_ms(hist, value), True
    return value, False


class Reading:
    """One run as its summary's computations read it, each part read once and shared: the run's facts, its
    ops and percentiles, the window's account, and the monitor over the window.  ``monitored``: the monitor
    sampled the run (without it, the server's cost and the kernel's counters are NaN)."""

    def __init__(self, run: RunData) -> None:
        self.run, self.info = run, run.info
        self.options: dict[str, Any] = self.info.get("options") or {}
        self.open_loop: dict[str, Any] = self.info.get("open_loop") or {}
        self.window: dict[str, Any] = self.info.get("window") or {}
        self.seconds = float(self.window.get("seconds") or 0.0)
        self.monitor, self.in_window = run.monitor, window_rows(run)
        self.monitored = self.monitor is not None and self.in_window is not None
        self._percentiles: dict[tuple[tuple[str, ...], float | None], tuple[float, bool]] = {}
        self._once: dict[Callable[[Reading], dict[str, Any]], dict[str, Any]] = {}

    def once(self, compute: Callable[[Reading], dict[str, Any]]) -> dict[str, Any]:
        """What a computation of several figures together returns, computed once for the run."""
        if compute not in self._once:
            self._once[compute] = compute(self)
        return self._once[compute]

    @cached_property
    def ops(self) -> pd.DataFrame:
        """The latency table's ops (the protocol's requests), measured from their intended start."""
        lat = self.run.latency
        return lat[lat["type"].isin(OPS) & (lat["measure"] == "latency")] if len(lat) else lat

    @cached_property
    def successes(self) -> int:
        return int(self.ops["count"].sum()) if len(self.ops) else 0

    @cached_property
    def failed_ops(self) -> int:
        return int(self.ops["failures"].sum()) if len(self.ops) else 0

    @cached_property
    def failure_classes(self) -> dict[str, int]:
        classes: dict[str, int] = {}
        for f in self.info.get("failures") or []:
            classes[f["class"]] = classes.get(f["class"], 0) + int(f["occurrences"])
        return classes

    def percentile(self, kinds: tuple[str, ...], percentile: float | None) -> tuple[float, bool]:
        """``bounded`` over these kinds, finished and unfinished: (ms, a lower bound)."""
        key = (kinds, percentile)
        if key not in self._percentiles:
            hist = merged_histogram(self.run, kinds, with_unfinished=True)
            self._percentiles[key] = bounded(hist, percentile, unfinished_ages(self.run, kinds))
        return self._percentiles[key]

    @cached_property
    def service(self) -> HdrHistogram | None:
        """The ops from their actual send (open loop; the latencies themselves in closed loop)."""
        return merged_histogram(self.run, OPS, service=True) or merged_histogram(self.run, OPS)

    def window_account(self) -> dict[str, Any]:
        """The window's account and the connections at its close (loadtest.report.rules.account)."""
        run = self.run
        users = len(run.users) if run.users is not None else 0
        return account.figures(
            run.connections, run.timeline_note, users=users, window_s=self.seconds, request_s=request_seconds(run)
        )

    def user_figures(self) -> dict[str, Any]:
        return user_figures(self.run)

    def monitor_value(self, column: str, how: str) -> Any:
        """A monitor column's peak over the window ("max": not the warm-up's burst nor the shutdown), else its
        last value — a kernel counter's change over the window where the run read the counters at its edges."""
        mon, win = self.monitor, self.in_window
        if mon is None or win is None or column not in mon:  # not monitored, or recorded before the column
            return math.nan
        counter, edges = column.removeprefix("TcpExt_"), self.window.get("counters") or {}
        if how == "max":
            value = win[column].max()
        elif edges and counter in edges["open"] and counter not in WHOLE_RUN_COUNTERS:
            value = edges["close"][counter] - edges["open"][counter]  # the window's own, read at its edges
        else:
            value = mon.iloc[-1][column]
        if isinstance(value, str):
            return value
        return math.nan if value != value else int(value)  # NaN: a column the monitor could not fill (no --server-pid)

    def counters_scope(self) -> Any:
        """isolated or shared: the monitor's, else what run.json says."""
        if self.monitored:
            return self.monitor_value("counters_scope", "last")
        return self.info.get("counters_scope", "")

    def cpu_spent(self, column: str) -> float:
        """The server's CPU over the window, read off its cumulative samples at the window's edges."""
        assert self.monitor is not None
        mon, window = self.monitor, self.window
        cumulative = mon[column]
        if window.get("start") and window.get("stop"):
            start, stop = np.interp([window["start"], window["stop"]], mon["timestamp"], cumulative)
        else:
            start, stop = cumulative.iloc[0], cumulative.iloc[-1]
        return float(stop - start)

    def cpu_per_request(self, *columns: str, per_core: bool = False) -> float:
        """The server's CPU of these columns over the window per successful op, ``tick_rounded``."""
        return tick_rounded(sum(self.cpu_spent(c) for c in columns), self.successes, per_core=per_core)


Computation = Callable[[Reading], Any]


@dataclass(frozen=True)
class Family:
    """Columns computed together, in one pass (the window's account, the users' ledgers, the SYN split): each
    column that declares the family is its own name's entry of what ``compute`` returns, and nothing else is
    (but ``also``: entries read by other columns)."""

    compute: Callable[[Reading], dict[str, Any]]
    also: tuple[str, ...] = ()


@dataclass(frozen=True)
class Percentile:
    """A percentile in ms (None: the maximum) of these kinds, finished and unfinished: a lower bound where
    unfinished work could still raise it (then listed in ``lower_bound_columns``)."""

    kinds: tuple[str, ...]
    at: float | None

    def __call__(self, r: Reading) -> float:
        return r.percentile(self.kinds, self.at)[0]

    def lower_bound(self, r: Reading) -> bool:
        return r.percentile(self.kinds, self.at)[1]


@dataclass(frozen=True)
class FromMonitor:
    """A monitor column's peak over the window ("max") or its last value ("last": a counter's change)."""

    column: str
    how: str

    def __post_init__(self) -> None:
        if self.column not in MONITOR_NAMES or self.how not in ("max", "last"):  # a typo fails at import
            raise ValueError(f"no monitor column {self.column!r} to read as {self.how!r}")

    def __call__(self, r: Reading) -> Any:
        return r.monitor_value(self.column, self.how)


@dataclass(frozen=True)
class Summary(Column):
    """A column of summary.csv: a :class:`Column` that carries its computation."""

    value: Computation | Family = field(kw_only=True)

    def of(self, r: Reading) -> Any:
        if isinstance(self.value, Family):
            return r.once(self.value.compute)[self.name]
        return self.value(r)


def monitored(compute: Computation, otherwise: Any = math.nan) -> Computation:
    """A figure of the monitor's samples: ``otherwise`` for a run the monitor did not sample."""
    return lambda r: compute(r) if r.monitored else otherwise


def request_seconds(run: RunData) -> float:
    """Time the clients had requests in flight inside the window: the latencies of what finished in it, the
    ages at the close of what had not, less the ages at the open of what was already in flight then."""
    hist = merged_histogram(run, OPS, with_unfinished=True)
    if hist is None:
        return 0.0
    values, counts = recorded(hist)
    in_flight_at_open = float((run.info.get("window") or {}).get("in_flight_at_open_s") or 0.0)
    return max(float((values * counts).sum()) / 1e6 - in_flight_at_open, 0.0)


def memory_per_connection(mon: Any) -> float:
    """The server's memory growth over the first sample (the idle server) per connection held at peak.

    Anonymous memory (RssAnon): RSS also counts the pages of files the server maps, and socklab's
    connection log is one, mapped shared, that grows by a record per connection whether it is held or
    long closed (blocking: a 2.1 MB log over 13 connections read as 162 kB each).  Runs
    recorded before the monitor sampled it fall back to RSS."""
    column = "server_rss_anon_bytes"
    if column not in mon or mon[column].isna().all():
        column = "server_rss_bytes"
    memory = mon[column].dropna()
    peak = int(mon["server_ESTABLISHED"].max())
    return round((memory.max() - memory.iloc[0]) / peak) if peak and len(memory) else math.nan


def user_figures(run: RunData) -> dict[str, Any]:
    """users_served (≥ 1 successful request in the window), users_starved (none), Jain's fairness
    index over per-user completed requests (1.0 = equal shares, 1/n = one user got all), and the
    longest stretch any user went without a success (ms)."""
    users = run.users
    if users is None or users.empty:
        return dict.fromkeys(("users_served", "users_starved", "fairness", "longest_user_wait_ms"), math.nan)
    x = users["requests"].astype(float)
    return {
        "users_served": int((x > 0).sum()),
        "users_starved": int((x == 0).sum()),
        "fairness": round(jain(x.tolist()), 4),
        "longest_user_wait_ms": round(float(users["longest_wait_ms"].max()), 3),
    }


def jain(values: list[float]) -> float:
    """Jain's fairness index (Σx)² / (n·Σx²): 1.0 = equal shares, 1/n = one got everything; NaN for none."""
    squares = sum(v * v for v in values)
    return sum(values) ** 2 / (len(values) * squares) if squares else math.nan


def is_lower_bound(row: dict[str, Any], column: str) -> bool:
    return column in str(row.get("lower_bound_columns") or "").split(";")


def shown(row: dict[str, Any], column: str, unit: str = " ms") -> str:
    """A figure as words: '≥ 4,012.3 ms' when unfinished work makes it a lower bound."""
    value = row.get(column)
    if not isinstance(value, int | float) or value != value:
        return "n/a"
    text = f"{value:,.3f}".rstrip("0").rstrip(".") + unit
    return f"≥ {text}" if is_lower_bound(row, column) else text


def flag(value: Any) -> bool:
    """A yes/no column's value as a bool; pandas hands back numpy.bool_, for which `is True` fails."""
    return str(value) == "True"


def load_bound(row: dict[str, Any], cpus: int | None) -> str:
    """Whether the figures measure the load generator rather than the server — the one rule.

    "client-bound": the busiest Locust process ran at >= 90 % of a core (median over the
    window).  "machine-bound": not that, but server and load generator together used
    >= 90 % of every core, so they competed for the CPU.  "" otherwise.
    """
    if flag(row.get("client_bound")):
        return "client-bound"
    machine = row.get("machine_cpu_percent")
    if cpus and isinstance(machine, float) and machine >= CLIENT_BOUND_PERCENT * cpus:
        return "machine-bound"
    return ""


def load_processes_would_help(row: dict[str, Any], cpus: int | None) -> bool:
    """The load generator gave out (client-bound) while the machine had a core to spare (not machine-bound):
    more load processes would measure the server.  Compare's rerun of a cell and sweep's of a step both ask."""
    if not cpus or cpus < 2 or load_bound(row, cpus) != "client-bound":
        return False
    machine = row.get("machine_cpu_percent")  # server and load generator together, % of one core
    return not isinstance(machine, float) or machine < CLIENT_BOUND_PERCENT * cpus

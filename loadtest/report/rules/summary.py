"""The summary row of one run: every figure of summary.csv, and the rules read off it."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from loadtest.client.latency import recorded
from loadtest.declare.columns import MONITOR_SUMMARIES, SUMMARY_NAMES
from loadtest.declare.kinds import CONNECT, FIRST_REPLY, OPS
from loadtest.report.load import RunData, merged_histogram, server_died_at, unfinished_ages, window_rows
from loadtest.report.rules import account

CLIENT_BOUND_PERCENT = 90.0
# Counted over the whole run, warm-up included: TCPSynRetrans is split into the clients' SYNs and the server's
# SYN-ACKs with the clients' own counts, which cover the whole run (a retry cluster falls on the window's
# open, 1 s after the start-up burst, too close to call per segment).
WHOLE_RUN_COUNTERS = ("TCPSynRetrans",)
SUMMARY_COLUMNS = SUMMARY_NAMES  # declared, with units and meanings, in loadtest.declare.columns
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


def _ms(hist: HdrHistogram | None, percentile: float | None) -> float:
    """A percentile (None = max) in ms with µs precision; NaN without data."""
    if hist is None or hist.get_total_count() == 0:
        return math.nan
    us = hist.get_max_value() if percentile is None else hist.get_value_at_percentile(percentile)
    return round(us / 1000, 3)


def lowest_ms(hist: HdrHistogram, value_ms: float) -> float:
    """A lower bound's value: the lowest of its histogram bucket (a percentile reads the highest, up to 0.1 %
    above what was recorded: '≥ 4,898.815 ms' for an age of 4,898.371 ms would claim too much)."""
    return round(hist.get_lowest_equivalent_value(int(value_ms * 1000)) / 1000, 3)


def summarize(run: RunData) -> dict[str, Any]:
    info = run.info
    options = info.get("options") or {}
    lat = run.latency
    ops = lat[lat["type"].isin(OPS) & (lat["measure"] == "latency")] if len(lat) else lat
    successes = int(ops["count"].sum()) if len(ops) else 0
    failed_ops = int(ops["failures"].sum()) if len(ops) else 0
    failures = info.get("failures") or []
    classes: dict[str, int] = {}
    for f in failures:
        classes[f["class"]] = classes.get(f["class"], 0) + int(f["occurrences"])
    seconds = float((info.get("window") or {}).get("seconds") or 0.0)
    # Percentiles over what finished and what was still in flight at the window's close (its age
    # a lower bound): a value that an unfinished operation could still move is marked a lower bound.
    lower_bounds: list[str] = []

    def pct(types: tuple[str, ...], column: str, percentile: float | None, hist: HdrHistogram | None) -> float:
        value = _ms(hist, percentile)
        ages = unfinished_ages(run, types)
        if not ages or value != value or hist is None:
            return value
        if percentile is None:  # the maximum: an unfinished operation may take any time yet
            lower_bounds.append(column)
            return lowest_ms(hist, value)
        # Unfinished operations younger than the value may still end above it, each moving the
        # percentile up by at most one rank: if the percentile that many ranks higher is larger,
        # the value is only a lower bound.
        below = sum(1 for age in ages if age / 1000 < value)
        shifted = min(100.0, percentile + 100.0 * below / hist.get_total_count())
        # The value is itself an unfinished operation's age (to the histogram's 0.1 % precision) …
        is_an_age = any(abs(age / 1000 - value) <= 0.002 * value for age in ages)
        # … or unfinished operations below it, rising, would move it up.
        if is_an_age or (below and _ms(hist, shifted) > value):
            lower_bounds.append(column)
            return lowest_ms(hist, value)
        return value

    op_hist = merged_histogram(run, OPS, with_unfinished=True)
    connect = merged_histogram(run, (CONNECT,), with_unfinished=True)
    first_reply = merged_histogram(run, (FIRST_REPLY,), with_unfinished=True)
    service = merged_histogram(run, OPS, service=True) or merged_histogram(run, OPS)
    open_loop = info.get("open_loop") or {}
    times = account.figures(
        run.connections,
        run.timeline_note,
        users=len(run.users) if run.users is not None else 0,
        window_s=seconds,
        request_s=request_seconds(run),
    )
    timeline_lower = times.pop("timeline_lower_bounds", "")
    row: dict[str, Any] = {
        "run_id": run.run_id,
        "scenario": info.get("scenario", ""),
        "design": info.get("design", ""),
        "variant": info.get("design", ""),
        "user_class": ",".join(info.get("user_classes") or []),
        "op": options.get("op", ""),
        "pipeline": int(options.get("pipeline") or 1),
        "users": info.get("users"),
        "duration_s": round(seconds, 3),
        "requests": successes + failed_ops,
        "failures": sum(classes.values()),
        "failure_classes": "; ".join(f"{k}={v}" for k, v in sorted(classes.items())),
        "rps": round(successes / seconds, 1) if seconds > 0 else math.nan,
        "offered_rps": open_loop.get("arrival_rate", math.nan),
        "late_arrivals": open_loop.get("late_arrivals", math.nan),
        "late_lag_s": open_loop.get("late_lag_s", math.nan),
        **user_figures(run),
        "unfinished_connects": len(unfinished_ages(run, (CONNECT,))),
        "unfinished_requests": len(unfinished_ages(run, OPS)),
        "latency_p50_ms": pct(OPS, "latency_p50_ms", 50, op_hist),
        "latency_p90_ms": pct(OPS, "latency_p90_ms", 90, op_hist),
        "latency_p99_ms": pct(OPS, "latency_p99_ms", 99, op_hist),
        "latency_p99.9_ms": pct(OPS, "latency_p99.9_ms", 99.9, op_hist),
        "latency_max_ms": pct(OPS, "latency_max_ms", None, op_hist),
        "service_p50_ms": _ms(service, 50),
        "service_p99_ms": _ms(service, 99),
        "connect_p50_ms": pct((CONNECT,), "connect_p50_ms", 50, connect),
        "connect_p99_ms": pct((CONNECT,), "connect_p99_ms", 99, connect),
        "first_reply_p50_ms": pct((FIRST_REPLY,), "first_reply_p50_ms", 50, first_reply),
        "first_reply_p99_ms": pct((FIRST_REPLY,), "first_reply_p99_ms", 99, first_reply),
        "first_reply_max_ms": pct((FIRST_REPLY,), "first_reply_max_ms", None, first_reply),
        **times,
        "lower_bound_columns": ";".join(lower_bounds + [c for c in timeline_lower.split(";") if c]),
        "counters_scope": info.get("counters_scope", ""),
        "server_died_at_s": (
            round(died - float((info.get("window") or {}).get("start") or died), 3)
            if (died := server_died_at(run)) is not None
            else math.nan
        ),
    }
    mon = run.monitor
    win = window_rows(run)
    if mon is not None and win is not None:
        last = mon.iloc[-1]
        window = info.get("window") or {}

        def spent(column: str) -> float:
            """The server's CPU over the window, read off its cumulative samples at the window's edges."""
            cumulative = mon[column]
            if window.get("start") and window.get("stop"):
                start, stop = np.interp([window["start"], window["stop"]], mon["timestamp"], cumulative)
            else:
                start, stop = cumulative.iloc[0], cumulative.iloc[-1]
            return float(stop - start)

        user_s, system_s = spent("server_cpu_user_s"), spent("server_cpu_system_s")
        edges = window.get("counters") or {}
        for name, column, how in MONITOR_SUMMARIES:  # a peak or a last value, as loadtest.declare.columns declares
            if column not in mon:  # a run recorded before the column existed
                row[name] = math.nan
                continue
            counter = column.removeprefix("TcpExt_")
            if how == "max":  # a peak of the window, not of the warm-up's burst or the shutdown
                value = win[column].max()
            elif edges and counter in edges["open"] and counter not in WHOLE_RUN_COUNTERS:
                value = edges["close"][counter] - edges["open"][counter]  # the window's own, read at its edges
            else:
                value = last[column]
            row[name] = value if isinstance(value, str) else int(value)
        row.update(
            peak_time_wait=int((mon["server_TIME_WAIT"] + mon["client_TIME_WAIT"]).max()),
            # Only the digits the CPU clock's ticks allow: 4 ticks over 195 requests is 210 µs, not 205.13.
            server_cpu_us_per_request=tick_rounded(user_s + system_s, successes),
            server_user_us_per_request=tick_rounded(user_s, successes),
            server_sys_us_per_request=tick_rounded(system_s, successes),
            server_capacity_rps_per_core=tick_rounded(user_s + system_s, successes, per_core=True),
            rss_per_connection_bytes=memory_per_connection(mon),
            loadgen_peak_cpu_percent=float(win["loadgen_cpu_percent_max"].max()),
            loadgen_median_cpu_percent=float(win["loadgen_cpu_percent_max"].median()),
        )
        row.update(syn_figures(run, row["tcp_syn_retrans"], row["counters_scope"]))
        row["client_bound"] = bool(row["loadgen_median_cpu_percent"] >= CLIENT_BOUND_PERCENT)
        # Server and load generator together, median over the window, % of one core.
        row["machine_cpu_percent"] = float((win["server_cpu_percent"] + win["loadgen_cpu_percent_total"]).median())
    else:
        for col in SUMMARY_COLUMNS:
            row.setdefault(col, math.nan)
        row["client_bound"] = ""
    return {col: row.get(col, math.nan) for col in SUMMARY_COLUMNS}


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


def syn_figures(run: RunData, counter: int, scope: str) -> dict[str, Any]:
    """TCPSynRetrans split into the clients' SYN retransmissions and the server's SYN-ACK retransmissions.

    The kernel adds to the one counter for both: a client re-sending its SYN, and a listener re-sending
    a SYN-ACK (``tcp_rtx_synack``: after the client's final ACK was dropped at a full accept queue, or
    to a repeated SYN).  The clients count their own: each connecting socket's TCP_INFO
    ``tcpi_total_retrans`` when its connect() ended (loadtest.client.socket_client).  What is left of the counter,
    less the clients that live in the counter's own namespace, is the server's — exact only when the
    counters are the run's alone (``isolated``)."""
    processes = run.info.get("load_processes") or []
    if not any("syn_retrans" in p for p in processes):
        return {}
    clients = sum(int(p.get("syn_retrans", 0)) for p in processes)
    where = run.info.get("counters_from") or {}
    here = [p for p in processes if p.get("netns") == where.get("netns") and p.get("host") == where.get("host")]
    in_namespace = sum(int(p.get("syn_retrans", 0)) for p in here)
    return {
        "client_syn_retrans": clients,
        "connections_syn_retried": syn_retried_in_window(run, sum(int(p.get("syn_retried", 0)) for p in processes)),
        "server_synack_retrans": counter - in_namespace if scope == "isolated" else math.nan,
    }


def syn_retried_in_window(run: RunData, whole_run: int) -> int:
    """Connects that re-sent a SYN and ended (connect() returned or failed) after the window opened, or were
    still going when it closed; the whole run's count when there are no connection records."""
    frame, window = run.connections, run.info.get("window") or {}
    if frame is None or not window.get("monotonic_start"):
        return whole_run
    ended = frame["connect_end"].where(frame["connect_end"] > 0, frame["closed"]).fillna(0)
    close = float(window.get("monotonic_stop") or np.inf)
    inside = ((ended <= 0) | (ended >= float(window["monotonic_start"]))) & (ended <= close)
    still = frame["stage_at_stop"].isin(["syn_retry_wait", "handshake"])  # connecting when the window closed
    return int((frame["in_window"] & (inside | still) & (frame["syn_retrans"] > 0)).sum())


def user_figures(run: RunData) -> dict[str, Any]:
    """users_served (≥ 1 successful request in the window), users_starved (none), Jain's fairness
    index over per-user completed requests (1.0 = equal shares, 1/n = one user got all), and the
    longest stretch any user went without a success (ms)."""
    users = run.users
    if users is None or users.empty:
        return {
            "users_served": math.nan,
            "users_starved": math.nan,
            "fairness": math.nan,
            "longest_user_wait_ms": math.nan,
        }
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

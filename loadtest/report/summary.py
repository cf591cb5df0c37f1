"""The summary row of one run: every figure of summary.csv, and the rules read off it."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from loadtest.report.load import RunData, merged_histogram, window_rows

OPS = ("ECHO", "SLEEP", "WORK")
CLIENT_BOUND_PERCENT = 90.0
SUMMARY_COLUMNS = [
    "run_id",
    "scenario",
    "variant",
    "user_class",
    "op",
    "users",
    "duration_s",
    "requests",
    "failures",
    "failure_classes",
    "rps",
    "latency_p50_ms",
    "latency_p90_ms",
    "latency_p99_ms",
    "latency_p99.9_ms",
    "latency_max_ms",
    "connect_p50_ms",
    "connect_p99_ms",
    "first_reply_p99_ms",
    "first_reply_max_ms",
    "listen_overflows",
    "listen_drops",
    "syncookies_sent",
    "counters_scope",
    "peak_accept_queue",
    "backlog",
    "peak_established",
    "peak_time_wait",
    "peak_syn_sent",
    "server_cpu_us_per_request",
    "peak_rss_bytes",
    "rss_per_connection_bytes",
    "peak_threads",
    "peak_fds",
    "loadgen_peak_cpu_percent",
    "loadgen_median_cpu_percent",
    "client_bound",
    "machine_cpu_percent",
]



def _ms(hist: HdrHistogram | None, percentile: float | None) -> float:
    """A percentile (None = max) in ms with µs precision; NaN without data."""
    if hist is None or hist.get_total_count() == 0:
        return math.nan
    us = hist.get_max_value() if percentile is None else hist.get_value_at_percentile(percentile)
    return round(us / 1000, 3)


def summarize(run: RunData) -> dict[str, Any]:
    info = run.info
    options = info.get("options") or {}
    lat = run.latency
    ops = lat[lat["type"].isin(OPS)] if len(lat) else lat
    successes = int(ops["count"].sum()) if len(ops) else 0
    failed_ops = int(ops["failures"].sum()) if len(ops) else 0
    failures = info.get("failures") or []
    classes: dict[str, int] = {}
    for f in failures:
        classes[f["class"]] = classes.get(f["class"], 0) + int(f["occurrences"])
    seconds = float((info.get("window") or {}).get("seconds") or 0.0)
    op_hist = merged_histogram(run, OPS)
    connect = merged_histogram(run, ("CONNECT",))
    first_reply = merged_histogram(run, ("FIRST_REPLY",))
    row: dict[str, Any] = {
        "run_id": run.run_id,
        "scenario": info.get("scenario", ""),
        "variant": info.get("variant", ""),
        "user_class": ",".join(info.get("user_classes") or []),
        "op": options.get("op", ""),
        "users": info.get("users"),
        "duration_s": round(seconds, 3),
        "requests": successes + failed_ops,
        "failures": sum(classes.values()),
        "failure_classes": "; ".join(f"{k}={v}" for k, v in sorted(classes.items())),
        "rps": round(successes / seconds, 1) if seconds > 0 else math.nan,
        "latency_p50_ms": _ms(op_hist, 50),
        "latency_p90_ms": _ms(op_hist, 90),
        "latency_p99_ms": _ms(op_hist, 99),
        "latency_p99.9_ms": _ms(op_hist, 99.9),
        "latency_max_ms": _ms(op_hist, None),
        "connect_p50_ms": _ms(connect, 50),
        "connect_p99_ms": _ms(connect, 99),
        "first_reply_p99_ms": _ms(first_reply, 99),
        "first_reply_max_ms": _ms(first_reply, None),
        "counters_scope": info.get("counters_scope", ""),
    }
    mon = run.monitor
    win = window_rows(run)
    if mon is not None and win is not None:
        last = mon.iloc[-1]
        cpu = mon["server_cpu_user_s"] + mon["server_cpu_system_s"]
        window = info.get("window") or {}
        if window.get("start") and window.get("stop"):
            # The server's cumulative CPU at the window's edges, read off the samples.
            cpu_start, cpu_stop = np.interp([window["start"], window["stop"]], mon["timestamp"], cpu)
        else:
            cpu_start, cpu_stop = cpu.iloc[0], cpu.iloc[-1]
        row.update(
            listen_overflows=int(last["TcpExt_ListenOverflows"]),
            listen_drops=int(last["TcpExt_ListenDrops"]),
            syncookies_sent=int(last["TcpExt_SyncookiesSent"]),
            counters_scope=str(last["counters_scope"]),
            peak_accept_queue=int(mon["accept_queue"].max()),
            backlog=int(mon["backlog"].max()),
            peak_established=int(mon["server_ESTABLISHED"].max()),
            peak_time_wait=int((mon["server_TIME_WAIT"] + mon["client_TIME_WAIT"]).max()),
            peak_syn_sent=int(mon["client_SYN_SENT"].max()),
            server_cpu_us_per_request=(
                round(float(cpu_stop - cpu_start) / successes * 1e6, 2) if successes else math.nan
            ),
            peak_rss_bytes=int(mon["server_rss_bytes"].max()),
            # Growth over the first sample (the idle server) per connection held at peak.
            rss_per_connection_bytes=(
                round((mon["server_rss_bytes"].max() - mon["server_rss_bytes"].iloc[0]) / est_peak)
                if (est_peak := int(mon["server_ESTABLISHED"].max()))
                else math.nan
            ),
            peak_threads=int(mon["server_threads"].max()),
            peak_fds=int(mon["server_fds"].max()),
            loadgen_peak_cpu_percent=float(win["loadgen_cpu_percent_max"].max()),
            loadgen_median_cpu_percent=float(win["loadgen_cpu_percent_max"].median()),
        )
        row["client_bound"] = bool(row["loadgen_median_cpu_percent"] >= CLIENT_BOUND_PERCENT)
        # Server and load generator together, median over the window, % of one core.
        row["machine_cpu_percent"] = float((win["server_cpu_percent"] + win["loadgen_cpu_percent_total"]).median())
    else:
        for col in SUMMARY_COLUMNS:
            row.setdefault(col, math.nan)
        row["client_bound"] = ""
    return {col: row.get(col, math.nan) for col in SUMMARY_COLUMNS}


def load_bound(row: dict[str, Any], cpus: int | None) -> str:
    """Whether the figures measure the load generator rather than the server — the one rule.

    "client-bound": the busiest Locust process ran at >= 90 % of a core (median over the
    window).  "machine-bound": not that, but server and load generator together used
    >= 90 % of every core, so they competed for the CPU.  "" otherwise.
    """
    if row.get("client_bound") is True:
        return "client-bound"
    machine = row.get("machine_cpu_percent")
    if cpus and isinstance(machine, float) and machine >= CLIENT_BOUND_PERCENT * cpus:
        return "machine-bound"
    return ""



"""Every column of summary.csv, declared once with its computation: its name, unit and meaning (the docs' table,
``python -m loadtest.docs``) and the function of the run (a :class:`~loadtest.report.rules.summary.Reading`)
that makes its value.  ``summarize`` is each column's computation, in this order.

A column cannot be declared without its computation, nor computed without its declaration: a monitor column
read is checked against the monitor's declaration at import, and the figures computed together in one pass
(a :class:`~loadtest.report.rules.summary.Family`) are held to the columns that declare the family by
tests/test_summary_columns.py.  Here the run, what its clients saw and the window's account; the server's side
(the kernel's counters, the queues, the server's cost) in :mod:`loadtest.report.rules.server_columns`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from loadtest.declare.columns import WINDOW_SHARES
from loadtest.declare.kinds import CONNECT, FIRST_REPLY, OPS
from loadtest.declare.protocols import request_label
from loadtest.report.load import RunData, unfinished_ages
from loadtest.report.rules.kernel_times import kernel_peak_accept_queue, kernel_summary, synacks_in_counters_span
from loadtest.report.rules.server_columns import SERVER_COLUMNS
from loadtest.report.rules.summary import Computation, Family, Percentile, Reading, Summary, ms_at

ACCOUNT = Family(Reading.window_account, also=("timeline_lower_bounds",))
USERS = Family(Reading.user_figures)


def lower_bound_columns(r: Reading) -> str:
    """The percentile columns that unfinished work makes lower bounds, then the window account's own."""
    mine = [c.name for c in SUMMARY if isinstance(c.value, Percentile) and c.value.lower_bound(r)]
    theirs = str(r.once(ACCOUNT.compute)["timeline_lower_bounds"])
    return ";".join(mine + [c for c in theirs.split(";") if c])


def p50_and_p99(stem: str, meaning: str, value: Callable[[int], Computation | Family]) -> tuple[Summary, Summary]:
    """A figure's p50 (``stem_p50_ms``, its meaning) and p99 (``stem_p99_ms``, "the same, p99"), ``value(p)`` each."""
    return (
        Summary(f"{stem}_p50_ms", "ms", meaning, value=value(50)),
        Summary(f"{stem}_p99_ms", "ms", "the same, p99", value=value(99)),
    )


def rps(r: Reading) -> float:
    return round(r.successes / r.seconds, 1) if r.seconds > 0 else math.nan


SUMMARY: tuple[Summary, ...] = (
    Summary("run_id", "", "the run folder's name", value=lambda r: r.run.run_id),
    Summary("scenario", "", "the scenario, when socklab compare ran it", value=lambda r: r.info.get("scenario", "")),
    Summary(
        "design",
        "",
        "the server design (or the --server-cmd NAME, or external)",
        value=lambda r: r.info.get("design", ""),
    ),
    Summary(
        "variant",
        "",
        "deprecated: the same as design, under its old name; removed in the next release",
        value=lambda r: r.info.get("design", ""),
    ),
    Summary(
        "user_class",
        "",
        "the Locust user classes that ran",
        value=lambda r: ",".join(r.info.get("user_classes") or []),
    ),
    Summary(
        "op",
        "",
        "the request: socklab's op (ECHO, SLEEP, WORK), another protocol's ('GET /', 'RESP SET k v', 'RAW'), or "
        "the one-shot user's MESSAGE",
        value=lambda r: request_label(r.options, r.info.get("user_classes") or ()),
    ),
    Summary(
        "pipeline",
        "requests",
        "requests in flight per connection (--pipeline; 1 = one at a time): above 1 a "
        "different workload, several frames per system call on both sides",
        value=lambda r: int(r.options.get("pipeline") or 1),
    ),
    Summary(
        "load_processes",
        "count",
        "Locust processes that ran the users (--processes; socklab compare runs a cell whose one process gave out "
        "again with one a core)",
        value=lambda r: sum(1 for p in r.info.get("load_processes") or [] if p.get("worker_id") != "local") or 1,
    ),
    Summary("users", "count", "users of the run", value=lambda r: r.info.get("users")),
    Summary(
        "duration_s",
        "s",
        "the measured window: Locust's test start → test stop",
        value=lambda r: round(r.seconds, 3),
    ),
    Summary("requests", "count", "ops sent, successes + failures", value=lambda r: r.successes + r.failed_ops),
    Summary("failures", "count", "failures in total", value=lambda r: sum(r.failure_classes.values())),
    Summary(
        "failure_classes",
        "",
        "failures by class, e.g. refused=12; reset=3",
        value=lambda r: "; ".join(f"{k}={v}" for k, v in sorted(r.failure_classes.items())),
    ),
    Summary("rps", "requests/s", "successful ops ÷ duration_s (counts, not averages): the achieved rate", value=rps),
    Summary(
        "offered_rps",
        "requests/s",
        "open loop: the arrival rate asked for (empty in closed loop)",
        value=lambda r: r.open_loop.get("arrival_rate", math.nan),
    ),
    Summary(
        "late_arrivals",
        "count",
        "open loop: arrivals sent ≥ 1 ms after their intended start",
        value=lambda r: r.open_loop.get("late_arrivals", math.nan),
    ),
    Summary("late_lag_s", "s", "open loop: their total lag", value=lambda r: r.open_loop.get("late_lag_s", math.nan)),
    Summary("users_served", "count", "users with ≥ 1 successful request in the window", value=USERS),
    Summary("users_starved", "count", "users with none", value=USERS),
    Summary(
        "fairness",
        "0–1",
        "Jain's index over per-user completed requests: 1.0 = equal shares, 1/users = one user got all",
        value=USERS,
    ),
    Summary(
        "longest_user_wait_ms",
        "ms",
        "the longest stretch any user went without a success in the window (the open stretch at the end included)",
        value=USERS,
    ),
    Summary(
        "unfinished_connects",
        "count",
        "connects still in flight when the window closed",
        value=lambda r: len(unfinished_ages(r.run, (CONNECT,))),
    ),
    Summary(
        "unfinished_requests",
        "count",
        "requests still in flight when the window closed",
        value=lambda r: len(unfinished_ages(r.run, OPS)),
    ),
    *(
        Summary(
            f"latency_{p}_ms",
            "ms",
            f"{p} of request sent (open loop: its intended start) → last reply byte, µs "
            "precision, over all ops, finished and unfinished (their ages as lower bounds)",
            value=Percentile(OPS, at),
        )
        for p, at in (("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9))
    ),
    Summary("latency_max_ms", "ms", "the largest latency, unfinished ages included", value=Percentile(OPS, None)),
    *p50_and_p99(
        "service",
        "actual send → last reply byte, finished ops (open loop; = latency in closed loop)",
        lambda p: lambda r: ms_at(r.service, p),
    ),
    *p50_and_p99(
        "connect",
        "connect() start → return, finished and unfinished",
        lambda p: Percentile((CONNECT,), p),
    ),
    *p50_and_p99(
        "first_reply",
        "connect start → first reply byte (connect-per-request: what a user "
        "waited, SYN retries included), finished and unfinished",
        lambda p: Percentile((FIRST_REPLY,), p),
    ),
    Summary("first_reply_max_ms", "ms", "the same, the largest", value=Percentile((FIRST_REPLY,), None)),
    Summary(
        "connections_recorded",
        "count",
        "connections the clients recorded that were open at some time in the "
        "window (loadtest.report.rules.timeline joins them to the server's own records)",
        value=ACCOUNT,
    ),
    Summary("connections_joined", "count", "of them, joined to the server's record on the 4-tuple", value=ACCOUNT),
    Summary(
        "connections_never_accepted",
        "count",
        "of them, open when the window closed with connect() returned "
        "but not accepted by the server by then: in the accept queue, or half-open",
        value=ACCOUNT,
    ),
    Summary(
        "connections_half_open",
        "count",
        "of those, half-open: the client believes it is connected but its "
        "final ACK and request were dropped at the full accept queue (it had to send its data again), so the "
        "server holds a request socket (SYN_RECV) or, after a SYN cookie, nothing — not in the accept queue",
        value=ACCOUNT,
    ),
    Summary(
        "kernel_trace",
        "",
        "where the stages up to accept() came from: the kernel's tracepoints (for how many connections, "
        "and the events the tracer lost), or why not",
        value=lambda r: kernel_summary(r.info, r.run.connections),
    ),
    Summary(
        "kernel_synack_retrans",
        "segments",
        "the SYN-ACKs the server re-sent, from the kernel trace, connection by connection, up to the monitor's last "
        "read of the counters: server_synack_retrans counted one by one (every client connection's own)",
        value=lambda r: synacks_in_counters_span(r.run.connections, r.info),
    ),
    Summary(
        "kernel_peak_accept_queue",
        "connections",
        "the deepest the accept queue was over the run, from the kernel's stamps (in at the server child's "
        "ESTABLISHED, out as accept() returns; one over at most, while an accept() returns): exact where "
        "peak_accept_queue is the monitor's samples, which miss a queue that fills and drains between two",
        value=lambda r: kernel_peak_accept_queue(r.run.connections, r.info),
    ),
    Summary(
        "timeline",
        "",
        "measured, or why some stages are not (no server log, another machine's clock …)",
        value=ACCOUNT,
    ),
    *p50_and_p99(
        "accept_queue_wait",
        "the client's ESTABLISHED (the kernel's; else connect() returning) → accept() returning it, half-open "
        "time included, of the connections accepted in the window and those still not accepted at its close "
        "(their wait so far, since their connect, possibly in the warm-up: a lower bound)",
        lambda _: ACCOUNT,
    ),
    *p50_and_p99(
        "pool_queue_wait",
        "accept() return → a worker starts on the connection (a pool's queue)",
        lambda _: ACCOUNT,
    ),
    *p50_and_p99(
        "server_service",
        "the first request whole at the server → its reply written, server clock",
        lambda _: ACCOUNT,
    ),
    Summary(
        "window_user_s",
        "s",
        "the window's account: every user's time in the measured window (users × window), split into the stages below",
        value=ACCOUNT,
    ),
    *(
        Summary(
            f"window_share_{stage}",
            "0–1",
            f"of every user's time in the window, the share spent {meaning}; the shares add up to 1 (docs/timeline.md)",
            value=ACCOUNT,
        )
        for stage, meaning in WINDOW_SHARES
    ),
    Summary(
        "lower_bound_columns",
        "",
        "the figures above that unfinished work could still raise: lower bounds, shown ≥",
        value=lower_bound_columns,
    ),
    *SERVER_COLUMNS,
)
SUMMARY_NAMES: list[str] = [c.name for c in SUMMARY]
SUMMARY_COLUMNS = SUMMARY_NAMES


def summarize(run: RunData) -> dict[str, Any]:
    """The summary row of one run: every declared column's computation, in their order."""
    reading = Reading(run)
    return {c.name: c.of(reading) for c in SUMMARY}

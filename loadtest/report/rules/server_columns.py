"""The summary's columns of the server's side, each with its computation: the kernel's counters, the queues,
what the server cost, and what bounds the figures (the load generator's CPU, the shared machine) — read off the
monitor's samples over the window (NaN for a run it did not sample).  They close the summary row
(:mod:`loadtest.report.rules.summary_columns`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from loadtest.report.load import RunData, server_died_at
from loadtest.report.rules.summary import (
    CLIENT_BOUND_PERCENT,
    Family,
    FromMonitor,
    Reading,
    Summary,
    memory_per_connection,
    monitored,
)

SYN_FIGURES = ("client_syn_retrans", "connections_syn_retried", "server_synack_retrans")


def syn_figures(run: RunData, counter: int, scope: str) -> dict[str, Any]:
    """TCPSynRetrans split into the clients' SYN retransmissions and the server's SYN-ACK retransmissions.

    The kernel adds to the one counter for both: a client re-sending its SYN, and a listener re-sending
    a SYN-ACK (``tcp_rtx_synack``: after the client's final ACK was dropped at a full accept queue, or
    to a repeated SYN).  The clients count their own: each connecting socket's TCP_INFO
    ``tcpi_total_retrans`` when its connect() ended (loadtest.client.socket_client).  What is left of the counter,
    less the clients that live in the counter's own namespace, is the server's — exact only when the
    counters are the run's alone (``isolated``).  NaN each when the clients did not count theirs."""
    processes = run.info.get("load_processes") or []
    if not any("syn_retrans" in p for p in processes):
        return dict.fromkeys(SYN_FIGURES, math.nan)
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


def syn_split(r: Reading) -> dict[str, Any]:
    """TCPSynRetrans split into the clients' SYNs and the server's SYN-ACKs (``syn_figures``); NaN
    without a monitor or without the clients' counts."""
    if not r.monitored:
        return dict.fromkeys(SYN_FIGURES, math.nan)
    return syn_figures(r.run, r.monitor_value("TcpExt_TCPSynRetrans", "last"), r.counters_scope())


def server_died_at_s(r: Reading) -> float:
    died = server_died_at(r.run)
    return round(died - float(r.window.get("start") or died), 3) if died is not None else math.nan


def peak_time_wait(r: Reading) -> int:
    assert r.monitor is not None
    return int((r.monitor["server_TIME_WAIT"] + r.monitor["client_TIME_WAIT"]).max())


def loadgen_peak_cpu_percent(r: Reading) -> float:
    assert r.in_window is not None
    return float(r.in_window["loadgen_cpu_percent_max"].max())


def loadgen_median_cpu_percent(r: Reading) -> float:
    """The busiest load process's CPU, median over the window: ≥ CLIENT_BOUND_PERCENT is client-bound."""
    assert r.in_window is not None
    return float(r.in_window["loadgen_cpu_percent_max"].median())


def machine_cpu_percent(r: Reading) -> float:
    """Server and load generator together, median over the window, % of one core."""
    assert r.in_window is not None
    return float((r.in_window["server_cpu_percent"] + r.in_window["loadgen_cpu_percent_total"]).median())


def peak(name: str, unit: str, meaning: str, *, of: str) -> Summary:
    """A monitor column's (``of``) highest value over the window."""
    return Summary(name, unit, meaning, value=FromMonitor(of, "max"))


def window_delta(name: str, unit: str, counter: str, more: str) -> Summary:
    """A kernel counter's change over the window (TcpExt, read at the window's edges where the run did)."""
    return Summary(
        name, unit, f"Δ TcpExt {counter} over the window{more}", value=FromMonitor(f"TcpExt_{counter}", "last")
    )


USER, SYSTEM = "server_cpu_user_s", "server_cpu_system_s"
SYN = Family(syn_split)
SERVER_COLUMNS: tuple[Summary, ...] = (
    window_delta(
        "listen_overflows",
        "packets",
        "ListenOverflows",
        " (read at its edges): packets dropped at a full accept queue (SYNs, final ACKs, early data), not SYNs",
    ),
    window_delta("listen_drops", "packets", "ListenDrops", " = ListenOverflows + TCPReqQFullDrop"),
    Summary(
        "tcp_syn_retrans",
        "segments",
        "Δ TcpExt TCPSynRetrans over the whole run, warm-up included: SYNs "
        "the clients re-sent plus SYN-ACKs the server re-sent — one kernel counter for both, split below",
        value=FromMonitor("TcpExt_TCPSynRetrans", "last"),
    ),
    Summary(
        "client_syn_retrans",
        "segments",
        "SYNs the clients re-sent: each connecting socket's TCP_INFO "
        "tcpi_total_retrans when its connect() ended, over the whole run, as the counter it splits",
        value=SYN,
    ),
    Summary(
        "connections_syn_retried",
        "count",
        "connects that re-sent at least one SYN, of those that ended (or "
        "were still going) in the window — not the warm-up's start-up burst",
        value=SYN,
    ),
    Summary(
        "server_synack_retrans",
        "segments",
        "tcp_syn_retrans less the clients' SYNs in the counter's namespace: "
        "SYN-ACKs the server re-sent (isolated counters only; empty when shared)",
        value=SYN,
    ),
    window_delta("syncookies_sent", "count", "SyncookiesSent", ""),
    window_delta(
        "embryonic_rsts",
        "count",
        "EmbryonicRsts",
        ": half-open connections ended by a reset — under tcp_abort_on_overflow=1, the final ACKs refused at a "
        "full accept queue",
    ),
    Summary(
        "counters_scope",
        "",
        "isolated (exact: the run's own namespace) or shared (the host's counters)",
        value=Reading.counters_scope,
    ),
    peak("peak_accept_queue", "connections", "the highest accept-queue depth seen in the window", of="accept_queue"),
    peak(
        "peak_deepest_accept_queue",
        "connections",
        "the deepest any one listener's accept queue was (one per worker with SO_REUSEPORT)",
        of="deepest_accept_queue",
    ),
    peak("backlog", "connections", "the listener's backlog as the kernel applies it", of="backlog"),
    peak("peak_established", "sockets", "most server-side ESTABLISHED sockets", of="server_ESTABLISHED"),
    Summary("peak_time_wait", "sockets", "most TIME_WAIT sockets, both sides", value=monitored(peak_time_wait)),
    peak("peak_syn_sent", "sockets", "most clients in SYN_SENT (no SYN-ACK yet, retrying)", of="client_SYN_SENT"),
    Summary(
        "server_cpu_us_per_request",
        "µs",
        "Δ(user + system CPU of the server tree) over the window ÷ successful "
        "ops, to the digits the CPU clock allows: the kernel counts CPU in 10 ms ticks, so the figure is rounded "
        "at its uncertainty of one tick (4 ticks over 195 ops: 210, not 205.13), and empty under 2 ticks",
        value=monitored(lambda r: r.cpu_per_request(USER, SYSTEM)),
    ),
    Summary(
        "server_user_us_per_request",
        "µs",
        "the user part, rounded alike on its own ticks",
        value=monitored(lambda r: r.cpu_per_request(USER)),
    ),
    Summary(
        "server_sys_us_per_request",
        "µs",
        "the system part, rounded alike on its own ticks",
        value=monitored(lambda r: r.cpu_per_request(SYSTEM)),
    ),
    Summary(
        "server_capacity_rps_per_core",
        "requests/s",
        "1e6 ÷ server_cpu_us_per_request: what one core of this "
        "server could answer, an estimate that assumes the server CPU-bound and its cost linear in the load — "
        "the figure to rank by when a cell is client-bound; rounded alike",
        value=monitored(lambda r: r.cpu_per_request(USER, SYSTEM, per_core=True)),
    ),
    peak("peak_rss_bytes", "bytes", "the server tree's highest RSS", of="server_rss_bytes"),
    Summary(
        "rss_per_connection_bytes",
        "bytes",
        "(peak anonymous RSS − anonymous RSS at the first sample) ÷ "
        "peak_established: the heap, stacks and private pages the server grew by per connection held, its "
        "file-backed and shared pages (socklab's own connection log among them) excluded; from RSS, file pages "
        "and all, in runs recorded before server_rss_anon_bytes",
        value=monitored(lambda r: memory_per_connection(r.monitor)),
    ),
    peak("peak_threads", "count", "the server tree's most threads", of="server_threads"),
    peak("peak_fds", "count", "the server tree's most open fds", of="server_fds"),
    Summary(
        "loadgen_peak_cpu_percent",
        "% of one core",
        "the busiest Locust process's CPU, peak over the window",
        value=monitored(loadgen_peak_cpu_percent),
    ),
    Summary(
        "loadgen_median_cpu_percent",
        "% of one core",
        "the same, median over the window",
        value=monitored(loadgen_median_cpu_percent),
    ),
    Summary(
        "client_bound",
        "yes/no",
        "the median ≥ 90 %: the figures measure the load generator, not the server",
        value=monitored(lambda r: bool(loadgen_median_cpu_percent(r) >= CLIENT_BOUND_PERCENT), otherwise=""),
    ),
    Summary(
        "machine_cpu_percent",
        "% of one core",
        "server CPU + all load processes' CPU, median over the window (a finding flags ≥ 90 % of every core)",
        value=monitored(machine_cpu_percent),
    ),
    Summary(
        "server_died_at_s",
        "s",
        "when a server that died during the run was last seen alive, into the window",
        value=server_died_at_s,
    ),
)

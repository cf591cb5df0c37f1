"""The charts of monitor columns over time, declared once: the run page and the live page draw the same ones.

Each series names a column of :data:`loadtest.declare.columns.MONITOR` and takes its label from there.
No locust, no pandas: every process reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

from loadtest.declare.columns import MONITOR_BY_NAME
from loadtest.declare.kinds import REPORTED_STATES


@dataclass(frozen=True)
class Series:
    column: str
    dash: str = "solid"
    scale: float = 1.0  # bytes → MiB and the like
    offset: float = 0.0  # backlog + 1: where the queue is full

    def label(self) -> str:
        extra = " + 1 (queue full)" if self.offset == 1 else ""
        return MONITOR_BY_NAME[self.column].shown + extra


@dataclass(frozen=True)
class Chart:
    """One chart of monitor columns over time, drawn alike on the run page and the live page."""

    key: str
    title: str
    y_title: str
    series: tuple[Series, ...]
    stacked: bool = False

    @property
    def columns(self) -> list[str]:
        return [s.column for s in self.series]


CHARTS: tuple[Chart, ...] = (
    Chart(
        "accept-queue",
        "Accept queue against the backlog",
        "connections",
        (Series("accept_queue"), Series("backlog", "dash"), Series("backlog", "dot", offset=1)),
    ),
    Chart(
        "server-states",
        "Server-side sockets of the port by state (stacked)",
        "sockets",
        tuple(Series(f"server_{s}") for s in REPORTED_STATES),
        stacked=True,
    ),
    Chart(
        "client-states",
        "Client-side sockets of the port by state (stacked)",
        "sockets",
        tuple(Series(f"client_{s}") for s in REPORTED_STATES),
        stacked=True,
    ),
    Chart(
        "kernel-counters",
        "Kernel counters since the monitor started",
        "events",
        (
            Series("TcpExt_ListenOverflows"),
            Series("TcpExt_ListenDrops"),
            Series("TcpExt_TCPReqQFullDrop"),
            Series("TcpExt_TCPReqQFullDoCookies"),
            Series("TcpExt_SyncookiesSent"),
            Series("TcpExt_TCPSynRetrans"),
            Series("Tcp_RetransSegs"),
        ),
    ),
    Chart(
        "cpu",
        "CPU (100 % = one core)",
        "% of one core",
        (Series("server_cpu_percent"), Series("loadgen_cpu_percent_max")),
    ),
    Chart(
        "server-cost",
        "Server memory, threads and fds",
        "count · MiB",
        (Series("server_rss_bytes", scale=1 / 2**20), Series("server_threads"), Series("server_fds")),
    ),
)
CHART_COLUMNS: tuple[str, ...] = ("timestamp", *dict.fromkeys(c for chart in CHARTS for c in chart.columns))

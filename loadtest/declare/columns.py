"""Every measured column, declared once: its name, unit, meaning and source, and the views that show it.

The monitor writes :data:`MONITOR` in this order; the summary row has :data:`SUMMARY`'s columns in
this order; the live tab shows the monitor columns that declare ``live``; the summary takes a
monitor column's peak or last value where it declares ``summary``; the charts of the run page and
of the live page are :data:`CHARTS`, drawn from these columns; and the docs' column tables are
generated from all of it (``python -m loadtest.docs``).  So a new monitor column is its sampler code
and one line here.  Names of request kinds (ops, CONNECT, FIRST_REPLY) are in :mod:`loadtest.declare.kinds`.

No locust, no pandas: every process reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

from loadtest.declare.kinds import REPORTED_STATES


@dataclass(frozen=True)
class Column:
    name: str
    unit: str
    meaning: str
    source: str = ""
    label: str = ""  # the short name charts and the live tab give it (default: the name)
    live: str = ""  # "now": the live tab shows the latest sample; "delta": its change since the test started
    live_with: str = ""  # shown beside another column: "accept queue / backlog"
    summary: tuple[str, str] | None = None  # (summary column, "max" | "last"): how the summary reads it

    @property
    def shown(self) -> str:
        return self.label or self.name


# -- the monitor's row (loadtest.measure.monitor) -----------------------------------------------------------
_STATE_MEANING = {
    "ESTABLISHED": "connected; on the server side this includes connections still waiting in the accept queue",
    "SYN_SENT": "a client's SYN not answered yet: dropped, and retried on the kernel's SYN schedule",
    "SYN_RECV": "half-open: SYN-ACK sent, final ACK not in yet (request sockets, as ss counts them)",
    "FIN_WAIT1": "closed by this end, its FIN not acknowledged yet",
    "FIN_WAIT2": "closed by this end, waiting for the other end's FIN",
    "TIME_WAIT": "closed by this end first: held 60 s so that late segments die",
    "CLOSE_WAIT": "the other end closed; this end has not yet",
    "LAST_ACK": "closed by this end after the other: waiting for the last ACK",
    "CLOSING": "both ends closed at once",
}
_LIVE_SERVER = {"ESTABLISHED", "SYN_RECV", "CLOSE_WAIT", "TIME_WAIT"}
_LIVE_CLIENT = {"SYN_SENT", "TIME_WAIT"}
_COUNTERS = {
    "ListenOverflows": (
        "packets dropped at a full accept queue: SYNs, final handshake ACKs and early data — not a count of SYNs",
        "listen_overflows",
        "delta",
    ),
    "ListenDrops": ("ListenOverflows + TCPReqQFullDrop", "listen_drops", "delta"),
    "TCPReqQFullDrop": ("SYNs dropped because the half-open queue was full (no SYN cookies)", "", ""),
    "TCPReqQFullDoCookies": ("SYNs answered with a SYN cookie because the half-open queue was full", "", ""),
    "SyncookiesSent": (
        "SYN cookies sent: connect() returns for clients the server holds nothing for",
        "syncookies_sent",
        "delta",
    ),
    "SyncookiesRecv": ("valid SYN cookies received back", "", ""),
    "SyncookiesFailed": ("invalid SYN cookies received", "", ""),
    "TCPSynRetrans": (
        "SYNs the clients re-sent plus SYN-ACKs the listeners re-sent: one counter for both",
        "tcp_syn_retrans",
        "delta",
    ),
    "TCPTimeouts": ("retransmission timeouts", "", ""),
    "TCPAbortOnData": ("connections reset because data arrived after close", "", ""),
    "EmbryonicRsts": (
        "half-open connections ended by a reset: a final ACK refused at a full accept queue under "
        "tcp_abort_on_overflow=1, or a RST received in SYN_RECV",
        "embryonic_rsts",
        "delta",
    ),
}
_SNMP = {
    "RetransSegs": "segments retransmitted",
    "ActiveOpens": "connections opened from this namespace (connect)",
    "PassiveOpens": "connections opened to this namespace (accept side)",
    "AttemptFails": "connection attempts that failed",
    "EstabResets": "established connections reset",
}

# The window's account, stage by stage (loadtest.report.rules.timeline computes them, in this order).
WINDOW_SHARES: tuple[tuple[str, str], ...] = (
    ("syn_retry_wait", "waiting on SYN retries"),
    ("handshake", "in the handshake"),
    ("half_open", "half-open (connect() returned, the final ACK dropped at a full accept queue) up to the accept"),
    ("accept_queue", "in the accept queue"),
    ("pool_queue", "in a pool's queue"),
    ("client_late", "with the server waiting on a load generator late to send its first request"),
    ("request_wait", "with a first request sent but not yet read (in transit, or queued behind other work)"),
    ("service", "in the service of a first request"),
    (
        "transfer",
        "from a first reply written to its last byte read by the client (on loopback microseconds of "
        "transfer; the rest is a load generator late to read)",
    ),
    ("server_unknown", "after connect() where the server's side was not measured (no log, another machine)"),
    (
        "later_waiting",
        "with a later request sent but not in service: not yet read by the server (in transit, or "
        "queued behind other connections' work) or its reply not yet read by the load generator",
    ),
    (
        "later_service",
        "in the service of later requests (read whole → reply written, the server's clock, cut to the window)",
    ),
    ("later_requests", "where no server log splits them, with a later request in flight (sent → its last reply byte)"),
    (
        "load_generator",
        "with no request and no connect in flight: the load generator's own time, or a user with nothing left to send",
    ),
)

MONITOR: tuple[Column, ...] = (
    Column("timestamp", "Unix s", "wall clock at the sample", "time.time()"),
    Column("elapsed_s", "s", "since the monitor started", "monotonic clock"),
    Column(
        "server_cpu_user_s",
        "s, cumulative",
        "user CPU of the server's process tree, reaped children included",
        "psutil cpu_times() (+ children_user)",
    ),
    Column(
        "server_cpu_system_s",
        "s, cumulative",
        "system CPU of the server's process tree, reaped children included",
        "psutil cpu_times() (+ children_system)",
    ),
    Column(
        "server_cpu_percent",
        "% of one core",
        "Δ(user + system) ÷ Δ wall since the previous sample",
        "the two columns above",
        label="server CPU",
        live="now",
    ),
    Column(
        "server_rss_bytes",
        "bytes",
        "resident memory of the server's process tree",
        "psutil memory_info().rss",
        label="server RSS",
        live="now",
        summary=("peak_rss_bytes", "max"),
    ),
    Column(
        "server_rss_anon_bytes",
        "bytes",
        "anonymous resident memory of the server's process tree: heap, stacks "
        "and private pages, without the file-backed and shared-memory pages RSS also counts (socklab's "
        "connection log is a file every worker maps shared); empty on a kernel without RssAnon",
        "/proc/PID/status RssAnon",
        label="server anonymous RSS",
    ),
    Column(
        "server_threads",
        "count",
        "threads of the server's process tree",
        "psutil num_threads()",
        label="server threads",
        live="now",
        summary=("peak_threads", "max"),
    ),
    Column(
        "server_fds",
        "count",
        "open fds of the server's process tree",
        "stat(/proc/PID/fd).st_size (Linux ≥ 6.2), else psutil num_fds()",
        label="server fds",
        live="now",
        summary=("peak_fds", "max"),
    ),
    Column(
        "server_children",
        "count",
        "child processes of the server",
        "psutil children(recursive=True)",
        label="server children",
        live="now",
    ),
    *(
        Column(
            f"server_{state}",
            "sockets",
            f"server ends of the port: {_STATE_MEANING[state]}",
            "inet_diag, sockets whose local port is the server's",
            label=f"server {state}",
            live="now" if state in _LIVE_SERVER else "",
            summary=("peak_established", "max") if state == "ESTABLISHED" else None,
        )
        for state in REPORTED_STATES
    ),
    *(
        Column(
            f"client_{state}",
            "sockets",
            f"client ends of the port: {_STATE_MEANING[state]}",
            "inet_diag, sockets whose remote port is the server's",
            label=f"client {state}",
            live="now" if state in _LIVE_CLIENT else "",
            summary=("peak_syn_sent", "max") if state == "SYN_SENT" else None,
        )
        for state in REPORTED_STATES
    ),
    Column(
        "accept_queue",
        "connections",
        "completed handshakes waiting for accept() (at most backlog + 1), summed "
        "over the listeners of a design with one per worker",
        "inet_diag idiag_rqueue of the listener(s)",
        label="accept queue",
        live="now",
        live_with="backlog",
        summary=("peak_accept_queue", "max"),
    ),
    Column(
        "deepest_accept_queue",
        "connections",
        "the deepest accept queue of any one listener: with a queue per "
        "worker (SO_REUSEPORT) one may be full while another is empty",
        "inet_diag idiag_rqueue, per listener",
        label="deepest accept queue",
        summary=("peak_deepest_accept_queue", "max"),
    ),
    Column(
        "listeners",
        "sockets",
        "LISTEN sockets on the port: 1, or one per worker with SO_REUSEPORT",
        "inet_diag",
        label="listeners",
    ),
    Column(
        "backlog",
        "connections",
        "the backlog the kernel applies, min(B, somaxconn), summed over the listeners",
        "inet_diag idiag_wqueue of the listener(s)",
        label="backlog",
        summary=("backlog", "max"),
    ),
    *(
        Column(
            f"TcpExt_{name}",
            "events, Δ since the monitor started",
            meaning,
            "/proc/net/netstat of the monitor's network namespace",
            label=name,
            live=live,
            summary=(summary, "last") if summary else None,
        )
        for name, (meaning, summary, live) in _COUNTERS.items()
    ),
    *(
        Column(f"Tcp_{name}", "events, Δ since the monitor started", meaning, "/proc/net/snmp", label=name)
        for name, meaning in _SNMP.items()
    ),
    Column(
        "counters_scope",
        "isolated / shared",
        "isolated: the run has a private network namespace, so the "
        "counter deltas are exactly this run's; shared: they include everything else on the machine",
        "loadtest.hosts.isolate",
        summary=("counters_scope", "last"),
    ),
    Column(
        "loadgen_processes", "count", "the Locust process and its workers, less the server and the monitor", "psutil"
    ),
    Column(
        "loadgen_cpu_percent_max",
        "% of one core",
        "the busiest load-generator process (≥ 90 %: client-bound)",
        "psutil cpu_percent()",
        label="busiest load process CPU",
        live="now",
    ),
    Column("loadgen_cpu_percent_total", "% of one core", "all load-generator processes together", "psutil"),
    Column("sample_cost_ms", "ms", "wall time this sample took", "perf_counter"),
)
MONITOR_NAMES: tuple[str, ...] = tuple(c.name for c in MONITOR)
BY_NAME: dict[str, Column] = {c.name: c for c in MONITOR}
TCPEXT_COUNTERS: tuple[str, ...] = tuple(_COUNTERS)
TCP_COUNTERS: tuple[str, ...] = tuple(_SNMP)
LIVE_DELTAS: tuple[str, ...] = tuple(c.name for c in MONITOR if c.live == "delta")


@dataclass(frozen=True)
class Series:
    column: str
    dash: str = "solid"
    scale: float = 1.0  # bytes → MiB and the like
    offset: float = 0.0  # backlog + 1: where the queue is full

    def label(self) -> str:
        extra = " + 1 (queue full)" if self.offset == 1 else ""
        return BY_NAME[self.column].shown + extra


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


# -- the summary row (loadtest.report.rules.summary) ------------------------------------------------------
SUMMARY: tuple[Column, ...] = (
    Column("run_id", "", "the run folder's name"),
    Column("scenario", "", "the scenario, when socklab compare ran it"),
    Column("design", "", "the server design (or the --server-cmd NAME, or external)"),
    Column("variant", "", "deprecated: the same as design, under its old name; removed in the next release"),
    Column("user_class", "", "the Locust user classes that ran"),
    Column("op", "", "the request op"),
    Column(
        "pipeline",
        "requests",
        "requests in flight per connection (--pipeline; 1 = one at a time): above 1 a "
        "different workload, several frames per system call on both sides",
    ),
    Column("users", "count", "users of the run"),
    Column("duration_s", "s", "the measured window: Locust's test start → test stop"),
    Column("requests", "count", "ops sent, successes + failures"),
    Column("failures", "count", "failures in total"),
    Column("failure_classes", "", "failures by class, e.g. refused=12; reset=3"),
    Column("rps", "requests/s", "successful ops ÷ duration_s (counts, not averages): the achieved rate"),
    Column("offered_rps", "requests/s", "open loop: the arrival rate asked for (empty in closed loop)"),
    Column("late_arrivals", "count", "open loop: arrivals sent ≥ 1 ms after their intended start"),
    Column("late_lag_s", "s", "open loop: their total lag"),
    Column("users_served", "count", "users with ≥ 1 successful request in the window"),
    Column("users_starved", "count", "users with none"),
    Column(
        "fairness",
        "0–1",
        "Jain's index over per-user completed requests: 1.0 = equal shares, 1/users = one user got all",
    ),
    Column(
        "longest_user_wait_ms",
        "ms",
        "the longest stretch any user went without a success in the window (the open stretch at the end included)",
    ),
    Column("unfinished_connects", "count", "connects still in flight when the window closed"),
    Column("unfinished_requests", "count", "requests still in flight when the window closed"),
    *(
        Column(
            f"latency_{p}_ms",
            "ms",
            f"{p} of request sent (open loop: its intended start) → last reply byte, µs "
            "precision, over all ops, finished and unfinished (their ages as lower bounds)",
        )
        for p in ("p50", "p90", "p99", "p99.9")
    ),
    Column("latency_max_ms", "ms", "the largest latency, unfinished ages included"),
    Column("service_p50_ms", "ms", "actual send → last reply byte, finished ops (open loop; = latency in closed loop)"),
    Column("service_p99_ms", "ms", "the same, p99"),
    Column("connect_p50_ms", "ms", "connect() start → return, finished and unfinished"),
    Column("connect_p99_ms", "ms", "the same, p99"),
    Column(
        "first_reply_p50_ms",
        "ms",
        "connect start → first reply byte (connect-per-request: what a user "
        "waited, SYN retries included), finished and unfinished",
    ),
    Column("first_reply_p99_ms", "ms", "the same, p99"),
    Column("first_reply_max_ms", "ms", "the same, the largest"),
    Column(
        "connections_recorded",
        "count",
        "connections the clients recorded that were open at some time in the "
        "window (loadtest.report.rules.timeline joins them to the server's own records)",
    ),
    Column("connections_joined", "count", "of them, joined to the server's record on the 4-tuple"),
    Column(
        "connections_never_accepted",
        "count",
        "of them, open when the window closed with connect() returned "
        "but not accepted by the server by then: in the accept queue, or half-open",
    ),
    Column(
        "connections_half_open",
        "count",
        "of those, half-open: the client believes it is connected but its "
        "final ACK and request were dropped at the full accept queue (it had to send its data again), so the "
        "server holds a request socket (SYN_RECV) or, after a SYN cookie, nothing — not in the accept queue",
    ),
    Column("timeline", "", "measured, or why some stages are not (no server log, another machine's clock …)"),
    Column(
        "accept_queue_wait_p50_ms",
        "ms",
        "connect() return → the server's accept() return, joined connections "
        "and those still not accepted when the run ended (their wait so far: a lower bound)",
    ),
    Column("accept_queue_wait_p99_ms", "ms", "the same, p99"),
    Column("pool_queue_wait_p50_ms", "ms", "accept() return → a worker starts on the connection (a pool's queue)"),
    Column("pool_queue_wait_p99_ms", "ms", "the same, p99"),
    Column("server_service_p50_ms", "ms", "the first request whole at the server → its reply written, server clock"),
    Column("server_service_p99_ms", "ms", "the same, p99"),
    Column(
        "window_user_s",
        "s",
        "the window's account: every user's time in the measured window (users × window), split into the stages below",
    ),
    *(
        Column(
            f"window_share_{stage}",
            "0–1",
            f"of every user's time in the window, the share spent {meaning}; the shares add up to 1 (docs/timeline.md)",
        )
        for stage, meaning in WINDOW_SHARES
    ),
    Column(
        "lower_bound_columns", "", "the figures above that unfinished work could still raise: lower bounds, shown ≥"
    ),
    Column(
        "listen_overflows",
        "packets",
        "Δ TcpExt ListenOverflows over the window (read at its edges): "
        "packets dropped at a full accept queue (SYNs, final ACKs, early data), not SYNs",
    ),
    Column("listen_drops", "packets", "Δ TcpExt ListenDrops over the window = ListenOverflows + TCPReqQFullDrop"),
    Column(
        "tcp_syn_retrans",
        "segments",
        "Δ TcpExt TCPSynRetrans over the whole run, warm-up included: SYNs "
        "the clients re-sent plus SYN-ACKs the server re-sent — one kernel counter for both, split below",
    ),
    Column(
        "client_syn_retrans",
        "segments",
        "SYNs the clients re-sent: each connecting socket's TCP_INFO "
        "tcpi_total_retrans when its connect() ended, over the whole run, as the counter it splits",
    ),
    Column(
        "connections_syn_retried",
        "count",
        "connects that re-sent at least one SYN, of those that ended (or "
        "were still going) in the window — not the warm-up's start-up burst",
    ),
    Column(
        "server_synack_retrans",
        "segments",
        "tcp_syn_retrans less the clients' SYNs in the counter's namespace: "
        "SYN-ACKs the server re-sent (isolated counters only; empty when shared)",
    ),
    Column("syncookies_sent", "count", "Δ TcpExt SyncookiesSent over the window"),
    Column(
        "embryonic_rsts",
        "count",
        "Δ TcpExt EmbryonicRsts over the window: half-open connections ended by a "
        "reset — under "
        "tcp_abort_on_overflow=1, the final ACKs refused at a full accept queue",
    ),
    Column("counters_scope", "", "isolated (exact: the run's own namespace) or shared (the host's counters)"),
    Column("peak_accept_queue", "connections", "the highest accept-queue depth seen in the window"),
    Column(
        "peak_deepest_accept_queue",
        "connections",
        "the deepest any one listener's accept queue was (one per worker with SO_REUSEPORT)",
    ),
    Column("backlog", "connections", "the listener's backlog as the kernel applies it"),
    Column("peak_established", "sockets", "most server-side ESTABLISHED sockets"),
    Column("peak_time_wait", "sockets", "most TIME_WAIT sockets, both sides"),
    Column("peak_syn_sent", "sockets", "most clients in SYN_SENT (no SYN-ACK yet, retrying)"),
    Column(
        "server_cpu_us_per_request",
        "µs",
        "Δ(user + system CPU of the server tree) over the window ÷ successful "
        "ops, to the digits the CPU clock allows: the kernel counts CPU in 10 ms ticks, so the figure is rounded "
        "at its uncertainty of one tick (4 ticks over 195 ops: 210, not 205.13), and empty under 2 ticks",
    ),
    Column("server_user_us_per_request", "µs", "the user part, rounded alike on its own ticks"),
    Column("server_sys_us_per_request", "µs", "the system part, rounded alike on its own ticks"),
    Column(
        "server_capacity_rps_per_core",
        "requests/s",
        "1e6 ÷ server_cpu_us_per_request: what one core of this "
        "server could answer, an estimate that assumes the server CPU-bound and its cost linear in the load — "
        "the figure to rank by when a cell is client-bound; rounded alike",
    ),
    Column("peak_rss_bytes", "bytes", "the server tree's highest RSS"),
    Column(
        "rss_per_connection_bytes",
        "bytes",
        "(peak anonymous RSS − anonymous RSS at the first sample) ÷ "
        "peak_established: the heap, stacks and private pages the server grew by per connection held, its "
        "file-backed and shared pages (socklab's own connection log among them) excluded; from RSS, file pages "
        "and all, in runs recorded before server_rss_anon_bytes",
    ),
    Column("peak_threads", "count", "the server tree's most threads"),
    Column("peak_fds", "count", "the server tree's most open fds"),
    Column("loadgen_peak_cpu_percent", "% of one core", "the busiest Locust process's CPU, peak over the window"),
    Column("loadgen_median_cpu_percent", "% of one core", "the same, median over the window"),
    Column("client_bound", "yes/no", "the median ≥ 90 %: the figures measure the load generator, not the server"),
    Column(
        "machine_cpu_percent",
        "% of one core",
        "server CPU + all load processes' CPU, median over the window (a finding flags ≥ 90 % of every core)",
    ),
    Column("server_died_at_s", "s", "when a server that died during the run was last seen alive, into the window"),
)
SUMMARY_NAMES: list[str] = [c.name for c in SUMMARY]
MONITOR_SUMMARIES: tuple[tuple[str, str, str], ...] = tuple(
    (c.summary[0], c.name, c.summary[1]) for c in MONITOR if c.summary
)  # (summary column, monitor column, "max" | "last")

# -- the per-user and per-load-process files (loadtest.matrix.run) -----------------------------------------
USERS: tuple[Column, ...] = (
    Column("user_id", "", "w<worker index>.<n>, or local.<n>: unique across every load process"),
    Column("requests", "count", "ops completed in the window"),
    Column("failures", "count", "ops failed in the window"),
    Column("longest_wait_ms", "ms", "the longest stretch without a success, the open one at the end included"),
)
LOAD_PROCESSES: tuple[Column, ...] = (
    Column("worker_id", "", "Locust's id of the worker, or local"),
    Column("host", "", "the host it ran on"),
    Column("netns", "", "its network namespace"),
    Column("pid", "", "its process id"),
    Column("requests", "count", "ops it sent in the window, as the summary counts them (successes + failures)"),
    Column("failures", "count", "ops that failed"),
    Column("rps", "requests/s", "successful ops ÷ its wall time in the window"),
    Column("locust_events", "count", "every Locust request event it fired: ops and CONNECTs (Locust's total)"),
    Column("syn_retrans", "segments", "SYNs its connects re-sent (TCP_INFO), over the whole run"),
    Column("syn_retried", "count", "connects that re-sent at least one SYN"),
    Column("boot_id", "", "its machine's boot id: its connection times compare with the server's when they match"),
    Column("clock_offset", "s", "its wall clock less CLOCK_MONOTONIC: what sets its connection times beside a capture"),
    Column("cpu_percent", "% of one core", "its CPU ÷ wall time in the window (≥ 90 %: it measures itself)"),
)

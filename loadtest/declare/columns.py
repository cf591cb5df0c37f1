"""Every measured column, declared once: its name, unit, meaning and source, and the views that show it.

The monitor writes :data:`MONITOR` in this order; the live tab shows the monitor columns that declare
``live``; the charts of the run page and of the live page are drawn from these columns; and
the docs' column tables are generated from all of it (``python -m loadtest.docs``).  The summary row's
columns are declared beside their computations (:mod:`loadtest.report.rules.summary_columns`), which read
the monitor's by name, checked against :data:`MONITOR_NAMES` at import; the charts that draw them are
declared in :mod:`loadtest.declare.charts`.  So a new monitor column is its sampler code
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
        "delta",
    ),
    "ListenDrops": ("ListenOverflows + TCPReqQFullDrop", "delta"),
    "TCPReqQFullDrop": ("SYNs dropped because the half-open queue was full (no SYN cookies)", ""),
    "TCPReqQFullDoCookies": ("SYNs answered with a SYN cookie because the half-open queue was full", ""),
    "SyncookiesSent": (
        "SYN cookies sent: connect() returns for clients the server holds nothing for",
        "delta",
    ),
    "SyncookiesRecv": ("valid SYN cookies received back", ""),
    "SyncookiesFailed": ("invalid SYN cookies received", ""),
    "TCPSynRetrans": (
        "SYNs the clients re-sent plus SYN-ACKs the listeners re-sent: one counter for both",
        "delta",
    ),
    "TCPTimeouts": ("retransmission timeouts", ""),
    "TCPAbortOnData": ("connections reset because data arrived after close", ""),
    "EmbryonicRsts": (
        "half-open connections ended by a reset: a final ACK refused at a full accept queue under "
        "tcp_abort_on_overflow=1, or a RST received in SYN_RECV",
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
        "counters_read_at",
        "s",
        "CLOCK_MONOTONIC as this sample read the kernel counters: what sets them beside the kernel trace",
        "time.monotonic()",
    ),
    Column(
        "states_counted_at",
        "s",
        "elapsed_s of the walk of the port's sockets by state that this row's server_* and client_* state counts "
        "come from: every sample while the walk takes under 50 ms (~40,000 sockets); past that it is spaced to "
        "cost at most 1.5 % of a core (~1.2 µs a socket), and the rows between repeat its counts",
        "monitor",
    ),
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
    ),
    Column(
        "server_fds",
        "count",
        "open fds of the server's process tree",
        "stat(/proc/PID/fd).st_size (Linux ≥ 6.2), else psutil num_fds()",
        label="server fds",
        live="now",
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
    ),
    Column(
        "deepest_accept_queue",
        "connections",
        "the deepest accept queue of any one listener: with a queue per "
        "worker (SO_REUSEPORT) one may be full while another is empty",
        "inet_diag idiag_rqueue, per listener",
        label="deepest accept queue",
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
    ),
    *(
        Column(
            f"TcpExt_{name}",
            "events, Δ since the monitor started",
            meaning,
            "/proc/net/netstat of the monitor's network namespace",
            label=name,
            live=live,
        )
        for name, (meaning, live) in _COUNTERS.items()
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
MONITOR_BY_NAME: dict[str, Column] = {c.name: c for c in MONITOR}  # (settings.BY_NAME is the options')
TCPEXT_COUNTERS: tuple[str, ...] = tuple(_COUNTERS)
TCP_COUNTERS: tuple[str, ...] = tuple(_SNMP)
LIVE_DELTAS: tuple[str, ...] = tuple(c.name for c in MONITOR if c.live == "delta")


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
    Column("window_s", "s", "its own window's wall time: the run's, each worker closing on its own timer"),
)

"""Every socklab option, declared once: one :class:`Option` each in :data:`OPTIONS` (gunicorn's ``config.py``
idea: one ``Setting`` per option).  What is made of them — the Locust arguments, validation, run.json,
compare's overrides, the started server's flags, the web UI's restart list, the docs' table — is
``loadtest.declare.options``'s.  The options' choices come from their own declarations: op names from
``servers.protocol`` (through ``loadtest.declare.kinds``), design names from ``servers.DESIGNS``.

No locust, no gevent: ``socklab compare`` reads this in a plain process.
"""

from __future__ import annotations

from pathlib import Path

from loadtest.declare.kinds import SOCKLAB_OPS
from loadtest.declare.option import Option as Option
from loadtest.declare.option import server_option
from loadtest.declare.protocols import PROTOCOL_OPTIONS
from servers import DESIGNS

# The entry point socklab runs Locust with (a cell, a test bed's hosts): loadtest/locustfile.py.
LOCUSTFILE = Path(__file__).resolve().parents[1] / "locustfile.py"

# The user modes, declared here only: loadtest.glue.users gives each User class its mode by these names.
PERSISTENT, CONNECT_PER_REQUEST, IDLE, ONE_SHOT = "persistent", "connect-per-request", "idle", "one-shot"
USER_MODES: tuple[str, ...] = (PERSISTENT, CONNECT_PER_REQUEST, IDLE, ONE_SHOT)
ARRIVALS: tuple[str, ...] = ("constant", "poisson")
DEFAULT_DESIGN = "selectors"
SERVER_CHOICES: tuple[str, ...] = ("auto", *DESIGNS, "none")


def _op(text: str) -> str:
    return text.upper()


_op.__name__ = "op"

OPTIONS: tuple[Option, ...] = (
    Option(
        "user-mode",
        str,
        PERSISTENT,
        "which user class runs when none is named on the command line",
        choices=USER_MODES,
    ),
    Option("op", _op, "ECHO", "request op", choices=SOCKLAB_OPS, overridable=True),
    Option("payload-bytes", int, 64, "request payload size", overridable=True, minimum=0, cap=("max-frame", -9)),
    Option(
        "reply-bytes",
        int,
        0,
        "reply body size, 0 = echo the payload",
        overridable=True,
        minimum=0,
        cap=("max-frame", 0),
    ),
    Option("sleep-ms", int, 20, "SLEEP argument in ms", overridable=True, minimum=0, cap=("max-sleep-ms", 0)),
    Option("work-us", int, 1000, "WORK argument in µs", overridable=True, minimum=0, cap=("max-work-us", 0)),
    Option(
        "connect-timeout", float, 5.0, "connect() timeout in s", overridable=True, minimum=0, exclusive_minimum=True
    ),
    Option(
        "reply-timeout",
        float,
        10.0,
        "seconds a client waits for a complete reply (the server's own bound is --server-read-timeout)",
        overridable=True,
        minimum=0,
        exclusive_minimum=True,
    ),
    Option(
        "idle-interval",
        float,
        5.0,
        "IdleUser: seconds between its small requests",
        overridable=True,
        minimum=0,
        exclusive_minimum=True,
    ),
    Option(
        "pipeline",
        int,
        1,
        "PersistentUser: requests in flight on its connection (the protocol answers in "
        "order); each request's latency is still its own send → last reply byte, so it includes the wait behind "
        "those ahead of it — a different workload from 1 (redis-benchmark -P, wrk's pipelining)",
        overridable=True,
        minimum=1,
    ),
    Option(
        "request-events",
        bool,
        False,
        "fire Locust's request event for every request, for plugins that listen to "
        "it; without it, requests reach Locust's statistics in bulk every 100 ms — the same table, CSVs, charts "
        "and percentiles, at a fraction of the cost per request",
    ),
    Option(
        "arrival-rate",
        float,
        0.0,
        "open loop: requests per second for the whole run, across users and "
        "processes, on a schedule fixed in advance; latency counts from each intended start; 0 = closed loop",
        overridable=True,
        minimum=0,
    ),
    Option(
        "arrivals",
        str,
        "constant",
        "open loop: the spacing of each user's arrivals",
        choices=ARRIVALS,
        overridable=True,
    ),
    Option(
        "mix",
        str,
        "",
        "a weighted mix instead of --op: 'ECHO:90,WORK=20000:10', each entry "
        "OP[=ARG][/PAYLOAD[/REPLY]]:WEIGHT (so also a size distribution: 'ECHO/64:90,ECHO/65536:10'); each op is "
        "reported apart",
        overridable=True,
    ),
    *PROTOCOL_OPTIONS,
    Option(
        "linger0",
        bool,
        False,
        "close each connection with SO_LINGER 0: a RST instead of a FIN, so the client "
        "holds no TIME_WAIT (and the server's read sees a reset)",
        overridable=True,
    ),
    Option(
        "sysctl",
        str,
        "",
        "per-namespace sysctls to set in the run's own network namespace before the server "
        "starts, 'net.ipv4.tcp_abort_on_overflow=1,net.core.somaxconn=64'; only where the run is isolated "
        "(socklab never changes the host's settings)",
        overridable=True,
        web_ui=False,
    ),
    Option(
        "max-connecting",
        int,
        1000,
        "open loop, ConnectPerRequestUser: simultaneous connections one load process "
        "may have open; an arrival beyond it waits (and counts as late)",
        overridable=True,
        minimum=1,
    ),
    Option(
        "server",
        str,
        "auto",
        f"server design to start for this run; auto = {DEFAULT_DESIGN} unless --host is given; none = use --host "
        "only (on this host, the monitor still watches its port)",
        choices=SERVER_CHOICES,
        restarts_server=True,
    ),
    Option(
        "server-pid",
        int,
        0,
        "with --server none: the pid of the server at --host, so the monitor records its CPU, memory, threads and "
        "fds beside its port's sockets and queue (0 = the port's figures only)",
        minimum=0,
    ),
    Option(
        "server-bind",
        str,
        "127.0.0.1",
        "address the started server listens on: an address of this host that "
        "the load reaches (e.g. 198.51.100.1 for workers on other hosts); a wildcard needs --server-advertise",
    ),
    Option(
        "server-advertise",
        str,
        "",
        "the address workers are told to connect to, when it is not --server-bind (needed with a wildcard bind)",
    ),
    server_option("backlog", "listen() backlog of the started server"),
    server_option(
        "workers",
        "processes or threads of a design with workers socklab starts "
        "(preforked, preforked-reuseport, prethreaded, threadpool)",
        name="server-workers",
    ),
    server_option(
        "max_connections", "connections the started server serves at once; more are accepted and closed at once"
    ),
    server_option("max_frame", "the started server's largest request frame and reply_len, bytes"),
    server_option("max_sleep_ms", "the started server's largest SLEEP argument"),
    server_option("max_work_us", "the started server's largest WORK argument"),
    server_option(
        "read_timeout",
        "the started server closes a connection idle this "
        "long, or whose request or reply takes this long to cross; 0 = never",
        name="server-read-timeout",
    ),
    server_option(
        "max_requests",
        "the started server closes a connection after this many requests, its FIN first "
        "(HTTP's keep-alive maximum): the server holds TIME_WAIT; 0 = never",
    ),
    server_option(
        "epoll_exclusive",
        "the started event-loop server watches its shared listener with "
        "EPOLLEXCLUSIVE (Linux 4.5; preforked-selectors): one worker woken per connection, not all",
    ),
    server_option(
        "retire_after",
        "pre-forked designs socklab starts: worker 1 exits this many seconds "
        "after it starts, once, closing its listener (a rolling restart); 0 = never",
    ),
    Option("arm", str, "", "an experiment's arm (socklab lab), recorded in run.json", web_ui=False),
    server_option(
        "conn_log_cap",
        "connections the started server records in full (accepted, service "
        "start, first request and reply, FIN, close) before a 1-in-100 sample, for the per-connection timeline; "
        "0 = no server log. It adds 1–5 µs of server CPU a connection (×1.14 at most, on the cheapest designs' "
        "connect-per-request: docs/performance.md); 0 for CPU figures without it",
        overridable=False,
    ),
    Option(
        "server-cmd",
        str,
        "",
        "start this command as the server instead of a design: '[NAME=]COMMAND … {port} …' "
        "— socklab picks a free port, waits until it accepts, monitors and stops it like a design",
        restarts_server=True,
    ),
    Option(
        "connections-total",
        int,
        0,
        "ConnectPerRequestUser: end the run once this many connections have "
        "completed (each load process its share); 0 = no count, run for -t",
        minimum=0,
    ),
    Option(
        "monitor-interval",
        float,
        0.5,
        "seconds between monitor samples of the started server; 0 = no monitor",
        minimum=0,
    ),
    Option(
        "kernel-trace",
        str,
        "auto",
        "auto: trace the server's port in the kernel (eBPF on tracepoints: each connection's handshake, accept-queue "
        "wait and teardown, from the kernel) when this host can; off: the clients' and server's own stamps only",
        choices=("auto", "off"),
    ),
    Option(
        "live-interval",
        float,
        5.0,
        "--headless: seconds between socklab's live lines (states, accept queue, overflows, users served); 0 = none",
        web_ui=False,
        minimum=0,
    ),
    Option(
        "warmup", float, 0.0, "seconds after the start whose requests are not counted (stats reset then)", minimum=0
    ),
    Option("scenario", str, "", "a label recorded in run.json", web_ui=False),
    Option("report-dir", str, "", "folder for socklab's output (default reports/<run-id>)"),
    Option(
        "report",
        str,
        "page",
        "page: end with the run's summary.csv and report.html; data: the data files only "
        "(socklab compare, sweep and lab cells: the matrix builds each page in its own process, warm)",
        choices=("page", "data"),
        web_ui=False,
    ),
)
# Old spellings that still work, with a one-line notice: old name → new name.
DEPRECATED: dict[str, str] = {"read-timeout": "reply-timeout"}

BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}

# The sysctls a network namespace has of its own (set inside a cell's namespace, never on the host).
NAMESPACE_SYSCTLS: tuple[str, ...] = (
    "net.ipv4.tcp_abort_on_overflow",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_tw_reuse",
    "net.ipv4.tcp_migrate_req",
    "net.core.somaxconn",
    "net.ipv4.tcp_max_syn_backlog",
    "net.ipv4.tcp_synack_retries",
    "net.ipv4.tcp_syn_retries",
    "net.ipv4.tcp_fin_timeout",
)


def parse_sysctls(text: str) -> dict[str, str]:
    """'name=value,…' → {name: value}; ValueError names the first problem, in one line."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name, value = name.strip(), " ".join(value.split())
        if not sep or not value:
            raise ValueError(f"--sysctl {part!r}: write NAME=VALUE, e.g. net.ipv4.tcp_abort_on_overflow=1")
        if name not in NAMESPACE_SYSCTLS:
            raise ValueError(
                f"--sysctl {name}: not one a network namespace has of its own; one of {', '.join(NAMESPACE_SYSCTLS)}"
            )
        out[name] = value
    return out

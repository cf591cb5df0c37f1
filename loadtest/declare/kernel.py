"""The kernel's account of each connection (``loadtest.measure.tracer``), declared once.

``kernel_connections.csv`` holds these columns, one row per connection the tracer saw; the joined
``connections.csv`` carries them beside the clients' and the server's own stamps.  Times are
CLOCK_MONOTONIC seconds, as the kernel stamped them (NaN: the kernel did not see it happen while
the tracer ran).  No locust, no pandas.
"""

from __future__ import annotations

from loadtest.declare.columns import Column

KERNEL_FILE = "kernel_connections.csv"
KERNEL_RAW = "kernel_trace.bin"  # the tracer's records as it wrote them (removed once paired)

KERNEL_COLUMNS: tuple[Column, ...] = (
    Column("kernel_ip", "", "the client's address (IPv4; '' for IPv6: joined on the port alone)", "the socket"),
    Column("kernel_port", "", "the client's port", "the socket"),
    Column("kernel_syn_sent", "s", "the client's socket entered SYN_SENT: connect() sent its first SYN", "state"),
    Column(
        "kernel_client_established",
        "s",
        "the client's socket became ESTABLISHED: the SYN-ACK arrived, connect() returns, the final ACK leaves",
        "state",
    ),
    Column(
        "kernel_connect_failed",
        "s",
        "the client's socket went from SYN_SENT to CLOSE: connect() failed, or was abandoned (a run's stop closes "
        "the connects still going)",
        "state",
    ),
    Column(
        "kernel_server_established",
        "s",
        "the server's child socket became ESTABLISHED: the final ACK (or data carrying it) got in, and the "
        "connection joined the accept queue. Later than the client's by a half-open time when the ACK was dropped",
        "state",
    ),
    Column("kernel_accepted", "s", "accept() returned this connection to the server", "sys_exit_accept(4)"),
    Column(
        "kernel_accepted_by",
        "pid",
        "the process (thread group) whose accept() returned it: which worker of a pre-forked server took it",
        "sys_exit_accept(4)",
    ),
    Column(
        "kernel_synack_retrans",
        "segments",
        "SYN-ACKs the server re-sent for this connection (its final ACK had not got in)",
        "tcp_retransmit_synack",
    ),
    Column(
        "kernel_synack_at",
        "s",
        "when each of those SYN-ACKs left (the first 63), space-separated",
        "tcp_retransmit_synack",
    ),
    Column(
        "kernel_synack_retrans_after",
        "segments",
        "connections.csv: of those, the ones re-sent after the monitor's last read of the kernel counters (the "
        "run stopping); kernel_synack_retrans there counts the rest: the counters' span",
        "tcp_retransmit_synack",
    ),
    Column("kernel_first_fin", "", "the side whose FIN went first (it holds TIME_WAIT); '' if none did", "state"),
    Column("kernel_fin_sent", "s", "the first FIN left (the closer's ESTABLISHED → FIN_WAIT1)", "state"),
    Column("kernel_fin_arrived", "s", "that FIN arrived at the other side (ESTABLISHED → CLOSE_WAIT)", "state"),
    Column("kernel_fin_acked", "s", "the closer's FIN was acknowledged (FIN_WAIT1 → FIN_WAIT2)", "state"),
    Column("kernel_second_fin", "s", "the other side's FIN left (CLOSE_WAIT → LAST_ACK)", "state"),
    Column(
        "kernel_time_wait",
        "s",
        "the closer got that FIN and acknowledged it: into TIME_WAIT (NaN when the closer's socket was closed in "
        "FIN_WAIT2 before the FIN came: a timewait mini-socket, which no tracepoint sees, took it over)",
        "state",
    ),
    Column("kernel_closed", "s", "the last ACK arrived at the other side: the connection is gone", "state"),
    Column("kernel_client_closed", "s", "the client's socket reached CLOSE (by FIN, reset or failure)", "state"),
    Column("kernel_server_closed", "s", "the server's child socket reached CLOSE", "state"),
    Column(
        "kernel_complete",
        "",
        "True when the tracer lost no event (a socket still open when it stopped is whole so far), or, when it "
        "lost some, when both sides' sockets reached CLOSE in the trace",
        "",
    ),
)
KERNEL_NAMES = tuple(c.name for c in KERNEL_COLUMNS)
JOINED_ONLY = ("kernel_synack_retrans_after",)  # computed as connections.csv is joined (it needs the monitor)
KERNEL_FILE_NAMES = tuple(name for name in KERNEL_NAMES if name not in JOINED_ONLY)

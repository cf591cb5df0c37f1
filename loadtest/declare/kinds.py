"""The kinds of timed operation socklab records, named once: the protocol's ops, and the harness's own.

An op is a request of the wire protocol (``servers.protocol.Op``: ECHO, SLEEP, WORK); a success of
one serves its user.  ``CONNECT`` is the connect() of a connection (a Locust request event of its
own); ``FIRST_REPLY`` is connect start → first reply byte of a connect-per-request connection, kept
in socklab's histograms only (no Locust event, so no Locust counterpart to check against).
"""

from __future__ import annotations

from servers.protocol import Op

OPS: tuple[str, ...] = tuple(op.name for op in Op)
OP_NAMES: frozenset[str] = frozenset(OPS)
CONNECT = "CONNECT"
FIRST_REPLY = "FIRST_REPLY"
NOT_LOCUST_EVENTS: frozenset[str] = frozenset({FIRST_REPLY})

# The TCP states the monitor counts and reports, by the kernel's names (as ss prints them).
REPORTED_STATES = (
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE_WAIT",
    "LAST_ACK",
    "CLOSING",
)

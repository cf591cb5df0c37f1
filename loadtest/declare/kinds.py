"""The kinds of timed operation socklab records, named once: the requests, and the harness's own.

A request is an op of socklab's wire protocol (``servers.protocol.Op``: ECHO, SLEEP, WORK) or the one
request of another protocol (loadtest.client.protocols: RAW bytes, an HTTP GET, a RESP command, the
one-shot user's MESSAGE); a success of one serves its user.  ``CONNECT`` is the connect() of a
connection (a Locust request event of its own); ``FIRST_REPLY`` is connect start → first reply byte of a
connect-per-request connection, kept in socklab's histograms only (no Locust event, so no Locust
counterpart to check against).
"""

from __future__ import annotations

from servers.protocol import Op

SOCKLAB_OPS: tuple[str, ...] = tuple(op.name for op in Op)
RAW, GET, RESP, MESSAGE = "RAW", "GET", "RESP", "MESSAGE"
OPS: tuple[str, ...] = (*SOCKLAB_OPS, RAW, GET, RESP, MESSAGE)  # every kind of request
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

"""Each connection as its client saw it: kept by every load process, written by the run.

The client (``ConnectionRecord``, kept by ``loadtest.client.socket_client``) times each connection on
``perf_counter()`` —
CLOCK_MONOTONIC, the clock the server's own log uses (``servers.connlog``) — and hands it here when
it ends.  A load process keeps every one up to a cap, then one in ``STRIDE`` (as the server's log
does), counts the rest as unrecorded, and ships what it has with each Locust report; the run
writes them to ``connections_client.csv`` at the end.  ``loadtest.report.rules.timeline`` joins the two sides on
the 4-tuple.  No locust import.
"""

from __future__ import annotations

import contextlib
import csv
import socket
import struct
from pathlib import Path
from typing import Any

from servers.connlog import DEFAULT_CAP, STRIDE

# One row per connection; times are CLOCK_MONOTONIC seconds (0 = did not happen).
CLIENT_COLUMNS = [
    "worker",
    "user_id",
    "local_ip",
    "local_port",
    "connect_start",
    "connect_end",
    "connected",
    "outcome",
    "syn_retrans",
    "rtt_us",
    "sent",
    "first_byte",
    "last_byte",
    "closed",
    "requests",
    "data_retrans",
    "unacked_at_close",
    "acked_at",
]
TIME_COLUMNS = {"connect_start", "connect_end", "sent", "first_byte", "last_byte", "closed", "acked_at"}


class ConnectionBook:
    """This load process's connection records since its last report: the records themselves, turned into
    plain rows only at the report (a row and its rounding at each connection's end cost more than the rest
    of its bookkeeping)."""

    def __init__(self, cap: int = DEFAULT_CAP) -> None:
        self.cap, self.tail = cap, max(cap // 10, 1)
        self.seen = 0
        self.records: list[tuple[str, Any]] = []
        self.unrecorded = 0

    def add(self, user_id: str, record: Any) -> None:
        seen = self.seen
        self.seen = seen + 1
        if seen < self.cap or ((seen - self.cap) % STRIDE == 0 and (seen - self.cap) // STRIDE < self.tail):
            self.records.append((user_id, record))
        else:
            self.unrecorded += 1

    def drain(self) -> dict[str, Any]:
        """What is new, as plain data for a Locust report; a fresh start."""
        out = {"rows": [[user_id, *record.row()] for user_id, record in self.records], "unrecorded": self.unrecorded}
        self.records, self.unrecorded = [], 0
        return out


class ConnectionFile:
    """``connections_client.csv`` in the run folder: the load processes' rows as they report, written once
    the run ends (outside the measured window), or ``HELD_ROWS`` at a time when a long run gathers more."""

    HELD_ROWS = 100_000  # about 35 MB

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[list[Any]] = []
        self.recorded = self.unrecorded = 0
        self._started = False

    def add(self, worker: str, batch: dict[str, Any] | None) -> None:
        if not batch:
            return
        self.unrecorded += int(batch.get("unrecorded", 0))
        rows = batch.get("rows") or ()
        self.rows.extend([worker, *row] for row in rows)
        self.recorded += len(rows)
        if len(self.rows) >= self.HELD_ROWS:
            self.write()

    def write(self) -> None:
        """Append the rows held (the header first); at the end, the file exists even with none."""
        times = [i for i, c in enumerate(CLIENT_COLUMNS) if c in TIME_COLUMNS]
        with self.path.open("a" if self._started else "w", newline="") as f:
            writer = csv.writer(f)
            if not self._started:
                writer.writerow(CLIENT_COLUMNS)
                self._started = True
            for row in self.rows:
                for i in times:
                    row[i] = f"{row[i]:.6f}"  # s on CLOCK_MONOTONIC to the µs, as the server's log
                writer.writerow(row)
        self.rows = []

    def describe(self) -> dict[str, Any]:
        return {"file": self.path.name, "recorded": self.recorded, "unrecorded": self.unrecorded}


# struct tcp_info (include/uapi/linux/tcp.h): 8 one-byte fields, then u32s; tcpi_rtt (µs, the smoothed
# round trip: at connect() the SYN-ACK's) is the 16th of them, tcpi_total_retrans the 24th.
TCP_INFO_UNACKED_OFFSET = 24  # tcpi_unacked: segments sent and not yet acknowledged
TCP_INFO_LAST_ACK_RECV_OFFSET = 56  # tcpi_last_ack_recv: ms since the last ACK came in
TCP_INFO_RTT_OFFSET = 68
TCP_INFO_TOTAL_RETRANS_OFFSET = 100
TCP_INFO_U32 = struct.Struct("=I")

# The kernel's first retransmission timers (include/net/tcp.h), below which a TCP_INFO read (1.4 µs, a
# twentieth of a loopback connection's client side) can only say 0: a SYN is first re-sent after
# TCP_TIMEOUT_INIT (1 s); a data segment no sooner than a tail-loss probe, 2·srtt + TCP_TIMEOUT_MIN
# (2 jiffies: no less than 2 ms at any HZ up to 1000).
SYN_RETRY_FLOOR_S = 0.9
RETRANSMIT_FLOOR_S = 0.002


def connect_info(sock: socket.socket) -> tuple[int, int]:
    """(SYN retransmissions, round trip µs) of a socket whose connect() has just ended.

    The kernel's TCP_INFO ``tcpi_total_retrans`` counts every segment the socket retransmitted; before
    the handshake completes (or when it never did) the only segment it has sent is the SYN.  The
    namespace-wide TCPSynRetrans adds the server's re-sent SYN-ACKs to these, so it cannot tell them.
    """
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_TOTAL_RETRANS_OFFSET + 4)
    except OSError:
        return 0, 0
    if len(info) < TCP_INFO_TOTAL_RETRANS_OFFSET + 4:
        return 0, 0
    return (
        int(TCP_INFO_U32.unpack_from(info, TCP_INFO_TOTAL_RETRANS_OFFSET)[0]),
        int(TCP_INFO_U32.unpack_from(info, TCP_INFO_RTT_OFFSET)[0]),
    )


class ConnectionRecord:
    """One connection as its client saw it, on ``perf_counter()`` (CLOCK_MONOTONIC, the server's clock too):
    connect start and end, its SYN retransmissions and round trip, its local address, its first
    request's send, first and last reply byte, how many requests it carried, its close, its outcome."""

    __slots__ = (
        "acked_at",
        "closed",
        "connect_end",
        "connect_start",
        "connected",
        "data_retrans",
        "first_byte",
        "last_byte",
        "local_ip",
        "local_port",
        "outcome",
        "requests",
        "rtt_us",
        "sent",
        "syn_retrans",
        "unacked_at_close",
    )

    def __init__(self, started: float) -> None:
        self.connect_start = started
        self.connect_end = self.sent = self.first_byte = self.last_byte = self.closed = 0.0
        self.syn_retrans = self.rtt_us = self.local_port = self.requests = self.data_retrans = 0
        self.local_ip = ""
        self.outcome = ""
        self.connected = 0  # 1 once connect() returned: the handshake's second step came back
        # Asked of the client's kernel when the window closed on a connection still waiting for its first reply:
        # its data not acknowledged (> 0) is a half-open connection — the server holds no connection to ACK it
        # with — and when its data was acknowledged (the child entered the accept queue).  -1 / 0: not asked.
        self.unacked_at_close = -1
        self.acked_at = 0.0

    def connect_ended(self, sock: socket.socket, now: float, failed: bool = False) -> None:
        self.connect_end = now
        if failed or now - self.connect_start >= SYN_RETRY_FLOOR_S:
            self.syn_retrans, self.rtt_us = connect_info(sock)
        else:  # no SYN can have been re-sent yet: the handshake took one round trip, which is its own time
            self.rtt_us = int((now - self.connect_start) * 1e6)
        with contextlib.suppress(OSError):  # the kernel gave it a local port even when connect() failed
            self.local_ip, self.local_port = sock.getsockname()[:2]

    def at_close(self, sock: socket.socket, now: float) -> None:
        """The window closes while this connection waits for its first reply: is its data acknowledged (the
        server's kernel made a connection of it: in the accept queue or beyond) or not (half-open)?"""
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_TOTAL_RETRANS_OFFSET + 4)
        except OSError:
            return
        if len(info) < TCP_INFO_TOTAL_RETRANS_OFFSET + 4:
            return
        self.unacked_at_close = int(TCP_INFO_U32.unpack_from(info, TCP_INFO_UNACKED_OFFSET)[0])
        if not self.unacked_at_close and self.sent:
            self.acked_at = now - TCP_INFO_U32.unpack_from(info, TCP_INFO_LAST_ACK_RECV_OFFSET)[0] / 1000
        retrans = int(TCP_INFO_U32.unpack_from(info, TCP_INFO_TOTAL_RETRANS_OFFSET)[0])
        self.data_retrans = max(retrans - self.syn_retrans, self.data_retrans, 0)

    def row(self) -> list[Any]:
        return [
            self.local_ip,
            self.local_port,
            self.connect_start,
            self.connect_end,
            self.connected,
            self.outcome,
            self.syn_retrans,
            self.rtt_us,
            self.sent,
            self.first_byte,
            self.last_byte,
            self.closed,
            self.requests,
            self.data_retrans,
            self.unacked_at_close,
            self.acked_at,
        ]

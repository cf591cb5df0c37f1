"""The server's connection log (``server_connections.bin``, written by ``servers.connlog``) read back: one
record per connection the server accepted, its times on CLOCK_MONOTONIC and how it ended — what the timeline
(``loadtest.report.rules.timeline``) joins to the clients' records."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from servers.connlog import ENDED_BADLY, HEADER, HEADER_SIZE, IPV6, MAGIC, RECORD, REJECTED, SERVER_CLOSED, TIMES


@dataclass
class ServerLog:
    records: pd.DataFrame
    cap: int
    recorded: int
    unrecorded: int
    boot_id: str
    complete: bool  # False: the file was cut short, or records were still open (the server was killed)


RECORD_DTYPE = np.dtype(
    [
        *((t, "<f8") for t in TIMES),
        ("in_window_service", "<f8"),
        ("peer_port", "<u2"),
        ("local_port", "<u2"),
        ("requests", "<u4"),
        ("worker_flags", "<u4"),
        ("peer", "V16"),
        ("pad", "V4"),
    ]
)
assert RECORD_DTYPE.itemsize == RECORD.size


def read_server_log(path: Path) -> tuple[ServerLog | None, str]:
    """The server's connection records, or None and why not, in words (never a crash)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None, "no server log (a server socklab did not start, or --conn-log-cap 0)"
    if len(data) < HEADER_SIZE or data[:8] != MAGIC:
        return None, "the server log is not a socklab connection log of this version"
    _magic, _version, cap, tail, _stride, _taken, recorded, unrecorded, boot = HEADER.unpack_from(data)
    need = HEADER_SIZE + (cap + tail) * RECORD.size
    if len(data) < need:
        return None, f"the server log is cut short ({len(data):,} of {need:,} bytes)"
    records = np.frombuffer(data, dtype=RECORD_DTYPE, count=cap + tail, offset=HEADER_SIZE)
    records = records[records["closed"] > 0]
    frame = pd.DataFrame({t: records[t] for t in (*TIMES, "in_window_service")})
    for name in ("peer_port", "local_port", "requests"):
        frame[name] = records[name].astype(np.int64)
    frame["worker"] = (records["worker_flags"] >> 8).astype(np.int64)
    frame["flags"] = (records["worker_flags"] & 0xFF).astype(np.int64)
    frame["peer_ip"] = [
        socket.inet_ntop(socket.AF_INET6, bytes(p)) if f & IPV6 else socket.inet_ntop(socket.AF_INET, bytes(p)[:4])
        for p, f in zip(records["peer"], frame["flags"], strict=True)
    ]
    # The header's counts are written as the records are (several processes) or at the stop (one): fewer
    # records than it says, or a header with none said though records are there, is a server that was killed.
    complete = int(recorded) == len(frame)
    return ServerLog(frame, cap, max(int(recorded), len(frame)), int(unrecorded), boot.hex(), complete), ""


def teardown_of(row: Any) -> str:
    flags = int(row.flags)
    if flags & REJECTED:
        return "rejected (over --max-connections)"
    if flags & ENDED_BADLY:
        return "ended badly (reset, timeout or bad frame)"
    if flags & SERVER_CLOSED:
        return "server closed first: the server holds TIME_WAIT"
    return "client closed first: the client holds TIME_WAIT"

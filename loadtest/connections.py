"""Each connection as its client saw it: kept by every load process, written by the run.

The client (``loadtest.client.ConnectionRecord``) times each connection on ``perf_counter()`` —
CLOCK_MONOTONIC, the clock the server's own log uses (``servers.connlog``) — and hands it here when
it ends.  A load process keeps every one up to a cap, then one in ``STRIDE`` (as the server's log
does), counts the rest as unrecorded, and ships what it has with each Locust report; the run
appends them to ``connections_client.csv``.  ``loadtest.report.timeline`` joins the two sides on
the 4-tuple.  No locust import.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from servers.connlog import DEFAULT_CAP, STRIDE

# One row per connection; times are CLOCK_MONOTONIC seconds (0 = did not happen).
CLIENT_COLUMNS = ["worker", "user_id", "local_ip", "local_port", "connect_start", "connect_end", "connected",
                  "outcome", "syn_retrans", "rtt_us", "sent", "first_byte", "last_byte", "closed",
                  "requests", "data_retrans"]  # fmt: skip


class ConnectionBook:
    """This load process's connection records since its last report."""

    def __init__(self, cap: int = DEFAULT_CAP) -> None:
        self.cap, self.tail = cap, max(cap // 10, 1)
        self.seen = 0
        self.rows: list[list[Any]] = []
        self.unrecorded = 0

    def add(self, user_id: str, record: Any) -> None:
        seen = self.seen
        self.seen = seen + 1
        if seen < self.cap or ((seen - self.cap) % STRIDE == 0 and (seen - self.cap) // STRIDE < self.tail):
            self.rows.append([user_id, *record.row()])
        else:
            self.unrecorded += 1

    def drain(self) -> dict[str, Any]:
        """What is new, as plain data for a Locust report; a fresh start."""
        out = {"rows": self.rows, "unrecorded": self.unrecorded}
        self.rows, self.unrecorded = [], 0
        return out


class ConnectionFile:
    """``connections_client.csv`` in the run folder, appended to as load processes report."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        self.unrecorded = 0
        with path.open("w", newline="") as f:
            csv.writer(f).writerow(CLIENT_COLUMNS)

    def add(self, worker: str, batch: dict[str, Any] | None) -> None:
        if not batch:
            return
        self.unrecorded += int(batch.get("unrecorded", 0))
        rows = batch.get("rows") or []
        if rows:
            with self.path.open("a", newline="") as f:
                csv.writer(f).writerows([worker, *row] for row in rows)
            self.rows += len(rows)

    def describe(self) -> dict[str, Any]:
        return {"file": self.path.name, "recorded": self.rows, "unrecorded": self.unrecorded}

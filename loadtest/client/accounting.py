"""Per-user accounting and unfinished work: what a closed-loop harness otherwise hides.

A user stuck in the accept queue or on the SYN retry schedule sends nothing more,
so it leaves no latency sample: percentiles over what finished say nothing about
it.  So every user keeps a :class:`Ledger` — completed requests, failures, its
longest stretch without a success — and every client keeps what it has in flight
(``SocklabClient.pending``).  When the measured window closes, each load process
takes a snapshot: per user its counts and longest wait (the open stretch up to the
window's end included), and every connect, request and first reply still in
flight with its age then — a lower bound of its latency.

Open-loop arrivals add two figures per process: arrivals that started late (sent
``LATE_AFTER_S`` or more after their intended start) and their total lag.

No locust import: plain data goes to the master with each Locust report.
"""

from __future__ import annotations

import itertools
import math
import os
import socket
import time
from typing import Any

from loadtest.declare.kinds import FIRST_REPLY, NOT_LOCUST_EVENTS, OP_NAMES

LATE_AFTER_S = 0.001  # an arrival sent this long after its intended start counts as late


class Ledger:
    """One user's account for the measured window (hot path: a few attribute updates per request)."""

    __slots__ = ("clients", "failed", "longest_gap", "mark", "ok", "started", "stopped", "user_id")

    def __init__(self, user_id: str, now: float) -> None:
        self.user_id = user_id
        self.started = now
        self.stopped: float | None = None
        self.clients: set[Any] = set()  # SocklabClient objects whose `pending` may be in flight
        self.reset(now)

    def reset(self, window_start: float) -> None:
        self.ok = 0
        self.failed = 0
        self.mark = max(window_start, self.started)  # the start of the current stretch without a success
        self.longest_gap = 0.0

    def success(self, now: float) -> None:
        gap = now - self.mark
        if gap > self.longest_gap:
            self.longest_gap = gap
        self.mark = now
        self.ok += 1

    def snapshot(self, now: float) -> list[Any]:
        """[user_id, ok, failed, longest wait in s (the open stretch up to `now` included)]."""
        end = self.stopped if self.stopped is not None and self.stopped < now else now
        return [self.user_id, self.ok, self.failed, round(max(self.longest_gap, end - self.mark, 0.0), 6)]


class Accounts:
    """Every user of this load process, the window's edges, and open-loop lateness."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.ledgers: list[Ledger] = []
        self.window_start = time.perf_counter()
        self.final: dict[str, Any] | None = None  # the snapshot taken when the window closed
        self.late = 0
        self.lag = 0.0
        self.open_in_flight_s = 0.0  # the requests in flight when the window opened: their ages then, summed

    def register(self, process: str) -> Ledger:
        """A new user's ledger; ``process`` names this load process among the run's (see process_tag),
        so user ids stay unique across --processes workers, forked after this module was imported."""
        ledger = Ledger(f"{process}.{next(self._ids)}", time.perf_counter())
        self.ledgers.append(ledger)
        return ledger

    def arrival(self, lag: float) -> None:
        if lag >= LATE_AFTER_S:
            self.late += 1
            self.lag += lag

    def open_window(self) -> None:
        """Counting starts now: users that are gone are dropped, the rest start from zero."""
        now = self.window_start = time.perf_counter()
        # A request in flight now finishes in the window and is counted whole; the part of it before the
        # window is subtracted from the window's request time (loadtest.report.rules.timeline's account).
        self.open_in_flight_s = sum(age for kind, _, age in self.in_flight(now) if kind in OP_NAMES)
        self.ledgers = [ledger for ledger in self.ledgers if ledger.stopped is None]
        for ledger in self.ledgers:
            ledger.reset(now)
        self.final = None
        self.late, self.lag = 0, 0.0

    def close_window(self) -> dict[str, Any]:
        """Freeze the window: per-user figures and every operation still in flight, with its age."""
        if self.final is None:
            self.final = self.snapshot(closing=True)
        return self.final

    def in_flight(self, now: float | None = None) -> list[tuple[str, str, float]]:
        return _in_flight(self.ledgers, time.perf_counter() if now is None else now)

    def snapshot(self, closing: bool = False) -> dict[str, Any]:
        if self.final is not None:
            return self.final
        now = time.perf_counter()
        unfinished = self.in_flight(now) if closing else []
        if closing:
            connections_at_close(self.ledgers, now)
        return {
            "users": [ledger.snapshot(now) for ledger in self.ledgers],
            "unfinished": unfinished,
            "late": self.late,
            "lag_s": round(self.lag, 6),
            "open_in_flight_s": round(self.open_in_flight_s, 6),
            "final": closing,
        }


# Work still in flight is news only when it has waited longer than the finished work's p99 and this: a
# closed-loop user always has a request in flight, so a count of them alone says nothing.
WAITING_FLOOR_MS = 100.0


def waiting_words(groups: list[tuple[str, list[float], float]]) -> str:
    """'waiting ≥ 3.98 s: 9 requests; ≥ 1.20 s: 2 connects' from (noun, ages in ms, finished p99 in ms) groups:
    only the ages over both the p99 and WAITING_FLOOR_MS count, each group with its own bound (one bound for
    all understated 32 requests' 3.98 s as the 264 ms of 4 connects); '' when none are."""
    parts = []
    for noun, ages, p99 in groups:
        late = [a for a in ages if a > max(p99, WAITING_FLOOR_MS)]
        if late:
            low, high = min(late), max(late)
            said = f"≥ {_at_least(low)}: {len(late):,} {noun}{'s' if len(late) != 1 else ''}"
            if high >= 2 * low:  # the youngest alone would understate them (an audit: 197 ms said, 3.88 s waited)
                said += f", the longest ≥ {_at_least(high)}"
            parts.append(said)
    return "waiting " + "; ".join(parts) if parts else ""


def _at_least(ms: float) -> str:
    """An age in ms as words, rounded down: "≥ 4.90 s" for 4.8955 s would claim more than was waited."""
    return f"{math.floor(ms / 10) / 100:,.2f} s" if ms >= 1000 else f"{math.floor(ms):,.0f} ms"


def connections_at_close(ledgers: list[Ledger], now: float) -> None:
    """Each connection still waiting for its first reply asks its kernel, as the window closes, whether its data
    was acknowledged: half-open or not, told by the client's own socket (loadtest.client.connections)."""
    for ledger in ledgers:
        for client in ledger.clients:
            record, sock = getattr(client, "record", None), getattr(client, "sock", None)
            if record is not None and sock is not None and record.connected and not record.first_byte:
                record.at_close(sock, now)


def _in_flight(ledgers: list[Ledger], now: float) -> list[tuple[str, str, float]]:
    """(type, name, age s) of everything these users have in flight now."""
    out: list[tuple[str, str, float]] = []
    for ledger in ledgers:
        for client in ledger.clients:
            pending = client.pending
            out.extend(unfinished_of(pending, now))
            if pending is not None and client.in_flight:  # pipelined: the rest behind the oldest
                out.extend((pending[0], pending[1], now - t) for t in list(client.in_flight)[1:])
    return out


def process_tag(runner: Any) -> str:
    """This load process's name among the run's: ``w<index>`` for a worker (the index its master
    gave it), ``local`` for a local runner.  Not the pid: ``--processes`` forks the workers after
    this module is imported, and workers on other hosts may share pids."""
    index = getattr(runner, "worker_index", -1)
    if type(runner).__name__ == "WorkerRunner":
        return f"w{index}" if isinstance(index, int) and index >= 0 else str(getattr(runner, "client_id", "worker"))
    return "local"


Pending = tuple[str, str, float, tuple[str, float] | None]  # type, name, started, (first-reply name, connect start)


def unfinished_of(pending: Pending | None, now: float) -> list[tuple[str, str, float]]:
    """(type, name, age s) of what a client has in flight: a connect or a request, and the first
    reply byte of a connect-per-request connection (connect start → first byte) when it waits for one."""
    if pending is None:
        return []
    kind, name, started, first_reply = pending
    out = [(kind, name, now - started)]
    if first_reply is not None:
        out.append((FIRST_REPLY, first_reply[0], now - first_reply[1]))
    return out


class AccountsStore:
    """On the master: the latest per-user figures from every load process."""

    def __init__(self) -> None:
        self.users: dict[str, list[Any]] = {}
        self.unfinished: list[tuple[str, str, float]] = []
        self._final_from: set[str] = set()
        self.late: dict[str, tuple[int, float]] = {}
        self.open_in_flight: dict[str, float] = {}

    def add(self, source: str, data: dict[str, Any]) -> None:
        if source in self._final_from:
            return  # that process's window is closed; later reports repeat it
        for row in data.get("users", []):
            self.users[row[0]] = row
        self.late[source] = (int(data.get("late", 0)), float(data.get("lag_s", 0.0)))
        self.open_in_flight[source] = float(data.get("open_in_flight_s", 0.0))
        if data.get("final"):
            self._final_from.add(source)
            self.unfinished.extend(tuple(u) for u in data.get("unfinished", []))  # type: ignore[misc]

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"user_id": u[0], "requests": u[1], "failures": u[2], "longest_wait_ms": round(u[3] * 1000, 3)}
            for u in self.users.values()
        ]

    def late_total(self) -> tuple[int, float]:
        return sum(n for n, _ in self.late.values()), sum(s for _, s in self.late.values())


class LoadProcessLedger:
    """This load process's own figures for the measured window: its requests (ops, as the summary
    counts them: successes + failures), their failures, every Locust request event (ops and
    CONNECTs), and its CPU against wall time — per worker, so one saturated worker shows as such.

    Requests keep counting after the window closes, as Locust's and the µs histograms' do (a
    request in flight then still finishes); wall time and CPU stop at the close.
    """

    def __init__(self) -> None:
        self.where: dict[str, Any] | None = None  # host, namespace, pid: read once, on the first snapshot
        # SYN retransmissions of this process's connects, measured by each connecting socket (TCP_INFO),
        # over the whole run like the kernel counters they are set beside (not reset by a warm-up).
        self.syn_retrans = self.syn_retried = 0
        self.open()

    def connect_ended(self, syn_retrans: int) -> None:
        if syn_retrans:
            self.syn_retrans += syn_retrans
            self.syn_retried += 1

    def open(self) -> None:
        self.started = time.perf_counter()
        self.cpu_at_start = own_cpu()
        self.requests = self.failures = self.locust_events = 0
        self.closed: tuple[float, float] | None = None  # (wall s, cpu s) when the window closed

    def count(self, drained: dict[str, Any]) -> None:
        """Count what the µs recorder handed over: ops apart, and every Locust request event."""
        for key, failed in (("counts", False), ("failures", True)):
            for request_type, by_name in drained.get(key, {}).items():
                if request_type in NOT_LOCUST_EVENTS:
                    continue
                n = sum(sum(v.values()) if isinstance(v, dict) else v for v in by_name.values())
                self.locust_events += n
                if request_type in OP_NAMES:
                    self.requests += n
                    self.failures += n if failed else 0

    def close(self) -> dict[str, Any]:
        if self.closed is None:
            self.closed = (time.perf_counter() - self.started, own_cpu() - self.cpu_at_start)
        return self.snapshot()

    def snapshot(self) -> dict[str, Any]:
        if self.where is None:
            from loadtest.hosts.isolate import netns_label
            from servers.connlog import boot_id

            # boot_id and the wall clock's offset from CLOCK_MONOTONIC: whether this process's connection
            # times compare with the server's (one machine, one boot), and how to set them beside a capture.
            self.where = {
                "host": socket.gethostname(),
                "netns": netns_label(),
                "pid": os.getpid(),
                "boot_id": boot_id().hex(),
                "clock_offset": round(time.time() - time.perf_counter(), 6),
            }
        wall, cpu = self.closed or (time.perf_counter() - self.started, own_cpu() - self.cpu_at_start)
        return {
            **self.where,
            "requests": self.requests,
            "failures": self.failures,
            "locust_events": self.locust_events,
            "syn_retrans": self.syn_retrans,
            "syn_retried": self.syn_retried,
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
        }


def own_cpu() -> float:
    """This process's user + system CPU seconds."""
    t = os.times()
    return t.user + t.system

"""A server's counters: connections accepted, requests answered OK, connections that ended badly,
connections closed at once over --max-connections.  One class per way of sharing them."""

from __future__ import annotations

import multiprocessing
import threading


class Counters:
    """One process, one thread."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0
        self.errors = 0
        self.rejected = 0

    def add(self, connections: int = 0, requests: int = 0, errors: int = 0, rejected: int = 0) -> None:
        self.connections += connections
        self.requests += requests
        self.errors += errors
        self.rejected += rejected

    def snapshot(self) -> dict[str, int]:
        return {
            "connections": self.connections,
            "requests": self.requests,
            "errors": self.errors,
            "rejected": self.rejected,
        }


class LockedCounters(Counters):
    """For several threads of one process: ``+=`` on an attribute is not atomic."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def add(self, connections: int = 0, requests: int = 0, errors: int = 0, rejected: int = 0) -> None:
        with self._lock:
            super().add(connections, requests, errors, rejected)


class SharedCounters(Counters):
    """For several processes: four integers in memory shared across fork(), under one lock."""

    def __init__(self) -> None:
        # Deliberately not calling super().__init__: the values live in shared memory.
        self._values = multiprocessing.RawArray("q", 4)
        self._lock = multiprocessing.Lock()

    def add(self, connections: int = 0, requests: int = 0, errors: int = 0, rejected: int = 0) -> None:
        with self._lock:
            values = self._values
            values[0] += connections
            values[1] += requests
            values[2] += errors
            values[3] += rejected

    connections = property(lambda self: self._values[0])  # type: ignore[assignment]
    requests = property(lambda self: self._values[1])  # type: ignore[assignment]
    errors = property(lambda self: self._values[2])  # type: ignore[assignment]
    rejected = property(lambda self: self._values[3])  # type: ignore[assignment]


MAX_WORKERS = 256  # worker slots of a tally; workers past it share the last one


class WorkerTally:
    """Accepts and listener wake-ups per worker: slot 0 is the process (or thread) that accepts for a design
    without workers, slot i the i-th worker of a pool.  A wake-up is the listener reported readable (a
    blocking accept() returning, or an epoll event); an empty one found nothing to accept — another worker
    had taken it: the thundering herd.  Each slot is written by its own worker only; in shared memory
    across fork() for process designs."""

    FIELDS = ("accepts", "wakeups", "empty_wakeups")

    def __init__(self, shared: bool) -> None:
        size = len(self.FIELDS) * (MAX_WORKERS + 1)
        self._values = multiprocessing.RawArray("Q", size) if shared else [0] * size

    def add(self, worker: int, accepts: int, wakeups: int = 0) -> None:
        i = len(self.FIELDS) * min(worker, MAX_WORKERS)
        values = self._values
        values[i] += accepts
        values[i + 1] += wakeups
        if wakeups and not accepts:
            values[i + 2] += wakeups

    def snapshot(self) -> list[dict[str, int]]:
        n, values = len(self.FIELDS), self._values
        return [
            {"worker": w, **{f: values[n * w + k] for k, f in enumerate(self.FIELDS)}}
            for w in range(MAX_WORKERS + 1)
            if values[n * w] or values[n * w + 1]
        ]

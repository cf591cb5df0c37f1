"""A server's counters: connections accepted, requests answered OK, connections that ended badly,
connections closed at once over --max-connections.  One class per way of sharing them.

Requests are counted once per request, on every design's hot path, so they have a cheaper way in
than :meth:`Counters.add`: a thread that serves asks for its own cell (:meth:`Counters.requests_cell`)
and adds to it with ``cell[0] += n`` — a list item, no call and no lock, since no other thread writes
it.  A snapshot adds up the cells; a thread hands its cell back (:meth:`Counters.fold`) when it stops
serving.  The lock a thread-per-connection server took for every request cost ~0.4 µs of its ~18.
Across fork() a cell is a window on the shared count instead, so the parent's ``stopped`` line has
every request even from a child that died.
"""

from __future__ import annotations

import multiprocessing
import threading
from contextlib import AbstractContextManager, nullcontext


class Counters:
    """One process, one thread."""

    def __init__(self) -> None:
        self.connections = 0
        self._requests = 0  # from cells handed back, and from add()
        self.errors = 0
        self.rejected = 0
        self._cells: list[list[int]] = []
        self._cells_lock: AbstractContextManager[object] = nullcontext()

    @property
    def requests(self) -> int:
        with self._cells_lock:
            return self._requests + sum(cell[0] for cell in self._cells)

    def requests_cell(self) -> list[int]:
        """A count of requests for the calling thread alone: ``cell[0] += n``.  Hand it back with :meth:`fold`."""
        cell = [0]
        with self._cells_lock:
            self._cells.append(cell)
        return cell

    def fold(self, cell: list[int]) -> None:
        """A cell its thread is done with: its count joins the total."""
        with self._cells_lock:
            self._cells.remove(cell)
            self._requests += cell[0]

    def add(self, connections: int = 0, requests: int = 0, errors: int = 0, rejected: int = 0) -> None:
        self.connections += connections
        self._requests += requests
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
        self._lock = self._cells_lock = threading.Lock()

    def add(self, connections: int = 0, requests: int = 0, errors: int = 0, rejected: int = 0) -> None:
        with self._lock:
            Counters.add(self, connections, requests, errors, rejected)


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

    def requests_cell(self) -> SharedCell:  # type: ignore[override]
        return SharedCell(self)

    def fold(self, cell: list[int]) -> None:
        pass  # a SharedCell added each of its requests to the shared count as it came

    connections = property(lambda self: self._values[0])  # type: ignore[assignment]
    requests = property(lambda self: self._values[1])  # type: ignore[assignment]
    errors = property(lambda self: self._values[2])  # type: ignore[assignment]
    rejected = property(lambda self: self._values[3])  # type: ignore[assignment]


class SharedCell:
    """A process's cell of a :class:`SharedCounters`: ``cell[0] += n`` adds n to the shared count at once."""

    __slots__ = ("_counters", "_value")

    def __init__(self, counters: SharedCounters) -> None:
        self._counters, self._value = counters, 0

    def __getitem__(self, index: int) -> int:
        return self._value

    def __setitem__(self, index: int, value: int) -> None:
        self._counters.add(requests=value - self._value)
        self._value = value


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

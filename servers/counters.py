"""A server's counters: connections accepted, requests answered OK, connections that ended badly,
connections closed at once over --max-connections.  One class per way of sharing them.

Requests are counted once per request, on every design's hot path, so they have a cheaper way in
than :meth:`Counters.add`: whoever serves asks for a cell of its own (:meth:`Counters.requests_cell`)
and adds to it with ``cell[0] += n`` — an item of a list or of a ctypes array, no Python call and no
lock, because nobody else writes that cell.  A snapshot adds up the cells.  A thread that serves one
connection hands its cell back as the connection ends (:meth:`Counters.fold`); an event loop keeps its
cell for its life.  The lock a thread-per-connection server took for every request cost ~0.4 µs of its
~18.  Across fork() a pooled worker's cell is its own slot of shared memory, and a forked child that
serves one connection writes through the shared lock, so the parent's ``stopped`` line has every
request, even from a child that died.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import threading
from contextlib import AbstractContextManager, nullcontext
from typing import Any

MAX_WORKERS = 256  # worker slots of a tally and of the shared request cells; workers past it share the last


class Counters:
    """One process, one thread."""

    def __init__(self) -> None:
        self.connections = 0
        self._requests = 0  # from cells handed back, and from add()
        self.errors = 0
        self.rejected = 0
        self._cells: dict[int, list[int]] = {}  # by id(): two cells with equal counts are still two cells
        self._cells_lock: AbstractContextManager[object] = nullcontext()

    @property
    def requests(self) -> int:
        with self._cells_lock:
            return self._requests + sum(cell[0] for cell in self._cells.values())

    def requests_cell(self, worker: int = 0) -> Any:
        """A count of requests for the caller alone to add to: ``cell[0] += n``.  `worker` is the caller's
        slot in a fixed pool of processes (1…N), where a slot has one writer; 0 for anyone else.  Hand a
        cell back with :meth:`fold` when done with it."""
        cell = [0]
        with self._cells_lock:
            self._cells[id(cell)] = cell
        return cell

    def fold(self, cell: Any) -> None:
        """A cell its thread is done with: its count joins the total."""
        with self._cells_lock:
            if self._cells.pop(id(cell), None) is not None:
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
        self._worker_requests = multiprocessing.RawArray("q", MAX_WORKERS + 1)  # slot w: worker w's cell

    def add(self, connections: int = 0, requests: int = 0, errors: int = 0, rejected: int = 0) -> None:
        with self._lock:
            values = self._values
            values[0] += connections
            values[1] += requests
            values[2] += errors
            values[3] += rejected

    def requests_cell(self, worker: int = 0) -> Any:
        """A pooled worker's own slot of shared memory, seen as a one-item ctypes array (C-level ``+=``, no
        lock: the worker is its slot's one writer; a worker forked to replace one that exited goes on from
        its count).  Anyone else — a child forked per connection, many at once — gets a :class:`SharedCell`,
        which adds each request under the shared lock."""
        if worker < 1:
            return SharedCell(self)
        slot = min(worker, MAX_WORKERS)
        return (ctypes.c_int64 * 1).from_buffer(self._worker_requests, slot * ctypes.sizeof(ctypes.c_int64))

    def fold(self, cell: Any) -> None:
        pass  # every cell wrote its requests into shared memory as they came

    @property
    def requests(self) -> int:  # type: ignore[override]
        return self._values[1] + sum(self._worker_requests)

    connections = property(lambda self: self._values[0])  # type: ignore[assignment]
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

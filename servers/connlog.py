"""The server's own record of every connection: when it was accepted, when a worker began on it, when
its first request was read and its first reply written, when the client's FIN came, when it closed.

    python -m servers DESIGN --conn-log PATH [--conn-log-cap 100000]

Times are ``time.monotonic()`` — CLOCK_MONOTONIC, the clock the client's ``perf_counter()`` reads, the
same on one host and in every network namespace of it — so the harness can join each connection's
server side to its client side on the 4-tuple (``loadtest.report.rules.timeline``).

Cheap by design.  A connection's times are kept where it is served (locals of the blocking loop,
attributes of an event loop's connection: a clock read each), and its record is written once, as it
closes, with one ``struct.pack_into`` into the file, mapped shared before any worker is forked or
started — so every process and thread of a design writes its records in place, with no system call
per connection and nothing to gather at the stop.  A record is 88 bytes; the file is preallocated
(sparse) for ``cap`` records plus a tail of ``cap // 10``.  The first ``cap`` connections are all
recorded; after them every ``STRIDE``-th one goes to the tail while it has room (a documented
sample), and the rest are counted as unrecorded.  Slots are taken under the design's own kind of
lock (none for one thread, a thread lock, a lock in shared memory across fork()).  The worker of a
record is the kernel id of the thread that served it — the pid of a one-thread process — so a
pool's records say which worker took each connection.

File layout (little-endian)::

    header   64 bytes: magic b"SLCONN3\\0", version, cap, tail, stride, taken, recorded, unrecorded,
             boot id (16 bytes, this machine's /proc/sys/kernel/random/boot_id)
    window   16 bytes: the measured window's open and close (float64, CLOCK_MONOTONIC; 0 = not yet),
             written by the harness (``mark_window``) into the file every worker maps
    records  (cap + tail) × 88 bytes: accepted, service_start, first_read, first_written, eof, closed
             (float64 each, 0 = did not happen), in_window_service (float64: seconds of this connection's
             requests between read and reply written, cut to the window), peer_port, local_port (u16),
             requests, worker id << 8 | flags (u32), the peer's address (16 bytes; IPv4 in the first 4),
             4 bytes pad

Every request's service (its bytes read whole → its reply written) is added up inside the window, so a
persistent connection opened in the warm-up still says how much of the window it spent being served:
two clock reads a request while the window is open, none before or after it.

A record whose ``closed`` is 0 was never written.  A one-process server writes its header's counts
at the stop (several processes count in the header as they go): a killed one leaves records its
header does not count, and the harness reads them and says the log is incomplete.
"""

from __future__ import annotations

import mmap
import os
import socket
import struct
import threading
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from servers.sockets import peer_closed_first

MAGIC = b"SLCONN3\x00"
VERSION = 3
HEADER = struct.Struct("=8sIIIIQQQ16s")  # 64 bytes
WINDOW = struct.Struct("<dd")  # at 64: the window's open and close
HEADER_SIZE = 80
RECORD = struct.Struct("<7dHHII16s4x")  # 88 bytes
TIMES = ("accepted", "service_start", "first_read", "first_written", "eof", "closed")
STRIDE = 100  # past the cap, one connection in this many is recorded (into the tail)
DEFAULT_CAP = 100_000
# flags (the low byte of the last u32)
ENDED_BADLY = 1  # reset, timeout, bad frame: not a clean close by either side
REJECTED = 2  # closed at once over --max-connections
SERVER_CLOSED = 4  # the server sent FIN first: it closed with no FIN of the client's come, read or unread
IPV6 = 8
CLIENT_FIN = 16  # the client's FIN had come, unread, when the server closed (it stopped, or never read)
_FIN_SEEN = REJECTED | CLIENT_FIN  # not SERVER_CLOSED though no EOF was read


def boot_id() -> bytes:
    """This machine's boot id: two CLOCK_MONOTONIC readings compare only within one boot of one machine."""
    try:
        return bytes.fromhex(Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", ""))
    except (OSError, ValueError):
        return bytes(16)


class ConnLog:
    """The mapped file of connection records: ``write`` one as each connection closes."""

    def __init__(
        self, path: str, cap: int, lock: AbstractContextManager[Any] | None, shared: bool = False, threads: bool = False
    ) -> None:
        self.path, self.cap, self.tail = path, cap, max(cap // 10, 1)
        size = HEADER_SIZE + (self.cap + self.tail) * RECORD.size
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(fd, size)  # sparse: pages are only allocated as records are written
            self._map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        HEADER.pack_into(self._map, 0, MAGIC, VERSION, self.cap, self.tail, STRIDE, 0, 0, 0, boot_id())
        self._counts: Any = memoryview(self._map)[24:48].cast("Q") if shared else [0, 0, 0]
        self.window: Any = memoryview(self._map)[64:80].cast("d")  # [open, close]: the harness writes them
        self._shared = shared
        self._lock = lock
        self._packed: dict[str, tuple[bytes, int]] = {}  # a load comes from a few addresses: pack each once
        self._pack = RECORD.pack_into
        # The worker id: asked of the kernel per record where threads serve (a thread per connection is a new
        # id each time), else once per process and again in each forked child — not a system call per record.
        self._per_thread = threads
        self._process_worker = 0
        self._new_process()
        os.register_at_fork(after_in_child=self._new_process)

    def _new_process(self) -> None:
        self._process_worker = (threading.get_native_id() & 0xFFFFFF) << 8

    def _take(self) -> int:
        """The slot for the next record, or -1: the first `cap` in order, then 1 in STRIDE into the tail."""
        counts = self._counts
        seq = counts[0]
        counts[0] = seq + 1
        if seq < self.cap:
            slot = seq
        elif (seq - self.cap) % STRIDE == 0 and (seq - self.cap) // STRIDE < self.tail:
            slot = self.cap + (seq - self.cap) // STRIDE
        else:
            counts[2] += 1
            return -1
        counts[1] += 1
        return slot

    def in_window(self, read: float, written: float) -> float:
        """Seconds of [read, written] inside the measured window (0 outside it, or before it opened)."""
        window = self.window
        start = window[0]
        if not start or written <= start:
            return 0.0
        stop = window[1]
        if stop:
            if read >= stop:
                return 0.0
            if written > stop:
                written = stop
        return written - (read if read > start else start)

    def window_open(self) -> bool:
        """Whether requests are being counted now: opened and not yet closed (what a server checks before
        it reads the clock for a request)."""
        window = self.window
        return bool(window[0]) and not window[1]

    def write(
        self,
        accepted: float,
        service_start: float,
        first_read: float,
        first_written: float,
        eof: float,
        closed: float,
        peer: Any,
        local_port: int,
        requests: int,
        flags: int = 0,
        in_window: float = 0.0,
    ) -> None:
        """One connection, as it closes.  The hot path of every design with a log: kept to a few dozen
        bytecodes (benchmarks.server_cost --conn-log-ab measures what it adds per connection)."""
        lock = self._lock
        if lock is None:
            slot = self._take()
        else:
            with lock:
                slot = self._take()
        if slot < 0:
            return
        host = peer[0]
        packed = self._packed.get(host)
        if packed is None:
            packed = self._packed[host] = (
                (socket.inet_pton(socket.AF_INET6, host), IPV6) if ":" in host else (socket.inet_aton(host), 0)
            )
        if not eof and not flags & _FIN_SEEN:
            flags |= SERVER_CLOSED
        worker = (threading.get_native_id() & 0xFFFFFF) << 8 if self._per_thread else self._process_worker
        self._pack(
            self._map,
            HEADER_SIZE + slot * 88,
            accepted,
            service_start,
            first_read,
            first_written,
            eof,
            closed,
            in_window,
            peer[1],
            local_port,
            requests,
            worker | flags | packed[1],
            packed[0],
        )

    def finish(self) -> None:
        if not self._shared:
            struct.pack_into("=QQQ", self._map, 24, *self._counts)
        self._map.flush()


def mark_window(path: str | Path, *, start: float | None = None, stop: float | None = None) -> bool:
    """The harness tells a running server's log the window's edges (CLOCK_MONOTONIC s; a write to the file
    is seen at once through every worker's shared mapping).  False when there is no log of this version."""
    try:
        with open(path, "r+b") as f:
            if f.read(8) != MAGIC:
                return False
            if start is not None:
                os.pwrite(f.fileno(), struct.pack("<dd", start, 0.0), 64)
            if stop is not None:
                os.pwrite(f.fileno(), struct.pack("<d", stop), 72)
    except OSError:
        return False
    return True


def client_fin(sock: Any) -> int:
    """``CLIENT_FIN`` when the client's FIN has come though the server never read it (a server stopping with
    connections queued or mid-request: the kernel's state is CLOSE_WAIT), else 0.  Asked only when a
    connection closes without its end of stream read, so it costs nothing on the usual path."""
    return CLIENT_FIN if peer_closed_first(sock) else 0


def open_log(path: str, cap: int, lock_factory: Any, shared: bool = False, threads: bool = False) -> ConnLog | None:
    """The log a server was asked for (None without a path or with a cap of 0); `shared`: written by
    several processes; `threads`: by several threads of one process."""
    if not path or cap <= 0:
        return None
    return ConnLog(path, cap, lock_factory() if lock_factory else None, shared, threads)

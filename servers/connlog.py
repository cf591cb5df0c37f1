"""The server's own record of every connection: when it was accepted, when a worker began on it, when
its first request was read and its first reply written, when the client's FIN came, when it closed.

    python -m servers DESIGN --conn-log PATH [--conn-log-cap 100000]

Times are ``time.monotonic()`` — CLOCK_MONOTONIC, the clock the client's ``perf_counter()`` reads, the
same on one host and in every network namespace of it — so the harness can join each connection's
server side to its client side on the 4-tuple (``loadtest.report.timeline``).

Cheap by design.  The records live in the file itself, mapped shared into memory before any worker
is forked or started, so every process and thread of a design writes its connections' slots in
place: no per-connection system call, no hand-off, nothing to gather at the end but a header.  A
record is 80 bytes (six doubles, four u32, a 16-byte address); the file is preallocated for
``cap`` records plus a tail of ``cap // 10``.  The first ``cap`` connections are all recorded;
after them every ``STRIDE``-th one goes to the tail while it has room (a documented sample), and
the rest are counted as unrecorded.  Slots are taken under the design's own kind of lock (none
for one thread, a thread lock, a lock in shared memory across fork()).  The worker of a record is
the kernel id of the thread that served it — the pid of a one-thread process — so a pool's
records say which worker took each connection.

File layout (little-endian, native sizes)::

    header   64 bytes: magic b"SLCONN1\\0", version, cap, tail, stride, taken, recorded, unrecorded,
             boot id (16 bytes, this machine's /proc/sys/kernel/random/boot_id)
    times    (cap + tail) × 6 float64: accepted, service_start, first_read, first_written, eof, closed
    ints     (cap + tail) × 4 uint32: peer_port, local_port, requests, worker thread id << 8 | flags
    peers    (cap + tail) × 16 bytes: the peer's address (IPv4 in the first 4)

A record whose ``accepted`` is 0 was never written; a file whose header says fewer records than it
holds was cut short (the server was killed): the harness reads what is there and says so.
"""

from __future__ import annotations

import mmap
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

MAGIC = b"SLCONN1\x00"
VERSION = 1
HEADER = struct.Struct("=8sIIIIQQQ16s")  # 64 bytes
HEADER_SIZE = 64
TIMES = ("accepted", "service_start", "first_read", "first_written", "eof", "closed")
ACCEPTED, SERVICE_START, FIRST_READ, FIRST_WRITTEN, EOF, CLOSED = range(6)
INTS = ("peer_port", "local_port", "requests", "worker_flags")
RECORD_BYTES = 6 * 8 + 4 * 4 + 16
STRIDE = 100  # past the cap, one connection in this many is recorded (into the tail)
DEFAULT_CAP = 100_000
# flags (low byte of worker_flags)
ENDED_BADLY = 1  # reset, timeout, bad frame: not a clean close by either side
REJECTED = 2  # closed at once over --max-connections
SERVER_CLOSED = 4  # the server closed before it saw the client's FIN (the server sent FIN first)
IPV6 = 8


def boot_id() -> bytes:
    """This machine's boot id: two CLOCK_MONOTONIC readings compare only within one boot of one machine."""
    try:
        return bytes.fromhex(Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", ""))
    except (OSError, ValueError):
        return bytes(16)


class ConnLog:
    """The mapped file of connection records; ``open`` a slot per accepted connection, then ``mark`` it."""

    def __init__(self, path: str, cap: int, lock: AbstractContextManager[Any] | None) -> None:
        self.path, self.cap, self.tail = path, cap, max(cap // 10, 1)
        self.slots = self.cap + self.tail
        size = HEADER_SIZE + self.slots * RECORD_BYTES
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(fd, size)  # sparse: pages are only allocated as records are written
            self._map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        view = memoryview(self._map)
        end_times = HEADER_SIZE + self.slots * 48
        end_ints = end_times + self.slots * 16
        self.times = view[HEADER_SIZE:end_times].cast("d")
        self.ints = view[end_times:end_ints].cast("I")
        self.peers = view[end_ints:]
        self._counts = view[24:48].cast("Q")  # taken, recorded, unrecorded: in the mapping, shared by all
        HEADER.pack_into(self._map, 0, MAGIC, VERSION, self.cap, self.tail, STRIDE, 0, 0, 0, boot_id())
        self._lock = lock

    def _take(self) -> int:
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

    def open(self, peer: Any, local_port: int, now: float) -> int:
        """A connection accepted at `now` from `peer` (accept()'s address): its slot, or -1 (not recorded)."""
        if self._lock is None:
            slot = self._take()
        else:
            with self._lock:
                slot = self._take()
        if slot < 0:
            return -1
        self.times[slot * 6] = now
        base = slot * 4
        ints = self.ints
        ints[base] = peer[1]
        ints[base + 1] = local_port
        host = peer[0]
        if ":" in host:
            self.peers[slot * 16 : slot * 16 + 16] = socket.inet_pton(socket.AF_INET6, host)
            ints[base + 3] = IPV6
        else:
            self.peers[slot * 16 : slot * 16 + 4] = socket.inet_aton(host)
        return slot

    def mark(self, slot: int, field: int, now: float) -> None:
        if slot >= 0:
            self.times[slot * 6 + field] = now

    def mark_once(self, slot: int, field: int, now: float) -> None:
        """The first time only (the first request of a connection)."""
        if slot >= 0 and not self.times[slot * 6 + field]:
            self.times[slot * 6 + field] = now

    def close(self, slot: int, now: float, requests: int, flags: int = 0) -> None:
        if slot < 0:
            return
        times = self.times
        times[slot * 6 + CLOSED] = now
        if not times[slot * 6 + EOF] and not flags & REJECTED:
            flags |= SERVER_CLOSED
        base = slot * 4
        self.ints[base + 2] = requests
        # The worker: the thread that served it (its kernel id, which is the pid in a one-thread process).
        self.ints[base + 3] = (threading.get_native_id() & 0xFFFFFF) << 8 | self.ints[base + 3] & 0xFF | flags

    def finish(self) -> None:
        self._map.flush()


def open_log(path: str, cap: int, lock_factory: Callable[[], AbstractContextManager[Any]] | None) -> ConnLog | None:
    """The log a server was asked for (None without a path or with a cap of 0)."""
    if not path or cap <= 0:
        return None
    return ConnLog(path, cap, lock_factory() if lock_factory else None)


def now() -> float:
    return time.monotonic()

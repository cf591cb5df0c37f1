"""The socklab wire protocol: framing, limits and request semantics, with no sockets.

Every server design and every client share this one module, so two designs
differ only in how they wait for bytes, never in what the bytes mean.

Frames (all integers unsigned, big-endian)::

    request  = u32 length | u8 op | u32 arg | u32 reply_len | payload   length = 9 + len(payload)
    response = u32 length | u8 status | body                            length = 1 + len(body)

``length`` counts the bytes after itself.  A server never trusts it: the
decoder checks the 13-byte header against the caps in :class:`Limits` before
it buffers a single payload byte, so a 4 GiB length prefix costs 13 bytes of
memory and a TOO_LARGE answer.  After a non-OK status the server closes the
connection, because the stream position can no longer be trusted.

The decoders are incremental: ``feed()`` takes bytes in any chunking (one byte
at a time, several frames at once, a frame split anywhere) and returns the
complete frames it now holds.  The common case — exactly one whole frame per
read — takes a fast path that neither copies nor buffers.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

REQUEST_HEADER = struct.Struct("!IBII")  # length, op, arg, reply_len
RESPONSE_HEADER = struct.Struct("!IB")  # length, status
REQUEST_HEADER_SIZE = REQUEST_HEADER.size  # 13
RESPONSE_HEADER_SIZE = RESPONSE_HEADER.size  # 5
REQUEST_FIXED = REQUEST_HEADER_SIZE - 4  # 9: the part of `length` that is not payload
U32_MAX = 0xFFFFFFFF


class Op(IntEnum):
    ECHO = 1
    SLEEP = 2  # wait `arg` ms (simulated I/O wait), then answer
    WORK = 3  # burn `arg` µs of CPU (simulated compute), then answer


class Status(IntEnum):
    OK = 0
    BAD_REQUEST = 1  # unknown op, length < 9
    TOO_LARGE = 2  # length or reply_len over the frame cap
    OVER_LIMIT = 3  # SLEEP or WORK arg over its cap


class ProtocolError(Exception):
    """A peer sent something that is not a socklab frame."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Server caps.  Every untrusted number on the wire is checked against one."""

    max_frame: int = 1 << 20  # bytes after the length prefix; also caps reply_len
    max_sleep_ms: int = 10_000
    max_work_us: int = 1_000_000


class Request(NamedTuple):
    op: int
    arg: int
    reply_len: int
    payload: bytes


def check_header(length: int, op: int, arg: int, reply_len: int, limits: Limits) -> Status:
    """The status a request with this header gets; OK if it may be served."""
    if length < REQUEST_FIXED or op not in _OPS:
        return Status.BAD_REQUEST
    if length > limits.max_frame or reply_len > limits.max_frame:
        return Status.TOO_LARGE
    if (op == Op.SLEEP and arg > limits.max_sleep_ms) or (op == Op.WORK and arg > limits.max_work_us):
        return Status.OVER_LIMIT
    return Status.OK


_OPS = frozenset(int(op) for op in Op)
SLEEP, WORK = int(Op.SLEEP), int(Op.WORK)  # plain ints for hot paths: comparing with an IntEnum member costs 4×
_unpack_header = REQUEST_HEADER.unpack_from
_new_request = tuple.__new__  # builds a Request without NamedTuple's Python-level __new__


class RequestDecoder:
    """Incremental request decoder for one connection.

    ``feed()`` returns the requests completed by the new bytes.  On the first
    bad header it stops: ``error`` holds the status to answer with, requests
    decoded before it are still returned (they precede the bad frame on the
    stream), and everything after it is ignored.  The buffer never holds more
    than one frame of at most ``limits.max_frame`` bytes plus one read.
    """

    __slots__ = ("_buf", "buffered", "error", "limits")

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.error: Status | None = None
        self._buf = bytearray()
        # Bytes held for a frame that is not complete yet: an attribute, not a property, because every
        # server loop asks after every read.
        self.buffered = 0

    def feed(self, data: bytes) -> list[Request]:
        if self.error is not None:
            return []
        buf = self._buf
        if not buf and len(data) >= REQUEST_HEADER_SIZE:
            # Fast path: one whole frame in one read, the usual case.  The checks are
            # check_header() inlined: this runs once per request on every server.
            length, op, arg, reply_len = _unpack_header(data)
            if length + 4 == len(data):
                limits = self.limits
                if (op == 1 and length <= limits.max_frame and reply_len <= limits.max_frame) or (
                    op == 2
                    and length <= limits.max_frame
                    and reply_len <= limits.max_frame
                    and arg <= limits.max_sleep_ms
                ):
                    return [_new_request(Request, (op, arg, reply_len, data[REQUEST_HEADER_SIZE:]))]
                status = check_header(length, op, arg, reply_len, limits)
                if status:
                    self.error = status
                    return []
                return [_new_request(Request, (op, arg, reply_len, data[REQUEST_HEADER_SIZE:]))]
        buf += data
        requests: list[Request] = []
        pos = 0
        end_of_data = len(buf)
        while end_of_data - pos >= REQUEST_HEADER_SIZE:
            length, op, arg, reply_len = REQUEST_HEADER.unpack_from(buf, pos)
            status = check_header(length, op, arg, reply_len, self.limits)
            if status:
                self.error = status
                buf.clear()
                self.buffered = 0
                return requests
            end = pos + 4 + length
            if end > end_of_data:
                break
            requests.append(Request(op, arg, reply_len, bytes(buf[pos + REQUEST_HEADER_SIZE : end])))
            pos = end
        if pos:
            del buf[:pos]  # bytearray drops a prefix without moving the rest
        self.buffered = len(buf)
        return requests


class ResponseDecoder:
    """Incremental response decoder for clients: ``feed()`` returns (status, body) pairs.

    The one reply reader every client shares (the Locust client falls back to it
    when a reply does not arrive in one read).  ``wanted`` is how many more bytes
    complete the next frame, so a caller that must not read past one reply can
    ``recv(decoder.wanted)``.
    """

    __slots__ = ("_buf", "max_body")

    def __init__(self, max_body: int = U32_MAX) -> None:
        self.max_body = max_body
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held for a reply that is not complete yet."""
        return len(self._buf)

    @property
    def wanted(self) -> int:
        buf = self._buf
        if len(buf) < RESPONSE_HEADER_SIZE:
            return RESPONSE_HEADER_SIZE - len(buf)
        length, _ = RESPONSE_HEADER.unpack_from(buf)
        return max(4 + length - len(buf), 1)

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self._buf
        buf += data
        out: list[tuple[int, bytes]] = []
        pos = 0
        while len(buf) - pos >= RESPONSE_HEADER_SIZE:
            length, status = RESPONSE_HEADER.unpack_from(buf, pos)
            if length < 1 or length - 1 > self.max_body:
                raise ProtocolError(f"response length {length} out of range")
            end = pos + 4 + length
            if end > len(buf):
                break
            out.append((status, bytes(buf[pos + RESPONSE_HEADER_SIZE : end])))
            pos = end
        if pos:
            del buf[:pos]
        return out


def read_response(recv: Callable[[int], bytes], decoder: ResponseDecoder | None = None) -> tuple[int, bytes]:
    """Read exactly one response with ``recv(n)`` (a blocking socket's), never a byte past it."""
    decoder = decoder or ResponseDecoder()
    while True:
        data = recv(decoder.wanted)
        if not data:
            raise EOFError(f"connection closed with {decoder.wanted} bytes of a reply still expected")
        got = decoder.feed(data)
        if got:
            return got[0]


def encode_request(op: int, arg: int = 0, payload: bytes = b"", reply_len: int = 0) -> bytes:
    return REQUEST_HEADER.pack(REQUEST_FIXED + len(payload), op, arg, reply_len) + payload


def encode_response(status: int, body: bytes = b"") -> bytes:
    return RESPONSE_HEADER.pack(1 + len(body), status) + body


def error_response(status: Status) -> bytes:
    return _ERROR_FRAMES[status]


_ERROR_FRAMES = {status: encode_response(status) for status in Status}


def reply_for(request: Request) -> bytes:
    """The complete OK response frame: the payload echoed, or ``reply_len`` bytes."""
    if request.reply_len:
        return RESPONSE_HEADER.pack(1 + request.reply_len, 0) + _filler(request.reply_len)
    payload = request.payload
    return RESPONSE_HEADER.pack(1 + len(payload), 0) + payload


def _filler(n: int) -> bytes:
    # A reply body of n bytes whose content carries no meaning; zeros are free to make.
    return bytes(n)


_COARSE_NS = 100_000  # the longest stretch of arithmetic between two clock reads
_FINE_NS = 15_000  # the last chunk before the deadline is at most this long: all it can overrun by
_ns_per_step = [100.0]  # the arithmetic's cost, learned as it runs (a list: no `global`)


def burn_cpu(microseconds: int) -> None:
    """WORK: spin for `microseconds` of this thread's own CPU time, in user space.

    Thread CPU time, not wall time: two threads sharing the GIL each burn their
    full amount, so the cost of compute under the GIL shows in the figures.

    The spin is pure-Python arithmetic, the compute the op stands for.  The clock
    is read rarely, because reading this thread's CPU time is a system call
    (clock_gettime(CLOCK_THREAD_CPUTIME_ID) has no vDSO path; ~0.8 µs in a VM):
    read on every turn of the loop, it made the spin mostly kernel time.  Between
    reads runs a chunk of arithmetic sized from its cost measured so far: half of
    what is left, at most ``_COARSE_NS`` (≤ 1 % of the time in the clock) and at
    least ``_FINE_NS``, so that only the last chunk, sized to what is left, can
    end past the deadline, and then by a fraction of ``_FINE_NS``.
    """
    clock = time.thread_time_ns
    now = clock()
    deadline = now + microseconds * 1000
    per_step = _ns_per_step[0]
    x = 1
    while now < deadline:
        left = deadline - now
        chunk = left if left <= _FINE_NS else min(_COARSE_NS, max(_FINE_NS, left // 2))
        steps = int(chunk / per_step) + 1
        for _ in range(steps):
            x = (x * 31 + 7) % 1_000_003
        then = clock()
        if steps >= 64:  # a few steps' time would be mostly the clock's own
            per_step = (then - now) / steps
        now = then
    _ns_per_step[0] = per_step


def serve_request_blocking(request: Request) -> bytes:
    """Carry out a request in the calling thread (SLEEP sleeps, WORK spins), return its reply."""
    op = request.op
    if op == SLEEP:
        if request.arg:
            time.sleep(request.arg / 1000)
    elif op == WORK:
        burn_cpu(request.arg)
    return reply_for(request)

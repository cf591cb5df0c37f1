"""A raw-socket client for the socklab wire protocol, with timings and classified failures.

It knows nothing of Locust: it reports each finished request to an ``on_request``
callback (the Locust users pass one that fires ``events.request``; the bare
benchmark passes one that only counts), so the same socket code runs inside and
outside Locust.  Under Locust the ``socket`` module is gevent's, so blocking
calls here yield to other users.

Timings (the metric definitions of the design notes):

- latency: request handed to the kernel (just before ``sendall``) → last reply byte.
- connect time: ``connect()`` start → return.
- first-reply time (connect-per-request): ``connect()`` start → first reply byte.
  With SYN cookies ``connect()`` can return while the server holds nothing for
  us, so connect time alone understates what a client waits.
- open loop: given an ``intended`` start, a request's latency runs from it (corrected
  for coordinated omission, as wrk2 does); ``service`` keeps actual send → last byte.

What is in flight is in ``pending`` (type, name, start, and the first reply a
connect-per-request connection waits for), so work that never finishes can be
counted when the measured window closes (loadtest.client.accounting).

Failures are raised as :class:`RequestFailure` whose text is one stable,
readable class, so Locust's failure table groups them.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from loadtest.client import deadlines
from loadtest.client.accounting import Pending
from loadtest.client.connections import RETRANSMIT_FLOOR_S, ConnectionRecord, connect_info
from loadtest.client.failures import RequestFailure, classify
from loadtest.client.protocols import Protocol
from loadtest.declare.kinds import CONNECT, FIRST_REPLY
from servers.protocol import (
    REQUEST_HEADER_SIZE,
    RESPONSE_HEADER,
    Op,
    ProtocolError,
    ResponseDecoder,
    Status,
    encode_request,
)

# on_request(request_type, name, latency_s, response_length, exception)
RequestHook = Callable[[str, str, float, int, BaseException | None], Any]

OP_NAMES = {int(op): op.name for op in Op}  # the wire's op numbers → kinds
STATUS_NAMES = {int(s): s.name for s in Status}
RECV_SIZE = 65536
MAX_REPLY = (1 << 30) + 1  # a length prefix beyond this cannot be a socklab reply
LINGER_0 = struct.pack("ii", 1, 0)  # struct linger {l_onoff = 1, l_linger = 0}: close() sends a RST


class SocklabClient:
    """One connection to a socklab server, reconnecting after an error."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connect_timeout: float = 5.0,
        reply_timeout: float = 10.0,
        on_request: RequestHook | None = None,
        on_first_reply: Callable[[str, float], Any] | None = None,
        on_connection: Callable[[ConnectionRecord], Any] | None = None,
        linger0: bool = False,
        protocol: Protocol | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.linger0 = linger0  # close with SO_LINGER 0: a RST, no TIME_WAIT
        self.protocol = protocol  # another protocol's requests and replies (loadtest.client.protocols); None: socklab's
        self.connect_timeout = connect_timeout
        self.reply_timeout = reply_timeout
        self.on_request = on_request or _ignore
        self.on_first_reply = on_first_reply or _ignore
        self.on_connection = on_connection or _ignore  # each connection's record, once it has ended
        self.record: ConnectionRecord | None = None  # the connection open now (or being opened)
        self.sock: socket.socket | None = None
        self.connect_started = 0.0
        self.pending: Pending | None = None  # what is in flight now (loadtest.client.accounting)
        self.in_flight: Any = None  # pipelined: the send times of every request in flight (the oldest is pending)
        self.service = 0.0  # the last request's actual send → last reply byte, s
        self.done_at = 0.0  # when the last request finished (perf_counter): the ledger's clock, read once
        self.deadline = 0.0  # when the reply now awaited is late (loadtest.client.deadlines); 0 = none awaited
        self.timed_out = False  # the watchdog shut the socket down: the reply (or the handshake) was late
        self.connecting: socket.socket | None = None  # the socket in connect(), for the watchdog
        deadlines.watch(self)

    # -- connection ------------------------------------------------------------------------
    def connect(self, name: str = "connect", first_reply: str | None = None) -> socket.socket:
        """Open the connection; fires a CONNECT event with the connect() time.

        ``first_reply`` names the request whose first reply byte this connection waits
        for (connect-per-request): an unfinished connect is an unfinished first reply too.
        """
        self.close()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        started = self.connect_started = time.perf_counter()
        self.pending = (CONNECT, name, started, (first_reply, started) if first_reply else None)
        record = self.record = ConnectionRecord(started)
        # No socket timeout (a timer per connect under gevent, a tenth of a loopback connection's cost):
        # the watchdog shuts a connect past its deadline down, and connect() fails there (loadtest.client.deadlines).
        self.connecting, self.timed_out = sock, False
        self.deadline = started + self.connect_timeout
        try:
            sock.connect((self.host, self.port))
        except BaseException as exc:
            ended = time.perf_counter()
            self.deadline, self.connecting = 0.0, None
            record.connect_ended(sock, ended, failed=True)  # refused, timed out or stopped: its SYNs were sent
            self._close_socket(sock)  # stopped just as the handshake completed, it is a connection to close
            late = TimeoutError("timed out") if self.timed_out else exc  # the watchdog's shutdown: a timeout
            failure = classify(late, "connect", self.address, self.connect_timeout)
            if isinstance(exc, Exception):  # not a GreenletExit: that one leaves it pending
                self.pending = None
                self.on_request(CONNECT, name, ended - started, 0, failure)
                self._ended(ended, failure.kind)
                raise failure from None
            self._ended(ended, "unfinished")
            raise
        ended = time.perf_counter()
        self.deadline, self.connecting = 0.0, None
        self.pending = None
        self.on_request(CONNECT, name, ended - started, 0, None)
        record.connect_ended(sock, ended)
        record.connected = 1
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        return sock

    def close(self, outcome: str = "ok") -> None:
        if self.sock is not None:
            now = time.perf_counter()  # before: the FIN leaves inside close(), which then tidies gevent's watchers
            record = self.record
            if record is not None and now - record.connect_end >= RETRANSMIT_FLOOR_S:
                # Segments it sent again after the handshake (early data dropped at a full queue …); none
                # can have been re-sent sooner than the kernel's first retransmission timer.
                record.data_retrans = max(connect_info(self.sock)[0] - record.syn_retrans, 0)
            self._close_socket(self.sock)
            self.sock = None
            self._ended(now, outcome)

    def _close_socket(self, sock: socket.socket) -> None:
        if self.linger0:  # a RST instead of a FIN: no TIME_WAIT here
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
        sock.close()

    def _ended(self, now: float, outcome: str) -> None:
        record, self.record = self.record, None
        if record is not None:
            record.closed, record.outcome = now, outcome
            self.on_connection(record)

    # -- requests --------------------------------------------------------------------------
    def request(
        self,
        op: int | str,
        arg: int = 0,
        payload: bytes = b"",
        reply_len: int = 0,
        name: str = "request",
        *,
        frame: bytes | None = None,
        first_reply: bool = False,
        intended: float | None = None,
    ) -> bytes | None:
        """Send one request and read its reply; fires one request event.  Returns the reply body, or None after a
        failure (already reported; the connection is closed so the next call reconnects).  ``frame`` may carry the
        encoded request (a hot path, or another protocol's).  ``intended`` (``perf_counter``) is the open-loop
        schedule's start for it, or the one-shot user's connect start: the latency reported then runs from there."""
        request_type = OP_NAMES.get(op, str(op))
        sock = self.sock
        if sock is None:
            try:
                sock = self.connect()
            except RequestFailure:
                return None
        if frame is None:
            frame = self.protocol.request() if self.protocol else encode_request(int(op), arg, payload, reply_len)
        started = time.perf_counter()
        basis = started if intended is None else intended
        self.pending = (request_type, name, basis, (name, self.connect_started) if first_reply else None)
        record = self.record
        first = record is not None and not record.requests  # the connection's first request: timed in full
        if first:
            record.sent = started  # type: ignore[union-attr]
        self.deadline = started + self.reply_timeout
        try:
            sent = sock.send(frame)  # not sendall(): see repeat()
            if sent < len(frame):
                sock.sendall(frame[sent:])
            if self.protocol is None:  # socklab's frames: their own reader
                body, closing = self._read_reply(sock, first_reply, first), False
            else:
                body, closing = self._read_protocol_reply(sock, first_reply, first)
        except Exception as exc:
            self._request_failed(exc, request_type, name, started, basis)
            return None
        except BaseException:
            # Stopped (GreenletExit) mid-request: it stays pending for the accounting, but its connection goes
            # now, so a one-at-a-time server is not left serving a client that is gone until its read timeout.
            self.close("unfinished")
            raise
        self.done_at = now = time.perf_counter()
        self.pending, self.deadline = None, 0.0
        self.service = now - started
        if record is not None:
            if first:
                record.last_byte = now
            record.requests += 1
        self.on_request(request_type, name, now - basis, len(body), None)
        if closing:  # the server closes after this reply (HTTP/1.0, Connection: close): the next one reconnects
            self.close()
        return body

    def _request_failed(self, exc: Exception, request_type: str, name: str, started: float, basis: float) -> None:
        """Report a failed request (classified, timed to now) and close its connection: the next one reconnects."""
        now = time.perf_counter()
        self.pending, self.deadline = None, 0.0
        self.service = now - started
        failure = self.failure(exc)
        self.close(failure.kind)
        self.on_request(request_type, name, now - basis, 0, failure)

    def failure(self, exc: BaseException) -> RequestFailure:
        """A request's failure, classified; a connection the watchdog shut down was a late reply."""
        shut = not isinstance(exc, RequestFailure | ConnectionRefusedError) or getattr(exc, "kind", "") == "closed"
        return classify(TimeoutError() if self.timed_out and shut else exc, "request", self.address, self.reply_timeout)

    def repeat(self, request_type: str, name: str, frame: bytes, tally: Any, ledger: Any) -> None:
        """Requests back to back on this connection until one fails (reported, and the connection closed):
        the persistent users' hot loop, with no more per request than its timing needs — the send, the
        reply, its µs count in the user's ``tally`` (loadtest.client.latency) and a success in its ``ledger``
        (loadtest.client.accounting); Locust's statistics get them in bulk from the tally."""
        try:
            sock = self.sock or self.connect()
        except RequestFailure:
            return
        perf, send, recv, timeout = time.perf_counter, sock.send, sock.recv, self.reply_timeout
        size = len(frame)
        # The reply this frame must get: its header and size (reply_len, or the payload echoed), compared
        # whole; anything else — split across reads, a bad status — takes the careful path.
        reply_len = int.from_bytes(frame[9:13], "big") or size - REQUEST_HEADER_SIZE
        header, whole = RESPONSE_HEADER.pack(1 + reply_len, 0), RESPONSE_HEADER.size + reply_len
        record = self.record
        pending = [request_type, name, 0.0, None]  # updated in place: no tuple a request
        self.pending = pending  # type: ignore[assignment]
        started = 0.0
        done = 0  # requests this loop completed on the connection: into its record as the loop ends
        try:
            while True:
                pending[2] = started = perf()
                self.deadline = started + timeout
                # send(), not sendall(): gevent's sendall asks the kernel for SO_SNDBUF every call (a sixth of a
                # loopback request); a frame a socket buffer cannot take at once is the rare case.
                sent = send(frame)
                if sent < size:
                    sock.sendall(frame[sent:])
                data = recv(RECV_SIZE)
                if len(data) != whole or data[:5] != header:
                    data = data[:5] + self._read_reply_rest(sock, data)
                now = perf()
                us = int((now - started) * 1e6 + 0.5) or 1
                counts = tally.counts  # a flush swaps it for a fresh one
                counts[us] = counts.get(us, 0) + 1
                tally.bytes += len(data) - 5
                gap = now - ledger.mark  # Ledger.success, inline: a method call is a tenth of this loop
                if gap > ledger.longest_gap:
                    ledger.longest_gap = gap
                ledger.mark = now
                ledger.ok += 1
                if not done and record is not None and not record.requests:
                    record.sent, record.first_byte, record.last_byte = started, now, now
                done += 1
        except Exception as exc:
            now = perf()
            self.pending, self.deadline = None, 0.0
            if record is not None:
                record.requests += done
            failure = self.failure(exc)
            self.close(failure.kind)
            self.on_request(request_type, name, now - started, 0, failure)
        except BaseException:
            if record is not None:
                record.requests += done
            self.close("unfinished")  # stopped: it stays pending for the window's close
            raise

    def _read_reply_rest(self, sock: socket.socket, data: bytes) -> bytes:
        """The reply that `data` began, read to its end through the shared decoder; its body."""
        decoder = ResponseDecoder(MAX_REPLY)
        while True:
            if not data:
                raise RequestFailure("closed", "the server closed the connection before the reply was complete")
            try:
                replies = decoder.feed(data)
            except ProtocolError:
                raise RequestFailure("protocol error", "reply length out of range") from None
            if replies:
                if len(replies) > 1 or decoder.buffered:
                    raise RequestFailure("protocol error", "bytes after the reply")
                status, body = replies[0]
                if status != 0:
                    raise RequestFailure("bad status", STATUS_NAMES.get(status, f"unknown status {status}"))
                return body
            data = sock.recv(RECV_SIZE)

    def _read_reply(self, sock: socket.socket, first_reply: bool, first: bool = False) -> bytes:
        recv = sock.recv
        data = recv(RECV_SIZE)
        if first and data:
            self.record.first_byte = time.perf_counter()  # type: ignore[union-attr]
        if first_reply and data:
            self.on_first_reply(FIRST_REPLY, time.perf_counter() - self.connect_started)
        if len(data) >= 5:
            length, status = RESPONSE_HEADER.unpack_from(data)
            if length + 4 == len(data) and status == 0:
                return data[5:]  # the whole reply in one read: the usual case
        return self._read_reply_rest(sock, data)  # split across reads, or not OK

    def _read_protocol_reply(self, sock: socket.socket, first_reply: bool, first: bool) -> tuple[bytes, bool]:
        """Another protocol's reply, read until the protocol finds its end (or the server's close ends it);
        the reply, and whether the server closes after it."""
        protocol = self.protocol
        assert protocol is not None
        data = sock.recv(RECV_SIZE)
        if data or protocol.reply_is_close:  # the one-shot user waits for the close: its first "reply"
            now = time.perf_counter()
            if first:
                self.record.first_byte = now  # type: ignore[union-attr]
            if first_reply:
                self.on_first_reply(FIRST_REPLY, now - self.connect_started)
        buf = bytearray(data)
        while True:
            if data:
                reply = protocol.reply_end(buf)
                if reply is None:
                    data = sock.recv(RECV_SIZE)
                    buf += data
                    continue
                end, closing = reply
            else:
                end, closing = protocol.at_close(buf), True
            if end != len(buf):
                raise RequestFailure("protocol error", f"{len(buf) - end} bytes after the reply")
            return bytes(buf), closing


def _ignore(*args: Any) -> None:
    return None

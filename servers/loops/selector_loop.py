"""The selectors loop: one thread, non-blocking sockets, an event loop on ``selectors.DefaultSelector``.

The loop waits in epoll for any socket to become readable or writable and does only the work that
is ready: accept what is queued, read what arrived, write what the socket buffer will take.  Each
connection keeps its own decoder (partial frames) and its own pending output (partial writes); the
protocol rules it keeps — SLEEP a timer, replies in order, no reading while it owes, a bad frame
answered then closed, the read-timeout sweep — are ``servers.session``'s, shared with asyncio.

The loop's selector is made when the loop starts, in the process that runs it: an epoll instance
made before a fork would be one kernel object shared by every child.

The module is named selector_loop.py so that it can never shadow the standard library's
``selectors`` module.
"""

from __future__ import annotations

import contextlib
import heapq
import selectors
import socket
import time
from itertools import count
from time import monotonic
from typing import Any

from servers.base import RECV_SIZE, BaseServer, ServerConfig
from servers.connlog import ENDED_BADLY, client_fin
from servers.protocol import SLEEP, WORK, Request, burn_cpu, reply_for
from servers.session import OUT_HIGH_WATER, SWEEP_INTERVAL, Session
from servers.sockets import set_nodelay, watch_exclusively

EVENT_READ = selectors.EVENT_READ
EVENT_WRITE = selectors.EVENT_WRITE


class Connection(Session):
    """A session with its socket, its unsent output, what the selector watches it for, and its record."""

    __slots__ = (
        "accepted",
        "eof",
        "first",
        "first_read",
        "first_written",
        "in_window",
        "interest",
        "out",
        "peer",
        "read_at",
        "served",
        "sock",
    )

    def __init__(self, sock: socket.socket, server: BaseServer, now: float, peer: Any, accepted: float) -> None:
        super().__init__(server.limits, now, server.config.max_requests)
        self.sock = sock
        self.out = b""  # reply bytes the socket has not taken yet
        self.interest = EVENT_READ
        self.served = 0  # requests answered
        # For the connection log (peer None: no log): when it was accepted (an event loop starts on it then),
        # its first request read and its reply written, the client's FIN.
        self.peer, self.accepted = peer, accepted
        self.first_read = self.first_written = self.eof = 0.0
        self.first = 0  # its first request: 0 not read yet, 1 read and its reply not all written, 2 written
        # Service inside the measured window: when the requests being served were read (0: none), and the sum.
        self.read_at = self.in_window = 0.0


class SelectorLoop(BaseServer):
    loop = "selectors"
    event_loop = True

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        self.selector: selectors.BaseSelector | None = None  # made by the process that runs the loop
        self.connections: dict[socket.socket, Connection] = {}
        self._timers: list[tuple[float, int, Connection, Request]] = []
        self._timer_seq = count()
        self._now = time.monotonic()  # loop time, read once per wake-up
        self._worker_slot = 0  # this loop's slot in the tally of accepts and wake-ups
        self._counted = [0]  # replaced by the stats' cell as the loop starts
        self._window: Any = (0.0, 0.0)  # the connection log's measured window, once the loop starts

    # -- the loop ----------------------------------------------------------------------------
    def serve_listener(self, listener: socket.socket) -> None:
        listener.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, EVENT_READ, None)
        if self.config.epoll_exclusive:
            watch_exclusively(self.selector, listener)
        self._worker_slot = self.worker_index
        self._counted = self.stats.requests_cell(self.worker_index)  # its own count: += with no lock or call
        if self.connlog is not None:
            self._window = self.connlog.window
        select, timers = self.selector.select, self._timers
        next_sweep = time.monotonic() + SWEEP_INTERVAL
        while True:
            self._now = now = time.monotonic()
            deadline = timers[0][0] if timers and timers[0][0] < next_sweep else next_sweep
            for key, events in select(max(0.0, deadline - now)):
                conn = key.data
                if conn is None:
                    self._accept(key.fileobj)  # type: ignore[arg-type]
                elif events & EVENT_READ:
                    self._on_readable(conn)
                else:
                    self._on_writable(conn)
            if timers:
                self._fire_timers()
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + SWEEP_INTERVAL
                self._sweep_idle()

    def _accept(self, listener: socket.socket) -> None:
        now = self._now
        taken = 0
        # Drain the accept queue: one readiness event may stand for many clients.
        while True:
            try:
                sock, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                self.tally.add(self._worker_slot, taken, 1)  # woken for nothing when another worker took it
                return
            except OSError:
                # ECONNABORTED, or EMFILE when out of fds: leave the rest queued.
                self.stats.add(errors=1)
                self.tally.add(self._worker_slot, taken, 1)
                return
            taken += 1
            logged = self.connlog is not None
            accepted = monotonic() if logged else 0.0
            if not self.admit(sock, peer, accepted):
                continue
            sock.setblocking(False)
            set_nodelay(sock)
            conn = Connection(sock, self, now, peer if logged else None, accepted)
            self.connections[sock] = conn
            self.selector.register(sock, EVENT_READ, conn)  # type: ignore[union-attr]

    def _on_readable(self, conn: Connection) -> None:
        sock = conn.sock
        try:
            data = sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn, error=True)
            return
        if not data:
            if conn.peer is not None:
                conn.eof = monotonic()
            self._close(conn, error=conn.ended_mid_frame)
            return
        requests = conn.received(data, self._now)
        if requests and conn.peer is not None:
            if not conn.first:
                conn.first_read = conn.read_at = monotonic()
                conn.first = 1
            elif not conn.read_at:
                window = self._window  # open and not yet closed: window_open(), inlined (once a request)
                if window[0] and not window[1]:
                    conn.read_at = monotonic()
        if len(requests) == 1 and not conn.queue and not conn.out:
            # Fast path, the common case: one request, nothing owed before it.  Calls are inlined here
            # where it costs nothing to read: this runs once per request.
            request = requests[0]
            if request.op != SLEEP or not request.arg:
                if request.op == WORK:
                    burn_cpu(request.arg)  # blocks the whole loop: the lesson of this op
                reply = reply_for(request)
                self._counted[0] += 1  # counted before the client can see it: a stop just after has it
                try:
                    sent = sock.send(reply)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError:
                    self._close(conn, error=True)
                    return
                conn.served += 1
                last = conn.budget >= 0 and conn.spend(1)  # the --max-requests budget spent: close once written
                if sent < len(reply):
                    conn.out = reply[sent:]
                    conn.out_since = self._now
                    self._want(conn, EVENT_WRITE)
                    return
                if conn.first == 1:
                    self._first_written(conn)
                if conn.read_at:
                    conn.in_window += self.connlog.in_window(conn.read_at, monotonic())  # type: ignore[union-attr]
                    conn.read_at = 0.0
                if conn.decoder.error is not None or last:
                    self._serve(conn)  # answers the error status and closes, or closes after the last
                return
        if requests:
            conn.enqueue(requests)
        self._serve(conn)

    def _on_writable(self, conn: Connection) -> None:
        conn.last_active = self._now
        if self._send(conn):
            if conn.out:
                return  # still waiting for room; interest stays EVENT_WRITE
            self._serve(conn)

    # -- requests ----------------------------------------------------------------------------
    def _serve(self, conn: Connection) -> None:
        """Answer queued requests in order, writing as we go, until one must wait.

        Replies are produced only while less than OUT_HIGH_WATER bytes are unsent, so a burst of
        pipelined requests for large replies costs the memory of about one reply, not of all of them.
        """
        while True:
            replies, sleeper = conn.answer(OUT_HIGH_WATER - len(conn.out))
            if sleeper is not None:
                wake_at = time.monotonic() + sleeper.arg / 1000
                heapq.heappush(self._timers, (wake_at, next(self._timer_seq), conn, sleeper))
            if replies:
                self._counted[0] += len(replies)
                conn.served += len(replies)
                conn.spend(len(replies))
            error = conn.final_error()
            if error is not None:
                replies.append(error)
                self.stats.add(errors=1)
            if replies:
                joined = replies[0] if len(replies) == 1 else b"".join(replies)
                conn.out = conn.out + joined if conn.out else joined
            if not self._send(conn):
                return
            if conn.out or conn.sleeping or not conn.queue:
                break
        self._settle(conn)

    def _fire_timers(self) -> None:
        timers = self._timers
        now = time.monotonic()
        while timers and timers[0][0] <= now:
            _, _, conn, request = heapq.heappop(timers)
            if conn.sock.fileno() < 0:
                continue  # closed while it slept
            conn.out += conn.woke(request, now)
            self._counted[0] += 1
            conn.served += 1
            conn.spend(1)
            self._serve(conn)

    # -- output and read interest --------------------------------------------------------------
    def _send(self, conn: Connection) -> bool:
        """Write what the socket takes; False if the connection was closed."""
        out = conn.out
        if not out:
            return True
        try:
            sent = conn.sock.send(out)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            self._close(conn, error=True)
            return False
        # Slicing copies the remainder; it happens only on partial writes.
        if sent < len(out):
            conn.out = out[sent:]
            if not conn.out_since:
                conn.out_since = self._now
        else:
            conn.out = b""
            conn.out_since = 0.0
            if conn.first == 1 and conn.served:
                self._first_written(conn)
            if conn.read_at and not conn.queue and not conn.sleeping:
                self._served(conn)
        return True

    def _first_written(self, conn: Connection) -> None:
        """The first request's reply is all in the kernel's hands now."""
        conn.first = 2
        conn.first_written = monotonic()

    def _served(self, conn: Connection) -> None:
        """Every request read is answered and written: its service, cut to the measured window, is counted."""
        conn.in_window += self.connlog.in_window(conn.read_at, monotonic())  # type: ignore[union-attr]
        conn.read_at = 0.0

    def _settle(self, conn: Connection) -> None:
        """After serving: wait to write, wait on a timer, close, or read the next request."""
        if conn.out:
            self._want(conn, EVENT_WRITE)
        elif conn.closing:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_WR)
            self._close(conn, error=False)
        elif conn.sleeping:
            self._want(conn, 0)
        else:
            self._want(conn, EVENT_READ)

    def _want(self, conn: Connection, interest: int) -> None:
        if interest == conn.interest:
            return
        sock, selector = conn.sock, self.selector
        assert selector is not None
        if conn.interest == 0:
            selector.register(sock, interest, conn)
        elif interest == 0:
            selector.unregister(sock)
        else:
            selector.modify(sock, interest, conn)
        conn.interest = interest

    # -- closing -------------------------------------------------------------------------------
    def _close(self, conn: Connection, *, error: bool) -> None:
        sock = conn.sock
        if self.connections.pop(sock, None) is None:
            return
        if conn.interest and self.selector is not None:
            self.selector.unregister(sock)
            conn.interest = 0
        flags = ENDED_BADLY if error else 0
        if conn.peer is not None and not conn.eof:
            flags |= client_fin(sock)  # its FIN may have come unread (we are stopping)
        sock.close()
        conn.queue.clear()
        conn.out = b""
        if error:
            self.stats.add(errors=1)
        if conn.peer is not None:
            self.connlog.write(
                conn.accepted,
                conn.accepted,
                conn.first_read,
                conn.first_written,
                conn.eof,  # type: ignore[union-attr]
                monotonic(),
                conn.peer,
                self.port,
                conn.served,
                flags,
                conn.in_window,
            )

    def _sweep_idle(self) -> None:
        """Close what is idle too long, or too slow to send its request or take its reply."""
        if self.config.read_timeout <= 0:
            return
        cutoff = time.monotonic() - self.config.read_timeout
        for conn in [c for c in self.connections.values() if c.overdue(cutoff)]:
            self._close(conn, error=True)

    def open_connections(self) -> int:
        return len(self.connections)

    def close_connections(self) -> None:
        for conn in list(self.connections.values()):
            self._close(conn, error=False)
        if self.selector is not None:
            self.selector.close()
        super().close_connections()

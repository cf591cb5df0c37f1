"""selectors — one thread, non-blocking sockets, an event loop on selectors.DefaultSelector.

The loop waits in epoll for any socket to become readable or writable and does
only the work that is ready: accept what is queued, read what arrived, write
what the socket buffer will take.  Each connection keeps its own decoder
(partial frames) and its own pending output (partial writes).

Rules that keep one loop fair and bounded:

- SLEEP never blocks: it becomes a timer, and the loop serves everybody else
  while it runs.  WORK runs inline and *does* stop the loop for its duration —
  an event loop buys concurrency for waiting, not for computing.
- A connection is read only while it owes nothing: while it has a timer
  running or unsent output, it is taken out of the read set.  A client that
  pipelines requests and never reads replies therefore costs at most one
  reply and one frame of memory, and the kernel's buffers push back on it.
- Replies to one connection go out in request order.
- ``read_timeout`` bounds, checked by a once-a-second sweep: no progress in either
  direction for that long (a timer keeps a connection alive); a request that has
  not fully arrived that long after its first byte; a reply not fully taken that
  long after it was ready.  A trickling or slowly reading client cannot hold a
  connection by moving a byte now and then.
- Past ``max_connections`` open, a new connection is accepted and closed at once.

The variant file is named selector_loop.py so that it can never shadow the
standard library's ``selectors`` module.
"""

from __future__ import annotations

import contextlib
import heapq
import selectors
import socket
import time
from collections import deque
from itertools import count

from servers.base import RECV_SIZE, BaseServer, set_nodelay
from servers.protocol import (
    Op,
    Request,
    RequestDecoder,
    burn_cpu,
    error_response,
    reply_for,
)

EVENT_READ = selectors.EVENT_READ
EVENT_WRITE = selectors.EVENT_WRITE
SLEEP, WORK = int(Op.SLEEP), int(Op.WORK)
SWEEP_INTERVAL = 1.0
OUT_HIGH_WATER = 256 * 1024  # stop producing replies while this much is unsent


class Connection:
    __slots__ = ("closing", "decoder", "frame_since", "interest", "last_active", "out", "out_since", "queue",
                 "sleeping", "sock")  # fmt: skip

    def __init__(self, sock: socket.socket, decoder: RequestDecoder, now: float) -> None:
        self.sock = sock
        self.decoder = decoder
        self.queue: deque[Request] = deque()  # decoded, not yet served (behind a SLEEP)
        self.out = b""  # reply bytes the socket has not taken yet
        self.sleeping = False  # a SLEEP timer is running for this connection
        self.closing = False  # close once `out` is flushed (after an error status)
        self.last_active = now
        self.frame_since = 0.0  # when the request now partly read began to arrive (0: none)
        self.out_since = 0.0  # when the unsent reply bytes became ready (0: none)
        self.interest = EVENT_READ


class SelectorServer(BaseServer):
    variant = "selectors"
    description = "one thread, non-blocking sockets, epoll via selectors; SLEEP is a timer"
    # Counters are touched by the loop's one thread only: plain Counters, no lock.

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.listener.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.connections: dict[socket.socket, Connection] = {}
        self._timers: list[tuple[float, int, Connection, Request]] = []
        self._timer_seq = count()
        self._now = time.monotonic()  # loop time, read once per wake-up

    # -- the loop ----------------------------------------------------------------------
    def serve_forever(self) -> None:
        select = self.selector.select
        self.selector.register(self.listener, EVENT_READ, None)
        timers = self._timers
        next_sweep = time.monotonic() + SWEEP_INTERVAL
        while True:
            self._now = now = time.monotonic()
            deadline = timers[0][0] if timers and timers[0][0] < next_sweep else next_sweep
            for key, events in select(max(0.0, deadline - now)):
                conn = key.data
                if conn is None:
                    self._accept()
                elif events & EVENT_READ:
                    self._on_readable(conn)
                else:
                    self._on_writable(conn)
            if timers:
                self._fire_timers()
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + SWEEP_INTERVAL
                self._sweep_idle()

    def _accept(self) -> None:
        now = self._now
        # Drain the accept queue: one readiness event may stand for many clients.
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # ECONNABORTED, or EMFILE when out of fds: leave the rest queued.
                self.stats.add(errors=1)
                return
            if len(self.connections) >= self.config.max_connections:
                self.reject(sock)
                continue
            sock.setblocking(False)
            set_nodelay(sock)
            conn = Connection(sock, RequestDecoder(self.limits), now)
            self.connections[sock] = conn
            self.selector.register(sock, EVENT_READ, conn)
            self.stats.add(connections=1)

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
            self._close(conn, error=conn.decoder.buffered > 0)
            return
        conn.last_active = self._now
        requests = conn.decoder.feed(data)
        if conn.decoder.buffered:
            if not conn.frame_since:
                conn.frame_since = self._now
        elif conn.frame_since:
            conn.frame_since = 0.0
        if len(requests) == 1 and not conn.queue and not conn.out:
            # Fast path, the common case: one request, nothing owed before it.
            request = requests[0]
            if request.op != SLEEP or not request.arg:
                if request.op == WORK:
                    burn_cpu(request.arg)  # blocks the whole loop: the lesson of this op
                reply = reply_for(request)
                try:
                    sent = sock.send(reply)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError:
                    self._close(conn, error=True)
                    return
                self.stats.add(requests=1)
                if sent < len(reply):
                    conn.out = reply[sent:]
                    conn.out_since = self._now
                    self._want(conn, EVENT_WRITE)
                elif conn.decoder.error is not None:
                    self._serve(conn)  # answers the error status and closes
                return
        if requests:
            conn.queue.extend(requests)
        self._serve(conn)

    def _on_writable(self, conn: Connection) -> None:
        conn.last_active = self._now
        if self._send(conn):
            if conn.out:
                return  # still waiting for room; interest stays EVENT_WRITE
            self._serve(conn)

    # -- requests ----------------------------------------------------------------------
    def _serve(self, conn: Connection) -> None:
        """Answer queued requests in order, writing as we go, until one must wait.

        Replies are produced only while less than OUT_HIGH_WATER bytes are
        unsent, so a burst of pipelined requests for large replies costs the
        memory of about one reply, not of all of them.
        """
        queue = conn.queue
        while True:
            parts = []
            pending = len(conn.out)
            served = 0
            while queue and pending < OUT_HIGH_WATER:
                request = queue.popleft()
                if request.op == Op.SLEEP and request.arg:
                    conn.sleeping = True
                    heapq.heappush(
                        self._timers,
                        (time.monotonic() + request.arg / 1000, next(self._timer_seq), conn, request),
                    )
                    break
                if request.op == Op.WORK:
                    burn_cpu(request.arg)  # blocks the whole loop: the lesson of this op
                reply = reply_for(request)
                parts.append(reply)
                pending += len(reply)
                served += 1
            if served:
                self.stats.add(requests=served)
            if not queue and not conn.sleeping and conn.decoder.error is not None and not conn.closing:
                parts.append(error_response(conn.decoder.error))
                conn.closing = True
                self.stats.add(errors=1)
            if parts:
                joined = parts[0] if len(parts) == 1 else b"".join(parts)
                conn.out = conn.out + joined if conn.out else joined
            if not self._send(conn):
                return
            if conn.out or conn.sleeping or not queue:
                break
        self._settle(conn)

    def _fire_timers(self) -> None:
        timers = self._timers
        now = time.monotonic()
        while timers and timers[0][0] <= now:
            _, _, conn, request = heapq.heappop(timers)
            if conn.sock.fileno() < 0:
                continue  # closed while it slept
            conn.sleeping = False
            conn.last_active = now
            conn.out += reply_for(request)
            self.stats.add(requests=1)
            self._serve(conn)

    # -- output and read interest ------------------------------------------------------
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
        return True

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
        sock = conn.sock
        if conn.interest == 0:
            self.selector.register(sock, interest, conn)
        elif interest == 0:
            self.selector.unregister(sock)
        else:
            self.selector.modify(sock, interest, conn)
        conn.interest = interest

    # -- closing -----------------------------------------------------------------------
    def _close(self, conn: Connection, *, error: bool) -> None:
        sock = conn.sock
        if self.connections.pop(sock, None) is None:
            return
        if conn.interest:
            self.selector.unregister(sock)
            conn.interest = 0
        sock.close()
        conn.queue.clear()
        conn.out = b""
        if error:
            self.stats.add(errors=1)

    def _sweep_idle(self) -> None:
        """Close what is idle too long, or too slow to send its request or take its reply."""
        if self.config.read_timeout <= 0:
            return
        cutoff = time.monotonic() - self.config.read_timeout
        late = [
            c for c in self.connections.values()
            if (c.last_active < cutoff and not c.sleeping)
            or 0 < c.frame_since < cutoff
            or 0 < c.out_since < cutoff
        ]  # fmt: skip
        for conn in late:
            self._close(conn, error=True)

    def open_connections(self) -> int:
        return len(self.connections)

    def close_connections(self) -> None:
        for conn in list(self.connections.values()):
            self._close(conn, error=False)
        self.selector.close()

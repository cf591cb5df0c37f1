"""The asyncio loop: one event loop, a ``Protocol`` per connection — the idiomatic modern Python server.

The same design as the selectors loop (one thread, non-blocking sockets, epoll underneath), written
the way most Python code writes it today: asyncio calls ``data_received`` with the bytes that
arrived, and the protocol writes replies to its transport.  The rules are ``servers.session``'s:
SLEEP is ``loop.call_later`` (the loop serves everybody else meanwhile), WORK runs inline and blocks
the loop, replies go out in order, and while a SLEEP is pending or the transport holds more unsent
bytes than its high-water mark (asyncio's ``pause_writing``) the connection is not read.

The file is named asyncio_loop.py so that it can never shadow ``asyncio``.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from typing import Any

from servers.base import BaseServer, ServerStopping
from servers.connlog import ENDED_BADLY, client_fin
from servers.protocol import Request
from servers.session import SWEEP_INTERVAL, Session


class RequestProtocol(Session, asyncio.Protocol):
    __slots__ = (
        "accepted",
        "eof",
        "fin",
        "first_read",
        "first_written",
        "in_window",
        "peer",
        "read_at",
        "served",
        "server",
        "transport",
        "writing_paused",
    )

    def __init__(self, server: AsyncioLoop) -> None:
        super().__init__(server.limits, time.monotonic(), server.config.max_requests)
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.writing_paused = False
        self.served = 0
        # For the connection log (peer None: no log).
        self.peer: Any = None
        self.accepted = self.first_read = self.first_written = self.eof = 0.0
        self.fin = 0  # connlog.CLIENT_FIN: its FIN had come unread when we closed it
        # Service inside the measured window: when the requests being served were read (0: none), and the sum.
        self.read_at = self.in_window = 0.0

    # -- asyncio's callbacks -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio accepted it a moment ago, in the same turn of its loop: the record starts here.
        self.transport = transport  # type: ignore[assignment]
        server = self.server
        peer = transport.get_extra_info("peername") if server.connlog is not None else None
        accepted = time.monotonic()
        if not server.admit(transport, peer, accepted):  # over the cap: the transport is closed at once
            self.closing = True
            return
        self.peer, self.accepted = peer, accepted
        server.tally.add(server.worker_index, 1)  # asyncio accepts inside its own loop: no wake-ups to count
        server.protocols.add(self)
        self.last_active = accepted

    def data_received(self, data: bytes) -> None:
        requests = self.received(data, time.monotonic())
        if requests and self.peer is not None:
            if not self.first_read:
                self.first_read = self.read_at = time.monotonic()
            elif not self.read_at and self.server.connlog.window_open():  # type: ignore[union-attr]
                self.read_at = time.monotonic()
        self.enqueue(requests)
        self.serve()

    def eof_received(self) -> None:
        if self.peer is not None:
            self.eof = time.monotonic()

    def pause_writing(self) -> None:
        self.writing_paused = True
        self.out_since = self.out_since or time.monotonic()
        self.transport.pause_reading()  # type: ignore[union-attr]

    def resume_writing(self) -> None:
        self.writing_paused = False
        self.out_since = 0.0
        self.last_active = time.monotonic()
        self.serve()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.protocols.discard(self)
        bad = (exc is not None or self.ended_mid_frame) and not self.closing
        if bad:
            self.server.stats.add(errors=1)
        self.closing = True
        if self.peer is not None:
            self.server.connlog.write(
                self.accepted,
                self.accepted,
                self.first_read,
                self.first_written,
                self.eof,  # type: ignore[union-attr]
                time.monotonic(),
                self.peer,
                self.server.port,
                self.served,
                (ENDED_BADLY if bad else 0) | self.fin,
                self.in_window,
            )
            self.peer = None

    # -- requests ------------------------------------------------------------------------------
    def serve(self) -> None:
        """Answer queued requests in order until one must wait (a SLEEP, or a full write buffer)."""
        transport = self.transport
        assert transport is not None
        high = transport.get_write_buffer_limits()[1]
        while self.queue and not self.sleeping and not self.writing_paused:
            # Produce only what the transport's buffer has room for: a write past its high-water mark
            # calls pause_writing at once, and the rest waits for resume_writing.
            replies, sleeper = self.answer(max(high - transport.get_write_buffer_size(), 1))
            if replies:  # pipelined requests: their replies in one write (one send)
                transport.write(replies[0] if len(replies) == 1 else b"".join(replies))
            if replies:
                self.server.stats.add(requests=len(replies))
                self.written(len(replies))
            if sleeper is not None:
                transport.pause_reading()
                asyncio.get_running_loop().call_later(sleeper.arg / 1000, self.woke_up, sleeper)
                return
        error = self.final_error()
        if error is not None:
            transport.write(error)
            self.server.stats.add(errors=1)
            transport.close()  # after the buffered replies are written
        elif not self.writing_paused and not self.closing:
            transport.resume_reading()

    def woke_up(self, request: Request) -> None:
        if self.closing or self.transport is None or self.transport.is_closing():
            return
        self.transport.write(self.woke(request, time.monotonic()))
        self.server.stats.add(requests=1)
        self.written(1)
        self.serve()

    def written(self, n: int) -> None:
        """Replies handed to the transport (asyncio writes at once what the socket takes)."""
        if not self.served and self.peer is not None:
            self.first_written = time.monotonic()
        if self.read_at and not self.queue and not self.sleeping:  # every request read is answered
            self.in_window += self.server.connlog.in_window(self.read_at, time.monotonic())  # type: ignore[union-attr]
            self.read_at = 0.0
        self.served += n
        if self.spend(n) and self.transport is not None:
            self.transport.close()  # the --max-requests budget spent: FIN after the buffered replies


class AsyncioLoop(BaseServer):
    loop = "asyncio"
    event_loop = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.protocols: set[RequestProtocol] = set()
        self.aio: asyncio.AbstractEventLoop | None = None  # made by the process that runs it

    def serve_listener(self, listener: socket.socket) -> None:
        listener.setblocking(False)
        self.aio = aio = asyncio.new_event_loop()
        aio.run_until_complete(
            aio.create_server(lambda: RequestProtocol(self), sock=listener, backlog=self.config.backlog)
        )
        aio.call_later(SWEEP_INTERVAL, self._sweep)
        # asyncio logs and swallows a BaseException raised inside a callback, so a signal handler that
        # raises ServerStopping would be lost whenever the signal lands mid-callback: stop the loop.
        for sig in (signal.SIGTERM, signal.SIGINT):
            aio.add_signal_handler(sig, aio.stop)
        aio.run_forever()
        raise ServerStopping

    def _sweep(self) -> None:
        if self.config.read_timeout > 0:
            cutoff = time.monotonic() - self.config.read_timeout
            for protocol in [p for p in self.protocols if p.overdue(cutoff)]:
                protocol.closing = True
                self.stats.add(errors=1)
                protocol.transport.abort()  # type: ignore[union-attr]
        self.aio.call_later(SWEEP_INTERVAL, self._sweep)  # type: ignore[union-attr]

    def open_connections(self) -> int:
        return len(self.protocols)

    def close_connections(self) -> None:
        for protocol in list(self.protocols):
            protocol.closing = True
            if protocol.transport is not None:
                sock = protocol.transport.get_extra_info("socket")
                if protocol.peer is not None and not protocol.eof and sock is not None:
                    protocol.fin = client_fin(sock)
                protocol.transport.abort()
        if self.aio is not None:
            # One turn of the loop runs the callbacks that close the sockets.
            self.aio.run_until_complete(asyncio.sleep(0))
            self.aio.close()
        super().close_connections()

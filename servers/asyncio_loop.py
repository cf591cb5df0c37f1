"""asyncio — the idiomatic modern Python server: one event loop, a ``Protocol`` per connection.

The same design as ``selectors`` (one thread, non-blocking sockets, epoll
underneath), written the way most Python code writes it today: asyncio calls
``data_received`` with the bytes that arrived, the protocol decodes them with
the shared decoder and writes replies to its transport.  SLEEP is
``loop.call_later`` (the loop serves everybody else meanwhile); WORK runs
inline and blocks the loop, exactly as in ``selectors``.

Rules, as in ``selectors``: replies go out in request order; while a SLEEP is
pending, or while the transport holds more unsent bytes than its high-water
mark (asyncio's ``pause_writing``), the connection is not read, so a client that
pipelines and never reads costs about one reply of memory.  ``read_timeout``
bounds idleness, a request's arrival and a reply's uptake, checked once a
second.  Past ``max_connections`` a new connection is closed at once.

The file is named asyncio_loop.py so that it can never shadow ``asyncio``.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import deque
from typing import Any

from servers.base import BaseServer, ServerStopping
from servers.protocol import Op, Request, RequestDecoder, burn_cpu, error_response, reply_for

SLEEP, WORK = int(Op.SLEEP), int(Op.WORK)
SWEEP_INTERVAL = 1.0


class RequestProtocol(asyncio.Protocol):
    def __init__(self, server: AsyncioServer) -> None:
        self.server = server
        self.decoder = RequestDecoder(server.limits)
        self.queue: deque[Request] = deque()
        self.transport: asyncio.Transport | None = None
        self.sleeping = False  # a SLEEP timer runs: the next replies wait for it
        self.writing_paused = False
        self.closing = False
        self.last_active = self.frame_since = self.out_since = 0.0

    # -- asyncio's callbacks -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        server = self.server
        if len(server.protocols) >= server.config.max_connections:
            transport.close()
            server.stats.add(rejected=1)
            self.closing = True
            return
        server.protocols.add(self)
        server.stats.add(connections=1)
        self.last_active = time.monotonic()

    def data_received(self, data: bytes) -> None:
        now = self.last_active = time.monotonic()
        requests = self.decoder.feed(data)
        if self.decoder.buffered:
            self.frame_since = self.frame_since or now
        else:
            self.frame_since = 0.0
        if requests:
            self.queue.extend(requests)
        self.serve()

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
        if (exc is not None or self.decoder.buffered) and not self.closing:
            self.server.stats.add(errors=1)
        self.closing = True

    # -- requests ----------------------------------------------------------------------------
    def serve(self) -> None:
        """Answer queued requests in order until one must wait (a SLEEP, or a full write buffer)."""
        transport, queue, served = self.transport, self.queue, 0
        assert transport is not None
        while queue and not self.sleeping and not self.writing_paused:
            request = queue.popleft()
            if request.op == SLEEP and request.arg:
                self.sleeping = True
                transport.pause_reading()
                asyncio.get_running_loop().call_later(request.arg / 1000, self.woke, request)
                break
            if request.op == WORK:
                burn_cpu(request.arg)  # blocks the whole loop: the lesson of this op
            transport.write(reply_for(request))
            served += 1
        if served:
            self.server.stats.add(requests=served)
        if not queue and not self.sleeping and self.decoder.error is not None and not self.closing:
            transport.write(error_response(self.decoder.error))
            self.closing = True
            self.server.stats.add(errors=1)
            transport.close()  # after the buffered replies are written
        elif not self.sleeping and not self.writing_paused and not self.closing:
            transport.resume_reading()

    def woke(self, request: Request) -> None:
        if self.closing or self.transport is None or self.transport.is_closing():
            return
        self.sleeping = False
        self.last_active = time.monotonic()
        self.transport.write(reply_for(request))
        self.server.stats.add(requests=1)
        self.serve()

    def overdue(self, cutoff: float) -> bool:
        """Idle, or too slow to send its request or take its reply, for read_timeout."""
        return (
            (self.last_active < cutoff and not self.sleeping)
            or 0 < self.frame_since < cutoff
            or 0 < self.out_since < cutoff
        )


class AsyncioServer(BaseServer):
    variant = "asyncio"
    description = "one asyncio event loop, a Protocol per connection; SLEEP is loop.call_later"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.protocols: set[RequestProtocol] = set()
        self.loop = asyncio.new_event_loop()

    def serve_forever(self) -> None:
        self.listener.setblocking(False)
        self.loop.run_until_complete(
            self.loop.create_server(lambda: RequestProtocol(self), sock=self.listener, backlog=self.config.backlog)
        )
        self.loop.call_later(SWEEP_INTERVAL, self._sweep)
        # asyncio logs and swallows a BaseException raised inside a callback, so a signal handler that
        # raises ServerStopping would be lost whenever the signal lands mid-callback: stop the loop.
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.loop.stop)
        self.loop.run_forever()
        raise ServerStopping

    def _sweep(self) -> None:
        if self.config.read_timeout > 0:
            cutoff = time.monotonic() - self.config.read_timeout
            for protocol in [p for p in self.protocols if p.overdue(cutoff)]:
                protocol.closing = True
                self.stats.add(errors=1)
                protocol.transport.abort()  # type: ignore[union-attr]
        self.loop.call_later(SWEEP_INTERVAL, self._sweep)

    def open_connections(self) -> int:
        return len(self.protocols)

    def close_connections(self) -> None:
        for protocol in list(self.protocols):
            protocol.closing = True
            if protocol.transport is not None:
                protocol.transport.abort()
        # One turn of the loop runs the callbacks that close the sockets.
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()



"""What every server variant shares: the listener, the life cycle, counters, and the
request loop over one blocking socket.

The shape is CPython's ``socketserver``: :class:`BaseServer` owns a default
accept loop, ``serve_forever()``, that hands each accepted connection to one
overridable hook, ``process_request(conn)``.  The default hook serves the
connection in the calling thread — the iterative server.  A concurrency model
is a small override of that hook (a thread per connection, a pool, a fork), or,
for an event loop, of ``serve_forever()`` itself.  So ``blocking.py``,
``threaded.py`` and ``selector_loop.py`` can be read side by side and differ
only where their designs differ (Stevens' serv00…serv08 in spirit).

Traits.  A variant declares what it is as class attributes —
``serves_one_at_a_time``, ``uses_threads``, ``uses_processes`` — and reports and
findings key on those, never on a variant's name.

Counters.  :class:`Counters` are plain integers in one process.  A variant
that serves from several processes sets ``uses_processes`` and gets
:class:`SharedCounters` instead: the same three numbers in shared memory, so
the ``stopped`` line sums every process.

Stopping.  SIGTERM and SIGINT raise :class:`ServerStopping` in the main thread.
Raising from the handler is what interrupts a blocking ``accept()``/``recv()``
(PEP 475 retries the call otherwise); ``ServerStopping`` derives from
BaseException so no ``except Exception`` in a request path swallows it.
``run()`` then closes the listener and every open connection and prints the
``stopped`` line.  The harness stops a server by signalling its process group,
so children a variant forks never outlive it.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import struct
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, ClassVar

from servers.protocol import Limits, RequestDecoder, error_response, serve_request_blocking

RECV_SIZE = 65536
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 6666
DEFAULT_BACKLOG = 128
DEFAULT_READ_TIMEOUT = 10.0


class ServerStopping(BaseException):
    """Raised in the main thread by SIGTERM/SIGINT to unwind a blocking call."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    backlog: int = DEFAULT_BACKLOG
    read_timeout: float = DEFAULT_READ_TIMEOUT  # seconds an idle or stalled connection is kept
    limits: Limits = field(default_factory=Limits)


class Counters:
    """connections accepted, requests answered OK, connections that ended badly — one process."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0
        self.errors = 0

    def add(self, connections: int = 0, requests: int = 0, errors: int = 0) -> None:
        self.connections += connections
        self.requests += requests
        self.errors += errors

    def snapshot(self) -> dict[str, int]:
        return {"connections": self.connections, "requests": self.requests, "errors": self.errors}


class LockedCounters(Counters):
    """For several threads of one process: ``+=`` on an attribute is not atomic."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def add(self, connections: int = 0, requests: int = 0, errors: int = 0) -> None:
        with self._lock:
            super().add(connections, requests, errors)


class SharedCounters(Counters):
    """For several processes: three integers in memory shared across fork(), under one lock."""

    def __init__(self) -> None:
        # Deliberately not calling super().__init__: the values live in shared memory.
        self._values = multiprocessing.RawArray("q", 3)
        self._lock = multiprocessing.Lock()

    def add(self, connections: int = 0, requests: int = 0, errors: int = 0) -> None:
        with self._lock:
            values = self._values
            values[0] += connections
            values[1] += requests
            values[2] += errors

    connections = property(lambda self: self._values[0])  # type: ignore[assignment]
    requests = property(lambda self: self._values[1])  # type: ignore[assignment]
    errors = property(lambda self: self._values[2])  # type: ignore[assignment]


def emit(event: str, **fields: Any) -> None:
    """One flushed JSON line on stdout: the only channel to whoever started us."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


class BaseServer:
    variant: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # Traits: what reports and findings key on (never the variant's name).
    serves_one_at_a_time: ClassVar[bool] = False
    uses_threads: ClassVar[bool] = False
    uses_processes: ClassVar[bool] = False

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.limits = config.limits
        self.stats = self.make_counters()
        self.listener = open_listener(config.host, config.port, config.backlog)
        self.port: int = self.listener.getsockname()[1]

    @classmethod
    def traits(cls) -> dict[str, bool]:
        return {
            "serves_one_at_a_time": cls.serves_one_at_a_time,
            "uses_threads": cls.uses_threads,
            "uses_processes": cls.uses_processes,
        }

    def make_counters(self) -> Counters:
        if self.uses_processes:
            return SharedCounters()
        return LockedCounters() if self.uses_threads else Counters()

    # -- the hooks a variant overrides -----------------------------------------------------
    def serve_forever(self) -> None:
        """Accept connections one by one and hand each to ``process_request``."""
        accept = self.listener.accept
        while True:
            conn, _ = accept()
            self.stats.add(connections=1)
            self.process_request(conn)

    def process_request(self, conn: socket.socket) -> None:
        """Serve one accepted connection; by default right here, until it ends."""
        self.serve_connection(conn)

    def close_connections(self) -> None:
        """Close every connection still open; called once, on the way out."""

    # -- the request loop over one blocking socket ---------------------------------------------
    def serve_connection(self, conn: socket.socket) -> None:
        """read → decode → serve each request in this thread → sendall, until the client
        closes, sends a bad frame (answered with its status, then closed), resets, or stays
        silent or unreading for ``read_timeout``."""
        set_nodelay(conn)
        set_io_timeout(conn, self.config.read_timeout)
        decoder = RequestDecoder(self.limits)
        recv, sendall, add = conn.recv, conn.sendall, self.stats.add
        clean = False
        try:
            while True:
                data = recv(RECV_SIZE)
                if not data:
                    clean = decoder.buffered == 0  # closing mid-frame is a client error
                    return
                requests = decoder.feed(data)
                for request in requests:
                    sendall(serve_request_blocking(request))
                if requests:
                    add(requests=len(requests))
                if decoder.error is not None:
                    sendall(error_response(decoder.error))
                    conn.shutdown(socket.SHUT_WR)
                    return
        except OSError:
            pass  # reset, broken pipe, or SO_RCVTIMEO/SO_SNDTIMEO expired (EAGAIN)
        except ServerStopping:
            clean = True  # we are closing it, not the client misbehaving
            raise
        finally:
            conn.close()
            if not clean:
                add(errors=1)

    # -- life cycle --------------------------------------------------------------------
    def run(self) -> int:
        """Announce, serve until SIGTERM/SIGINT, clean up, report.  Returns the exit status."""
        previous = {sig: signal.signal(sig, _raise_stopping) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            emit("listening", **self.listening_fields())
            self.serve_forever()
        except ServerStopping:
            pass
        finally:
            # A second signal during clean-up must not cut it short.
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)
            self.listener.close()
            self.close_connections()
            emit("stopped", **self.stats.snapshot())
        return 0

    def listening_fields(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "host": self.config.host,
            "port": self.port,
            "backlog": self.config.backlog,
            "pid": os.getpid(),
            "traits": self.traits(),
        }


def _raise_stopping(signum: int, frame: object) -> None:
    raise ServerStopping(signum)


def open_listener(host: str, port: int, backlog: int) -> socket.socket:
    """socket() + bind() + listen(backlog); raises OSError with a readable message."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # Lets a restarted server bind while old connections sit in TIME_WAIT;
        # Linux still refuses a port that another socket is listening on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def set_io_timeout(sock: socket.socket, seconds: float) -> None:
    """Bound every recv()/send() on a blocking socket by `seconds`, in the kernel.

    SO_RCVTIMEO/SO_SNDTIMEO rather than ``sock.settimeout()``: Python's timeout
    mode makes the socket non-blocking and adds a poll() before every call,
    which costs CPU on every request; the kernel options cost nothing until
    they fire (the call then fails with EAGAIN, a BlockingIOError).
    """
    if seconds <= 0:
        return
    sec = int(seconds)
    timeval = struct.pack("ll", sec, int((seconds - sec) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


def set_nodelay(sock: socket.socket) -> None:
    # Small replies go out at once instead of waiting on Nagle for an ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

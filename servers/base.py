"""What every server variant shares: the listener, the run/stop life cycle, counters,
and the request loop for variants that give each connection a blocking socket.

A variant is a subclass of :class:`BaseServer` that implements ``serve_forever()``
— how it waits for connections and bytes — and nothing else.  Framing, caps and
request semantics come from :mod:`servers.protocol`; binding, the ``listening``
and ``stopped`` lines, and signal handling come from here.  So ``blocking.py``,
``threaded.py`` and ``selector_loop.py`` can be read side by side and differ
only where their concurrency models differ (Stevens' serv01…serv08 in spirit).

Stopping.  SIGTERM and SIGINT raise :class:`ServerStopping` in the main thread.
Raising from the handler is what interrupts a blocking ``accept()``/``recv()``
(PEP 475 retries the call otherwise); ``ServerStopping`` derives from
BaseException so no ``except Exception`` in a request path swallows it.
``run()`` then closes the listener and every open connection and prints the
``stopped`` line.
"""

from __future__ import annotations

import json
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


@dataclass
class Stats:
    connections: int = 0  # accepted
    requests: int = 0  # answered OK
    errors: int = 0  # bad frames answered with a status, resets, timeouts


def emit(event: str, **fields: Any) -> None:
    """One flushed JSON line on stdout: the only channel to whoever started us."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


class BaseServer:
    variant: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.limits = config.limits
        self.stats = Stats()
        self.listener = open_listener(config.host, config.port, config.backlog)
        self.port: int = self.listener.getsockname()[1]

    # -- the one method a variant must write -------------------------------------------
    def serve_forever(self) -> None:
        raise NotImplementedError

    def close_connections(self) -> None:
        """Close every connection still open; called once, on the way out."""

    # -- life cycle --------------------------------------------------------------------
    def run(self) -> int:
        """Announce, serve until SIGTERM/SIGINT, clean up, report.  Returns the exit status."""
        previous = {sig: signal.signal(sig, _raise_stopping) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            emit(
                "listening",
                variant=self.variant,
                host=self.config.host,
                port=self.port,
                backlog=self.config.backlog,
                pid=os.getpid(),
            )
            self.serve_forever()
        except ServerStopping:
            pass
        finally:
            # A second signal during clean-up must not cut it short.
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)
            self.listener.close()
            self.close_connections()
            emit(
                "stopped",
                connections=self.stats.connections,
                requests=self.stats.requests,
                errors=self.stats.errors,
            )
        return 0


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


class BlockingConnectionMixin:
    """The request loop over one blocking socket, shared by `blocking` and `threaded`.

    read → decode → serve each request in this thread → sendall, until the
    client closes, sends a bad frame (answered with its status, then closed),
    resets, or stays silent or unreading for ``read_timeout``.
    """

    config: ServerConfig
    limits: Limits
    stats: Stats

    def serve_connection(self, conn: socket.socket) -> None:
        set_nodelay(conn)
        set_io_timeout(conn, self.config.read_timeout)
        decoder = RequestDecoder(self.limits)
        recv, sendall = conn.recv, conn.sendall
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
                    self.count_requests(len(requests))
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
                self.count_error()

    def count_requests(self, n: int) -> None:
        self.stats.requests += n

    def count_error(self) -> None:
        self.stats.errors += 1


class LockedCountersMixin:
    """Counters updated from many threads: ``+=`` on an attribute is not atomic."""

    stats: Stats

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stats_lock = threading.Lock()

    def count_requests(self, n: int) -> None:
        with self._stats_lock:
            self.stats.requests += n

    def count_error(self) -> None:
        with self._stats_lock:
            self.stats.errors += 1

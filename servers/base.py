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

Stopping under a thread storm.  With thousands of threads waking at once (clients
that all just closed), the main thread is one waiter among thousands for the GIL:
it needed seconds just to run its signal handler, and every system call after that
(each releases and retakes the GIL) cost another turn.  So Python's C-level handler
also records the signal in a pipe (``signal.set_wakeup_fd``, no GIL needed), a thread
that ends a connection checks it (:meth:`BaseServer.stop_if_signalled`), and
whichever thread sees it first writes the ``stopped`` line and exits through libc
calls that keep the GIL (``ctypes.PyDLL``): no further turn to wait for.  The
kernel closes every socket as the process exits.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import os
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from servers.protocol import Limits, RequestDecoder, error_response, serve_request_blocking

RECV_SIZE = 65536
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 6666
DEFAULT_BACKLOG = 128
DEFAULT_READ_TIMEOUT = 10.0
# Past ~4,000 threads the kernel's teardown of a thread-per-connection server can exceed the 2 s stop
# bound (8,000 took up to 22 s); 2,048 stopped within ~1 s in every run measured.
DEFAULT_MAX_CONNECTIONS = 2048
DEFAULT_WORKERS = 4


class ServerStopping(BaseException):
    """Raised in the main thread by SIGTERM/SIGINT to unwind a blocking call."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    backlog: int = DEFAULT_BACKLOG
    # Seconds a connection may be idle, a request may take to arrive from its first byte, and a
    # reply may take to be taken from when it is ready; 0 = no bound.
    read_timeout: float = DEFAULT_READ_TIMEOUT
    limits: Limits = field(default_factory=Limits)
    max_connections: int = DEFAULT_MAX_CONNECTIONS  # open at once; more are accepted and closed at once
    workers: int = DEFAULT_WORKERS  # processes or threads of a pooled variant


class Counters:
    """connections accepted, requests answered OK, connections that ended badly, connections
    closed at once because --max-connections were open — one process."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0
        self.errors = 0
        self.rejected = 0

    def add(self, connections: int = 0, requests: int = 0, errors: int = 0, rejected: int = 0) -> None:
        self.connections += connections
        self.requests += requests
        self.errors += errors
        self.rejected += rejected

    def snapshot(self) -> dict[str, int]:
        return {"connections": self.connections, "requests": self.requests, "errors": self.errors,
                "rejected": self.rejected}  # fmt: skip


class LockedCounters(Counters):
    """For several threads of one process: ``+=`` on an attribute is not atomic."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def add(self, connections: int = 0, requests: int = 0, errors: int = 0, rejected: int = 0) -> None:
        with self._lock:
            super().add(connections, requests, errors, rejected)


class SharedCounters(Counters):
    """For several processes: three integers in memory shared across fork(), under one lock."""

    def __init__(self) -> None:
        # Deliberately not calling super().__init__: the values live in shared memory.
        self._values = multiprocessing.RawArray("q", 4)
        self._lock = multiprocessing.Lock()

    def add(self, connections: int = 0, requests: int = 0, errors: int = 0, rejected: int = 0) -> None:
        with self._lock:
            values = self._values
            values[0] += connections
            values[1] += requests
            values[2] += errors
            values[3] += rejected

    connections = property(lambda self: self._values[0])  # type: ignore[assignment]
    requests = property(lambda self: self._values[1])  # type: ignore[assignment]
    errors = property(lambda self: self._values[2])  # type: ignore[assignment]
    rejected = property(lambda self: self._values[3])  # type: ignore[assignment]


_LIBC = ctypes.PyDLL(None)  # PyDLL: these calls keep the GIL (CDLL would release and retake it)


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
    pooled: ClassVar[bool] = False  # a fixed pool of --workers processes or threads
    stevens: ClassVar[str] = ""  # the design of UNP vol. 1 chapter 30 this one is (serv00 …), if any
    one_accept_queue: ClassVar[bool] = True  # False: a queue per worker, so two clients may hash to one

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.limits = config.limits
        self.stats = self.make_counters()
        self._signal_pipe = -1  # read end of the wakeup fd: a signal arrived (see stop_if_signalled)
        self._signal_buf = ctypes.create_string_buffer(16)
        self._stop_emitted = False
        self.listener = self.make_listener()
        self.port: int = self.listener.getsockname()[1]

    def make_listener(self) -> socket.socket:
        """socket() + bind() + listen(backlog): the one listener every worker shares, by default."""
        return open_listener(self.config.host, self.config.port, self.config.backlog)

    def start_workers(self) -> None:
        """Before the listening line: a pooled variant starts its workers here, so that a client
        connecting right after the line finds them ready."""

    @classmethod
    def traits(cls) -> dict[str, bool]:
        return {
            "serves_one_at_a_time": cls.serves_one_at_a_time,
            "uses_threads": cls.uses_threads,
            "uses_processes": cls.uses_processes,
            "pooled": cls.pooled,
            "one_accept_queue": cls.one_accept_queue,
        }

    def make_counters(self) -> Counters:
        if self.uses_processes:
            return SharedCounters()
        return LockedCounters() if self.uses_threads else Counters()

    # -- the hooks a variant overrides -----------------------------------------------------
    def serve_forever(self) -> None:
        """Accept connections one by one and hand each to ``process_request``."""
        accept, cap = self.listener.accept, self.config.max_connections
        while True:
            conn, _ = accept()
            if self.open_connections() >= cap:
                self.reject(conn)
                continue
            self.stats.add(connections=1)
            self.process_request(conn)

    def process_request(self, conn: socket.socket) -> None:
        """Serve one accepted connection; by default right here, until it ends."""
        self.serve_connection(conn)

    def close_connections(self) -> None:
        """Close every connection still open; called once, on the way out."""

    def open_connections(self) -> int:
        """Connections being served now (compared with --max-connections); one-at-a-time: none waiting."""
        return 0

    def reject(self, conn: socket.socket) -> None:
        """Over --max-connections: close at once (the client reads EOF), and count it."""
        conn.close()
        self.stats.add(rejected=1)

    # -- the request loop over one blocking socket ---------------------------------------------
    def serve_connection(self, conn: socket.socket) -> None:
        """read → decode → serve each request in this thread → sendall, until the client
        closes, sends a bad frame (answered with its status, then closed), resets, or stays
        silent or unreading for ``read_timeout``."""
        bound = self.config.read_timeout
        set_nodelay(conn)
        set_io_timeout(conn, bound)
        decoder = RequestDecoder(self.limits)
        recv, add = conn.recv, self.stats.add
        frame_deadline = 0.0  # while a request is partly here: by when the rest must arrive
        clean = False
        try:
            while True:
                data = recv(RECV_SIZE)
                if not data:
                    clean = decoder.buffered == 0  # closing mid-frame is a client error
                    return
                requests = decoder.feed(data)
                for request in requests:
                    send_within(conn, serve_request_blocking(request), bound)
                if requests:
                    add(requests=len(requests))
                if decoder.error is not None:
                    send_within(conn, error_response(decoder.error), bound)
                    conn.shutdown(socket.SHUT_WR)
                    return
                if bound > 0 and (decoder.buffered or frame_deadline):
                    # A request in pieces: the whole of it must arrive within `bound` of its first
                    # byte, however it trickles (the idle timeout alone restarts on every byte).
                    frame_deadline = arm_deadline(conn, frame_deadline, bound, decoder.buffered > 0)
        except OSError:
            pass  # reset, broken pipe, or SO_RCVTIMEO/SO_SNDTIMEO expired (EAGAIN)
        except ServerStopping:
            clean = True  # we are closing it, not the client misbehaving
            raise
        finally:
            self.connection_ending()
            conn.close()
            if not clean:
                add(errors=1)

    def connection_ending(self) -> None:
        """A hook run as a connection ends, before its close(); thread-per-connection checks for a stop here."""

    # -- life cycle --------------------------------------------------------------------
    def run(self) -> int:
        """Announce, serve until SIGTERM/SIGINT, clean up, report.  Returns the exit status."""
        previous = {sig: signal.signal(sig, _raise_stopping) for sig in (signal.SIGTERM, signal.SIGINT)}
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        os.set_blocking(write_end, False)
        signal.set_wakeup_fd(write_end)  # the C-level handler writes here, GIL or not
        self._signal_pipe = read_end
        try:
            self.start_workers()
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
            self._stop_emitted = True
            emit("stopped", **self.stats.snapshot())
        return 0

    def stop_if_signalled(self) -> None:
        """Called by threads ending a connection: if SIGTERM/SIGINT arrived, stop the process now.

        Cheap (one non-blocking read that keeps the GIL); see "Stopping under a thread storm".
        """
        if self._signal_pipe < 0 or _LIBC.read(self._signal_pipe, self._signal_buf, 16) <= 0:
            return
        if not self._stop_emitted:
            self._stop_emitted = True
            line = (json.dumps({"event": "stopped", **self.stats.snapshot()}) + "\n").encode()
            sys.stdout.flush()
            _LIBC.write(1, line, len(line))
        _LIBC._exit(0)

    def listening_fields(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "host": self.config.host,
            "port": self.port,
            "backlog": self.config.backlog,
            "max_connections": self.config.max_connections,
            **({"workers": self.config.workers} if self.pooled else {}),
            **({"stevens": self.stevens} if self.stevens else {}),
            "pid": os.getpid(),
            "traits": self.traits(),
        }


def _raise_stopping(signum: int, frame: object) -> None:
    raise ServerStopping(signum)


def open_listener(
    host: str, port: int, backlog: int, *, reuse_port: bool = False, listen: bool = True
) -> socket.socket:
    """socket() + bind() + listen(backlog); raises OSError with a readable message.

    ``reuse_port``: SO_REUSEPORT, so several sockets of this user may listen on the port and
    the kernel spreads connections over them.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # Lets a restarted server bind while old connections sit in TIME_WAIT;
        # Linux still refuses a port that another socket is listening on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
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
    seconds = max(seconds, 0.001)  # a zero timeval would mean "no timeout"
    sec = int(seconds)
    timeval = struct.pack("ll", sec, int((seconds - sec) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


def arm_deadline(conn: socket.socket, deadline: float, bound: float, partial: bool) -> float:
    """Set the next recv()'s timeout to what is left of a partial request's deadline; back to the
    idle bound once the request is whole.  Returns the deadline (0 when none is running)."""
    if not partial:
        set_io_timeout(conn, bound)
        return 0.0
    now = time.monotonic()
    if not deadline:
        deadline = now + bound
    left = deadline - now
    if left <= 0:
        raise TimeoutError("request not complete within the read timeout")
    set_io_timeout(conn, left)
    return deadline


def send_within(conn: socket.socket, data: bytes, bound: float) -> None:
    """sendall, but the whole reply must be taken within `bound` seconds (0 = no bound).

    SO_SNDTIMEO bounds one send() only, and sendall() restarts it after every partial write,
    so a client that reads a little now and then could hold the connection for ever.
    """
    deadline = time.monotonic() + bound if bound > 0 else 0.0
    sent = conn.send(data)  # the usual case: the whole reply fits in the socket buffer at once
    if sent == len(data):
        return
    view = memoryview(data)[sent:]
    try:
        while view:
            if deadline:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("reply not taken within the read timeout")
                set_io_timeout(conn, left)
            view = view[conn.send(view) :]
    finally:
        if deadline:
            set_io_timeout(conn, bound)


def set_nodelay(sock: socket.socket) -> None:
    # Small replies go out at once instead of waiting on Nagle for an ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

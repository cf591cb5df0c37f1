"""What every server design shares: its configuration, the listener, the life cycle, the counters,
the connection cap — and the contract between the two parts a design is made of.

A design is a **process model** composed with a **connection loop** (``servers.compose``), in the
spirit of CPython's ``socketserver``, where concurrency is a small mix-in over one request loop:

- the connection loop (``servers.loops``) says how one thread waits for bytes.  It provides
  ``serve_listener(listener)``: accept on that listener and serve what it accepts, for ever.  The
  *blocking* loop serves one connection at a time with blocking recv/send and hands each accepted
  connection to ``process_request(conn)``; an *event* loop (selectors, asyncio) serves all of them
  from one thread and never blocks;
- the process model (``servers.models``) says who runs loops and where accepted connections go:
  ``start_workers()`` (before the listening line), ``serve_forever()`` (the main thread's part) and,
  for the blocking loop, ``process_request(conn)``: serve it here (the iterative server), in a thread
  of its own, a child process of its own, or a pool's queue.

Both parts close what they hold in ``close_connections()`` (each calls ``super()``), and either may
say how many connections it serves now (``open_connections()``), which :meth:`admit` compares with
``--max-connections``: the one place the cap is applied.

Traits.  A design's traits (``serves_one_at_a_time``, ``uses_threads``, ``uses_processes``, ``pooled``,
``one_accept_queue``, ``event_loop``) are class attributes the parts set; reports and findings key on
those, never on a design's name.

Counters.  Plain integers in one thread, locked ones for threads, shared memory across fork()
(servers.counters), so the ``stopped`` line sums every process.

Stopping.  SIGTERM and SIGINT raise :class:`ServerStopping` in the main thread.  Raising from the
handler is what interrupts a blocking ``accept()``/``recv()`` (PEP 475 retries the call otherwise);
``ServerStopping`` derives from BaseException so no ``except Exception`` in a request path swallows
it.  ``run()`` then closes the listener and every open connection and prints the ``stopped`` line.
The harness stops a server by signalling its process group, so children a design forks never
outlive it.

Stopping under a thread storm.  With thousands of threads waking at once (clients that all just
closed), the main thread is one waiter among thousands for the GIL: it needed seconds just to run
its signal handler, and every system call after that (each releases and retakes the GIL) cost
another turn.  So Python's C-level handler also records the signal in a pipe
(``signal.set_wakeup_fd``, no GIL needed), a thread that ends a connection checks it
(:meth:`BaseServer.stop_if_signalled`), and whichever thread sees it first writes the ``stopped``
line and exits through libc calls that keep the GIL (``ctypes.PyDLL``): no further turn to wait for.
The kernel closes every socket as the process exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from servers.connlog import DEFAULT_CAP, REJECTED, open_log
from servers.counters import Counters, LockedCounters, SharedCounters, WorkerTally
from servers.protocol import Limits
from servers.sockets import open_listener

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
    workers: int = DEFAULT_WORKERS  # processes or threads of a pooled model
    conn_log: str = ""  # where to keep a record of every connection (servers.connlog); "" = none
    conn_log_cap: int = DEFAULT_CAP
    max_requests: int = 0  # the server closes a connection after this many requests (HTTP's keep-alive max); 0 = never
    epoll_exclusive: bool = False  # event loops: watch a shared listener with EPOLLEXCLUSIVE (Linux 4.5)
    retire_after: float = 0.0  # pre-forked designs: worker 1 exits this long after it starts, once (a restart)


class ConnectionSet:
    """The connections a thread-based design serves (or holds queued) now: the one set, with its lock."""

    def __init__(self) -> None:
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def add(self, conn: socket.socket) -> None:
        with self._lock:
            self._open.add(conn)

    def discard(self, conn: socket.socket) -> None:
        with self._lock:
            self._open.discard(conn)

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[socket.socket]:
        with self._lock:
            return iter(list(self._open))

    def shut_down(self, *, close: bool = False) -> None:
        """Wake every thread blocked in recv() on one of them (and close it, for one no thread holds)."""
        for conn in self:
            with contextlib.suppress(OSError):  # already closed by its thread
                conn.shutdown(socket.SHUT_RDWR)
            if close:
                with contextlib.suppress(OSError):
                    conn.close()


_LIBC = ctypes.PyDLL(None)  # PyDLL: these calls keep the GIL (CDLL would release and retake it)


def emit(event: str, **fields: Any) -> None:
    """One flushed JSON line on stdout: the only channel to whoever started us."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


class BaseServer:
    design: ClassVar[str] = ""
    description: ClassVar[str] = ""
    model: ClassVar[str] = ""  # the process model's name (servers.MODELS)
    loop: ClassVar[str] = ""  # the connection loop's name (servers.LOOPS)
    # Traits: what reports and findings key on (never the design's name); set by the parts.
    serves_one_at_a_time: ClassVar[bool] = False
    uses_threads: ClassVar[bool] = False
    uses_processes: ClassVar[bool] = False
    pooled: ClassVar[bool] = False  # a fixed pool of --workers, each serving one connection at a time
    one_accept_queue: ClassVar[bool] = True  # False: a queue per worker, so two clients may hash to one
    event_loop: ClassVar[bool] = False  # one thread serves many connections and never blocks
    has_workers: ClassVar[bool] = False  # --workers means something to this design
    stevens: ClassVar[str] = ""  # the design of UNP vol. 1 chapter 30 this one is (serv00 …), if any

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.limits = config.limits
        self.stats = self.make_counters()
        self.tally = WorkerTally(shared=self.uses_processes)  # accepts and wake-ups per worker
        self._worker = threading.local()  # which worker this thread is (prethreaded); processes set it after fork
        self._signal_pipe = -1  # read end of the wakeup fd: a signal arrived (see stop_if_signalled)
        self._signal_buf = ctypes.create_string_buffer(16)
        self._stop_emitted = False
        self.stopping = False  # set as run() starts closing: an end of stream read now may be our own shutdown
        self.listener = self.make_listener()
        self.port: int = self.listener.getsockname()[1]
        # Made before any worker is forked or started: every one of them writes into the same mapping.
        locks = multiprocessing.Lock if self.uses_processes else threading.Lock if self.uses_threads else None
        self.connlog = open_log(config.conn_log, config.conn_log_cap, locks, self.uses_processes, self.uses_threads)

    @property
    def worker_index(self) -> int:
        """This worker's slot in the tally: 0 for the one loop of a design without workers."""
        return getattr(self._worker, "index", 0)

    @worker_index.setter
    def worker_index(self, index: int) -> None:
        self._worker.index = index

    def make_listener(self) -> socket.socket:
        """socket() + bind() + listen(backlog): the one listener every worker shares, by default."""
        return open_listener(self.config.host, self.config.port, self.config.backlog)

    @classmethod
    def traits(cls) -> dict[str, bool]:
        return {
            "serves_one_at_a_time": cls.serves_one_at_a_time,
            "uses_threads": cls.uses_threads,
            "uses_processes": cls.uses_processes,
            "pooled": cls.pooled,
            "one_accept_queue": cls.one_accept_queue,
            "event_loop": cls.event_loop,
        }

    def make_counters(self) -> Counters:
        if self.uses_processes:
            return SharedCounters()
        return LockedCounters() if self.uses_threads else Counters()

    # -- what the parts provide (see the module docstring) ---------------------------------------
    def start_workers(self) -> None:
        """Before the listening line: a model with workers starts them here, so that a client
        connecting right after the line finds them ready."""

    def serve_forever(self) -> None:
        """The main thread's part: by default, this one thread runs the loop on the listener."""
        self.serve_listener(self.listener)

    def serve_listener(self, listener: socket.socket) -> None:
        raise NotImplementedError("a connection loop provides serve_listener")

    def close_connections(self) -> None:
        """Close every connection still open; called once, on the way out (each part calls super())."""

    def open_connections(self) -> int:
        """Connections served now, as --max-connections counts them; one at a time: none waiting."""
        return 0

    # -- the cap ------------------------------------------------------------------------------------
    def admit(self, conn: socket.socket | Any, peer: Any = None, accepted: float = 0.0) -> bool:
        """An accepted connection is served only under --max-connections; over it, it is closed at once
        (the client reads EOF; it does not wait in the accept queue) and counted as rejected — and, with a
        connection log, recorded as such.  `conn` is a socket, or whatever stands for one and closes it
        (an asyncio transport)."""
        if self.open_connections() >= self.config.max_connections:
            self.stats.add(rejected=1)  # counted before the client can see its EOF: a stop just after still has it
            conn.close()
            if self.connlog is not None and peer is not None:
                now = time.monotonic()
                self.connlog.write(accepted or now, 0.0, 0.0, 0.0, 0.0, now, peer, self.port, 0, REJECTED)
            return False
        self.stats.add(connections=1)
        return True

    # -- life cycle -----------------------------------------------------------------------------
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
            self.stopping = True
            self.listener.close()
            self.close_connections()
            if self.connlog is not None:
                self.connlog.finish()
            self._stop_emitted = True
            emit("stopped", **self.stats.snapshot(), workers=self.tally.snapshot())
        return 0

    def stop_if_signalled(self) -> None:
        """Called by threads ending a connection: if SIGTERM/SIGINT arrived, stop the process now.

        Cheap (one non-blocking read that keeps the GIL); see "Stopping under a thread storm".
        """
        if self._signal_pipe < 0 or _LIBC.read(self._signal_pipe, self._signal_buf, 16) <= 0:
            return
        if not self._stop_emitted:
            self._stop_emitted = True
            line = (
                json.dumps({"event": "stopped", **self.stats.snapshot(), "workers": self.tally.snapshot()}) + "\n"
            ).encode()
            sys.stdout.flush()
            _LIBC.write(1, line, len(line))
        _LIBC._exit(0)

    def listening_fields(self) -> dict[str, Any]:
        return {
            "design": self.design,
            "model": self.model,
            "loop": self.loop,
            "host": self.config.host,
            "port": self.port,
            "backlog": self.config.backlog,
            "max_connections": self.config.max_connections,
            **({"workers": self.config.workers} if self.has_workers else {}),
            **({"stevens": self.stevens} if self.stevens else {}),
            "pid": os.getpid(),
            "traits": self.traits(),
        }


def _raise_stopping(signum: int, frame: object) -> None:
    raise ServerStopping(signum)

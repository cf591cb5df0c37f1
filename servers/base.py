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
``one_accept_queue``, ``event_loop``) are class attributes, set one way: each part declares its own
(a model ``uses_threads``, ``uses_processes``, ``has_workers``, ``one_accept_queue``, ``stevens``; a loop
``event_loop``) and the ones that take both parts are derived as the class is made
(:meth:`BaseServer.__init_subclass__`), for a composition and a class written by hand alike.  Reports
and findings key on traits, never on a design's name.

Counters.  Plain integers in one thread, locked ones for threads, shared memory across fork()
(servers.counters), so the ``stopped`` line sums every process.  Requests, counted once a request, go
into a cell of the serving thread's or worker's own, with no lock.

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
from typing import Any, ClassVar

from servers.config import DEFAULT_MAX_CONNECTIONS as DEFAULT_MAX_CONNECTIONS  # the tests' figure
from servers.config import ServerConfig
from servers.connlog import REJECTED, open_log
from servers.counters import Counters, LockedCounters, SharedCounters, WorkerTally
from servers.sockets import open_listener

RECV_SIZE = 65536
Accepted = tuple[float, Any]  # when accept() returned (monotonic), and the peer's address: for the connection log


class ServerStopping(BaseException):
    """Raised in the main thread by SIGTERM/SIGINT to unwind a blocking call."""


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
    model: ClassVar[str] = ""  # the process model's name (servers.model_classes())
    loop: ClassVar[str] = ""  # the connection loop's name (servers.LOOPS)
    # Traits: what reports and findings key on (never the design's name).  Declared by the parts:
    uses_threads: ClassVar[bool] = False
    uses_processes: ClassVar[bool] = False
    has_workers: ClassVar[bool] = False  # --workers means something to this design
    one_accept_queue: ClassVar[bool] = True  # False: a queue per worker, so two clients may hash to one
    event_loop: ClassVar[bool] = False  # one thread serves many connections and never blocks
    stevens: ClassVar[str] = ""  # the design of UNP vol. 1 chapter 30 this one is (serv00 …) with a blocking loop
    # … and derived from theirs (__init_subclass__):
    serves_one_at_a_time: ClassVar[bool] = False  # one thread, blocking: the iterative server
    pooled: ClassVar[bool] = False  # a fixed pool of --workers, each serving one connection at a time

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """The traits that take both parts, derived once the class (model + loop) is made."""
        super().__init_subclass__(**kwargs)
        cls.serves_one_at_a_time = not (cls.uses_threads or cls.uses_processes or cls.event_loop)
        cls.pooled = cls.has_workers and not cls.event_loop
        if cls.event_loop:
            cls.stevens = ""  # chapter 30's servers all block: an event loop is none of them

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

    def process_request(self, conn: socket.socket, info: Accepted | None = None) -> None:
        """Where an accepted connection is served: the blocking loop serves it in place; a model that hands
        it to a thread, a child or a pool overrides this.  `info`: for the connection log (None: no log)."""
        raise NotImplementedError("the blocking loop or a process model provides process_request")

    def serve_connection(self, conn: socket.socket, info: Accepted | None = None) -> None:
        """Serve one connection, request after request, until it ends (a blocking loop's)."""
        raise NotImplementedError("a blocking connection loop provides serve_connection")

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
            if self.connlog is not None:  # its header's counts: without them the log reads as a killed server's
                self.connlog.finish()
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

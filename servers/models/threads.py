"""Thread models: a thread per connection, N threads started in advance, or a pool fed by the accepting
thread.  All threads share one GIL: waiting (SLEEP, a slow client) overlaps, compute (WORK) does not.

thread-per-connection (Stevens' serv06; socketserver's ThreadingMixIn: one overridden hook)::

    main:   loop: conn = accept(); thread(serve, conn)

Each connection costs a thread: its stack, a kernel task, and a context switch per request.  On
stop, open sockets are shut down so threads blocked in recv() return; the threads are daemons, so
one still inside a SLEEP does not hold up the exit.  Thousands of threads ending at once make a GIL
convoy that once kept the main thread from even running its signal handler for seconds: the first
ending thread to run after a SIGTERM stops the process (``BaseServer.stop_if_signalled``).  Past
that, the kernel's teardown of threads is the limit (8,000 threads took up to 22 s to exit here),
which is why ``--max-connections`` bounds them.

prethreaded (Stevens' serv07, without the mutex around accept that Linux does not need)::

    for i in 1..N: thread: loop: conn = accept(); serve(conn)

No thread is created per connection, and no thread hands connections to another: each worker
accepts for itself.  At most N connections are served at once; the rest wait in the accept queue.
The main thread only waits, so that SIGTERM (delivered to it) can stop the server; stopping shuts
the listener down, which wakes the workers out of ``accept()``.

threadpool (Stevens' serv08; the ``concurrent.futures`` shape most Python code uses)::

    workers: loop: conn = queue.get(); serve(conn)
    main:    loop: conn = accept(); queue.put(conn)

Connections are accepted at once and then wait in the queue — out of the kernel's accept queue, so
the backlog never overflows while the pool is busy, but a client that connected may wait for a
worker with its handshake long done.  At most N are served at once.  One more hand-off per
connection than prethreaded.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from typing import ClassVar

from servers.base import Accepted, BaseServer, ConnectionSet, ServerConfig
from servers.connlog import client_fin

BLOCKING_ONLY: frozenset[str] = frozenset({"blocking"})


class _Threads(BaseServer):
    uses_threads = True
    loops: ClassVar[frozenset[str]] = BLOCKING_ONLY
    close_held: ClassVar[bool] = False  # on stop, close the connections too (those no thread holds)

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        self.open = ConnectionSet()  # served now (or queued for a worker)

    def open_connections(self) -> int:
        return len(self.open)

    def close_connections(self) -> None:
        self.open.shut_down(close=self.close_held)
        super().close_connections()

    def serve_tracked(self, conn: socket.socket, info: Accepted | None) -> None:
        """Serve one connection to its end, in the set while it is served."""
        self.open.add(conn)
        try:
            self.serve_connection(conn, info)
        finally:
            self.open.discard(conn)


class ThreadPerConnection(_Threads):
    model = "thread-per-connection"
    stevens = "serv06"

    def process_request(self, conn: socket.socket, info: Accepted | None = None) -> None:
        self.open.add(conn)  # counted before its thread runs: the cap sees it at the next accept
        threading.Thread(target=self._connection_thread, args=(conn, info), daemon=True).start()

    def _connection_thread(self, conn: socket.socket, info: Accepted | None) -> None:
        try:
            self.serve_connection(conn, info)
        finally:
            self.open.discard(conn)
            self.stop_if_signalled()

    def connection_ending(self) -> None:
        self.stop_if_signalled()  # in a storm of ending threads, the first one to run stops us


class Prethreaded(_Threads):
    model = "prethreaded"
    has_workers = True
    stevens = "serv07"

    def start_workers(self) -> None:
        for index in range(1, self.config.workers + 1):
            threading.Thread(target=self.worker, args=(index,), daemon=True).start()

    def worker(self, index: int) -> None:
        self.worker_index = index
        with contextlib.suppress(OSError):  # the listener was shut down: we are stopping
            self.serve_listener(self.listener)

    def process_request(self, conn: socket.socket, info: Accepted | None = None) -> None:
        self.serve_tracked(conn, info)

    def open_connections(self) -> int:
        return 0  # each worker serves one at a time: the pool is the bound, not the cap

    def serve_forever(self) -> None:
        while True:  # the workers serve; the main thread waits for SIGTERM/SIGINT
            time.sleep(3600)

    def close_connections(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        super().close_connections()


class ThreadPool(_Threads):
    model = "threadpool"
    has_workers = True
    stevens = "serv08"
    close_held = True  # one still in the queue has no thread to close it

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        self._queue: queue.SimpleQueue[tuple[socket.socket, Accepted | None]] = queue.SimpleQueue()

    def start_workers(self) -> None:
        for _ in range(self.config.workers):
            threading.Thread(target=self.worker, daemon=True).start()

    def process_request(self, conn: socket.socket, info: Accepted | None = None) -> None:
        self.open.add(conn)  # queued or being served
        self._queue.put((conn, info))

    def close_connections(self) -> None:
        """The connections still queued were accepted and never served: recorded as such, then closed."""
        log = self.connlog
        while True:
            try:
                conn, info = self._queue.get_nowait()
            except queue.Empty:
                break
            if log is not None and info is not None:
                log.write(info[0], 0.0, 0.0, 0.0, 0.0, time.monotonic(), info[1], self.port, 0, client_fin(conn))
        super().close_connections()

    def worker(self) -> None:
        while True:
            conn, info = self._queue.get()  # when it comes out is its service start (serve_connection)
            try:
                self.serve_connection(conn, info)
            finally:
                self.open.discard(conn)

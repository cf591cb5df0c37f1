"""prethreaded — N threads started in advance, each calling accept() on the shared listener
(Stevens' serv07, without the mutex around accept that Linux does not need).

    listen(); for i in 1..N: thread: loop: conn = accept(); serve(conn)

No thread is created per connection, and no thread hands connections to
another: each worker accepts for itself.  At most N connections are served at
once; the rest wait in the accept queue.  All the threads share one GIL, so
compute does not overlap — as with ``threaded``.

The main thread only waits, so that SIGTERM (delivered to it) can stop the
server; stopping shuts the listener down, which wakes the workers out of
``accept()``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from servers.base import BaseServer


class PrethreadedServer(BaseServer):
    variant = "prethreaded"
    description = "N threads started at start, each blocking in accept() on the shared listener"
    uses_threads = True
    pooled = True
    stevens = "serv07"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def start_workers(self) -> None:
        for _ in range(self.config.workers):
            threading.Thread(target=self.worker, daemon=True).start()

    def worker(self) -> None:
        accept = self.listener.accept
        while True:
            try:
                conn, _ = accept()
            except OSError:
                return  # the listener was shut down: we are stopping
            self.stats.add(connections=1)
            with self._open_lock:
                self._open.add(conn)
            try:
                self.serve_connection(conn)
            finally:
                with self._open_lock:
                    self._open.discard(conn)

    def serve_forever(self) -> None:
        while True:  # the workers serve; the main thread waits for SIGTERM/SIGINT
            time.sleep(3600)

    def close_connections(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

"""threadpool — the main thread accepts and hands each connection to one of N worker threads
through a queue (Stevens' serv08; the ``concurrent.futures`` shape most Python code uses).

    workers: loop: conn = queue.get(); serve(conn)
    main:    loop: conn = accept(); queue.put(conn)

Connections are accepted at once and then wait in the queue — out of the
kernel's accept queue, so the backlog never overflows while the pool is busy,
but a client that connected may wait for a worker with its handshake long
done.  At most N are served at once.  One more hand-off per connection than
``prethreaded``, where each worker accepts for itself.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading

from servers.base import BaseServer


class ThreadPoolServer(BaseServer):
    variant = "threadpool"
    description = "the main thread accepts; N worker threads take connections from a queue"
    uses_threads = True
    pooled = True
    stevens = "serv08"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._queue: queue.SimpleQueue[socket.socket] = queue.SimpleQueue()
        self._open: set[socket.socket] = set()  # queued or being served
        self._open_lock = threading.Lock()

    def start_workers(self) -> None:
        for _ in range(self.config.workers):
            threading.Thread(target=self.worker, daemon=True).start()

    def process_request(self, conn: socket.socket) -> None:
        with self._open_lock:
            self._open.add(conn)
        self._queue.put(conn)

    def worker(self) -> None:
        while True:
            conn = self._queue.get()
            try:
                self.serve_connection(conn)
            finally:
                with self._open_lock:
                    self._open.discard(conn)

    def open_connections(self) -> int:
        return len(self._open)

    def close_connections(self) -> None:
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()  # one still in the queue has no thread to close it

"""threaded — one thread per accepted connection.

The main thread only accepts; each connection gets its own thread running the
same blocking request loop as the `blocking` variant (socketserver's
ThreadingMixIn: one overridden hook).  Waiting (SLEEP, a slow client) overlaps
across connections; CPU work (WORK) does not, because all the threads share one
GIL.  Each connection costs a thread: its stack, a kernel task, and a context
switch per request.

On stop, open sockets are shut down so threads blocked in recv() return; the
threads are daemons, so one still inside a SLEEP does not hold up the exit.
Thousands of threads ending at once make a GIL convoy that once kept the main
thread from even running its signal handler for seconds: the first ending
thread to run after a SIGTERM stops the process (``BaseServer.stop_if_signalled``).
Past that, the kernel's teardown of threads is the limit (8,000 threads took up
to 22 s to exit here), which is why ``--max-connections`` bounds them.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from servers.base import BaseServer


class ThreadedServer(BaseServer):
    variant = "threaded"
    description = "a thread per connection, each running the blocking request loop"
    uses_threads = True
    stevens = "serv06"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, conn: socket.socket) -> None:
        with self._open_lock:
            self._open.add(conn)
        threading.Thread(target=self._connection_thread, args=(conn,), daemon=True).start()

    def _connection_thread(self, conn: socket.socket) -> None:
        try:
            self.serve_connection(conn)
        finally:
            with self._open_lock:
                self._open.discard(conn)
            self.stop_if_signalled()

    def connection_ending(self) -> None:
        self.stop_if_signalled()  # in a storm of ending threads, the first one to run stops us

    def open_connections(self) -> int:
        return len(self._open)

    def close_connections(self) -> None:
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):  # already closed by its thread
                conn.shutdown(socket.SHUT_RDWR)  # wakes its thread out of recv()

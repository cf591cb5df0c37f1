"""forking — a process per connection (Stevens' serv01).

    loop: conn = accept(); if fork() == 0: serve(conn); _exit(0)   # the child
                                         else: close(conn)          # the parent

The parent only accepts; each connection is served by a child of its own,
forked for it and gone when it ends.  Waits overlap and so does compute — each
child has its own interpreter and its own GIL — but every connection pays a
fork(): copying the page tables of a Python process, and the page faults of
copy-on-write as the child touches memory (CPython's reference counts write to
nearly every object it reads).  Stevens measured this design as by far the
most expensive; socklab's ``unp30`` scenario measures it here.

Children are reaped on SIGCHLD (no zombies).  Counters live in shared memory,
so the ``stopped`` line sums every child, and the monitor adds the CPU of
children already reaped (RUSAGE_CHILDREN).
"""

from __future__ import annotations

import signal
import socket

from servers.base import BaseServer
from servers.children import Children


class ForkingServer(BaseServer):
    variant = "forking"
    description = "a process per connection: fork() after accept(), the child serves it and exits"
    uses_processes = True
    stevens = "serv01"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.children = Children()
        signal.signal(signal.SIGCHLD, lambda *_: self.children.reap())

    def process_request(self, conn: socket.socket) -> None:
        def child() -> None:
            self.listener.close()
            self.serve_connection(conn)

        self.children.fork(child)
        conn.close()  # the child has its own copy

    def open_connections(self) -> int:
        return len(self.children)

    def close_connections(self) -> None:
        self.children.stop()

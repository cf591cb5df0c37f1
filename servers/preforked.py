"""preforked — N processes forked in advance, each blocking in accept() on the shared listener
(Stevens' serv02).

    listen(); for i in 1..N: if fork() == 0: loop: conn = accept(); serve(conn)

The fork is paid N times at start, not once per connection.  The kernel hands
each new connection to one of the children blocked in ``accept()`` on the one
listener they share (Linux wakes one, no thundering herd, so Stevens' lock
around ``accept`` — serv03 — buys nothing here).  Each child serves one
connection at a time, so at most N are served at once and the rest wait in the
one accept queue: a pool of N where N < users shows the queueing the pool
causes.  Each child has its own GIL, so compute runs on every core.

The parent serves nothing: it waits for its children and forks a new one if
one dies.  On stop, the process group's SIGTERM reaches every child; the parent
then reaps them before its ``stopped`` line, whose counters (in shared memory)
sum them all.
"""

from __future__ import annotations

import contextlib
import os

from servers.base import BaseServer
from servers.children import Children


class PreforkedServer(BaseServer):
    variant = "preforked"
    description = "N processes forked at start, each blocking in accept() on the one shared listener"
    uses_processes = True
    pooled = True
    stevens = "serv02"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.children = Children()

    def start_workers(self) -> None:
        for _ in range(self.config.workers):
            self.children.fork(self.worker)

    def worker(self) -> None:
        """One child: the iterative server over the shared listener."""
        BaseServer.serve_forever(self)

    def serve_forever(self) -> None:
        # The parent: wait for a child to die (it should not), then replace it.
        while True:
            with contextlib.suppress(ChildProcessError):
                pid, _ = os.wait()
                self.children.pids.discard(pid)
            while len(self.children) < self.config.workers:
                self.children.fork(self.worker)

    def close_connections(self) -> None:
        self.children.stop()

"""preforked-reuseport — N processes, each with a listener of its own on the same port (SO_REUSEPORT).

    for i in 1..N: if fork() == 0: s = socket(); setsockopt(SO_REUSEPORT); bind(port); listen(); loop: accept()

The modern design of nginx's ``reuseport`` and of many pre-forking servers:
the kernel spreads new connections over the N listeners by a hash of the
connection's addresses, so no process ever wakes for a connection another one
takes.  The cost is the accept queue: there are N of them, one per child, each
of ``backlog`` — and a connection hashed to a busy child waits in that child's
queue even while another child sits idle.  The monitor sees the N listeners
(their queue depths added up, their backlogs too).

The parent holds a bound, never listening, socket on the port only to reserve
it; it waits until every child listens before the ``listening`` line.
"""

from __future__ import annotations

import os
import select
import socket
import time

from servers.base import open_listener
from servers.preforked import PreforkedServer


class PreforkedReuseportServer(PreforkedServer):
    variant = "preforked-reuseport"
    description = "N processes, each with its own SO_REUSEPORT listener on the port; one accept queue each"
    stevens = ""  # not in the book (SO_REUSEPORT came to Linux in 3.9)
    one_accept_queue = False

    _ready_w = -1

    def make_listener(self) -> socket.socket:
        # A plain bind first: SO_REUSEPORT would let us join another server's group on a port in
        # use instead of being told it is in use.
        probe = open_listener(self.config.host, self.config.port, self.config.backlog, listen=False)
        port = probe.getsockname()[1]
        probe.close()
        # Bound, not listening: reserves the port but takes no connections.
        return open_listener(self.config.host, port, self.config.backlog, reuse_port=True, listen=False)

    def start_workers(self) -> None:
        ready_r, self._ready_w = os.pipe()
        super().start_workers()
        os.close(self._ready_w)
        self._ready_w = -1  # a child forked later to replace one has nobody to tell
        deadline, ready = time.monotonic() + 10, 0
        while ready < self.config.workers and time.monotonic() < deadline:
            if select.select([ready_r], [], [], max(deadline - time.monotonic(), 0))[0]:
                got = os.read(ready_r, 64)
                if not got:
                    break
                ready += len(got)
        os.close(ready_r)

    def worker(self) -> None:
        port = self.listener.getsockname()[1]
        self.listener.close()
        self.listener = open_listener(self.config.host, port, self.config.backlog, reuse_port=True)
        if self._ready_w >= 0:
            os.write(self._ready_w, b"r")  # this child listens now
            os.close(self._ready_w)
        super().worker()

"""Process models: a process per connection, or N processes forked in advance — on the one shared
listener, or each on a SO_REUSEPORT listener of its own.  Each child has its own interpreter and
its own GIL, so compute runs on every core.  Counters live in shared memory, so the ``stopped``
line sums every child, and the monitor adds the CPU of children already reaped (RUSAGE_CHILDREN).

fork-per-connection (Stevens' serv01)::

    loop: conn = accept(); if fork() == 0: serve(conn); _exit(0)   # the child
                                         else: close(conn)          # the parent

Every connection pays a fork(): copying the page tables of a Python process, and the page faults of
copy-on-write as the child touches memory (CPython's reference counts write to nearly every object
it reads).  Stevens measured this design as by far the most expensive; ``unp30`` measures it here.
Children are reaped on SIGCHLD (no zombies).

preforked (Stevens' serv02; with an event loop, nginx's model without ``reuseport``)::

    listen(); for i in 1..N: if fork() == 0: loop(listener)

The fork is paid N times at start.  With the blocking loop, the kernel hands each new connection to
one of the children blocked in ``accept()`` on the one listener they share (Linux wakes one, no
thundering herd, so Stevens' lock around ``accept`` — serv03 — buys nothing here); each child
serves one connection at a time, so at most N are served at once and the rest wait in the one
accept queue.  With an event loop each child watches the shared listener in its own epoll and
serves many connections: every child may wake for a new connection, and the one that accepts first
gets it.  The parent serves nothing: it waits for its children and forks a new one if one dies.

preforked-reuseport (nginx's ``reuseport``)::

    for i in 1..N: if fork() == 0: s = socket(); setsockopt(SO_REUSEPORT); bind(port); listen(); loop(s)

The kernel spreads new connections over the N listeners by a hash of the connection's addresses,
so no process ever wakes for a connection another one takes.  The cost is the accept queue: there
are N of them, one per child, each of ``backlog`` — and a connection hashed to a busy child waits
in that child's queue even while another child sits idle.  The parent holds a bound, never
listening, socket on the port only to reserve it; it waits until every child listens before the
``listening`` line.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import time
from typing import ClassVar

from servers.base import Accepted, BaseServer, ServerConfig, ServerStopping
from servers.children import Children
from servers.sockets import open_listener

ANY_LOOP: frozenset[str] = frozenset({"blocking", "selectors", "asyncio"})


class _Forks(BaseServer):
    uses_processes = True

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        self.children = Children()

    def close_connections(self) -> None:
        self.children.stop()  # the parent's part; each child unwinds its own loop as it stops
        super().close_connections()


class ForkPerConnection(_Forks):
    model = "fork-per-connection"
    loops: ClassVar[frozenset[str]] = frozenset({"blocking"})
    stevens = "serv01"

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        signal.signal(signal.SIGCHLD, lambda *_: self.children.reap())

    def process_request(self, conn: socket.socket, info: Accepted | None = None) -> None:
        def child() -> None:
            self.listener.close()
            self.serve_connection(conn, info)

        self.children.fork(child)
        conn.close()  # the child has its own copy

    def open_connections(self) -> int:
        return len(self.children)


class Preforked(_Forks):
    model = "preforked"
    loops: ClassVar[frozenset[str]] = ANY_LOOP
    has_workers = True
    stevens = "serv02"

    def start_workers(self) -> None:
        self._slots: dict[int, int] = {}  # child pid → its worker number (its slot in the tally)
        for index in range(1, self.config.workers + 1):
            self._fork_worker(index)

    def _fork_worker(self, index: int) -> None:
        retire = self.config.retire_after if index == 1 and not getattr(self, "_retired", False) else 0.0

        def child() -> None:
            self.worker_index = index
            if retire > 0:  # --retire-worker-after: this one exits, its listener with it; the parent forks anew
                signal.signal(signal.SIGALRM, _retire)
                signal.setitimer(signal.ITIMER_REAL, retire)
            self.worker()

        self._slots[self.children.fork(child)] = index
        if retire > 0:
            self._retired = True  # once: its replacement stays

    def worker(self) -> None:
        """One child: a loop over the shared listener."""
        self.serve_listener(self.listener)

    def serve_forever(self) -> None:
        # The parent: wait for a child to die (it should not), then replace it in its slot.
        while True:
            with contextlib.suppress(ChildProcessError):
                pid, _ = os.wait()
                self.children.pids.discard(pid)
                if pid in self._slots:
                    self._fork_worker(self._slots.pop(pid))


class PreforkedReuseport(Preforked):
    model = "preforked-reuseport"
    one_accept_queue = False
    stevens = ""  # not in the book (SO_REUSEPORT: Linux 3.9)

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


def _retire(signum: int, frame: object) -> None:
    raise ServerStopping(signum)  # unwinds the worker's loop; the child exits, closing what it holds

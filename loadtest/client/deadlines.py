"""Reply deadlines without a timer per wait: one watchdog per process looks at every client's deadline.

A socket timeout under gevent (``settimeout``) arms and cancels a timer around every ``recv`` and
``send`` that has to wait: a few µs each, a fifth of a loopback request's whole cost.  So a client
sets no socket timeout once connected; it writes the deadline of the request it is waiting for into
a float, and a watchdog — a greenlet under gevent, a thread otherwise: the same code, since Locust
monkey-patches ``threading`` — wakes every ``TICK_S``, and shuts down the socket of any client past
its deadline.  The waiting ``recv`` (or ``connect``) then returns at once, and the client, seeing
``timed_out``, reports a read (or connect) timeout.  A deadline is kept to within ``TICK_S``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import weakref
from typing import Any

TICK_S = 0.1

_clients: weakref.WeakSet[Any] = weakref.WeakSet()
_started = threading.Lock()
_watchdog: list[threading.Thread] = []


def watch(client: Any) -> None:
    """Look after this client's ``deadline`` (0 = none) from now on."""
    _clients.add(client)
    if not _watchdog:
        with _started:
            if not _watchdog:
                thread = threading.Thread(target=_watch, name="socklab-deadlines", daemon=True)
                _watchdog.append(thread)
                thread.start()


def _forget_parents_watchdog() -> None:
    _watchdog.clear()  # its thread did not cross the fork (Locust's --processes forks its workers)


os.register_at_fork(after_in_child=_forget_parents_watchdog)


def _watch() -> None:
    while True:
        time.sleep(TICK_S)
        now = time.perf_counter()
        for client in list(_clients):  # ~0.1 µs a client with no deadline passed: 10,000 idle users, 1 ms a tick
            deadline = client.deadline
            if not deadline or now <= deadline:
                continue
            sock = client.sock or client.connecting
            if sock is not None:
                client.deadline = 0.0
                client.timed_out = True
                with contextlib.suppress(OSError):
                    # The waiting recv() returns now; a connect() in SYN_SENT fails with ECONNRESET.
                    sock.shutdown(socket.SHUT_RDWR)

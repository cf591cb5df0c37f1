"""single — one process, one thread, one loop on the listener.

With the blocking loop this is the classic iterative server (Stevens' serv00):

    listener = socket(); bind(); listen(backlog)
    loop: conn = accept(); while request := recv(): send(reply); close(conn)

One connection is served at a time.  While it is, every other client that connects completes the
three-way handshake in the kernel and waits in the listener's accept queue; once ``backlog + 1``
are waiting the kernel drops further SYNs and those clients retry on the SYN schedule (1, 2, 3 …
s).  That is the lesson this design exists to show.  ``--read-timeout`` bounds how long one idle or
unreading client can keep everybody else waiting.

With an event loop (selectors, asyncio) the one thread serves every connection at once, and the
loop's own rules bound what each may hold.
"""

from __future__ import annotations

from typing import ClassVar

from servers.base import BaseServer


class Single(BaseServer):
    model = "single"
    loops: ClassVar[frozenset[str]] = frozenset({"blocking", "selectors", "asyncio", "one-shot"})
    stevens = "serv00"
    # BaseServer.serve_forever already runs the loop on the listener in this thread.

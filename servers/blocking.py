"""blocking — the classic iterative server: accept one client, serve it until it leaves.

    listener = socket(); bind(); listen(backlog)
    loop: conn = accept(); while request := recv(): send(reply); close(conn)

One connection is served at a time.  While it is, every other client that
connects completes the three-way handshake in the kernel and waits in the
listener's accept queue; once ``backlog + 1`` are waiting the kernel drops
further SYNs and those clients retry on the SYN schedule (1, 2, 3 … s).  That
is the lesson this variant exists to show.  ``--read-timeout`` bounds how long
one idle or unreading client can keep everybody else waiting.

It is :class:`BaseServer` unchanged: the default accept loop, and the default
``process_request`` that serves each connection in the accepting thread.
"""

from __future__ import annotations

from servers.base import BaseServer


class BlockingServer(BaseServer):
    variant = "blocking"
    description = "one loop: accept() one client, serve it until it closes, then the next"
    serves_one_at_a_time = True
    stevens = "serv00"

"""The one-shot loop: the lesson's own server, which reads one message and closes, never replying.

    loop: conn = accept(); message = recv(4096); close(conn)

This is the program the socket lesson ends with (and ``servers/c/seed.c``, its twin in C): ``listen(fd,
10)``, then ``accept()``, one ``recv()`` of up to 4,096 bytes, ``close()``.  The server closes first, so
it holds each connection's TIME_WAIT; a client that sent more than one read takes is answered with a
reset (its unread bytes make ``close()`` send a RST).  The client waits for the close (the one-shot user:
connect start → the server's FIN), so what it measures is the handshake, the accept queue and one read.
"""

from __future__ import annotations

import socket
from time import monotonic

from servers.base import Accepted
from servers.loops.blocking import BlockingLoop, Record
from servers.sockets import set_io_timeout

MESSAGE_BYTES = 4096  # the lesson's buffer: one recv() of at most this much


class OneShotLoop(BlockingLoop):
    loop = "one-shot"

    def serve_connection(self, conn: socket.socket, info: Accepted | None = None) -> None:
        """One recv(), then close(): the connection log gets its accept, its read and its close."""
        log = self.connlog if info is not None else None
        started = monotonic() if log is not None else 0.0
        set_io_timeout(conn, self.config.read_timeout)  # a client that never sends cannot hold the loop for ever
        record = Record()
        try:
            message = conn.recv(MESSAGE_BYTES)
            read = monotonic() if log is not None else 0.0
            served = 1 if message else 0
            if served:
                self.stats.add(requests=1)
            # Its answer is its close: "first written" is stamped as it turns to close() (end_connection, at once),
            # so the service it logs runs read → close (it writes nothing; else a timeline stretches it to the EOF).
            answered = monotonic() if log is not None else 0.0
            in_window = log.in_window(read, answered) if log is not None and served else 0.0
            record.figures = (
                read if served else 0.0,
                answered if served else 0.0,
                0.0 if served else read,
                served,
                in_window,
            )
            record.clean = True
        except OSError:
            pass  # reset, or silent past --read-timeout (EAGAIN)
        finally:
            self.end_connection(conn, log, info, started, record)

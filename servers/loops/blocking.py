"""The blocking loop: ``accept()``, then serve that one connection with blocking recv/send.

    loop: conn = accept(); process_request(conn)      # by default: serve it here, until it ends
    serve: while request := recv(): send(reply)

This is the loop of the classic iterative server, and of every design that hands a connection to
a thread, a child process or a pool: the process model overrides ``process_request`` to say where
the connection is served, and the request loop below is the same in all of them.  A connection is
served until the client closes, sends a bad frame (answered with its status, then closed), resets,
or stays silent or unreading for ``read_timeout``.
"""

from __future__ import annotations

import socket
from time import monotonic

from servers.base import RECV_SIZE, Accepted, BaseServer, ServerStopping
from servers.connlog import ENDED_BADLY, ConnLog, client_fin
from servers.protocol import Op, RequestDecoder, Status, error_response, reply_for, serve_request_blocking
from servers.sockets import arm_deadline, peer_closed_first, send_within, set_io_timeout, set_nodelay

ECHO = int(Op.ECHO)
BATCH_BYTES = 64 * 1024  # pipelined replies joined into one send up to this much (memory stays one frame)


class Record:
    """How one connection ended, for its close and its connection-log record: written once, as it ends."""

    __slots__ = ("clean", "figures")

    def __init__(self) -> None:
        self.clean = False  # ended as the protocol says (no reset, timeout or bad frame)
        self.figures: tuple[float, float, float, int, float] = (0.0, 0.0, 0.0, 0, 0.0)  # first read … in window


class BlockingLoop(BaseServer):
    loop = "blocking"

    def serve_listener(self, listener: socket.socket) -> None:
        """Accept connections one by one and hand each to ``process_request``."""
        accept, admit, process, log = listener.accept, self.admit, self.process_request, self.connlog
        tally, worker = self.tally, self.worker_index
        while True:
            conn, peer = accept()
            tally.add(worker, 1, 1)  # a blocking accept() wakes only to take a connection
            accepted = monotonic() if log is not None else 0.0
            if admit(conn, peer, accepted):
                process(conn, (accepted, peer) if log is not None else None)

    def process_request(self, conn: socket.socket, info: Accepted | None = None) -> None:
        """Serve one accepted connection; by default right here, until it ends (the iterative server).
        `info` is when it was accepted and from whom, for the connection log (None: no log)."""
        self.serve_connection(conn, info)

    def serve_connection(self, conn: socket.socket, info: Accepted | None = None) -> None:
        """read → decode → serve each request in this thread → sendall, until the connection ends; then
        close it and record it.  The request loop is one function (:meth:`serve_requests`, no call per
        request); what runs once per connection is around it."""
        log = self.connlog if info is not None else None
        started = monotonic() if log is not None else 0.0  # a worker starts on it
        set_nodelay(conn)
        set_io_timeout(conn, self.config.read_timeout)
        record = Record()
        try:
            record.clean = self.serve_requests(conn, log, record)
        except OSError:
            pass  # reset, broken pipe, or SO_RCVTIMEO/SO_SNDTIMEO expired (EAGAIN)
        except ServerStopping:
            record.clean = True  # we are closing it, not the client misbehaving
            raise
        finally:
            self.end_connection(conn, log, info, started, record)

    def serve_requests(self, conn: socket.socket, log: ConnLog | None, record: Record) -> bool:
        """The request loop, until the connection ends; True if it ended cleanly.  `record` gets the
        connection log's figures as it ends, however it ends (kept in locals until then: the hot path)."""
        # in_window: service inside the measured window; read_at: when the request being served was read;
        # frame_deadline: while a request is partly here, by when the rest must arrive.
        first_read = first_written = eof = in_window = read_at = frame_deadline = 0.0
        decoder, recv, served = RequestDecoder(self.limits), conn.recv, 0
        counted = self.stats.requests_cell(self.worker_index)  # its own count: += with no lock
        bound, most = self.config.read_timeout, self.config.max_requests  # most: requests before our FIN; 0 = never
        try:
            while True:
                data = recv(RECV_SIZE)
                if not data:
                    if log is not None and (not self.stopping or peer_closed_first(conn)):
                        eof = monotonic()  # the client's FIN (stopping, it may be our own shutdown's)
                    return decoder.buffered == 0  # closing mid-frame is a client error
                requests = decoder.feed(data)
                if log is not None and requests:
                    if not served:
                        first_read = read_at = monotonic()
                    elif log.window_open():
                        read_at = monotonic()
                if (
                    len(requests) > 1
                    and not any(r.arg for r in requests if r.op != ECHO)
                    and sum(r.reply_len or len(r.payload) for r in requests) <= BATCH_BYTES
                ):
                    # Pipelined requests that neither wait nor compute, small replies: in one send.
                    replies = b"".join(map(reply_for, requests))
                    counted[0] += len(requests)  # counted before the client can see them: a stop just after has them
                    send_within(conn, replies, bound)
                    if read_at:
                        written = monotonic()
                        first_written = first_written or written
                        in_window += log.in_window(read_at, written)  # type: ignore[union-attr]
                        read_at = 0.0
                    served += len(requests)
                else:
                    for request in requests:
                        reply = serve_request_blocking(request)
                        counted[0] += 1
                        send_within(conn, reply, bound)
                        if read_at:
                            # The next request's service starts as this reply is written: no overlap.
                            written = monotonic()
                            first_written = first_written or written
                            in_window += log.in_window(read_at, written)  # type: ignore[union-attr]
                            read_at = written
                        served += 1
                    read_at = 0.0
                if (most and served >= most) or decoder.error is not None:
                    return self.close_first(conn, bool(most) and served >= most, decoder.error, bound)
                if bound > 0 and (decoder.buffered or frame_deadline):
                    # A request in pieces: the whole of it must arrive within `bound` of its first
                    # byte, however it trickles (the idle timeout alone restarts on every byte).
                    frame_deadline = arm_deadline(conn, frame_deadline, bound, decoder.buffered > 0)
        finally:
            self.stats.fold(counted)
            record.figures = first_read, first_written, eof, served, in_window

    def close_first(self, conn: socket.socket, spent: bool, error: Status | None, bound: float) -> bool:
        """Our FIN first, and whether that is a clean end: the --max-requests budget spent (the server holds
        TIME_WAIT), or a bad frame, answered with its status."""
        if not spent and error is not None:
            send_within(conn, error_response(error), bound)
        conn.shutdown(socket.SHUT_WR)
        return spent

    def end_connection(
        self, conn: socket.socket, log: ConnLog | None, info: Accepted | None, started: float, record: Record
    ) -> None:
        """Once per connection, as it ends: the hook, close(), an error counted, the connection log's record."""
        self.connection_ending()
        first_read, first_written, eof, served, in_window = record.figures
        flags = 0 if record.clean else ENDED_BADLY
        if log is not None and not eof:
            flags |= client_fin(conn)  # its FIN may have come unread (we are stopping)
        conn.close()
        if not record.clean:
            self.stats.add(errors=1)
        if log is not None and info is not None:
            accepted, peer = info
            log.write(
                accepted,
                started,
                first_read,
                first_written,
                eof,
                monotonic(),
                peer,
                self.port,
                served,
                flags,
                in_window,
            )

    def connection_ending(self) -> None:
        """A hook run as a connection ends, before its close(); thread-per-connection checks for a stop here."""

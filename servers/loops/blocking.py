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

from servers.base import RECV_SIZE, BaseServer, ServerStopping
from servers.connlog import ENDED_BADLY, EOF, FIRST_READ, FIRST_WRITTEN, SERVICE_START
from servers.protocol import RequestDecoder, error_response, serve_request_blocking
from servers.sockets import arm_deadline, send_within, set_io_timeout, set_nodelay


class BlockingLoop(BaseServer):
    loop = "blocking"

    def serve_listener(self, listener: socket.socket) -> None:
        """Accept connections one by one and hand each to ``process_request``."""
        accept, admit, process, record = listener.accept, self.admit, self.process_request, self.record
        while True:
            conn, peer = accept()
            slot = record(peer)
            if admit(conn, slot):
                process(conn, slot)

    def process_request(self, conn: socket.socket, slot: int = -1) -> None:
        """Serve one accepted connection; by default right here, until it ends (the iterative server).
        `slot` is its record in the connection log (-1: none)."""
        self.serve_connection(conn, slot)

    def serve_connection(self, conn: socket.socket, slot: int = -1) -> None:
        """read → decode → serve each request in this thread → sendall, until the connection ends."""
        log = self.connlog if slot >= 0 else None
        if log is not None:
            log.mark(slot, SERVICE_START, monotonic())
        bound = self.config.read_timeout
        set_nodelay(conn)
        set_io_timeout(conn, bound)
        decoder = RequestDecoder(self.limits)
        recv, add = conn.recv, self.stats.add
        frame_deadline = 0.0  # while a request is partly here: by when the rest must arrive
        clean = False
        served = 0
        try:
            while True:
                data = recv(RECV_SIZE)
                if not data:
                    clean = decoder.buffered == 0  # closing mid-frame is a client error
                    if log is not None:
                        log.mark(slot, EOF, monotonic())
                    return
                requests = decoder.feed(data)
                if log is not None and requests and not served:
                    log.mark(slot, FIRST_READ, monotonic())
                for request in requests:
                    send_within(conn, serve_request_blocking(request), bound)
                    if log is not None and not served:
                        log.mark(slot, FIRST_WRITTEN, monotonic())
                    served += 1
                if requests:
                    add(requests=len(requests))
                if decoder.error is not None:
                    send_within(conn, error_response(decoder.error), bound)
                    conn.shutdown(socket.SHUT_WR)
                    return
                if bound > 0 and (decoder.buffered or frame_deadline):
                    # A request in pieces: the whole of it must arrive within `bound` of its first
                    # byte, however it trickles (the idle timeout alone restarts on every byte).
                    frame_deadline = arm_deadline(conn, frame_deadline, bound, decoder.buffered > 0)
        except OSError:
            pass  # reset, broken pipe, or SO_RCVTIMEO/SO_SNDTIMEO expired (EAGAIN)
        except ServerStopping:
            clean = True  # we are closing it, not the client misbehaving
            raise
        finally:
            self.connection_ending()
            conn.close()
            if not clean:
                add(errors=1)
            if log is not None:
                log.close(slot, monotonic(), served, 0 if clean else ENDED_BADLY)

    def connection_ending(self) -> None:
        """A hook run as a connection ends, before its close(); thread-per-connection checks for a stop here."""

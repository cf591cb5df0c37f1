"""Reference servers from the standard library, speaking socklab frames, for side-by-side cost.

    python -m benchmarks.reference_servers asyncio|threadingtcpserver|tcpserver|minimal-selectors --port 0

Each uses its library the stock way and the same request semantics as the
designs (servers.protocol), and prints the same ``listening`` line, so the
benchmark starts and measures them exactly like a design.
"""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import signal
import socket
import socketserver
import sys

from servers.protocol import (
    REQUEST_HEADER,
    Limits,
    Request,
    RequestDecoder,
    error_response,
    reply_for,
    serve_request_blocking,
)


def listening(name: str, host: str, port: int, backlog: int) -> None:
    print(
        json.dumps(
            {"event": "listening", "design": name, "host": host, "port": port, "backlog": backlog, "pid": os.getpid()}
        ),
        flush=True,
    )


class FrameHandler(socketserver.StreamRequestHandler):
    disable_nagle_algorithm = True

    def handle(self) -> None:
        read, write = self.rfile.read, self.wfile.write
        while True:
            head = read(13)
            if len(head) < 13:
                return
            length, op, arg, reply_len = REQUEST_HEADER.unpack(head)
            write(serve_request_blocking(Request(op, arg, reply_len, read(length - 9))))


class AsyncioFrames(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.decoder = RequestDecoder(Limits())

    def data_received(self, data: bytes) -> None:
        for request in self.decoder.feed(data):
            self.transport.write(serve_request_blocking(request))  # type: ignore[attr-defined]
        if self.decoder.error is not None:
            self.transport.write(error_response(self.decoder.error))  # type: ignore[attr-defined]
            self.transport.close()


def minimal_selectors_loop(host: str, port: int) -> None:
    """The least a selectors echo server can do: no caps, no partial writes, no timers.

    A floor, not a server: it shows how much of the per-request cost is the
    kernel's (recv, send, epoll) and not Python's."""
    sel = selectors.DefaultSelector()
    listener = socket.create_server((host, port), backlog=128)
    listener.setblocking(False)

    def accept(sock: socket.socket) -> None:
        conn, _ = sock.accept()
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sel.register(conn, selectors.EVENT_READ, read)

    def read(conn: socket.socket) -> None:
        data = conn.recv(65536)
        if not data:
            sel.unregister(conn)
            conn.close()
            return
        conn.send(reply_for(Request(*REQUEST_HEADER.unpack_from(data)[1:], data[13:])))

    sel.register(listener, selectors.EVENT_READ, accept)
    listening("minimal-selectors", host, listener.getsockname()[1], 128)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        for key, _ in sel.select():
            key.data(key.fileobj)


def main() -> None:
    name = sys.argv[1]
    port = int(sys.argv[sys.argv.index("--port") + 1]) if "--port" in sys.argv else 0
    host = "127.0.0.1"
    if name == "asyncio":

        async def serve() -> None:
            loop = asyncio.get_running_loop()
            server = await loop.create_server(AsyncioFrames, host, port, backlog=128)
            listening(name, host, server.sockets[0].getsockname()[1], 128)
            stop = loop.create_future()
            loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
            await stop

        asyncio.run(serve())
        return
    if name == "minimal-selectors":
        minimal_selectors_loop(host, port)
        return
    cls = {"threadingtcpserver": socketserver.ThreadingTCPServer, "tcpserver": socketserver.TCPServer}[name]
    cls.allow_reuse_address = True
    cls.daemon_threads = True
    server = cls((host, port), FrameHandler)
    listening(name, host, server.server_address[1], server.request_queue_size)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


if __name__ == "__main__":
    main()

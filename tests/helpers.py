"""Small blocking helpers for tests: raw frames over real loopback sockets."""

from __future__ import annotations

import socket
import struct

from servers.protocol import encode_request
from servers.protocol import read_response as protocol_read_response


def connect(port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    return protocol_read_response(sock.recv)


def call(sock: socket.socket, op: int, arg: int = 0, payload: bytes = b"", reply_len: int = 0) -> tuple[int, bytes]:
    sock.sendall(encode_request(op, arg, payload, reply_len))
    return read_response(sock)


def closed_by_peer(sock: socket.socket) -> bool:
    """True once the server has closed: EOF or a reset."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def raw_header(length: int, op: int, arg: int = 0, reply_len: int = 0) -> bytes:
    return struct.pack("!IBII", length, op, arg, reply_len)

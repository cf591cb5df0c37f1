"""Socket helpers every design shares: the listener, kernel-side timeouts, bounded writes."""

from __future__ import annotations

import select
import selectors
import socket
import struct
import time


def open_listener(
    host: str, port: int, backlog: int, *, reuse_port: bool = False, listen: bool = True
) -> socket.socket:
    """socket() + bind() + listen(backlog); raises OSError with a readable message.

    ``reuse_port``: SO_REUSEPORT, so several sockets of this user may listen on the port and
    the kernel spreads connections over them.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # Lets a restarted server bind while old connections sit in TIME_WAIT;
        # Linux still refuses a port that another socket is listening on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def set_io_timeout(sock: socket.socket, seconds: float) -> None:
    """Bound every recv()/send() on a blocking socket by `seconds`, in the kernel.

    SO_RCVTIMEO/SO_SNDTIMEO rather than ``sock.settimeout()``: Python's timeout
    mode makes the socket non-blocking and adds a poll() before every call,
    which costs CPU on every request; the kernel options cost nothing until
    they fire (the call then fails with EAGAIN, a BlockingIOError).
    """
    if seconds <= 0:
        return
    seconds = max(seconds, 0.001)  # a zero timeval would mean "no timeout"
    sec = int(seconds)
    timeval = struct.pack("ll", sec, int((seconds - sec) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


def arm_deadline(conn: socket.socket, deadline: float, bound: float, partial: bool) -> float:
    """Set the next recv()'s timeout to what is left of a partial request's deadline; back to the
    idle bound once the request is whole.  Returns the deadline (0 when none is running)."""
    if not partial:
        set_io_timeout(conn, bound)
        return 0.0
    now = time.monotonic()
    if not deadline:
        deadline = now + bound
    left = deadline - now
    if left <= 0:
        raise TimeoutError("request not complete within the read timeout")
    set_io_timeout(conn, left)
    return deadline


def send_within(conn: socket.socket, data: bytes, bound: float) -> None:
    """sendall, but the whole reply must be taken within `bound` seconds (0 = no bound).

    SO_SNDTIMEO bounds one send() only, and sendall() restarts it after every partial write,
    so a client that reads a little now and then could hold the connection for ever.
    """
    deadline = time.monotonic() + bound if bound > 0 else 0.0
    sent = conn.send(data)  # the usual case: the whole reply fits in the socket buffer at once
    if sent == len(data):
        return
    view = memoryview(data)[sent:]
    try:
        while view:
            if deadline:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("reply not taken within the read timeout")
                set_io_timeout(conn, left)
            view = view[conn.send(view) :]
    finally:
        if deadline:
            set_io_timeout(conn, bound)


def set_nodelay(sock: socket.socket) -> None:
    # Small replies go out at once instead of waiting on Nagle for an ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# TCP states (include/net/tcp_states.h) in which the peer's FIN came before ours: CLOSE_WAIT (we have
# not closed yet) and LAST_ACK (we closed after it).
TCP_CLOSE_WAIT, TCP_LAST_ACK = 8, 9


def peer_closed_first(sock: socket.socket) -> bool:
    """Whether the peer's FIN came before this side's, read or still unread: the kernel's TCP state
    (``tcpi_state``, the first byte of TCP_INFO), so a server stopping mid-connection, or one that
    shut its own side down to wake a thread, still tells which side holds TIME_WAIT."""
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] in (TCP_CLOSE_WAIT, TCP_LAST_ACK)
    except (OSError, IndexError):
        return False


def watch_exclusively(selector: selectors.BaseSelector, listener: socket.socket) -> None:
    """Re-add a shared listener to this loop's epoll with EPOLLEXCLUSIVE (Linux 4.5): a new connection
    wakes one of the processes waiting on it, not all (the thundering herd).  The flag can only be given
    when a descriptor is added, so the selector's own registration is swapped for one that carries it;
    the selector still maps the descriptor's events to its key."""
    epoll = getattr(selector, "_selector", None)
    exclusive = getattr(select, "EPOLLEXCLUSIVE", 0)
    if not isinstance(epoll, select.epoll) or not exclusive:
        raise OSError("--epoll-exclusive needs epoll with EPOLLEXCLUSIVE (Linux 4.5)")
    epoll.unregister(listener.fileno())
    epoll.register(listener.fileno(), select.EPOLLIN | exclusive)

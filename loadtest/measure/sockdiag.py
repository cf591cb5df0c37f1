"""Exact TCP socket counts for one port, straight from the kernel's inet_diag (sock_diag netlink).

Why not psutil: ``psutil.net_connections()`` reads every socket on the machine
through /proc and resolves owners for each; at 10-20 thousand sockets a call
costs 300-650 ms.  And owners are beside the point here: sockets waiting in the
accept queue and sockets in TIME_WAIT belong to no process.

inet_diag filters in the kernel: a bytecode filter (``sport == P or dport ==
P``) makes one walk of the kernel's socket table return only this port's
sockets, TIME_WAIT and SYN_RECV entries included; a LISTEN-only dump (which
skips that table) gives the listener's accept-queue depth (``idiag_rqueue``)
and backlog (``idiag_wqueue``).

Cost, measured at 20,000 sockets on the port (benchmarks/monitor_cost.py):
the kernel spends about 5 ms per walk of its socket table and 0.7 µs building
each matching socket's message — most of a sample's cost.  An IPv4 listener
can only have IPv4 peers, so IPv6 is walked only for an IPv6 listener.
Decoding stays small: full sockets and mini sockets (TIME_WAIT, request
socks) are dumped apart, so each chunk holds same-size messages, which numpy
reads as one record array (a socket's message is never decoded in Python).
"""

from __future__ import annotations

import functools
import os
import socket
import struct
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3

# Kernel TCP states (include/net/tcp_states.h).
TCP_STATES = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "NEW_SYN_RECV",
}
TCP_LISTEN = 10
TCP_TIME_WAIT = 6
TCP_NEW_SYN_RECV = 12  # a request sock: shown as SYN_RECV, as ss does
ALL_STATES_MASK = 0xFFFFFFFF

_NLMSGHDR = struct.Struct("=IHHII")
_REQ = struct.Struct("=BBBxI")  # inet_diag_req_v2: family, protocol, ext, states (native order), then the id:
_REQ_PORTS = struct.Struct("!HH44x")  # sport, dport (network order), addresses, interface, cookie
_LISTENER = struct.Struct("=IH10xBB54xII")  # len, type, family, state, …, rqueue, wqueue
_KEY_FIELDS = 22  # nlmsghdr (16), family, state, timer, retrans, sport (2)
MINI_SOCKET_STATES = (1 << TCP_TIME_WAIT) | (1 << TCP_NEW_SYN_RECV)  # no full socket: shorter messages
FULL_SOCKET_STATES = ALL_STATES_MASK & ~MINI_SOCKET_STATES & ~(1 << TCP_LISTEN)
_NLATTR = struct.Struct("=HH")
_BC_OP = struct.Struct("=BBH")
INET_DIAG_REQ_BYTECODE = 1
INET_DIAG_BC_JMP = 1
INET_DIAG_BC_S_EQ = 11
INET_DIAG_BC_D_EQ = 12


# A chunk of at least this many same-size messages is decoded as one numpy array; fewer are walked in Python,
# which is as quick for them, and a run whose port has few sockets then never imports numpy (~45 ms of the
# monitor's start, before its first row, on every run).
NUMPY_FROM = 64


@functools.cache
def _key_dtype(size: int) -> np.dtype:
    """len, type, state and sport of one message of `size` bytes, as a numpy record."""
    import numpy as np  # comes with pandas

    return np.dtype(
        {
            "names": ["len", "type", "state", "sport"],
            "formats": ["=u4", "=u2", "u1", ">u2"],
            "offsets": [0, 4, 17, 20],
            "itemsize": size,
        }
    )


@functools.cache
def _bytecode(port: int) -> bytes:
    """``sport == port or dport == port``, as ss compiles an OR.

    The kernel runs it per socket: a true test moves ``yes`` bytes on, a false one
    ``no`` bytes (JMP always takes ``no``); ending exactly at the end accepts the
    socket, past it rejects.  Its verifier insists that every ``no`` target lies
    on the chain of ``yes`` jumps, hence the JMP in the middle.
    """
    return b"".join(
        (
            _BC_OP.pack(INET_DIAG_BC_S_EQ, 8, 12),  # 0: sport == port → 8 (JMP), else → 12
            _BC_OP.pack(0, 0, port),  # 4: the port operand
            _BC_OP.pack(INET_DIAG_BC_JMP, 4, 12),  # 8: → 20, the end: accept
            _BC_OP.pack(INET_DIAG_BC_D_EQ, 8, 12),  # 12: dport == port → 20 accept, else → 24 reject
            _BC_OP.pack(0, 0, port),  # 16: the port operand
        )
    )


@dataclass
class PortSockets:
    """Sockets of one TCP port by state, split into the server's ends and the clients' ends."""

    server: Counter[str] = field(default_factory=Counter)  # local port == port
    client: Counter[str] = field(default_factory=Counter)  # remote port == port
    listening: bool = False
    accept_queue: int = 0  # connections completed and waiting for accept(), over every listener
    deepest_queue: int = 0  # the deepest one listener's accept queue (SO_REUSEPORT: one queue per worker)
    listeners: int = 0
    backlog: int = 0  # the backlog as the kernel applies it, added up over the listeners (SO_REUSEPORT: one each)
    families: set[int] = field(default_factory=set)  # address families of the listener(s)


class SockDiag:
    """A netlink socket that answers ``count(port)``; reuse it across samples."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._seq = 0
        self._buf = bytearray(1 << 18)
        self._view = memoryview(self._buf)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SockDiag:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def count(self, port: int, states: bool = True) -> PortSockets:
        """The port's listeners (their queues and backlogs) and, with ``states``, every socket of the port by
        state and side: a walk of the kernel's whole table, about 1.2 µs a socket (120 ms at 100,000)."""
        out = PortSockets()
        for family in (socket.AF_INET, socket.AF_INET6):
            for _, _, fam, _, rqueue, wqueue in self._messages(family, 1 << TCP_LISTEN, sport=port):
                out.listening = True
                out.families.add(fam)
                out.accept_queue += rqueue
                out.deepest_queue = max(out.deepest_queue, rqueue)
                out.listeners += 1
                out.backlog += wqueue
        if not states:
            return out
        # An IPv4 listener has only IPv4 peers; an IPv6 one may have both (dual stack).
        families = (socket.AF_INET, socket.AF_INET6) if socket.AF_INET6 in out.families else (socket.AF_INET,)
        for family in families:
            # Full sockets and mini sockets (TIME_WAIT, request socks) in two dumps: each
            # kind has one message size, so chunks come uniform and decode in C.  The
            # second walk of the table costs less than decoding mixed chunks in Python.
            for states in (FULL_SOCKET_STATES, MINI_SOCKET_STATES):
                for (state, server_end), n in self._tally(family, states, port).items():
                    side = out.server if server_end else out.client
                    side["SYN_RECV" if state == TCP_NEW_SYN_RECV else TCP_STATES.get(state, str(state))] += n
        return out

    def _request(self, family: int, states: int, sport: int = 0, dport: int = 0, bytecode: bytes = b"") -> None:
        self._seq += 1
        body = _REQ.pack(family, socket.IPPROTO_TCP, 0, states) + _REQ_PORTS.pack(sport, dport)
        if bytecode:
            body += _NLATTR.pack(_NLATTR.size + len(bytecode), INET_DIAG_REQ_BYTECODE) + bytecode
        header = _NLMSGHDR.pack(
            _NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, self._seq, 0
        )
        self.sock.send(header + body)

    def _walk(self, n: int) -> tuple[list[int], bool]:
        """Offsets of the socket messages in a received chunk, and whether the dump ended in it."""
        buf = self._buf
        offsets = []
        off = 0
        while off < n:
            length, mtype, _, _, _ = _NLMSGHDR.unpack_from(buf, off)
            if mtype == NLMSG_ERROR:
                (errno_neg,) = struct.unpack_from("=i", buf, off + 16)
                if errno_neg:
                    raise OSError(-errno_neg, os.strerror(-errno_neg))
                return offsets, True
            if mtype == NLMSG_DONE:
                return offsets, True
            offsets.append(off)
            off += (length + 3) & ~3
        return offsets, False

    def _messages(self, family: int, states: int, sport: int = 0, dport: int = 0) -> list[tuple[int, ...]]:
        self._request(family, states, sport, dport)
        out = []
        done = False
        while not done:
            offsets, done = self._walk(self.sock.recv_into(self._view))
            out += [_LISTENER.unpack_from(self._buf, off) for off in offsets]
        return out

    def _tally(self, family: int, states: int, port: int) -> Counter[tuple[int, bool]]:
        """This port's sockets by (kernel state, is the server's end) for one dump."""
        self._request(family, states, bytecode=_bytecode(port))
        counts: Counter[tuple[int, bool]] = Counter()
        buf, view = self._buf, self._view
        while True:
            n = self.sock.recv_into(view)
            size = int.from_bytes(view[:4], sys.byteorder) if n >= 4 else 0
            if size >= _KEY_FIELDS and size % 4 == 0 and n % size == 0 and n // size >= NUMPY_FROM:
                # Same-size messages fill the chunk (the usual case): decode them as one
                # numpy array.  Framing a chunk that is not uniform this way gives lengths
                # and types that are not all `size` and SOCK_DIAG_BY_FAMILY; it is walked.
                import numpy as np

                msgs = np.frombuffer(buf, dtype=_key_dtype(size), count=n // size)
                if (msgs["len"] == size).all() and (msgs["type"] == SOCK_DIAG_BY_FAMILY).all():
                    server_end = msgs["sport"] == port
                    for is_server, mask in ((True, server_end), (False, ~server_end)):
                        for state, k in enumerate(np.bincount(msgs["state"][mask], minlength=16)):
                            if k:
                                counts[(state, is_server)] += int(k)
                    continue
            offsets, done = self._walk(n)
            for off in offsets:
                counts[(buf[off + 17], int.from_bytes(buf[off + 20 : off + 22], "big") == port)] += 1
            if done:
                return counts

"""A small reader of the captures tcpdump writes (classic pcap, Ethernet or raw IPv4 on loopback).

Enough to check socklab's figures against the wire: each TCP segment's time, addresses, ports,
flags and sequence number.  No dependency beyond the standard library.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

SYN, ACK, FIN, RST = 0x02, 0x10, 0x01, 0x04
LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LINUX_SLL = 1, 101, 113


@dataclass(frozen=True)
class Segment:
    time: float  # wall clock (CLOCK_REALTIME), s
    src: str
    sport: int
    dst: str
    dport: int
    flags: int
    seq: int
    payload: int  # TCP payload bytes
    ack: int = 0  # the acknowledgment number (meaningful with ACK set)

    def has(self, *flags: int) -> bool:
        return all(self.flags & f for f in flags)


def segments(path: Path) -> list[Segment]:
    data = path.read_bytes()
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    nanos = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    skip = {LINKTYPE_ETHERNET: 14, LINKTYPE_RAW: 0, LINKTYPE_LINUX_SLL: 16}[linktype]
    out, off = [], 24
    while off + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack_from(endian + "IIII", data, off)
        packet = data[off + 16 : off + 16 + incl]
        off += 16 + incl
        ip = packet[skip:]
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:  # IPv4 TCP only
            continue
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack_from("!H", ip, 2)[0]
        tcp = ip[ihl:]
        if len(tcp) < 20:
            continue
        sport, dport, seq, ack = struct.unpack_from("!HHII", tcp)
        header = (tcp[12] >> 4) * 4
        out.append(
            Segment(
                sec + frac / (1e9 if nanos else 1e6),
                ".".join(map(str, ip[12:16])),
                sport,
                ".".join(map(str, ip[16:20])),
                dport,
                tcp[13],
                seq,
                total - ihl - header,
                ack,
            )
        )
    return out


def retransmitted(items: list[Segment]) -> int:
    """How many of these segments were sent again: the same sender, port and sequence number seen twice."""
    keys = [(s.src, s.sport, s.seq) for s in items]
    return len(keys) - len(set(keys))

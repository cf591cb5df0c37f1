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


@dataclass
class WireConnection:
    """One connection as the capture saw it, on the kernel's clock (CLOCK_MONOTONIC, s)."""

    syns: list[float]
    synacks: list[tuple[float, int]]  # (time, sequence number)
    final_ack: float | None = None  # the client's first ACK after a SYN-ACK

    @property
    def synacks_resent(self) -> int:
        seqs = [seq for _, seq in self.synacks]
        return len(seqs) - len(set(seqs))


def wire_connections(path: Path, port: int, offset: float) -> dict[int, list[WireConnection]]:
    """The capture's connections to ``port`` by client port, in order; ``offset`` = wall − monotonic."""
    out: dict[int, list[WireConnection]] = {}
    for s in segments(path):
        if port not in (s.sport, s.dport):
            continue
        client, at = (s.sport if s.dport == port else s.dport), s.time - offset
        mine = out.get(client)
        if s.dport == port and s.has(SYN) and not s.flags & ACK:
            if not mine or mine[-1].synacks:  # a SYN after a SYN-ACK: the port's next connection
                out.setdefault(client, []).append(WireConnection([], []))
            out[client][-1].syns.append(at)
        elif mine and s.sport == port and s.has(SYN, ACK):
            mine[-1].synacks.append((at, s.seq))
        elif mine and s.dport == port and s.flags & ACK and mine[-1].synacks and mine[-1].final_ack is None:
            mine[-1].final_ack = at
    return out


def kernel_against_wire(kernel: list[dict], wire: dict[int, list[WireConnection]]) -> dict:  # type: ignore[type-arg]
    """Each traced connection beside the capture's: how far apart (µs) its SYN, the SYN-ACK that completed it
    and its final ACK are, and its SYN-ACK re-sends on each side."""
    gaps: dict[str, list[float]] = {"syn": [], "synack": [], "final_ack": []}
    resent_kernel = resent_wire = unmatched = differing = 0
    for row in kernel:
        born, established = row["kernel_syn_sent"], row["kernel_client_established"]
        found = [c for c in wire.get(int(row["kernel_port"]), []) if c.syns and abs(c.syns[0] - born) < 0.5]
        if not found:
            unmatched += 1
            continue
        conn = min(found, key=lambda c: abs(c.syns[0] - born))
        gaps["syn"].append((conn.syns[0] - born) * 1e6)  # the state changes, then the SYN leaves
        if established == established:  # the SYN-ACK arrives, then the client is ESTABLISHED and ACKs
            last = max((t for t, _ in conn.synacks if t <= established + 0.001), default=None)
            if last is not None:
                gaps["synack"].append((established - last) * 1e6)
            if conn.final_ack is not None:
                gaps["final_ack"].append((conn.final_ack - established) * 1e6)
        traced = int(row["kernel_synack_retrans"])
        resent_kernel, resent_wire = resent_kernel + traced, resent_wire + conn.synacks_resent
        differing += traced != conn.synacks_resent
    return {
        "gaps_us": gaps,
        "unmatched": unmatched,
        "synacks_resent": (resent_kernel, resent_wire),
        "differing": differing,
    }

"""A weighted mix of requests, instead of one op: ``--mix 'ECHO:90,WORK=20000:10'``.

Each entry is ``OP[=ARG][/PAYLOAD[/REPLY]]:WEIGHT`` — the op, its argument (SLEEP ms, WORK µs), the
request's payload bytes and the reply's body bytes (0: the payload echoed), and its weight — so a
mix is also a distribution of sizes: ``'ECHO/64:90,ECHO/65536:10'``.  Every request is one of the
mix's, in proportion to the weights (a shuffled cycle of them, so a short run gets the proportions
too); each is reported under its own op, so ECHO's p99 stands apart from WORK's.

No locust import: the options check a mix in a plain process.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass

from loadtest.declare.kinds import SOCKLAB_OPS
from servers.protocol import Op, encode_request

ENTRY = re.compile(r"^\s*([A-Za-z]+)(?:=(\d+))?(?:/(\d+)(?:/(\d+))?)?\s*:\s*(\d+)\s*$")
CYCLE = 1000  # requests in one shuffled cycle of the mix


@dataclass(frozen=True)
class Entry:
    op: str
    arg: int
    payload: int
    reply: int
    weight: int

    @property
    def frame(self) -> bytes:
        return encode_request(Op[self.op], self.arg, b"x" * self.payload, self.reply)


def parse(text: str, payload: int = 64) -> list[Entry]:
    """The mix's entries; ValueError names what is wrong, in one line.  `payload`: bytes when an entry
    gives none."""
    entries = []
    for part in text.split(","):
        m = ENTRY.match(part)
        if not m:
            raise ValueError(
                f"--mix {text!r}: {part.strip()!r} is not OP[=ARG][/PAYLOAD[/REPLY]]:WEIGHT, e.g. "
                "'ECHO:90,WORK=20000:10'"
            )
        op, arg, size, reply, weight = m.groups()
        if op.upper() not in SOCKLAB_OPS:
            raise ValueError(f"--mix {text!r}: {op!r} is not an op ({', '.join(SOCKLAB_OPS)})")
        entries.append(
            Entry(op.upper(), int(arg or 0), int(size) if size is not None else payload, int(reply or 0), int(weight))
        )
    if not sum(e.weight for e in entries):
        raise ValueError(f"--mix {text!r}: the weights add up to 0")
    return entries


def frames(entries: list[Entry], rng: random.Random | None = None) -> Iterator[tuple[int, bytes]]:
    """(op, frame) for each request, for ever: shuffled cycles of CYCLE with the weights' proportions."""
    total = sum(e.weight for e in entries)
    cycle: list[tuple[int, bytes]] = []
    for e in entries:
        cycle += [(int(Op[e.op]), e.frame)] * max(round(CYCLE * e.weight / total), 1 if e.weight else 0)
    rng = rng or random.Random()
    while True:
        rng.shuffle(cycle)
        yield from cycle

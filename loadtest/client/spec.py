"""What each request of a run is, read once per user from the parsed options: :class:`LoadSpec`.

The op, its argument and sizes, the timeouts, the open-loop schedule, the pipeline depth, a mix — plain data
the Locust users (loadtest.glue.users) hold, with the frames they send.  No locust import.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from loadtest.declare import mix
from servers.protocol import Op, encode_request


@dataclass(frozen=True)
class LoadSpec:
    """What each request is, read once per user from the parsed options."""

    op: int
    arg: int
    payload: bytes
    reply_len: int
    connect_timeout: float
    reply_timeout: float
    idle_interval: float
    arrival_rate: float  # requests/s for the whole run; 0 = closed loop
    poisson: bool
    max_connecting: int
    users: int  # the run's users, across processes: each follows 1/users of the schedule
    connections_total: int  # this load process's share of --connections-total; 0 = no count
    request_events: bool  # a Locust request event for every request (plugins that listen to it)
    pipeline: int  # persistent users: requests in flight on the connection
    mix: tuple[mix.Entry, ...]  # a weighted mix of requests instead of one (loadtest.declare.mix); () = none
    linger0: bool  # close with SO_LINGER 0: a RST, no TIME_WAIT

    @classmethod
    def from_options(cls, opts: Any) -> LoadSpec:
        op = Op[str(getattr(opts, "op", "ECHO")).upper()]
        arg = {Op.SLEEP: opts.sleep_ms, Op.WORK: opts.work_us}.get(op, 0)
        return cls(
            op=int(op),
            arg=int(arg),
            payload=b"x" * int(opts.payload_bytes),
            reply_len=int(opts.reply_bytes),
            connect_timeout=float(opts.connect_timeout),
            reply_timeout=float(opts.reply_timeout),
            idle_interval=float(opts.idle_interval),
            arrival_rate=float(getattr(opts, "arrival_rate", 0.0) or 0.0),
            poisson=getattr(opts, "arrivals", "constant") == "poisson",
            max_connecting=int(getattr(opts, "max_connecting", 1000) or 1000),
            users=max(int(getattr(opts, "num_users", 1) or 1), 1),
            connections_total=-(-int(getattr(opts, "connections_total", 0) or 0) // load_processes(opts)),
            request_events=bool(getattr(opts, "request_events", False)),
            pipeline=max(int(getattr(opts, "pipeline", 1) or 1), 1),
            mix=tuple(mix.parse(opts.mix, int(opts.payload_bytes))) if getattr(opts, "mix", "") else (),
            linger0=bool(getattr(opts, "linger0", False)),
        )

    @property
    def frame(self) -> bytes:
        return encode_request(self.op, self.arg, self.payload, self.reply_len)

    def requests(self) -> Iterator[tuple[int, bytes]]:
        """(op, frame) of each request, for ever: the one request, or the mix's in proportion."""
        if self.mix:
            return mix.frames(list(self.mix))
        return itertools.repeat((self.op, self.frame))

    def schedule(self) -> Any:
        """This user's intended start times (perf_counter), forever: its share of the run's rate."""
        interval = self.users / self.arrival_rate
        at = time.perf_counter() + random.uniform(0, interval)  # a random phase spreads the users
        while True:
            yield at
            at += random.expovariate(1 / interval) if self.poisson else interval


def load_processes(opts: Any) -> int:
    """How many processes run users: --processes N, or the workers a --master expects, or one."""
    return max(
        int(getattr(opts, "processes", 0) or 0),
        int(getattr(opts, "expect_workers", 0) or 0) if getattr(opts, "worker", False) else 0,
        1,
    )

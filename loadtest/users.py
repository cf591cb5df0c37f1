"""Locust users that speak the socklab protocol through loadtest.client.

Like Locust's ``contrib/fasthttp.py``: a protocol client owned by a ``User``
subclass, firing Locust ``request`` events.  Each finished request also goes into
socklab's µs histogram recorder (Locust itself keeps only whole milliseconds).

- :class:`PersistentUser` — one connection, many requests (the per-request cost).
- :class:`ConnectPerRequestUser` — the classic client: connect, send, receive,
  close, every time (the handshake, the backlog, TIME_WAIT).
- :class:`IdleUser` — opens a connection and holds it, one small request every
  ``--idle-interval`` seconds (the many-connections case).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from locust import User, constant, task

from loadtest import options
from loadtest.client import RequestFailure, SocklabClient, parse_target
from loadtest.latency import LatencyRecorder
from servers.protocol import Op, encode_request

RECORDER = LatencyRecorder()  # this process's counts; shipped to the master with each report


@dataclass(frozen=True)
class LoadSpec:
    """What each request is, read once per user from the parsed options."""

    op: int
    arg: int
    payload: bytes
    reply_len: int
    connect_timeout: float
    read_timeout: float
    idle_interval: float

    @classmethod
    def from_options(cls, options: Any) -> LoadSpec:
        op = Op[str(getattr(options, "op", "ECHO")).upper()]
        arg = {Op.SLEEP: options.sleep_ms, Op.WORK: options.work_us}.get(op, 0)
        return cls(
            op=int(op),
            arg=int(arg),
            payload=b"x" * int(options.payload_bytes),
            reply_len=int(options.reply_bytes),
            connect_timeout=float(options.connect_timeout),
            read_timeout=float(options.read_timeout),
            idle_interval=float(options.idle_interval),
        )

    @property
    def frame(self) -> bytes:
        return encode_request(self.op, self.arg, self.payload, self.reply_len)


class SocklabUser(User):
    abstract = True
    mode: ClassVar[str] = ""

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.spec = LoadSpec.from_options(environment.parsed_options)
        self.frame = self.spec.frame
        host, port = parse_target(environment.host or "")
        fire = environment.events.request.fire
        record = RECORDER.record
        record_failure = RECORDER.record_failure

        def on_request(request_type: str, name: str, seconds: float, length: int, exc: BaseException | None) -> None:
            if exc is None:
                record(request_type, name, seconds)
            else:
                record_failure(request_type, name)
            fire(
                request_type=request_type,
                name=name,
                response_time=seconds * 1000.0,
                response_length=length,
                exception=exc,
                context={},
            )

        self.client = SocklabClient(
            host,
            port,
            connect_timeout=self.spec.connect_timeout,
            read_timeout=self.spec.read_timeout,
            on_request=on_request,
            on_first_reply=lambda kind, seconds: record(kind, self.mode, seconds),
        )

    def on_stop(self) -> None:
        self.client.close()


class PersistentUser(SocklabUser):
    """One connection, requests back to back (reconnects after an error)."""

    mode = "persistent"
    wait_time = constant(0)

    @task
    def request(self) -> None:
        # Back to back, so the task loops itself rather than returning to Locust's
        # scheduler after every request: that round trip (a task pick, a wait, a
        # greenlet switch) cost ~2 µs a request, 10% of the load generator's budget
        # (benchmarks/loadgen_cost.py).  Each request still fires its own event; the
        # socket waits yield to other users; Locust stops the user by killing it.
        request, op, name, frame = self.client.request, self.spec.op, self.mode, self.frame
        while True:
            if request(op, name=name, frame=frame) is None:
                time.sleep(0.01)  # failed and reported; don't spin on a dead server


class ConnectPerRequestUser(SocklabUser):
    """connect → send → receive → close, for every request."""

    mode = "connect-per-request"
    wait_time = constant(0)

    @task
    def request(self) -> None:
        try:
            self.client.connect()
        except RequestFailure:
            time.sleep(0.01)  # already reported; a short pause keeps a refused storm bounded
            return
        self.client.request(self.spec.op, name=self.mode, frame=self.frame, first_reply=True)
        self.client.close()


class IdleUser(SocklabUser):
    """Holds one connection open; one small ECHO every --idle-interval seconds."""

    mode = "idle"

    def wait_time(self) -> float:  # type: ignore[override]
        return self.spec.idle_interval

    def on_start(self) -> None:
        with contextlib.suppress(RequestFailure):  # reported; the first task reconnects
            self.client.connect()

    @task
    def request(self) -> None:
        self.client.request(Op.ECHO, name=self.mode, frame=encode_request(Op.ECHO, 0, b"i"))


USER_MODES: dict[str, type[SocklabUser]] = {cls.mode: cls for cls in (PersistentUser, ConnectPerRequestUser, IdleUser)}
# The mode names are declared once, in loadtest.options (which must not import locust).
assert tuple(USER_MODES) == options.USER_MODES, "loadtest.options.USER_MODES and the user classes disagree"

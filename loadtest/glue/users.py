"""Locust users that speak the socklab protocol through loadtest.client.socket_client.

Like Locust's ``contrib/fasthttp.py``: a protocol client owned by a ``User``
subclass, firing Locust ``request`` events.  Each finished request also goes into
socklab's µs histogram recorder (Locust itself keeps only whole milliseconds) and
into the user's own ledger (loadtest.client.accounting), so a user that is never served
is counted as such rather than leaving no trace.

- :class:`PersistentUser` — one connection, many requests (the per-request cost).
- :class:`ConnectPerRequestUser` — the classic client: connect, send, receive,
  close, every time (the handshake, the backlog, TIME_WAIT).
- :class:`IdleUser` — opens a connection and holds it, one small request every
  ``--idle-interval`` seconds (the many-connections case).

Closed loop by default: a user sends its next request when the last one is done.
With ``--arrival-rate R`` the two load classes run open loop (wrk2's model; Locust
has none): each user follows its share R/users of a schedule fixed in advance
(constant spacing with a random phase, or ``--arrivals poisson``), sends at once
when it is behind, and its latency counts from the **intended** start; the
actual send → last byte is kept as the service time.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import gevent
from gevent.lock import BoundedSemaphore
from gevent.pool import Group
from locust import User, constant, task

from loadtest.client import protocols
from loadtest.client.accounting import Accounts, process_tag
from loadtest.client.pipeline import pipeline
from loadtest.client.socket_client import RequestFailure, SocklabClient
from loadtest.client.spec import LoadSpec
from loadtest.declare.kinds import OP_NAMES
from loadtest.declare.settings import CONNECT_PER_REQUEST, IDLE, ONE_SHOT, PERSISTENT
from loadtest.declare.target import format_target, parse_target
from loadtest.glue.state import LoadState
from servers.protocol import Op, encode_request


def wait_until(at: float, accounts: Accounts) -> None:
    """Sleep (yielding to other users) until `at`; if already past, record how late this arrival is."""
    now = time.perf_counter()
    if at > now:
        time.sleep(at - now)
    else:
        accounts.arrival(now - at)


class SocklabUser(User):
    abstract = True
    mode: ClassVar[str] = ""

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.socklab = LoadState.of(environment)  # this load process's recorder, accounts and ledger
        self.spec = LoadSpec.from_options(environment.parsed_options)
        self.frame = self.spec.frame
        self.host, self.port = parse_target(environment.host or "")
        self.ledger = self.socklab.accounts.register(process_tag(environment.runner))
        # Another protocol's one request (loadtest.client.protocols), or None: socklab's frames and their fast paths.
        host = format_target(self.host, self.port).removeprefix("tcp://")
        self.protocol = protocols.from_options(
            environment.parsed_options, host, self.spec.payload, one_shot=self.mode == ONE_SHOT
        )
        self.op: int | str = self.spec.op
        if self.protocol is not None:
            self.op, self.frame = self.protocol.kind, self.protocol.request(keep_alive=self.mode != CONNECT_PER_REQUEST)
            self.requests: Iterator[tuple[int | str, bytes]] = itertools.repeat((self.op, self.frame))
        else:
            self.requests = self.spec.requests()  # (op, frame) of each request in turn
        self.client = self.new_client()

    def new_client(self) -> SocklabClient:
        """A client whose requests reach the µs recorder (and from it, in bulk, Locust's statistics), this
        user's ledger, and — with --request-events, or for a failure — a Locust ``request`` event each."""
        fire = self.environment.events.request.fire
        recorder = self.socklab.recorder
        tally, record_failure, record_service = recorder.tally, recorder.record_failure, recorder.record_service
        ledger, open_loop = self.ledger, self.spec.arrival_rate > 0
        each_event = self.spec.request_events
        tallies: dict[tuple[str, str], Any] = {}
        client: SocklabClient

        def on_request(request_type: str, name: str, seconds: float, length: int, exc: BaseException | None) -> None:
            if exc is None:
                t = tallies.get((request_type, name))
                if t is None:
                    t = tallies[(request_type, name)] = tally(request_type, name)
                us = int(seconds * 1e6 + 0.5) or 1
                counts = t.counts
                counts[us] = counts.get(us, 0) + 1
                t.bytes += length
                if request_type in OP_NAMES:  # a success of an op serves the user; a CONNECT does not
                    ledger.success(client.done_at)
                    if open_loop:
                        record_service(request_type, name, client.service)
                if not each_event:
                    return  # into Locust's statistics at the next flush, with the others
            else:
                record_failure(request_type, name)
                ledger.failed += 1
            if recorder.closed:
                return  # the window is closed: Locust counts what socklab counts, no more
            fire(
                request_type=request_type,
                name=name,
                response_time=seconds * 1000.0,
                response_length=length,
                exception=exc,
                context={},
            )

        client = SocklabClient(
            self.host,
            self.port,
            connect_timeout=self.spec.connect_timeout,
            reply_timeout=self.spec.reply_timeout,
            linger0=self.spec.linger0,
            protocol=self.protocol,
            on_request=on_request,
            on_first_reply=lambda kind, seconds: recorder.record(kind, self.mode, seconds),
            on_connection=self.connection_ended,
        )
        ledger.clients.add(client)
        return client

    def connection_ended(self, record: Any) -> None:
        self.socklab.load_process.connect_ended(record.syn_retrans)
        self.socklab.connections.add(self.ledger.user_id, record)

    def on_stop(self) -> None:
        self.ledger.stopped = time.perf_counter()
        for client in self.ledger.clients:
            # One mid-request belongs to an arrival's greenlet, which closes it as it ends; closing
            # it here would turn the stop itself into a failure ("Bad file descriptor").
            if client.pending is None:
                client.close()


class PersistentUser(SocklabUser):
    """One connection, requests back to back (reconnects after an error); or on a schedule (open loop)."""

    mode = PERSISTENT
    wait_time = constant(0)

    @task
    def request(self) -> None:
        # Back to back, so the task loops itself rather than returning to Locust's
        # scheduler after every request: that round trip (a task pick, a wait, a
        # greenlet switch) cost ~2 µs a request, 10% of the load generator's budget
        # (benchmarks/loadgen_cost.py).  Each request still fires its own event; the
        # socket waits yield to other users; Locust stops the user by killing it.
        request, op, name, frame, requests = self.client.request, self.op, self.mode, self.frame, self.requests
        one_frame = not self.spec.mix  # a mix takes the general path, each request the mix's next
        socklab = self.protocol is None  # the hot loop reads socklab's frames; another protocol's, the general path
        if (
            socklab
            and one_frame
            and self.spec.pipeline == 1
            and not self.spec.arrival_rate
            and not self.spec.request_events
        ):
            # The hot loop: a request's µs count straight into this user's tally (loadtest.client.socket_client.repeat).
            kind = Op(int(op)).name
            tally = self.socklab.recorder.tally(kind, name)
            while True:
                self.client.repeat(kind, name, frame, tally, self.ledger)
                time.sleep(0.01)  # it failed and reported it; don't spin on a dead server
        if self.spec.pipeline > 1:  # N in flight on the connection (loadtest.client.pipeline)
            while True:
                pipeline(self.client, op, name, frame, self.spec.pipeline)
                time.sleep(0.01)  # it failed and reported it; start over on a new connection
        if self.spec.arrival_rate > 0:
            accounts = self.socklab.accounts
            for at in self.spec.schedule():
                wait_until(at, accounts)
                op, frame = next(requests)
                if request(op, name=name, frame=frame, intended=at) is None:
                    time.sleep(0.01)  # failed and reported; the schedule's debt shows as latency
        while True:
            op, frame = next(requests)
            if request(op, name=name, frame=frame) is None:
                time.sleep(0.01)  # failed and reported; don't spin on a dead server


class ConnectPerRequestUser(SocklabUser):
    """connect → send → receive → close, for every request; in open loop, one connection per arrival,
    started on schedule whether or not the earlier ones have finished."""

    mode = CONNECT_PER_REQUEST
    wait_time = constant(0)

    @task
    def request(self) -> None:
        if self.spec.arrival_rate > 0:
            self._arrivals()
        # Back to back, as PersistentUser's loop: a return to Locust's scheduler after every connection
        # costs a task pick and a gevent.sleep(0) — a turn of the event loop, an epoll_wait() — each time.
        # A subclass with its own wait_time gets its waits: one connection a task.
        one_connection, client = self._one_connection, self.client
        if type(self).wait_time is not ConnectPerRequestUser.wait_time:
            return one_connection(client)
        while True:
            one_connection(client)

    def _one_connection(self, client: SocklabClient, intended: float | None = None) -> None:
        if not self._ticket():
            time.sleep(0.05)  # the count is reached: the test ends as soon as the last ones complete
            return
        try:
            client.connect(first_reply=self.mode)
        except RequestFailure:
            self._count_connection()
            if intended is None:
                time.sleep(0.01)  # already reported; a short pause keeps a refused storm bounded
            return
        op, frame = next(self.requests)
        client.request(op, name=self.mode, frame=frame, first_reply=True, intended=intended)
        client.close()
        self._count_connection()

    def _ticket(self) -> bool:
        """With --connections-total, a connection may start only while the count is not reached."""
        if not self.spec.connections_total:
            return True
        state = self.socklab.test
        if state.started >= self.spec.connections_total:
            return False
        state.started += 1
        return True

    def _count_connection(self) -> None:
        """With --connections-total, the test ends once this process has completed its share."""
        if not self.spec.connections_total:
            return
        state = self.socklab.test
        state.completed += 1
        if state.completed == self.spec.connections_total:
            runner = self.environment.runner
            # Not from this greenlet: stopping stops every user.  In the web UI the test stops and the
            # UI stays for the next one; headless (or a worker) the process is done.
            end = runner.stop if self.environment.web_ui is not None else runner.quit
            self.socklab.close_window()  # the count is complete: the window ends now, not after Locust's stop
            gevent.spawn(end)

    def _arrivals(self) -> None:
        state, accounts = self.socklab.test, self.socklab.accounts
        if state.connecting is None:
            state.connecting = BoundedSemaphore(self.spec.max_connecting)
        slots, group = state.connecting, Group()
        try:
            for at in self.spec.schedule():
                wait_until(at, accounts)
                slots.acquire()  # at the cap this waits: the arrival starts late, and its latency shows it
                group.spawn(self._arrival, slots, at)
        finally:
            group.kill(block=False)  # the user is stopping: its connections in flight go with it

    def _arrival(self, slots: BoundedSemaphore, at: float) -> None:
        client = self.new_client()
        try:
            self._one_connection(client, intended=at)
        finally:
            if client.pending is None:  # finished: forget it; in flight, the window's close counted it
                self.ledger.clients.discard(client)
            client.close()
            slots.release()


class IdleUser(SocklabUser):
    """Holds one connection open; one small ECHO every --idle-interval seconds (always closed loop)."""

    mode = IDLE

    def wait_time(self) -> float:  # type: ignore[override]
        return self.spec.idle_interval

    def on_start(self) -> None:
        with contextlib.suppress(RequestFailure):  # reported; the first task reconnects
            self.client.connect()

    @task
    def request(self) -> None:
        if self.protocol is not None:
            self.client.request(self.op, name=self.mode, frame=self.frame)
            return
        self.client.request(Op.ECHO, name=self.mode, frame=encode_request(Op.ECHO, 0, b"i"))


class OneShotUser(ConnectPerRequestUser):
    """The seed's client: connect, send one message (--message, or --payload-bytes of 'x'), wait for the
    server's close, close.  Its latency runs as every request's, from its send to the reply's end, here the
    server's FIN (the EOF); from connect() start to that FIN is its first reply, the connect-per-request
    users' measure (FIRST_REPLY).  A server that resets it or never closes fails it (reset, read timeout)."""

    mode = ONE_SHOT

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        # With --connections-total, each client its even share (one each for as many as there are users): a
        # client that finished first must not take the turn of one still being spawned, which would never go.
        opts = environment.parsed_options
        total = int(getattr(opts, "connections_total", 0) or 0)
        self.own_share = -(-total // self.spec.users) if total else 0
        self.started_here = 0

    def _ticket(self) -> bool:
        if self.own_share and self.started_here >= self.own_share:
            return False
        taken = super()._ticket()
        self.started_here += taken
        return taken


# Each mode's class; the modes themselves are declared in loadtest.declare.settings (which must not import locust).
USER_CLASSES: dict[str, type[SocklabUser]] = {
    cls.mode: cls for cls in (PersistentUser, ConnectPerRequestUser, IdleUser, OneShotUser)
}

"""Pipelining: N requests in flight on one connection, which the protocol allows (replies come in order).

    PersistentUser with --pipeline N

The loop sends N frames in one ``sendall``, then, as replies arrive, takes each whole reply off
the stream in order and sends one new frame for each (all of them in one ``sendall``), so N stay in
flight.  Each request's latency is still its own — its send → the arrival of its last reply byte —
and so includes its wait behind the requests ahead of it on the connection.  It is a different
workload from one at a time (``redis-benchmark -P``, wrk's pipelining script): the server and the
client each handle several frames per system call, so a pipelined cell is labelled as such
wherever it shows.  No locust import: it drives a ``loadtest.client.socket_client.SocklabClient``.
"""

from __future__ import annotations

import time
from collections import deque

from loadtest.client.socket_client import OP_NAMES, STATUS_NAMES, RequestFailure, SocklabClient
from servers.protocol import RESPONSE_HEADER

RECV_SIZE = 262144
MAX_REPLY = (1 << 30) + 1


def pipeline(client: SocklabClient, op: int, name: str, frame: bytes, depth: int) -> None:
    """Keep `depth` requests in flight on the client's connection until something fails (reported,
    and the connection closed); returns then, so the caller can pause and start over."""
    request_type = OP_NAMES.get(op, str(op)) if client.protocol is None else client.protocol.kind
    try:
        sock = client.sock or client.connect()
    except RequestFailure:
        return
    sent: deque[float] = deque()  # the send time of each request in flight, oldest first
    client.in_flight = sent
    perf = time.perf_counter
    record = client.record
    buf = bytearray()
    try:
        started = perf()
        if record is not None:
            record.sent = started
        timeout = client.reply_timeout
        client.deadline = started + timeout
        sock.sendall(frame * depth)
        sent.extend([started] * depth)
        client.pending = (request_type, name, started, None)
        while True:
            data = sock.recv(RECV_SIZE)
            now = perf()
            if not data:
                raise RequestFailure("closed", "the server closed the connection with replies outstanding")
            if record is not None and not record.first_byte:
                record.first_byte = now
            buf += data
            done = _take_replies(client, buf, now, sent, request_type, name)
            if done:
                if record is not None:
                    if not record.last_byte:
                        record.last_byte = now
                    record.requests += done
                again = perf()
                sock.sendall(frame * done)
                sent.extend([again] * done)
                client.pending = (request_type, name, sent[0], None)
                client.deadline = sent[0] + timeout  # the oldest in flight is the one that can be late
    except Exception as exc:
        _all_lost(client, exc, sent, request_type, name)
    except BaseException:
        client.close("unfinished")  # stopped: what is in flight stays pending for the window's close
        raise


def _take_replies(
    client: SocklabClient, buf: bytearray, now: float, sent: deque[float], request_type: str, name: str
) -> int:
    """Take every whole reply off the front of ``buf`` (in order), report each, and return how many."""
    if client.protocol is not None:
        return _take_protocol_replies(client, buf, now, sent, request_type, name)
    done = pos = 0
    end = len(buf)
    on_request = client.on_request
    while end - pos >= 5:
        length, status = RESPONSE_HEADER.unpack_from(buf, pos)
        if length < 1 or length > MAX_REPLY:
            raise RequestFailure("protocol error", "reply length out of range")
        if end - pos < 4 + length:
            break
        if status != 0:
            raise RequestFailure("bad status", STATUS_NAMES.get(status, f"unknown status {status}"))
        if not sent:
            raise RequestFailure("protocol error", "a reply with no request in flight")
        pos += 4 + length
        client.done_at = now
        on_request(request_type, name, now - sent.popleft(), length - 1, None)
        done += 1
    if pos:
        del buf[:pos]
    return done


def _take_protocol_replies(
    client: SocklabClient, buf: bytearray, now: float, sent: deque[float], request_type: str, name: str
) -> int:
    """Another protocol's whole replies off the front of ``buf``, in order (loadtest.client.protocols)."""
    protocol = client.protocol
    assert protocol is not None
    done = pos = 0
    while sent:
        reply = protocol.reply_end(buf, pos)
        if reply is None:
            break
        end, closing = reply
        if closing:
            raise RequestFailure(
                "closed", "the server closes after this reply: pipelining needs a kept-alive connection"
            )
        client.done_at = now
        client.on_request(request_type, name, now - sent.popleft(), end - pos, None)
        pos, done = end, done + 1
    if pos:
        del buf[:pos]
    return done


def _all_lost(client: SocklabClient, exc: Exception, sent: deque[float], request_type: str, name: str) -> None:
    """Every request in flight is lost with the connection: each is reported failed at its age."""
    now = time.perf_counter()
    failure = client.failure(exc)
    client.pending, client.in_flight, client.deadline = None, None, 0.0
    ages = [now - t for t in sent] or [0.0]
    client.close(failure.kind)
    for age in ages:
        client.on_request(request_type, name, age, 0, failure)

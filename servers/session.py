"""The rules an event loop keeps for each connection, with no sockets: one place for both event loops.

A :class:`Session` is one connection's protocol state: the bytes that arrived are decoded into a
queue of requests, and the loop asks for the replies it may write now.  The rules:

- Replies go out in request order.
- SLEEP never blocks the loop: :meth:`Session.answer` stops at it and hands the request back; the
  loop sets a timer and calls :meth:`Session.woke` when it fires.  WORK runs inline and *does* stop
  the loop for its duration — an event loop buys concurrency for waiting, not for computing.
- While a connection owes a SLEEP, or more than a high-water mark of unsent bytes, the loop does
  not read it: a client that pipelines requests and never reads costs about one reply and one frame
  of memory, and the kernel's buffers push back on it.
- After a bad frame, the requests before it are answered, then its status, then the connection is
  closed (:meth:`Session.final_error`).
- With ``--max-requests N`` the connection is closed, the server's FIN first, once N replies are
  written (:meth:`Session.spend`): HTTP's keep-alive maximum.
- ``read_timeout`` bounds (:meth:`Session.overdue`, checked by a sweep once a second): no progress
  in either direction for that long (a timer keeps a connection alive); a request not fully arrived
  that long after its first byte; a reply not fully taken that long after it was ready.
"""

from __future__ import annotations

from collections import deque

from servers.protocol import SLEEP, WORK, Limits, Request, RequestDecoder, burn_cpu, error_response, reply_for

SWEEP_INTERVAL = 1.0  # seconds between two sweeps for overdue connections
OUT_HIGH_WATER = 256 * 1024  # stop producing replies while this much is unsent


class Session:
    __slots__ = ("budget", "closing", "decoder", "frame_since", "last_active", "out_since", "queue", "sleeping")

    def __init__(self, limits: Limits, now: float, max_requests: int = 0) -> None:
        self.decoder = RequestDecoder(limits)
        self.budget = max_requests or -1  # requests left before the server closes first; -1 = no limit
        self.queue: deque[Request] = deque()  # decoded, not yet answered (behind a SLEEP, or over high water)
        self.sleeping = False  # a SLEEP timer runs for this connection: the next replies wait for it
        self.closing = False  # close once the output is flushed (after an error status)
        self.last_active = now
        self.frame_since = 0.0  # when the request now partly read began to arrive (0: none)
        self.out_since = 0.0  # when the unsent reply bytes became ready (0: none)

    def received(self, data: bytes, now: float) -> list[Request]:
        """Bytes that arrived: the requests they complete (not yet queued: the loop's fast path may
        answer a lone request at once; :meth:`enqueue` the rest)."""
        self.last_active = now
        requests = self.decoder.feed(data)
        if self.decoder.buffered:
            if not self.frame_since:
                self.frame_since = now
        elif self.frame_since:
            self.frame_since = 0.0
        return requests

    def enqueue(self, requests: list[Request]) -> None:
        self.queue.extend(requests)

    def answer(self, room: float = float("inf")) -> tuple[list[bytes], Request | None]:
        """Replies to the queued requests, in order, while less than `room` bytes are produced.

        Stops at a SLEEP and returns it (the loop sets its timer; the session is ``sleeping``); WORK
        burns the loop's CPU here.  The number answered is ``len(replies)``."""
        queue, replies = self.queue, []
        most = self.budget if self.budget > 0 else len(queue)  # no reply past the --max-requests budget
        while queue and room > 0 and len(replies) < most:
            request = queue.popleft()
            if request.op == SLEEP and request.arg:
                self.sleeping = True
                return replies, request
            if request.op == WORK:
                burn_cpu(request.arg)  # blocks the whole loop: the lesson of this op
            reply = reply_for(request)
            replies.append(reply)
            room -= len(reply)
        return replies, None

    def woke(self, request: Request, now: float) -> bytes:
        """A SLEEP's timer fired: its reply."""
        self.sleeping = False
        self.last_active = now
        return reply_for(request)

    def spend(self, n: int) -> bool:
        """`n` more replies produced; True when that spends the --max-requests budget: the connection closes
        once they are written (the server's FIN first) and anything queued behind them is dropped."""
        if self.budget < 0:
            return False
        self.budget = max(self.budget - n, 0)
        if self.budget == 0:
            self.closing = True
            self.queue.clear()
            return True
        return False

    def final_error(self) -> bytes | None:
        """After a bad frame, once everything before it is answered: its status frame (once); the
        loop closes the connection when it is written."""
        if self.queue or self.sleeping or self.decoder.error is None or self.closing:
            return None
        self.closing = True
        return error_response(self.decoder.error)

    @property
    def ended_mid_frame(self) -> bool:
        """The client closed with part of a request sent: a client error."""
        return self.decoder.buffered > 0

    def overdue(self, cutoff: float) -> bool:
        """Idle, or too slow to send its request or take its reply, since `cutoff` (now − read_timeout)."""
        return (
            (self.last_active < cutoff and not self.sleeping)
            or 0 < self.frame_since < cutoff
            or 0 < self.out_since < cutoff
        )

"""A connection's stages: its first request split into consecutive spans between events on one clock.

``loadtest.report.rules.timeline`` joins each client connection to the server's record; this module
puts the joined events in the order they must have happened and cuts the time between them into
stages (the metric definitions of the design notes):

- handshake: connect start → return, of which the SYN-retry waits (all but the last round trip,
  TCP_INFO's round trip at connect) and the last round trip;
- half-open: the final ACK on its way, or dropped at the full accept queue;
- accept-queue wait: connect() return → ``accept()`` return;
- pool-queue wait: ``accept()`` return → a worker starts on it;
- request wait: the worker starts → the first request is whole (the client's send, or its pause);
- service: the request whole → its reply written;
- transfer: the reply written → its last byte at the client;
- teardown: who sent FIN first (that side holds TIME_WAIT).

Stage i runs from event i to event i+1, so the stages add up to connect start → the first reply's last
byte by construction; the one in progress at the window's close is a lower bound.  Each stage's part
inside the measured window is kept too: the window's account, where every user's time went.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from loadtest.declare.columns import WINDOW_SHARES
from loadtest.report.rules.kernel_times import kernel_half_open_until, kernel_rows
from loadtest.report.rules.server_log import teardown_of

# A connection's consecutive stages, each between two events that happened in this order on one clock
# (CLOCK_MONOTONIC, client and server alike), so they add up to connect start → the first reply's last byte.
STAGES = (
    "syn_retry_wait",
    "handshake",
    "half_open",
    "accept_queue",
    "pool_queue",
    "client_late",
    "request_wait",
    "service",
    "transfer",
    "server_unknown",
)
STAGE_LABELS = {
    "syn_retry_wait": "SYN retries",
    "handshake": "handshake",
    "half_open": "half-open (the final ACK on its way, or dropped at the full accept queue)",
    "accept_queue": "accept queue",
    "pool_queue": "pool queue",
    "client_late": "load generator late to send",
    "request_wait": "request waiting to be read",
    "service": "service",
    "transfer": "reply to the client's read (a late load generator shows here)",
    "server_unknown": "the server's own stages, not measured (no server log)",
}
# The window's whole account: every user's time in the measured window, in the stage it was in.
WINDOW_STAGES = tuple(stage for stage, _ in WINDOW_SHARES)  # declared, with meanings, in loadtest.declare.columns
WINDOW_LABELS = {
    **STAGE_LABELS,
    "later_waiting": "later requests out of service (not yet read by the server, or the reply not yet read)",
    "later_service": "later requests' service",
    "later_requests": "later requests in flight (not split: no server log)",
    "load_generator": "no request in flight (the load generator's own time, or a user with nothing left to send)",
}
# A connect still going this long on loopback (a handshake takes tens of µs) had its SYN dropped: it waits
# for the kernel's retry (1 s after the SYN), not for a handshake; below it, the client may just not have run.
SYN_DROPPED_S = 0.2
STOPPED_BY_THE_RUN = "closed by the run's stop, after the window"


def events(out: pd.DataFrame, close: float) -> pd.DataFrame:
    """Each connection's events in the order they must have happened, on one clock, as seconds; NaN where an
    event had not happened by the window's ``close`` (what the server did after the close does not count).

    A client stamp read late (its greenlet resumed after the server had already accepted) is not moved: the
    event it stands for is bounded by the server's, and the client's lateness becomes its own stage."""

    # A user's connection ends at its client's close: what the server did for it afterwards (a SLEEP finished
    # for a client that had timed out and gone) is not that user's time.
    closed = out["closed"].astype(float)
    until = np.fmin(closed.where(closed > 0), close).fillna(close)

    def at(column: str) -> pd.Series:
        values = out[column].astype(float) if column in out else pd.Series(np.nan, index=out.index)
        return values.where((values > 0) & (values <= until))  # 0: did not happen (client and server alike)

    start = out["connect_start"].astype(float)
    kernel = kernel_rows(out)
    # The kernel's times where it traced the connection (loadtest.report.rules.kernel_times), else the stamps.
    accepted = at("kernel_accepted").where(kernel, np.nan).fillna(at("server_accepted"))  # a lost record: the log's
    # The client is ESTABLISHED (SYN-ACK back) before the server's child is, which is before accept() returns.
    connect_end = at("connect_end").where(out["connected"] == 1)  # a failed connect's end is no handshake
    established = np.fmin(connect_end, accepted).where(connect_end.notna())
    established = np.fmin(at("kernel_client_established"), established).where(kernel, established)
    rtt = (out["rtt_us"].astype(float) / 1e6).clip(lower=0)
    retried = out["syn_retrans"] > 0
    # After a re-sent SYN, TCP_INFO's round trip is its floor, exactly 1 ms (no sample from a retransmitted SYN
    # but the millisecond timestamps'): the last round trip is then taken as this run's connects that were not
    # retried measured it, their median (an audit read a "1.000 ms handshake" ~40x the loopback's).
    measured = rtt[~retried & (out["connected"] == 1)]
    if len(measured):
        rtt = rtt.mask(retried & (out["rtt_us"] == TCP_INFO_RTT_FLOOR_US), float(measured.median()))
    through = (established - np.fmin(rtt, established - start)).where(out["syn_retrans"] > 0, start)
    sent = at("sent")
    # The server's stamps can be late too (its thread waited for the GIL after send()): the reply was written
    # before its first byte reached the client, so "written" is bounded by that (CI: 6,298 of 14,985 threaded
    # connections stamped their write after the client had the whole reply).
    written = np.fmin(at("server_first_written"), at("first_byte"))
    read = np.fmin(at("server_first_read"), written)
    started = at("server_service_start")
    return pd.DataFrame(
        {
            "e0": start,
            "e1": through.where(established.notna()),
            "e2": established,
            "e3": accepted,
            "e4": started,
            "e5": np.fmax(started, np.fmin(sent, read)),
            "e6": read,
            "e7": written,
            "e8": at("last_byte"),
        }
    )


def half_open_until(out: pd.DataFrame, ev: pd.DataFrame, close: float) -> pd.Series:
    """When each connection stopped being half-open (NaN: it still was at the close; its connect() return:
    never was).  A connection whose final ACK and request were dropped at the full accept queue had to send
    its data again; it was half-open until a retransmission got in and the server's kernel made a connection
    of it, acknowledging the data.  The client's kernel says, at the close, whether the data of a connection
    still waiting is acknowledged, and when (``unacked_at_close``, ``acked_at``); a connection accepted before
    the close is counted half-open up to its accept, its queue wait after the ACK got in not told apart."""
    column = out.get
    kernel = kernel_rows(out)
    if len(kernel) and kernel.all():  # the kernel saw the server's child ESTABLISHED: into the accept queue
        return kernel_half_open_until(out, ev, close)
    resent = column("data_retrans", pd.Series(0, index=out.index)).fillna(0) > 0
    unacked = column("unacked_at_close", pd.Series(-1, index=out.index)).fillna(-1)
    acked_at = column("acked_at", pd.Series(0.0, index=out.index)).fillna(0.0).astype(float)
    still = unacked > 0  # its data unacknowledged at the close: half-open then
    entered = resent & (unacked == 0) & (acked_at > 0)  # half-open, then into the queue: when its data was ACKed
    until = ev["e3"].where(resent, ev["e2"])
    until = until.where(~entered, np.fmin(np.fmax(acked_at, ev["e2"]), close))
    until = until.where(~still, np.nan)
    return kernel_half_open_until(out, ev, close).where(kernel, until)


MS = 1000.0
TCP_INFO_RTT_FLOOR_US = 1000  # TCP_INFO's round trip after a re-sent SYN: the floor of its ms timestamps
Span = tuple[pd.Series, pd.Series]  # (begin, end) per connection, s


def with_stages(out: pd.DataFrame, open_: float | None = None, close: float | None = None) -> pd.DataFrame:
    """The stages of each connection (ms, ``STAGES``), consecutive by construction: stage i runs from event i to
    event i+1; the stage in progress when the window closed (or the connection ended) runs to that moment,
    and is marked a lower bound; the stages after it are 0.  Also each stage's part inside the window
    (``in_window_<stage>``, s) — the window's account — and the state at the close."""
    close = float(close) if close else float("inf")
    ev = events(out, close)
    ended = out["closed"].astype(float).where(out["closed"] > 0)
    # Where a connection's account stops: its close, or the window's.
    stop = np.fmin(ended.fillna(close), close)
    if not np.isfinite(close):  # no window: up to the client's close, or its last event
        stop = ended.fillna(ev.max(axis=1))
    # No server record to join (no log, another machine's clock, past the log's cap): after connect() returned,
    # one stage up to the first reply's last byte, named for what it is.
    unknown = ~out["join"].isin(["joined", "never connected"]) & ~out["join"].str.startswith("not accepted")
    spans, running = consecutive(stage_bounds(out, ev, close, unknown), stop)
    spans, running = young_connects(spans, running, stop - ev["e0"])
    set_stages(out, spans, unknown, open_, close)
    out["stage_at_stop"] = running  # "" when the first reply came back
    mark_events(out, ev, unknown, open_)
    out["first_request"] = sum(out[s].fillna(0.0) for s in STAGES).where(running == "")
    out["first_reply"] = (out["first_byte"].where(out["first_byte"] > 0) - out["connect_start"]) * MS
    # Open and not accepted when the window closed, though connect() had returned: half-open or queued.
    known = ~unknown | kernel_rows(out)
    connected = ev["e2"].notna() & ev["e3"].isna() & known & (ended.isna() | (ended > close))
    out["unaccepted_at_close"] = connected & bool(np.isfinite(close))
    out["accept_queue_lower_bound"] = running.isin(["accept_queue", "half_open"])
    after_first_reply(out, ev, stop, open_, close)
    mark_teardown(out, close)
    return out


def stage_bounds(out: pd.DataFrame, ev: pd.DataFrame, close: float, unknown: pd.Series) -> list[pd.Series]:
    """Where each stage begins (stage i between bound i and bound i+1): the events in order, the end of being
    half-open inserted; without a server record every bound after connect()'s return is that return."""
    bounds = [
        ev["e0"],
        ev["e1"],
        ev["e2"],
        half_open_until(out, ev, close),
        ev["e3"],
        ev["e4"],
        ev["e5"],
        ev["e6"],
        ev["e7"],
        ev["e8"],
        ev["e8"],
    ]
    # The kernel still knows half-open and the accept queue; after accept() the server's stages are unknown.
    kernel = kernel_rows(out) & unknown
    for i in range(3, 10):
        last_known = ev["e3"].where(kernel, ev["e2"]) if i >= 5 else ev["e2"]
        bounds[i] = bounds[i].where(~unknown | (kernel & (i < 5)), last_known)
    return bounds


def consecutive(bounds: list[pd.Series], stop: pd.Series) -> tuple[dict[str, Span], pd.Series]:
    """Each stage's span, one after the other: a stage whose next bound had not come runs to the ``stop`` and is
    the one in progress (``running``; "" where every stage came), and those after it are empty."""
    cur = bounds[0]
    running = pd.Series("", index=cur.index)
    done = pd.Series(False, index=cur.index)
    spans: dict[str, Span] = {}
    for i, stage in enumerate(STAGES):
        nxt = bounds[i + 1]
        arrived = nxt.notna() & ~done
        stops_here = ~arrived & ~done
        end = np.fmax(nxt, cur).where(arrived, np.fmax(stop, cur).where(stops_here, cur))
        spans[stage] = (cur, end)
        running = running.where(~stops_here, stage)
        done = done | stops_here
        cur = end
    return spans, running


def young_connects(spans: dict[str, Span], running: pd.Series, age: pd.Series) -> tuple[dict[str, Span], pd.Series]:
    """A connect still going (or failed) after less than SYN_DROPPED_S was in its handshake (or its client not
    yet scheduled); on loopback a handshake takes tens of µs, so one going longer had its SYN dropped and
    waits for the retry."""
    young = (running == "syn_retry_wait") & (age < SYN_DROPPED_S)
    if young.any():
        b0, e0 = spans["syn_retry_wait"]
        spans["syn_retry_wait"] = (b0, e0.where(~young, b0))
        spans["handshake"] = (spans["handshake"][0].where(~young, b0), spans["handshake"][1].where(~young, e0))
        running = running.where(~young, "handshake")
    return spans, running


def set_stages(
    out: pd.DataFrame, spans: dict[str, Span], unknown: pd.Series, open_: float | None, close: float
) -> None:
    """Each stage in ms, and its part inside the window in s (``in_window_<stage>``)."""
    for stage, (b, e) in spans.items():
        out[stage] = (e - b) * MS
        if open_ is not None:
            lo, hi = np.fmax(b, open_), np.fmin(e, close)
            out[f"in_window_{stage}"] = (hi - lo).clip(lower=0).fillna(0.0)
    # Without a server record the server's stages are not measured, and a connection that never connected
    # never reached them: NaN, not a guessed 0.
    server_side = ("half_open", "accept_queue", "pool_queue", "client_late", "request_wait", "service", "transfer")
    reached = ~unknown & (out["connected"] == 1)
    by_kernel = kernel_rows(out) & (out["connected"] == 1)
    for stage in server_side:
        out[stage] = out[stage].where(reached | (by_kernel & (stage in ("half_open", "accept_queue"))))


def mark_events(out: pd.DataFrame, ev: pd.DataFrame, unknown: pd.Series, open_: float | None) -> None:
    """Whether a connection was accepted, picked by a worker and served by the window's close (``e<i>_known``),
    and whether inside it (``<event>_in_window``)."""
    kernel = kernel_rows(out)
    for i in (3, 4, 7):  # accepted, a worker on it, its first reply written: by the window's close
        out[f"e{i}_known"] = ev[f"e{i}"].notna() & (~unknown | (kernel & (i == 3)))
    # … and inside the window: a persistent connection's first request was the warm-up's, not the window's.
    since = open_ if open_ is not None else -np.inf
    for i, name in ((3, "accepted"), (4, "picked"), (7, "served"), (8, "replied")):
        out[f"{name}_in_window"] = (ev[f"e{i}"] >= since) & (~unknown | (kernel & (i in (3, 8))))


def after_first_reply(out: pd.DataFrame, ev: pd.DataFrame, stop: pd.Series, open_: float | None, close: float) -> None:
    """Inside the window, each connection's time after its first reply (``in_window_after_first``) and its
    first request's own time in flight (``first_request_in_flight_s``), s."""
    last = ev["e8"]
    out["in_window_after_first"] = 0.0
    out["first_request_in_flight_s"] = 0.0
    if open_ is None:
        return
    # After the first reply: a persistent connection's later requests, and the load generator between them.
    after = (np.fmin(stop, close) - np.maximum(last, open_)).clip(lower=0)
    out["in_window_after_first"] = after.where(last.notna(), 0.0)
    # The first request's own time in flight inside the window (from its send, or from connect()'s return
    # where the send was not stamped, to its last reply byte or the stop): the clients' request time
    # counts it too, so the window's "later requests" are what is left after it.
    sent = out["sent"].astype(float).where(out["sent"] > 0).fillna(ev["e2"])
    lo, hi = np.maximum(sent, open_), np.minimum(last.fillna(stop), close)
    out["first_request_in_flight_s"] = (hi - lo).clip(lower=0).where(sent.notna(), 0.0)


def mark_teardown(out: pd.DataFrame, close: float) -> None:
    """How each connection ended (``teardown``): its server record's flags; with no record, the kernel's first
    FIN; or the run's stop."""
    joined = out["join"] == "joined"
    out["teardown"] = ""
    if joined.any():
        out.loc[joined, "teardown"] = [teardown_of(r) for r in out[joined].itertuples()]
    side = out.get("kernel_first_fin", pd.Series("", index=out.index)).fillna("").astype(str)
    traced = ~joined & side.isin(["client", "server"])
    out.loc[traced, "teardown"] = (
        side[traced] + " closed first: the " + side[traced] + " holds TIME_WAIT (the kernel's)"
    )
    # Ended after the window closed: the run's stop ended it (users killed with replies unread, the server
    # shut down), not the server's or the client's way of closing.
    first_close = np.fmin(out["closed"].astype(float).where(out["closed"] > 0), out["server_closed"].astype(float))
    stopped = (joined | traced) & (first_close > close)
    out.loc[stopped, "teardown"] = STOPPED_BY_THE_RUN

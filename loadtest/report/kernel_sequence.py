"""One connection drawn from the kernel's own stamps (``kernel_*`` columns of connections.csv): every arrow
whose two ends the kernel, the client or the server's log timed, each label naming its clock.

What the tracepoints see: the client's socket entering SYN_SENT (its SYN leaves) and ESTABLISHED (the
SYN-ACK arrived, its ACK leaves), the server's child becoming ESTABLISHED (that ACK arrived: into the
accept queue), ``accept()`` returning it, and every state of the teardown on both sides.  The SYN's
arrival and the SYN-ACK's departure change no socket's state (the listener keeps a request socket), so
that row says when it happened between, not a time; so do the request's reading and the reply's writing
where the server keeps no log.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from loadtest.report.rules.kernel_times import HALF_OPEN_MS

Event = tuple[str, int, float | None, str]  # (key, side 0 client / 1 server, ms since connect(), what happens)
Message = tuple[str, str, str]  # (from event, to event, label)
Clock = Callable[[str], float | None]  # a column's time, ms since connect() started (None: not stamped)

KERNEL = "kernel"
CLIENT_CLOCK = "client"
SERVER_LOG = "server log"


def kernel_sequence(row: pd.Series) -> tuple[list[Event], list[Message], tuple[str, ...]]:
    """The events in time order, the arrows, and the events placed where they must have happened but not
    timed (drawn without a time)."""
    t0 = float(row["connect_start"])

    def at(column: str) -> float | None:
        value = row.get(column)
        return None if value is None or value != value or value <= 0 else (float(value) - t0) * 1000

    sent, established = at("kernel_syn_sent"), at("kernel_client_established")
    retries = int(row.get("syn_retrans") or 0)
    events: list[Event] = [
        ("call", 0, 0.0, f"connect() called ({CLIENT_CLOCK})"),
        ("syn", 0, sent, f"SYN_SENT: the SYN leaves{retried(retries)} ({KERNEL})"),
        (
            "synack",
            1,
            between(sent, established),
            "the SYN that got through arrives, SYN-ACK leaves (untimed: no socket changes state)",
        ),
        ("established", 0, established, f"ESTABLISHED: the SYN-ACK arrived, the ACK leaves ({KERNEL})"),
        ("connected", 0, at("connect_end"), f"connect() returns ({CLIENT_CLOCK})"),
        (
            "queued",
            1,
            at("kernel_server_established"),
            f"the ACK arrives: ESTABLISHED, into the accept queue{resent(row)} ({KERNEL})",
        ),
        ("accepted", 1, at("kernel_accepted"), f"accept() returns it{queued(at)} ({KERNEL})"),
        ("sent", 0, at("sent"), f"request sent ({CLIENT_CLOCK})"),
        *application(row, at),
        ("last", 0, at("last_byte"), f"the reply's last byte arrives ({CLIENT_CLOCK})"),
    ]
    half_open = (at("kernel_server_established") or 0.0) - (established or 0.0)
    ack = "ACK" if half_open < HALF_OPEN_MS else "ACK dropped at the full queue: a later segment got in"
    syn = "SYN" if not retries else f"SYN (this one dropped: sent {retries + 1} times)"
    messages: list[Message] = [
        ("syn", "synack", syn),
        ("synack", "established", "SYN-ACK"),
        ("established", "queued", ack),
    ]

    logged = any(key == "written" for key, *_ in events)
    messages += [("sent", "read", "request"), ("written" if logged else "read", "last", "reply")]
    teardown_events, teardown_messages = teardown(row, at)
    untimed = ("synack",) if logged else ("synack", "read")
    return ordered(events + teardown_events), messages + teardown_messages, untimed


def queued(at: Clock) -> str:
    """How long the connection was in the accept queue, said with its accept()."""
    into, out = at("kernel_server_established"), at("kernel_accepted")
    return f", after {out - into:,.3f} ms in the accept queue" if into is not None and out is not None else ""


def between(after: float | None, before: float | None) -> float | None:
    """An untimed event's place: between two timed ones (drawn in order, labelled without a time)."""
    return None if after is None or before is None else (after + before) / 2


def retried(retries: int) -> str:
    return f" (sent {retries + 1} times: TCP_INFO)" if retries else ""


def resent(row: pd.Series) -> str:
    count = int(row.get("kernel_synack_retrans") or 0) + int(row.get("kernel_synack_retrans_after") or 0)
    return f", after {count} SYN-ACK re-sends (its ACK was dropped at the full queue)" if count else ""


def application(row: pd.Series, at: Clock) -> list[Event]:
    """The request read and the reply written: the server's log, or one untimed row when it keeps none."""
    read, written = at("server_first_read"), at("server_first_written")
    resent = int(row.get("data_retrans") or 0)  # TCP_INFO at the client's close
    again = f", the client had sent it {resent + 1} times (TCP_INFO: dropped while half-open)" if resent else ""
    if read is not None and written is not None:
        return [
            ("read", 1, read, f"request read ({SERVER_LOG}){again}"),
            ("written", 1, written, f"reply written ({SERVER_LOG})"),
        ]
    sent, accepted, first = at("sent"), at("kernel_accepted"), at("first_byte")
    after = max(sent, accepted) if sent is not None and accepted is not None else None
    return [("read", 1, between(after, first), "request read, reply written (untimed: the server keeps no log)")]


def teardown(row: pd.Series, at: Clock) -> tuple[list[Event], list[Message]]:
    """FIN, ACK, FIN, ACK: each arrow drawn where the kernel's state changes time both its ends."""
    closer = str(row.get("kernel_first_fin") or "")
    if closer not in ("client", "server"):
        return [], []
    c, o = (0, 1) if closer == "client" else (1, 0)
    other = "server" if closer == "client" else "client"
    fin, arrived, acked, second, time_wait, closed = (
        at(f"kernel_{name}") for name in ("fin_sent", "fin_arrived", "fin_acked", "second_fin", "time_wait", "closed")
    )
    events: list[Event] = [
        ("fin", c, fin, f"{closer} closes: FIN leaves, FIN_WAIT1 ({KERNEL})"),
        ("fin_arrived", o, arrived, f"FIN arrives: CLOSE_WAIT, a read() now returns 0 ({KERNEL})"),
        ("second_fin", o, second, f"{other} closes: FIN leaves, LAST_ACK ({KERNEL})"),
        ("time_wait", c, time_wait, f"FIN arrives: its ACK leaves, TIME_WAIT ({KERNEL})"),
        ("closed", o, closed, f"the ACK arrives: CLOSED ({KERNEL})"),
    ]
    messages: list[Message] = [("fin", "fin_arrived", "FIN"), ("second_fin", "time_wait", "FIN")]
    if closed is not None and time_wait is not None and closed >= time_wait:  # else its ACK left before the state
        messages.append(("time_wait", "closed", "ACK"))
    # Closed in FIN_WAIT2 before the other side's FIN, the socket is handed to a timewait mini-socket, which no
    # tracepoint sees: the FIN that follows is not traced arriving.
    handed = " — handed to a timewait mini-socket: what it receives next is not traced" if time_wait is None else ""
    if acked is not None and (second is None or acked < second):  # the first FIN's ACK went on its own
        events.append(("fin_acked", c, acked, f"its FIN acknowledged: FIN_WAIT2{handed} ({KERNEL})"))
        messages.append(("fin_arrived", "fin_acked", "ACK"))
    elif acked is not None:  # acknowledged by the other side's FIN itself (a delayed ACK rode on it)
        messages[1] = ("second_fin", "time_wait", "FIN, ACK")
    return events, messages


def ordered(events: list[Event]) -> list[Event]:
    """Timed and placed events in time order; those with no time and no place left out."""
    return sorted((e for e in events if e[2] is not None), key=lambda e: e[2] or 0.0)

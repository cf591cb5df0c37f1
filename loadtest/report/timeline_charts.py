"""The timeline's charts: where connections' time went, the accept queue's waits, and one connection's
handshake, request and teardown drawn as the BSD-sockets lesson draws them — with the real times."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from loadtest.report.charts import layout
from loadtest.report.kernel_sequence import kernel_sequence
from loadtest.report.rules.stages import STAGE_LABELS, STAGES

COLORS = {
    "syn_retry_wait": "#EF553B",
    "handshake": "#FFA15A",
    "half_open": "#FECB52",
    "accept_queue": "#AB63FA",
    "pool_queue": "#FF6692",
    "client_late": "#BBBBBB",
    "request_wait": "#B6E880",
    "service": "#00CC96",
    "transfer": "#19D3F3",
    "server_unknown": "#DDDDDD",
    "later_waiting": "#C9B6F2",
    "later_service": "#2CA02C",
    "later_requests": "#636EFA",
    "load_generator": "#888888",
}


def joined_in_window(frame: pd.DataFrame | None) -> pd.DataFrame:
    if frame is None:
        return pd.DataFrame()
    traced = (frame["join"] == "joined") | (frame.get("stages_from", "") == "kernel")
    return frame[frame["in_window"] & traced & (frame["stage_at_stop"] == "") & frame["replied_in_window"]].dropna(
        subset=["first_request"]
    )


def picks(frame: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    """The median, the p99 and the slowest connection by first-request time."""
    if frame.empty:
        return []
    ordered = frame.sort_values("first_request").reset_index(drop=True)
    n = len(ordered)
    chosen = [
        ("median", ordered.iloc[(n - 1) // 2]),
        ("p99", ordered.iloc[min(n - 1, math.ceil(0.99 * n) - 1)]),
        ("slowest", ordered.iloc[n - 1]),
    ]
    seen, out = set(), []
    for name, row in chosen:
        if row.name not in seen:
            seen.add(row.name)
            out.append((name, row))
    return out


def breakdown_chart(bars: list[tuple[str, pd.Series]], title: str) -> go.Figure | None:
    """Stacked stages of some connections, one bar each: the stages add up to the first-request time."""
    if not bars:
        return None
    fig = go.Figure()
    names = [name for name, _ in bars]
    for stage in STAGES:
        fig.add_bar(
            y=names,
            x=[float(row[stage]) for _, row in bars],
            name=STAGE_LABELS[stage],
            orientation="h",
            marker_color=COLORS[stage],
            hovertemplate="%{y}: %{x:,.3f} ms<extra>" + STAGE_LABELS[stage] + "</extra>",
        )
    fig.update_xaxes(title="ms from connect() start to the first reply's last byte")
    layout(fig, title, 160 + 40 * len(bars))
    fig.update_layout(barmode="stack", margin={"l": 230, "b": 110}, legend={"orientation": "h", "y": -0.45})
    return fig


def run_breakdown(frame: pd.DataFrame | None) -> go.Figure | None:
    joined = joined_in_window(frame)
    label = {"median": "median connection", "p99": "p99 connection", "slowest": "slowest connection"}
    return breakdown_chart(
        [(f"{label[n]} ({row['first_request']:,.1f} ms)", row) for n, row in picks(joined)],
        "Where a connection's time went (its first request): handshake, accept queue, pool queue, service, transfer",
    )


def accept_queue_chart(frame: pd.DataFrame | None) -> go.Figure | None:
    if frame is None:
        return None
    mine = frame[frame["in_window"]]
    wait = mine["accept_queue"] + mine["half_open"]  # connect() return → accept(), half-open part included
    done = wait[mine["e3_known"]].dropna()
    waiting = wait[mine["accept_queue_lower_bound"]].dropna()
    if done.empty and waiting.empty:
        return None
    fig = go.Figure()
    edges = [10 ** (k / 10) for k in range(-20, 51)]  # 0.01 ms … 100 s
    late = "not accepted when the window closed (waited at least this long)"
    for label, values in (("accepted", done), (late, waiting)):
        if values.empty:
            continue
        clipped = values.clip(lower=edges[0], upper=edges[-1])
        counts = pd.cut(clipped, edges, include_lowest=True).value_counts(sort=False)
        fig.add_bar(
            x=edges[:-1],
            y=counts.to_numpy(),
            width=[b - a for a, b in itertools.pairwise(edges)],
            offset=0,
            name=label,
            opacity=0.75,
        )
    fig.update_xaxes(type="log", title="accept-queue wait, ms (connect() return → accept() return)")
    fig.update_yaxes(title="connections")
    return layout(fig, "Accept-queue waits of the window's connections")


Event = tuple[str, int, float | None, str]  # (key, side 0 client / 1 server, ms since connect(), what happens)
MESSAGES = (  # (from event, to event, label): the segments drawn between the two sides
    ("syn", "synack", "SYN"),
    ("synack", "connected", "SYN-ACK"),
    ("connected", "queued", "ACK"),
    ("sent", "read", "request"),
    ("written", "last", "reply"),
)


def sequence_chart(row: pd.Series, title: str) -> go.Figure:
    """One connection, drawn as the tutorial's figures draw it: the client on the left, the server on the
    right, its events top to bottom in the order they happened (one row each: sub-ms handshakes and
    seconds in a queue on one page), each with its real time since connect() started."""
    untimed: tuple[str, ...] = ()
    if row.get("stages_from") == "kernel":
        events, messages, untimed = kernel_sequence(row)
    else:
        events = sorted((e for e in sequence_events(row) if e[2] is not None), key=lambda e: e[2] or 0.0)
        messages = legacy_messages(events)
    y = {key: i for i, (key, *_rest) in enumerate(events)}
    side = {key: s for key, s, *_rest in events}
    fig = go.Figure()
    # Annotations gathered as plain dicts and set once: plotly validates each add_annotation (~10 ms each, a
    # third of a second a diagram).
    notes: list[dict[str, Any]] = []
    for x, name in ((0, "client"), (1, "server")):
        fig.add_scatter(
            x=[x, x],
            y=[-0.5, len(events) - 0.5],
            mode="lines",
            line={"color": "#444", "width": 2},
            showlegend=False,
            hoverinfo="skip",
        )
        notes.append({"x": x, "y": -0.9, "text": f"<b>{name}</b>", "showarrow": False})
    for start_key, end_key, label in messages:
        if start_key in y and end_key in y and side[start_key] != side[end_key]:
            notes += arrow((side[start_key], y[start_key]), (side[end_key], y[end_key]), label)
    for key, s, ms, text in events:
        placement = {"xanchor": "right", "xshift": -8} if s == 0 else {"xanchor": "left", "xshift": 8}
        stamp = "" if key in untimed else f"{ms:,.3f} ms"
        notes.append(
            {
                "x": s,
                "y": y[key],
                "text": " · ".join(filter(None, (stamp, text) if s == 0 else (text, stamp))),
                "showarrow": False,
                "font": {"size": 11, "color": "#1f5fa8"},
                **placement,
            }
        )
    fig.update_layout(annotations=notes)
    fig.update_xaxes(visible=False, range=[-1.6, 2.6])
    fig.update_yaxes(visible=False, range=[len(events) - 0.3, -1.3])
    return layout(fig, title, 140 + 34 * len(events))


def legacy_messages(events: list[Event]) -> list[tuple[str, str, str]]:
    """The arrows of a connection drawn from the clients' and server's stamps (no kernel trace)."""
    keys = {key for key, *_ in events}
    return [*MESSAGES, ("fin", "eof" if "eof" in keys else "closed", "FIN"), ("eof", "closed", "")]


def arrow(start: tuple[int, int], end: tuple[int, int], label: str) -> list[dict[str, Any]]:
    """A segment from one side to the other, its name written halfway."""
    return [
        {
            "x": end[0],
            "y": end[1],
            "ax": start[0],
            "ay": start[1],
            "xref": "x",
            "yref": "y",
            "axref": "x",
            "ayref": "y",
            "showarrow": True,
            "arrowhead": 2,
            "arrowwidth": 1.5,
            "text": "",
        },
        {
            "x": 0.5,
            "y": (start[1] + end[1]) / 2,
            "text": label,
            "showarrow": False,
            "font": {"size": 11},
            "bgcolor": "rgba(255,255,255,0.85)",
        },
    ]


def sequence_events(row: pd.Series) -> list[Event]:
    """The connection's events, client and server, each with its ms since connect() started (None: it did
    not happen, or was not stamped)."""
    t0 = float(row["connect_start"])

    def at(column: str) -> float | None:
        value = row.get(column)
        return None if value is None or value != value or value <= 0 else (float(value) - t0) * 1000

    rtt = float(row.get("rtt_us") or 0) / 1000
    connected = at("connect_end") or 0.0
    retries = int(row.get("syn_retrans") or 0)
    queue, pool, service = (float(row.get(k) or 0) for k in ("accept_queue", "pool_queue", "service"))
    queue += float(row.get("half_open") or 0)
    resent = int(row.get("data_retrans") or 0)
    events: list[Event] = [
        ("call", 0, 0.0, "connect() called"),
        # The SYN that got through left a round trip before its SYN-ACK came back; earlier ones were dropped.
        ("syn", 0, max(connected - rtt, 0.0), "SYN sent" + syn_retries(retries)),
        ("synack", 1, connected - rtt / 2, "SYN arrives: SYN-ACK sent"),
        ("connected", 0, connected, "SYN-ACK arrives: connect() returns, ACK sent"),
        ("queued", 1, connected + rtt / 2, "ACK arrives: into the accept queue (a full queue drops it)"),
        ("sent", 0, at("sent"), "request sent"),
        ("accepted", 1, at("server_accepted"), f"accept() returns, after {queue:,.2f} ms in the accept queue"),
        ("worker", 1, at("server_service_start"), f"a worker starts, after {pool:,.2f} ms in the pool's queue"),
        (
            "read",
            1,
            at("server_first_read"),
            "request read"
            + (
                f" (the client sent it {resent + 1} times: the server's side held no connection to "
                "take it — dropped at the full accept queue)"
                if resent
                else ""
            ),
        ),
        ("written", 1, at("server_first_written"), f"reply written, {service:,.2f} ms after the request was read"),
        ("last", 0, at("last_byte"), "the reply's last byte arrives"),
    ]
    if pool < 0.05:
        events = [e for e in events if e[0] != "worker"]
    if "server closed first" in str(row.get("teardown", "")):
        return [
            *events,
            ("fin", 1, at("server_closed"), "close(): FIN sent — this side holds TIME_WAIT"),
            ("closed", 0, at("closed"), "FIN arrives: ACK; close(): FIN"),
        ]
    return [
        *events,
        ("fin", 0, at("closed"), "close(): FIN sent — this side holds TIME_WAIT"),
        ("eof", 1, at("server_eof"), "FIN arrives (recv() returns 0): ACK"),
        ("closed", 1, at("server_closed"), "close(): FIN sent; the client's ACK ends it"),
    ]


def syn_retries(retries: int) -> str:
    """How many times the SYN went, in words ('' for once)."""
    if retries == 1:
        return " (sent twice: the first dropped, retried on the kernel's schedule)"
    if retries:
        return f" (sent {retries + 1} times: the first {retries} dropped, retried on the kernel's schedule)"
    return ""


def sequence_charts(frame: pd.DataFrame | None) -> list[tuple[str, go.Figure]]:
    joined = joined_in_window(frame)
    out = []
    for name, row in picks(joined):
        if name == "p99":
            continue
        out.append(
            (
                f"sequence-{name}",
                sequence_chart(
                    row,
                    f"The {name} connection, as it happened: handshake, accept, request, reply, teardown "
                    f"({row['first_request']:,.1f} ms to its last reply byte)",
                ),
            )
        )
    return out


def compare_breakdown(rows: list[tuple[str, Any]]) -> go.Figure | None:
    """compare.html: each cell's median connection, stacked by stage."""
    return breakdown_chart(rows, "Where the median connection's time went, design by design")

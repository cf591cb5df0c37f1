"""The window's account: where every user's time in the measured window went, and the connections' state
at its close — the summary's timeline columns, read off the joined connections (``loadtest.report.rules.timeline``).

Every user counts, served or starved: a wait still going when the window closed counts up to the close, in
the stage it was in, so a breakdown of what finished (survivor bias) cannot pass for the whole.  The stages
are consecutive in each connection (they cannot overlap), so the shares add up to 1 by construction.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from loadtest.report.rules.stages import STAGES, WINDOW_LABELS, WINDOW_STAGES

WAITS = ("accept_queue_wait", "pool_queue_wait", "server_service")  # their p50 and p99: columns of the summary


def figures(
    frame: pd.DataFrame | None, note: str, *, users: int = 0, window_s: float = 0.0, request_s: float = float("nan")
) -> dict[str, Any]:
    """The summary's timeline columns: the window's account (``window_share_*``: every user's time in the
    window, in the stage it was in, unfinished waits up to the close) and the connections' state at the close.

    ``request_s`` is the time requests were in flight inside the window (the clients' latencies of what
    finished, the ages of what had not, less what was spent before the window opened): after each
    connection's first reply, that is "later requests"; the rest of every user's window is the load
    generator's own time between requests.  ``timeline_lower_bounds`` names the waits still going at the
    close that could yet pass their figure (no column of its own: the summary's lower bounds)."""
    nan = float("nan")
    out: dict[str, Any] = {
        "connections_recorded": nan,
        "connections_joined": nan,
        "connections_never_accepted": nan,
        "connections_half_open": nan,
        "timeline": note or "measured",
        "window_user_s": nan,
        **{f"{wait}_p{p}_ms": nan for p in (50, 99) for wait in WAITS},
        **{f"window_share_{stage}": nan for stage in WINDOW_STAGES},
        "timeline_lower_bounds": "",
    }
    if frame is None:
        return out
    mine = frame[frame["in_window"]]
    joined = mine[mine["join"] == "joined"]
    out.update(at_close(mine, joined))
    out.update(waits(mine, joined))
    out.update(window_account(mine, joined, users * window_s, request_s))
    return out


def at_close(mine: pd.DataFrame, joined: pd.DataFrame) -> dict[str, Any]:
    """The window's connections: recorded, joined and accepted by its close, and those connect() had returned
    for that the server had not accepted (of them, half-open)."""
    unaccepted = mine[mine["unaccepted_at_close"]]
    return {
        "connections_recorded": len(mine),
        # Joined and accepted by the window's close (a shutdown's late accepts are not the window's).
        "connections_joined": int(joined["e3_known"].sum()),
        "connections_never_accepted": len(unaccepted),
        "connections_half_open": int((unaccepted["stage_at_stop"] == "half_open").sum()),
    }


def waits(mine: pd.DataFrame, joined: pd.DataFrame) -> dict[str, Any]:
    """p50 and p99 of the accept queue's waits (those still going at the close as lower bounds), the pool
    queue's and the server's service of first requests, each of the window's own."""
    lower: list[str] = []

    def pct(series: pd.Series, p: float, name: str, censored: pd.Series | None = None) -> float:
        values = series.dropna()
        if values.empty:
            return float("nan")
        value = round(float(np.percentile(values, p)), 3)
        if censored is not None and (censored & (series <= value)).any():
            lower.append(name)  # a wait still running when the window closed, not above it yet: it may still pass it
        return value

    # Waits that ended in the window, or were still going at its close: a persistent connection accepted in
    # the warm-up is the warm-up's.
    waiting = mine["stage_at_stop"].isin(["accept_queue", "half_open"])
    queued = (mine["accept_queue"] + mine["half_open"]).where((mine["e3_known"] & mine["accepted_in_window"]) | waiting)
    picked = joined["e4_known"] & joined["picked_in_window"]
    served = joined["e7_known"] & joined["served_in_window"]
    out: dict[str, Any] = {}
    for p in (50, 99):
        name = f"accept_queue_wait_p{p}_ms"
        out[name] = pct(queued, p, name, waiting)
        out[f"pool_queue_wait_p{p}_ms"] = pct(joined["pool_queue"].where(picked), p, "")
        out[f"server_service_p{p}_ms"] = pct(joined["service"].where(served), p, "")
    out["timeline_lower_bounds"] = ";".join(lower)
    return out


def window_account(mine: pd.DataFrame, joined: pd.DataFrame, whole: float, request_s: float) -> dict[str, Any]:
    """Every user's time in the window (``whole``: users × window) by stage: the connections' stages from
    their records, each cut to the window; requests after a connection's first are what the clients had in
    flight, less the first requests' own part; the rest is the load generator's."""
    parts = {stage: float(mine[f"in_window_{stage}"].sum()) for stage in STAGES}
    first_in_flight = float(mine["first_request_in_flight_s"].sum())
    after_first = float(mine["in_window_after_first"].sum())
    later = min(max(request_s - first_in_flight, 0.0), after_first) if request_s == request_s else 0.0
    # The server's own account of its service inside the window (every request, read → reply written) splits
    # the later requests: what is not service is waiting — to be read (in transit, or queued behind other
    # connections' work in a one-loop server) or for the reply to arrive.
    serving = mine[mine["in_window_after_first"] > 0]  # the connections that carried later requests
    if len(serving) and (serving["join"] == "joined").all() and serving["server_in_window_service"].notna().all():
        service = float(joined["server_in_window_service"].sum()) - parts["service"]
        parts["later_service"] = min(max(service, 0.0), later)
        parts["later_waiting"] = later - parts["later_service"]
        parts["later_requests"] = 0.0
    else:
        parts["later_service"] = parts["later_waiting"] = 0.0
        parts["later_requests"] = later
    accounted = sum(parts.values())
    parts["load_generator"] = max(whole - accounted, 0.0)
    total = sum(parts.values())
    out: dict[str, Any] = {"window_user_s": round(total, 3)}
    if total > 0:
        for stage, seconds in parts.items():
            out[f"window_share_{stage}"] = round(seconds / total, 4)
    return out


def share_words(row: dict[str, Any], top: int = 2) -> list[tuple[str, float]]:
    """The largest stages of a summary row's window account, as (label, share), largest first."""
    shares = [
        (WINDOW_LABELS[s], float(v))
        for s in WINDOW_STAGES
        if isinstance(v := row.get(f"window_share_{s}"), int | float) and v == v and v > 0
    ]
    return sorted(shares, key=lambda x: -x[1])[:top]


def unaccepted_of(frame: pd.DataFrame | None, users: set[str]) -> tuple[int, int]:
    """Of these users' connections open at the window's close: how many had connect() return but were not
    accepted, and how many of those were half-open (the queued ones may be a served user's last connect)."""
    if frame is None:
        return 0, 0
    theirs = frame[frame["in_window"] & frame["unaccepted_at_close"] & frame["user_id"].astype(str).isin(users)]
    return len(theirs), int((theirs["stage_at_stop"] == "half_open").sum())


def state_at_close(frame: pd.DataFrame) -> pd.Series:
    """Each connection of the window by where it stood when the window closed (report.html's table): a server
    that accepted it only as it shut down did not accept it in the window."""
    state = frame["join"].astype(str).copy()
    state[(frame["join"] == "joined") & frame["e3_known"]] = "accepted by the server in the window"
    unaccepted = frame["unaccepted_at_close"]
    state[unaccepted & (frame["stage_at_stop"] == "half_open")] = "half-open at the close (final ACK dropped)"
    state[unaccepted & (frame["stage_at_stop"] != "half_open")] = "in the accept queue at the close"
    state[(frame["join"] == "joined") & ~frame["e3_known"] & ~unaccepted] = "connecting at the close"
    return state

"""The timeline's findings: plain sentences read off the joined connections (``loadtest.report.rules.timeline``)
— where the window's time went, the first requests' stages, the handshakes, what was never accepted, and
who closed first.  The run's other findings (rates, queues, cost, users) are ``loadtest.report.rules.findings``'s."""

from __future__ import annotations

from typing import Any

import pandas as pd

from loadtest.report.load import RunData
from loadtest.report.rules import account, stages
from loadtest.report.rules.findings import plural
from loadtest.report.rules.kernel_times import HALF_OPEN_MS


def timeline_findings(run: RunData, name: str, row: dict[str, Any] | None = None) -> list[str]:
    """Where the window's time went (every user's, unfinished waits included), and the connections' stages,
    from the joined timeline (loadtest.report.rules.timeline)."""
    frame = run.connections
    if frame is None:
        return []
    mine = frame[frame["in_window"]]
    # A first request whose reply came back inside the window (a persistent cell's were the warm-up's).
    joined = mine[(mine["join"] == "joined") & (mine["stage_at_stop"] == "") & mine["replied_in_window"]].dropna(
        subset=["first_request"]
    )
    return [
        *([f"where the time went: {run.timeline_note}."] if run.timeline_note else []),
        *account_finding(run, name, row),
        *first_request_finding(mine, joined),
        *handshake_findings(mine),
        *unaccepted_finding(mine),
        # No server log: the kernel's first FIN says who closed, for every connection it traced.
        *teardown_finding(joined if (mine["join"] == "joined").any() else mine[mine["teardown"] != ""]),
    ]


def account_finding(run: RunData, name: str, row: dict[str, Any] | None) -> list[str]:
    """The window's account: the largest shares of every user's time."""
    if row is None or not (words := account.share_words(row, 3)):
        return []
    users = len(run.users) if run.users is not None else 0
    return [
        f"{name}: of every user's time in the window ({plural(users, 'user')}, "
        f"{float(row['window_user_s']):,.1f} user-seconds), "
        + ", ".join(f"{share:.0%} {label}" for label, share in words)
        + "."
    ]


def first_request_finding(mine: pd.DataFrame, joined: pd.DataFrame) -> list[str]:
    """The median connection's first request, split into its two largest stages."""
    if len(joined):
        median = joined.sort_values("first_request").iloc[(len(joined) - 1) // 2]
        parts = sorted(((float(median[s]), s) for s in stages.STAGES), reverse=True)
        said = [f"{ms:,.3f} ms {stages.STAGE_LABELS[s]}" for ms, s in parts[:2] if ms > 0]
        return [
            f"a connection's first request, the median of {plural(len(joined), 'joined connection')} whose "
            f"first reply came back in the window: {median['first_request']:,.3f} ms from connect start to "
            "the reply's last byte, of it " + " and ".join(said) + "."
        ]
    if (mine["join"] == "joined").any():
        return [
            "no connection had its first reply in the window: each was opened in the warm-up and carried "
            "the window's requests (the window's account above says where their time went)."
        ]
    return []


def handshake_findings(mine: pd.DataFrame) -> list[str]:
    """Connections through SYN retries, and connections half-open for a while (their data sent again)."""
    out = []
    retried = mine[mine["syn_retrans"] > 0]
    if len(retried):
        out.append(
            f"{plural(len(retried), 'connection')} went through SYN retries "
            f"({int(retried['syn_retrans'].sum()):,} SYNs sent again; connect() took "
            f"{(retried['syn_retry_wait'] + retried['handshake']).median() / 1000:,.2f} s at the median, the "
            "kernel's retry schedule of about 1, 2, 3 s)."
        )
    out += half_open_finding(mine)
    return out


def half_open_finding(mine: pd.DataFrame) -> list[str]:
    """Connections half-open for a while: from the kernel where it traced them (the client's ESTABLISHED →
    the server's child ESTABLISHED, or still not by the close), else from the clients' re-sent data."""
    out = []
    traced = mine["stages_from"] == "kernel" if "stages_from" in mine else pd.Series(False, index=mine.index)
    if traced.any():
        long = traced & ((mine["half_open"] > HALF_OPEN_MS) | (mine["stage_at_stop"] == "half_open"))
        still = long & (mine["stage_at_stop"] == "half_open")
        if long.any():
            out.append(
                f"{plural(int(long.sum()), 'connection')} were half-open for more than {HALF_OPEN_MS:g} ms (the "
                "kernel: the client ESTABLISHED, the server's child not yet — the final ACK and the request dropped "
                f"at the full accept queue, ListenOverflows); {int((long & ~still).sum()):,} got in later, when a "
                f"re-sent segment found room, and {int(still.sum()):,} were still half-open when the window closed."
            )
    resent = mine[(mine["data_retrans"] > 0) & ~traced] if "data_retrans" in mine else mine.iloc[:0]
    if len(resent):
        out.append(
            f"{plural(len(resent), 'connection')} were half-open for a while: connect() had returned (the "
            "SYN-ACK came back) but the final ACK and the request were dropped at the full accept queue "
            f"(ListenOverflows), so the client sent its data again ({int(resent['data_retrans'].sum()):,} "
            "segments) until one got in while the queue had room."
        )
    return out


def unaccepted_finding(mine: pd.DataFrame) -> list[str]:
    """Connections connect() had returned for but the server had not accepted at the window's close."""
    unaccepted = mine[mine["unaccepted_at_close"]]
    if not len(unaccepted):
        return []
    half = int((unaccepted["stage_at_stop"] == "half_open").sum())
    queued = len(unaccepted) - half
    waited = (unaccepted["half_open"] + unaccepted["accept_queue"]).max() / 1000
    bits = []
    if queued:
        bits.append(f"{queued:,} in the accept queue")
    if half:
        bits.append(
            f"{half:,} half-open (their final ACK dropped: not in the queue, the server holds a "
            "request socket or, after a SYN cookie, nothing)"
        )
    return [
        f"{plural(len(unaccepted), 'connection')} had connect() return but were not accepted when the "
        f"window closed: {' and '.join(bits)}; the longest had waited {waited:,.2f} s."
    ]


def teardown_finding(joined: pd.DataFrame) -> list[str]:
    """Who closed first, of the connections that closed in the window (not those the run's stop closed)."""
    stopped = joined["teardown"] == stages.STOPPED_BY_THE_RUN
    closed = joined[~stopped]
    teardown = closed["teardown"].value_counts()
    later = (
        f" ({plural(int(stopped.sum()), 'other')} closed by the run's stop, after the window)" if stopped.any() else ""
    )
    if len(teardown):
        top, n = str(teardown.index[0]), int(teardown.iloc[0])
        return [
            f"teardown: {top.split(':')[0]} in {n:,} of the {plural(len(closed), 'connection')} that "
            "closed in the window" + (f" —{top.split(':', 1)[1]}" if ":" in top else "") + f"{later}."
        ]
    if stopped.any():
        return [
            f"teardown: none closed in the window; {plural(int(stopped.sum()), 'connection')} closed by the "
            "run's stop, after it (their FIN or reset is the harness's, not the design's)."
        ]
    return []

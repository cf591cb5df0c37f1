"""Findings said from a summary row, pure: starved users with where they wait, SYN retransmissions
split by side."""

from __future__ import annotations

from loadtest.report.rules.findings import syn_retrans_note, user_findings


def test_starved_users_are_said_with_where_they_wait() -> None:
    r = {
        "design": "blocking",
        "duration_s": 4.0,
        "users_served": 1,
        "users_starved": 9,
        "unfinished_connects": 0,
        "unfinished_requests": 9,
        "peak_accept_queue": 9,
        "syncookies_sent": 0,
        "fairness": 0.1,
        "longest_user_wait_ms": 4000.0,
    }
    (first, *rest) = user_findings(r, one_at_a_time=True, oldest=(0.0, 4.0))
    assert first.startswith("blocking: 1 of 10 users was served; 9 completed no request in the whole 4 s window")
    # Every user's work in flight, said as such: the served user's request is among them (the audit found the
    # served users' work attributed to the starved).
    assert "when it closed, all users together had 9 requests waiting for a reply, the oldest for 4.00 s" in first
    assert any("longest any user went without a reply: 4.00 s" in s for s in rest)


def test_syn_retrans_are_split_by_side() -> None:
    note = syn_retrans_note(
        {"tcp_syn_retrans": 62, "client_syn_retrans": 51, "server_synack_retrans": 11, "connections_syn_retried": 49}
    )
    # The counters cover the whole run, the retried connections the window: the sentence says which is which.
    assert note.startswith("; over the whole run, TCPSynRetrans 62: the clients re-sent 51 SYNs (")
    assert "49 connections of the window went through the SYN retry schedule" in note
    assert "the server re-sent 11 SYN-ACKs" in note
    assert syn_retrans_note({"tcp_syn_retrans": 0, "client_syn_retrans": 0}) == ""

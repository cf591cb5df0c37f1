"""The TIME_WAIT experiment's check: who holds TIME_WAIT, and when the ephemeral ports run out.

Registered on :data:`loadtest.declare.experiments.TIME_WAIT` like every claim check
(:mod:`loadtest.report.rules.claims`, whose helpers it shares).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from loadtest.declare.experiments import TIME_WAIT
from loadtest.report.rules.claims import DIFFERS, HOLDS, Arms, check, failures, peak, say


@check(TIME_WAIT)
def time_wait(arms: Arms) -> tuple[pd.DataFrame, list[str], str]:
    rows = []
    for label, (run, row) in arms.items():
        rows.append(
            {
                "arm": label,
                "server TIME_WAIT (peak)": peak(run, "server_TIME_WAIT"),
                "client TIME_WAIT (peak)": peak(run, "client_TIME_WAIT"),
                "connections/s": row["rps"],
                "requests": row["requests"],
                "address not available": failures(row, "address not available"),
                "failures": row["failures"],
            }
        )
    by = {r["arm"]: r for r in rows}
    return (
        pd.DataFrame(rows),
        time_wait_held(by) + ports_ran_out(by),
        f"{TIME_WAIT.design}, {TIME_WAIT.users_in_words()}; sysctls set in each cell's namespace.",
    )


def time_wait_held(by: dict[str, dict[str, Any]]) -> list[str]:
    """Who held TIME_WAIT: the side that closed first, and no one under SO_LINGER 0."""
    verdicts = []
    client, server, linger = by.get("client closes"), by.get("server closes"), by.get("SO_LINGER 0")
    if client and server:
        c, s = "client TIME_WAIT (peak)", "server TIME_WAIT (peak)"
        ok = client[c] > 0 and client[s] == 0 and server[s] > 0 and server[c] < server[s]
        verdicts.append(
            say(
                HOLDS if ok else DIFFERS,
                "the side that closes first holds TIME_WAIT",
                f"client first: client {client['client TIME_WAIT (peak)']:,}, server "
                f"{client['server TIME_WAIT (peak)']:,}; server first (--max-requests 1): server "
                f"{server['server TIME_WAIT (peak)']:,}, client {server['client TIME_WAIT (peak)']:,}",
            )
        )
    if linger:
        held = linger["client TIME_WAIT (peak)"] + linger["server TIME_WAIT (peak)"]
        verdicts.append(
            say(
                HOLDS if held == 0 else DIFFERS,
                "SO_LINGER 0 closes with a RST and holds no TIME_WAIT",
                f"{held} TIME_WAIT sockets at peak over {linger['requests']:,} connections",
            )
        )
    return verdicts


def ports_ran_out(by: dict[str, dict[str, Any]]) -> list[str]:
    """A short port range runs out, and tcp_tw_reuse lets it last."""
    verdicts = []
    short, reuse = by.get("1,000 ports"), by.get("1,000 ports, tw_reuse")
    if short:
        lasted = short["requests"]
        verdicts.append(
            say(
                HOLDS if short["address not available"] > 0 and lasted <= 1_050 else DIFFERS,
                "the ephemeral ports run out: a range of N lasts N connections per 60 s (28,232 → 470/s)",
                f"1,000 ports: {lasted:,} connections, then {short['address not available']:,} failed "
                "'address not available' (EADDRNOTAVAIL) — 16.7/s sustainable",
            )
        )
    if short and reuse:
        rate = reuse["connections/s"]
        verdicts.append(
            say(
                HOLDS if rate >= 10 * 1_000 / 60 else DIFFERS,
                "tcp_tw_reuse=1 lets a new connection take a port in TIME_WAIT",
                f"{rate:,.0f} connections/s over the same 1,000 ports against 16.7/s without it — a port "
                "is reused once its TIME_WAIT is 1 s old (tcp_twsk_unique), so the range now lasts a "
                f"second, not 60 ({reuse['address not available']:,} still failed between)",
            )
        )
    return verdicts

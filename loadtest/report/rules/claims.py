"""The experiments' checks (loadtest.declare.experiments): each lays its arms' figures beside its source's numbers and
gives a verdict per claim — holds here, does not hold here, differs, or not available here — with the
numbers that decide it.  A check reads only the run folders (RunData) and their summary rows, and registers
itself on the experiment it judges (``@check(BACKLOG)``); the setups it describes and the source's figures it
sets beside the measurement are read from that declaration, never restated here."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pandas as pd

from loadtest.declare.experiments import (
    ABORT_ON_OVERFLOW,
    BACKLOG,
    HELD_MS,
    SYN_COOKIES,
    Experiment,
    unavailable,
)
from loadtest.declare.scenarios import Check, CheckFunction
from loadtest.report.load import RunData

HOLDS, FAILS, DIFFERS, NOT_HERE = "holds here", "does not hold here", "differs", "not available here"
SYN_SCHEDULE_S = (1, 2, 3, 4, 5, 7, 11, 19)  # when a dropped SYN goes again on this kernel (tcp_syn_linear_timeouts=4)
Arms = dict[str, tuple[RunData, dict[str, Any]]]
Body = Callable[[Arms], tuple[pd.DataFrame, list[str], str]]  # the arms → the table, the verdicts, a note


def say(state: str, claim: str, evidence: str) -> str:
    return f"{state}: {claim} — {evidence}"


def arms_of(runs: list[RunData], summary: pd.DataFrame) -> Arms:
    return {
        str((r.info.get("options") or {}).get("arm", r.run_id)): (r, row)
        for r, row in zip(runs, summary.to_dict("records"), strict=True)
    }


def missing(experiment: Experiment, arms: Arms) -> tuple[list[str], str]:
    """A 'not available here' verdict for each arm of the experiment this machine cannot run, with why; and
    a note naming the arms that simply were not among the cells run (socklab lab --quick runs fewer)."""
    from loadtest.hosts.isolate import can_isolate

    verdicts, absent = [], []
    unrun = [arm for arm in experiment.arms if arm.label not in arms]
    isolated = can_isolate()[0] if unrun else True  # a probe fork: only when an arm is missing
    for arm in unrun:
        why = unavailable(arm, isolated)
        if why:
            verdicts.append(say(NOT_HERE, arm.label, why))
        else:
            absent.append(arm.label)
    return verdicts, (f"Not run this time: {', '.join(absent)}." if absent else "")


def peak(run: RunData, column: str) -> int:
    mon = run.monitor
    return int(mon[column].max()) if mon is not None and column in mon else 0


def failures(row: dict[str, Any], kind: str) -> int:
    for part in str(row.get("failure_classes") or "").split("; "):
        name, _, n = part.partition("=")
        if name == kind:
            return int(n)
    return 0


def check(experiment: Experiment) -> Callable[[Body], CheckFunction]:
    """Register on `experiment` a check made from a body over its arms: the title, the claim and source, and the
    arms that could not run are the same for every experiment."""

    def wrap(body: Body) -> CheckFunction:
        def run(runs: list[RunData], summary: pd.DataFrame) -> Check | None:
            arms = arms_of(runs, summary)
            unrun, absent = missing(experiment, arms)
            title = f"{experiment.name}: {experiment.question}"
            said = f"claim: {experiment.claim}. Source: {experiment.source}."
            if not arms:
                return Check(title, f"{said} {absent}".strip(), None, unrun)
            table, verdicts, note = body(arms)
            return Check(title, f"{said} {note} {absent}".strip(), table, verdicts + unrun)

        run.__name__ = body.__name__
        return experiment.check(run)

    return wrap


def syn_retries(run: RunData) -> tuple[pd.Series, int]:
    """The SYNs each client re-sent that was still connecting in the window, and how many of them re-sent as
    often as their wait allows on the kernel's schedule."""
    conns = run.connections
    on_retry = conns[(conns["connected"] != 1) & conns["in_window"]] if conns is not None else pd.DataFrame()
    if not len(on_retry):
        return pd.Series(dtype=float), 0
    ages = on_retry["closed"] - on_retry["connect_start"]
    expected = ages.map(lambda a: sum(t < a - 0.05 for t in SYN_SCHEDULE_S))
    return on_retry["syn_retrans"], int((on_retry["syn_retrans"] == expected).sum())


@check(BACKLOG)
def backlog(arms: Arms) -> tuple[pd.DataFrame, list[str], str]:
    rows, queue_ok, syn_ok, retry_ok = [], True, True, True
    for label, (run, row) in arms.items():
        b = int(row["backlog"])
        users = int(run.info.get("users") or 0)
        waiting = max(users - b - 2, 0)  # one served, B + 1 queued
        got_queue, got_syn = peak(run, "accept_queue"), peak(run, "client_SYN_SENT")
        re_sent, matched = syn_retries(run)
        queue_ok &= got_queue == b + 1
        syn_ok &= abs(got_syn - waiting) <= 1
        retry_ok &= matched >= 0.8 * len(re_sent)
        rows.append(
            {
                "arm": label,
                "backlog B": b,
                "users": users,
                "peak accept queue": got_queue,
                "B + 1": b + 1,
                "clients in SYN_SENT (peak)": got_syn,
                "expected": waiting,
                "SYNs re-sent per waiting client": round(float(re_sent.mean()), 2) if len(re_sent) else math.nan,
                "on the 1, 2, 3 s schedule": f"{matched}/{len(re_sent)}",
                "ListenOverflows": row["listen_overflows"],
            }
        )
    ss = [
        {
            "arm": f"{r.who} ({r.setup})",
            "backlog B": r.figures["qmax"],
            "peak accept queue": r.figures["acceptq"],
            "B + 1": r.figures["qmax"] + 1,
        }
        for r in BACKLOG.reported  # the source's own count, beside the arms
    ]
    verdicts = [
        say(
            HOLDS if queue_ok else DIFFERS,
            "B + 1 complete handshakes wait in the accept queue",
            ", ".join(f"B={r['backlog B']}: {r['peak accept queue']}" for r in rows),
        ),
        say(
            HOLDS if syn_ok else DIFFERS,
            "the rest of the burst is held in SYN_SENT",
            ", ".join(f"B={r['backlog B']}: {r['clients in SYN_SENT (peak)']} of {r['expected']}" for r in rows),
        ),
        say(
            HOLDS if retry_ok else DIFFERS,
            "they re-send their SYN on the kernel's schedule (about 1, 2, 3 s)",
            ", ".join(
                f"B={r['backlog B']}: {r['on the 1, 2, 3 s schedule']} re-sent as often as their wait allows"
                for r in rows
            ),
        ),
    ]
    held = f"Each arm: {BACKLOG.design}, its first client held by a {HELD_MS / 1000:g} s SLEEP"
    return pd.DataFrame([*rows, *ss]), verdicts, f"{held}, everyone arriving at once."


def overflowed_handshakes(run: RunData) -> tuple[int, int, float]:
    """What became of the handshakes whose final ACK met a full accept queue, as their clients saw them:
    connects refused with a reset; connects that returned but whose request was dropped at the full queue
    and re-sent (the server held nothing for them), and the longest such a client then waited for a first
    reply (to the window's end if none came)."""
    conns = run.connections
    if conns is None:
        return 0, 0, math.nan
    mine = conns[conns["in_window"]]
    refused = int((mine["outcome"].astype(str) == "reset").sum())
    dropped = mine[(mine["connected"] == 1) & (mine["data_retrans"] > 0)]
    end = dropped["first_byte"].where(dropped["first_byte"] > 0, dropped["closed"])
    waited = float((end - dropped["connect_end"]).max()) if len(dropped) else math.nan
    return refused, len(dropped), waited


DROPPED = "requests dropped after connect()"


def overflowing(experiment: Experiment) -> str:
    """The setup of the arms that overflow the accept queue with idle users, as each arm declares it."""
    options = experiment.arms[0].options
    return (
        f"{experiment.design} at backlog {options['backlog']}, {experiment.users_in_words()} at once, each idle "
        f"connection closed after {options['server-read-timeout']} s"
    )


@check(ABORT_ON_OVERFLOW)
def abort_on_overflow(arms: Arms) -> tuple[pd.DataFrame, list[str], str]:
    rows = []
    for label, (run, row) in arms.items():
        refused, dropped, waited = overflowed_handshakes(run)
        rows.append(
            {
                "arm": label,
                "connects reset": refused,
                "EmbryonicRsts": row["embryonic_rsts"],
                DROPPED: dropped,
                "their longest wait s": round(waited, 2),
                "server SYN-ACKs re-sent": row["server_synack_retrans"],
                "failures": row["failures"],
                "users served": row["users_served"],
                "ListenOverflows": row["listen_overflows"],
            }
        )
    by = {r["arm"]: r for r in rows}
    off, on = by.get("abort=0"), by.get("abort=1")
    verdicts = []
    if off and on:
        verdicts.append(
            say(
                HOLDS if on["connects reset"] > 0 and off["connects reset"] == 0 else DIFFERS,
                "with tcp_abort_on_overflow=1 a full queue refuses (RST) instead of dropping",
                f"connects reset with 1: {on['connects reset']:,} (the kernel's EmbryonicRsts: "
                f"{on['EmbryonicRsts']:,}); with 0: {off['connects reset']:,}",
            )
        )
        waits, dropped_on, dropped_off = off["their longest wait s"], on[DROPPED], off[DROPPED]
        fast = on["connects reset"] > 0 and dropped_on == 0
        verdicts.append(
            say(
                HOLDS if fast and dropped_off and waits >= 1 else DIFFERS,
                "so clients fail fast instead of waiting",
                f"with 1 the overflowed handshakes fail in connect() itself ({on['connects reset']:,} "
                f"resets) and {dropped_on} requests were dropped after it; with 0, {dropped_off} clients' "
                "connect() returned, their final ACK and then their request were dropped at the full "
                f"queue, and they waited up to {waits:.2f} s with no reply",
            )
        )
    return (
        pd.DataFrame(rows),
        verdicts,
        f"{overflowing(ABORT_ON_OVERFLOW)}; SYN cookies off in both arms",
    )


@check(SYN_COOKIES)
def syn_cookies(arms: Arms) -> tuple[pd.DataFrame, list[str], str]:
    rows = []
    for label, (run, row) in arms.items():
        conns = run.connections
        connected = int((conns["connected"] == 1).sum()) if conns is not None else 0
        attempts = len(conns) if conns is not None else 0
        rows.append(
            {
                "arm": label,
                "SyncookiesSent": row["syncookies_sent"],
                "connects": attempts,
                "connect() returned": connected,
                "never accepted": row["connections_never_accepted"],
                "clients in SYN_SENT (peak)": peak(run, "client_SYN_SENT"),
                "failures": row["failures"],
            }
        )
    by = {r["arm"]: r for r in rows}
    verdicts = []
    one, zero, two = by.get("syncookies=1"), by.get("syncookies=0"), by.get("syncookies=2")
    if one:
        more = zero is None or (
            one["connect() returned"] > zero["connect() returned"] and one["never accepted"] > zero["never accepted"]
        )
        beside = f" against {zero['connect() returned']} and {zero['never accepted']} with 0" if zero else ""
        verdicts.append(
            say(
                HOLDS if one["SyncookiesSent"] > 0 and more else DIFFERS,
                "with 1 the burst's overflow gets cookies: connect() returns though the server holds nothing",
                f"{one['SyncookiesSent']:,} cookies; {one['connect() returned']} of "
                f"{one['connects']} connect() returned, {one['never accepted']} of them never accepted" + beside,
            )
        )
    if zero:
        verdicts.append(
            say(
                HOLDS if zero["SyncookiesSent"] == 0 and zero["clients in SYN_SENT (peak)"] > 0 else DIFFERS,
                "with 0 those SYNs are dropped and retried",
                f"{zero['SyncookiesSent']} cookies, {zero['clients in SYN_SENT (peak)']} clients in SYN_SENT at peak",
            )
        )
    if two:
        returned = two["connect() returned"]  # each had a SYN-ACK: with 2, each of those a cookie
        verdicts.append(
            say(
                HOLDS if two["SyncookiesSent"] >= returned > 0 else DIFFERS,
                "with 2 every SYN gets a cookie",
                f"{two['SyncookiesSent']:,} cookies for {returned:,} "
                "connect() that returned" + (f", against {one['SyncookiesSent']:,} cookies with 1" if one else ""),
            )
        )
    return (
        pd.DataFrame(rows),
        verdicts,
        overflowing(SYN_COOKIES),
    )

"""The worker experiments' checks (loadtest.declare.experiments): which worker takes a connection, and what a slow
request, a per-worker queue or a worker's exit does to the rest.  The helpers are
``loadtest.report.rules.claims``'s."""

from __future__ import annotations

import math

import pandas as pd

from loadtest.report.load import RunData, merged_histogram
from loadtest.report.rules.claims import DIFFERS, FAILS, HOLDS, Arms, check, peak, say
from loadtest.report.rules.summary import jain


def _latency(run: RunData, kinds: tuple[str, ...]) -> tuple[float, float, float]:
    hist = merged_histogram(run, kinds)
    if hist is None or not hist.get_total_count():
        return math.nan, math.nan, math.nan
    return hist.get_mean_value() / 1000, hist.get_max_value() / 1000, hist.get_stddev() / 1000


@check("reuseport-tail")
def reuseport_tail(arms: Arms) -> tuple[pd.DataFrame, list[str], str]:
    rows = [
        {
            "design": label,
            "ECHO avg ms": round(avg, 3),
            "ECHO max ms": round(top, 3),
            "ECHO stddev ms": round(sd, 3),
            "req/s": row["rps"],
            "deepest accept queue": row.get("peak_deepest_accept_queue"),
            "listeners": peak(run, "listeners"),
        }
        for label, (run, row) in arms.items()
        for avg, top, sd in [_latency(run, ("ECHO",))]
    ]
    rows += [
        {"design": "Cloudflare: shared queue", "ECHO avg ms": 30.39, "ECHO max ms": 72.65, "ECHO stddev ms": 1.58},
        {"design": "Cloudflare: SO_REUSEPORT", "ECHO avg ms": 31.37, "ECHO max ms": 144.55, "ECHO stddev ms": 25.27},
    ]
    by = {r["design"]: r for r in rows}
    verdicts = []
    for shared, own in (("preforked", "preforked-reuseport"), ("preforked-selectors", "preforked-reuseport-selectors")):
        if shared in by and own in by:
            s, o = by[shared], by[own]
            worse = o["ECHO stddev ms"] >= 1.5 * s["ECHO stddev ms"] and o["ECHO max ms"] >= 1.5 * s["ECHO max ms"]
            evidence = (
                f"stddev {s['ECHO stddev ms']:.2f} → {o['ECHO stddev ms']:.2f} ms, max {s['ECHO max ms']:.1f} "
                f"→ {o['ECHO max ms']:.1f} ms (Cloudflare: stddev 1.58 → 25.27, max 72.65 → 144.55)"
            )
            verdicts.append(
                say(
                    HOLDS if worse else FAILS,
                    f"a queue per worker inflates the tail ({shared} against {own})",
                    evidence,
                )
            )
    return (
        pd.DataFrame(rows),
        verdicts,
        ("4 workers, 8 connect-per-request users, 90 % ECHO and 10 % WORK 10 ms: the fast requests' latency."),
    )


@check("accept-balance")
def accept_balance(arms: Arms) -> tuple[pd.DataFrame, list[str], str]:
    rows = []
    for label, (run, row) in arms.items():
        n = int((run.info.get("server") or {}).get("workers") or 0)
        seen = {w["worker"]: w for w in ((run.info.get("server_stopped") or {}).get("workers") or [])}
        accepts = [int(seen.get(i, {}).get("accepts", 0)) for i in range(1, n + 1)]
        wakeups = sum(int(seen.get(i, {}).get("wakeups", 0)) for i in range(1, n + 1))
        empty = sum(int(seen.get(i, {}).get("empty_wakeups", 0)) for i in range(1, n + 1))
        total = sum(accepts)
        rows.append(
            {
                "arm": label,
                "design": row["design"],
                "accepts per worker": " / ".join(map(str, accepts)),
                "fairness": round(jain(accepts), 3),
                "most ÷ fewest": round(max(accepts) / max(min(accepts), 1), 2) if accepts else math.nan,
                "wake-ups per accept": round(wakeups / total, 2) if total else math.nan,
                "empty wake-ups per accept": round(empty / total, 3) if total else math.nan,
            }
        )
    by = {r["arm"]: r for r in rows}
    verdicts = []
    if "accept()" in by:
        a = by["accept()"]
        verdicts.append(
            say(
                HOLDS if a["fairness"] >= 0.9 else DIFFERS,
                "a blocking accept() hands connections out in turn (FIFO)",
                f"Jain's index {a['fairness']}, {a['accepts per worker']}",
            )
        )
    if "epoll" in by:
        e = by["epoll"]
        herd = e["empty wake-ups per accept"]
        exclusive = by.get("EPOLLEXCLUSIVE", {}).get("empty wake-ups per accept", 0.0)
        verdicts.append(
            say(
                HOLDS if herd > 0 and herd >= 3 * exclusive else DIFFERS,
                "epoll on a shared listener wakes every waiting worker (the thundering herd)",
                f"{herd} empty wake-ups per accept "
                f"(woken for a connection another worker took) against {exclusive} with EPOLLEXCLUSIVE; "
                f"most ÷ fewest {e['most ÷ fewest']} (Herbert: up to 3:1)",
            )
        )
    if "EPOLLEXCLUSIVE" in by:
        x = by["EPOLLEXCLUSIVE"]
        fair = by.get("accept()", {}).get("fairness", 1.0)
        verdicts.append(
            say(
                HOLDS if x["fairness"] < fair else DIFFERS,
                "EPOLLEXCLUSIVE wakes one worker, LIFO, so it does not balance",
                f"Jain's index {x['fairness']} against {fair} for accept(); {x['accepts per worker']}; "
                f"most ÷ fewest {x['most ÷ fewest']}",
            )
        )
    if "SO_REUSEPORT" in by:
        r = by["SO_REUSEPORT"]
        verdicts.append(
            say(
                HOLDS if r["empty wake-ups per accept"] <= 0.01 and r["fairness"] >= 0.8 else DIFFERS,
                "SO_REUSEPORT spreads connections by hash, one listener per worker, no herd",
                f"Jain's index {r['fairness']}, {r['accepts per worker']}, "
                f"{r['empty wake-ups per accept']} empty wake-ups per accept",
            )
        )
    table = pd.DataFrame(rows).rename(columns={"fairness": "Jain's index"})
    return (
        table,
        verdicts,
        (
            "4 workers, 500 connections/s on a schedule (ECHO), so workers wait between them; "
            "counts from each server's stop line."
        ),
    )


@check("head-of-line")
def head_of_line(arms: Arms) -> tuple[pd.DataFrame, list[str], str]:
    rows = []
    for label, (run, row) in arms.items():
        echo, work = merged_histogram(run, ("ECHO",)), merged_histogram(run, ("WORK",))
        workers = (run.info.get("server_stopped") or {}).get("workers") or []
        rows.append(
            {
                "design": label,
                "ECHO p50 ms": echo.get_value_at_percentile(50) / 1000 if echo else math.nan,
                "ECHO p99 ms": echo.get_value_at_percentile(99) / 1000 if echo else math.nan,
                "WORK p50 ms": work.get_value_at_percentile(50) / 1000 if work else math.nan,
                "req/s": row["rps"],
                "connections per worker": " / ".join(str(w["accepts"]) for w in workers),
            }
        )
    by = {r["design"]: r for r in rows}
    verdicts = []
    loops = [by[d] for d in ("selectors", "asyncio") if d in by]
    if loops:
        verdicts.append(
            say(
                HOLDS if all(r["ECHO p99 ms"] >= 8 for r in loops) else DIFFERS,
                "in one loop a 10 ms computation stops every connection",
                ", ".join(f"{r['design']} ECHO p99 {r['ECHO p99 ms']:.2f} ms" for r in loops),
            )
        )
    if loops and "preforked" in by:
        ratio = min(r["ECHO p99 ms"] for r in loops) / max(by["preforked"]["ECHO p99 ms"], 0.001)
        verdicts.append(
            say(
                HOLDS if ratio >= 2 else DIFFERS,
                "a worker of its own per connection keeps the fast requests fast",
                f"preforked ECHO p99 {by['preforked']['ECHO p99 ms']:.3f} ms: one loop's "
                f"is ×{ratio:,.0f} of it (Cloudflare: 6× better p99 once blocking work left the loop)",
            )
        )
    if "threaded" in by and loops:
        t = by["threaded"]["ECHO p99 ms"]
        verdicts.append(
            say(
                HOLDS if t < min(r["ECHO p99 ms"] for r in loops) else DIFFERS,
                "threads are in between: the GIL is handed over every 5 ms",
                f"threaded ECHO p99 {t:.2f} ms",
            )
        )
    if "preforked-selectors" in by:
        p = by["preforked-selectors"]
        spread = p["connections per worker"].count("/") >= 1
        verdicts.append(
            say(
                HOLDS if spread == (p["ECHO p99 ms"] < 2) else DIFFERS,
                "pre-forked event loops help only when the connections land on different workers",
                f"connections per worker "
                f"{p['connections per worker']}, ECHO p99 {p['ECHO p99 ms']:.2f} ms"
                + ("" if spread else " — both on one worker: a shared listener does not balance (accept-balance)"),
            )
        )
    return pd.DataFrame(rows), verdicts, "2 persistent users, 95 % ECHO and 5 % WORK 10 ms; 2 workers for the pools."


def _failures(n: int) -> str:
    return f"{n:,} failure" + ("" if n == 1 else "s")


@check("rolling-restart")
def rolling_restart(arms: Arms) -> tuple[pd.DataFrame, list[str], str]:
    rows = [
        {
            "arm": label,
            "failures": row["failures"],
            "by class": row["failure_classes"] or "none",
            "requests": row["requests"],
            "users served": row["users_served"],
        }
        for label, (_, row) in arms.items()
    ]
    by = {r["arm"]: r for r in rows}
    verdicts = []
    off, on = by.get("migrate=0"), by.get("migrate=1")
    if off:
        verdicts.append(
            say(
                HOLDS if off["failures"] > 0 else DIFFERS,
                "a worker exiting resets what waits in its queue",
                f"{_failures(off['failures'])} ({off['by class']})",
            )
        )
    if off and on:
        verdicts.append(
            say(
                HOLDS if on["failures"] < off["failures"] else FAILS,
                "with tcp_migrate_req=1 they move to another listener",
                f"{_failures(on['failures'])} ({on['by class']}) against "
                f"{off['failures']}; the one being served when it exited may fail either way",
            )
        )
    return (
        pd.DataFrame(rows),
        verdicts,
        (
            "preforked-reuseport, 4 workers, backlog 16, 60 connect-per-request users "
            "(SLEEP 50 ms); worker 1 exits in the middle of the window."
        ),
    )

"""The worker experiments' checks (loadtest.declare.experiments): which worker takes a connection, and what a slow
request, a per-worker queue or a worker's exit does to the rest.  Each verdict picks its arms by what they declare —
their design's traits (an event loop, a queue per worker, threads, processes) and their options — never by a
design's name, and the setups and the source's figures are read from the experiment's declaration.  The helpers
are ``loadtest.report.rules.claims``'s."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pandas as pd

from loadtest.declare.experiments import ACCEPT_BALANCE, HEAD_OF_LINE, REUSEPORT_TAIL, ROLLING_RESTART, Experiment
from loadtest.declare.mix import parse
from loadtest.report.load import RunData, merged_histogram, traits_of
from loadtest.report.rules.claims import DIFFERS, FAILS, HOLDS, Arms, check, peak, say
from loadtest.report.rules.summary import jain

Traits = dict[str, bool]


def _latency(run: RunData, kinds: tuple[str, ...]) -> tuple[float, float, float]:
    hist = merged_histogram(run, kinds)
    if hist is None or not hist.get_total_count():
        return math.nan, math.nan, math.nan
    return hist.get_mean_value() / 1000, hist.get_max_value() / 1000, hist.get_stddev() / 1000


def _traits(arms: Arms, experiment: Experiment) -> dict[str, Traits]:
    """Each arm's design traits, as its server announced them, in the order the experiment declares its arms."""
    order = [arm.label for arm in experiment.arms]
    labels = sorted(arms, key=lambda label: order.index(label) if label in order else len(order))
    return {label: traits_of(arms[label][0]) for label in labels}


def _first(traits: dict[str, Traits], wanted: Callable[[Traits], bool]) -> str | None:
    """The first arm whose traits are these."""
    return next((label for label, t in traits.items() if wanted(t)), None)


def _workers(experiment: Experiment) -> int:
    return int(experiment.options["server-workers"])


@check(REUSEPORT_TAIL)
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
        {"design": f"{r.who}: {r.setup}", **{f"ECHO {k} ms": v for k, v in r.figures.items()}}
        for r in REUSEPORT_TAIL.reported
    ]
    by = {r["design"]: r for r in rows}
    shared_fig, own_fig = (r.figures for r in REUSEPORT_TAIL.reported)
    source = (
        f"{REUSEPORT_TAIL.reported[0].who}: stddev {shared_fig['stddev']} → {own_fig['stddev']}, "
        f"max {shared_fig['max']} → {own_fig['max']}"
    )
    verdicts = []
    for shared, own in _queue_pairs(_traits(arms, REUSEPORT_TAIL)):
        s, o = by[shared], by[own]
        worse = o["ECHO stddev ms"] >= 1.5 * s["ECHO stddev ms"] and o["ECHO max ms"] >= 1.5 * s["ECHO max ms"]
        evidence = (
            f"stddev {s['ECHO stddev ms']:.2f} → {o['ECHO stddev ms']:.2f} ms, max {s['ECHO max ms']:.1f} "
            f"→ {o['ECHO max ms']:.1f} ms ({source})"
        )
        verdicts.append(
            say(HOLDS if worse else FAILS, f"a queue per worker inflates the tail ({shared} against {own})", evidence)
        )
    setup = f"{_workers(REUSEPORT_TAIL)} workers, {REUSEPORT_TAIL.users_in_words()}, {REUSEPORT_TAIL.mix_in_words()}"
    return pd.DataFrame(rows), verdicts, f"{setup}: the fast requests' latency."


def _queue_pairs(traits: dict[str, Traits]) -> list[tuple[str, str]]:
    """Each arm with one shared accept queue, beside the arm with a queue per worker and the same loop."""
    return [
        (shared, own)
        for shared, t in traits.items()
        if t.get("one_accept_queue", True)
        for own, u in traits.items()
        if not u.get("one_accept_queue", True) and u.get("event_loop") == t.get("event_loop")
    ]


def _accept_row(label: str, run: RunData, row: dict[str, Any]) -> dict[str, Any]:
    """One arm's accepts per worker, their fairness and its wake-ups, from the server's stop line."""
    n = int((run.info.get("server") or {}).get("workers") or 0)
    seen = {w["worker"]: w for w in ((run.info.get("server_stopped") or {}).get("workers") or [])}
    accepts = [int(seen.get(i, {}).get("accepts", 0)) for i in range(1, n + 1)]
    wakeups = sum(int(seen.get(i, {}).get("wakeups", 0)) for i in range(1, n + 1))
    empty = sum(int(seen.get(i, {}).get("empty_wakeups", 0)) for i in range(1, n + 1))
    total = sum(accepts)
    return {
        "arm": label,
        "design": row["design"],
        "accepts per worker": " / ".join(map(str, accepts)),
        "fairness": round(jain(accepts), 3),
        "most ÷ fewest": round(max(accepts) / max(min(accepts), 1), 2) if accepts else math.nan,
        "wake-ups per accept": round(wakeups / total, 2) if total else math.nan,
        "empty wake-ups per accept": round(empty / total, 3) if total else math.nan,
    }


def _waiting(arms: Arms) -> dict[str, str]:
    """How each arm's workers wait for a connection, from what it declares: a blocking accept(), epoll on the
    shared listener (with EPOLLEXCLUSIVE or not), or a listener of their own (SO_REUSEPORT) — role → arm."""
    declared = {arm.label: arm for arm in ACCEPT_BALANCE.arms}
    roles: dict[str, str] = {}
    for label, t in _traits(arms, ACCEPT_BALANCE).items():
        if not t.get("one_accept_queue", True):
            role = "reuseport"
        elif not t.get("event_loop"):
            role = "accept"
        else:
            exclusive = label in declared and declared[label].options.get("epoll-exclusive")
            role = "exclusive" if exclusive else "epoll"
        roles.setdefault(role, label)
    return roles


@check(ACCEPT_BALANCE)
def accept_balance(arms: Arms) -> tuple[pd.DataFrame, list[str], str]:
    rows = [_accept_row(label, run, row) for label, (run, row) in arms.items()]
    by_arm = {r["arm"]: r for r in rows}
    by = {role: by_arm[label] for role, label in _waiting(arms).items()}
    verdicts = []
    if "accept" in by:
        a = by["accept"]
        verdicts.append(
            say(
                HOLDS if a["fairness"] >= 0.9 else DIFFERS,
                "a blocking accept() hands connections out in turn (FIFO)",
                f"Jain's index {a['fairness']}, {a['accepts per worker']}",
            )
        )
    if "epoll" in by:
        verdicts.append(_herd(by["epoll"], by.get("exclusive", {}).get("empty wake-ups per accept", 0.0)))
    if "exclusive" in by:
        x = by["exclusive"]
        fair = by.get("accept", {}).get("fairness", 1.0)
        verdicts.append(
            say(
                HOLDS if x["fairness"] < fair else DIFFERS,
                "EPOLLEXCLUSIVE wakes one worker, LIFO, so it does not balance",
                f"Jain's index {x['fairness']} against {fair} for accept(); {x['accepts per worker']}; "
                f"most ÷ fewest {x['most ÷ fewest']}",
            )
        )
    if "reuseport" in by:
        r = by["reuseport"]
        verdicts.append(
            say(
                HOLDS if r["empty wake-ups per accept"] <= 0.01 and r["fairness"] >= 0.8 else DIFFERS,
                "SO_REUSEPORT spreads connections by hash, one listener per worker, no herd",
                f"Jain's index {r['fairness']}, {r['accepts per worker']}, "
                f"{r['empty wake-ups per accept']} empty wake-ups per accept",
            )
        )
    table = pd.DataFrame(rows).rename(columns={"fairness": "Jain's index"})
    e = ACCEPT_BALANCE
    rate = f"{e.options['arrival-rate']} connections/s on a schedule ({e.options.get('op', 'ECHO')})"
    note = f"{_workers(e)} workers, {rate}, so workers wait between them; counts from each server's stop line."
    return table, verdicts, note


def _herd(e: dict[str, Any], exclusive: float) -> str:
    """epoll's thundering herd: empty wake-ups, against EPOLLEXCLUSIVE's and the source's imbalance."""
    herd = e["empty wake-ups per accept"]
    imbalance = ACCEPT_BALANCE.reported[0]
    return say(
        HOLDS if herd > 0 and herd >= 3 * exclusive else DIFFERS,
        "epoll on a shared listener wakes every waiting worker (the thundering herd)",
        f"{herd} empty wake-ups per accept "
        f"(woken for a connection another worker took) against {exclusive} with EPOLLEXCLUSIVE; "
        f"most ÷ fewest {e['most ÷ fewest']} ({imbalance.who}: up to {imbalance.figures['most ÷ fewest']}:1)",
    )


@check(HEAD_OF_LINE)
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
    by, traits = {r["design"]: r for r in rows}, _traits(arms, HEAD_OF_LINE)
    # one thread for every connection (an event loop in one process); a process per connection (a pool of
    # blocking workers); threads; event loops in several processes
    loops = [by[label] for label, t in traits.items() if t.get("event_loop") and not t.get("uses_processes")]
    own = _first(traits, lambda t: bool(t.get("pooled") and t.get("uses_processes") and not t.get("event_loop")))
    threaded = _first(traits, lambda t: bool(t.get("uses_threads")))
    forked_loops = _first(traits, lambda t: bool(t.get("event_loop") and t.get("uses_processes")))
    verdicts = _one_loop(loops, by[own] if own else None)
    if threaded and loops:
        t = by[threaded]["ECHO p99 ms"]
        verdicts.append(
            say(
                HOLDS if t < min(r["ECHO p99 ms"] for r in loops) else DIFFERS,
                "threads are in between: the GIL is handed over every 5 ms",
                f"{threaded} ECHO p99 {t:.2f} ms",
            )
        )
    if forked_loops:
        verdicts.append(_forked_loops(by[forked_loops]))
    e = HEAD_OF_LINE
    return (
        pd.DataFrame(rows),
        verdicts,
        f"{e.users_in_words()}, {e.mix_in_words()}; {_workers(e)} workers for the pools.",
    )


def _work_ms() -> float:
    """How long head-of-line's slow request computes (ms), as its mix declares it."""
    return max(e.arg for e in parse(str(HEAD_OF_LINE.options["mix"])) if e.op == "WORK") / 1000


def _one_loop(loops: list[dict[str, Any]], own: dict[str, Any] | None) -> list[str]:
    """One loop stalls every connection for the slow request; a worker of its own per connection does not."""
    verdicts = []
    if loops:
        verdicts.append(
            say(
                HOLDS if all(r["ECHO p99 ms"] >= 0.8 * _work_ms() for r in loops) else DIFFERS,
                f"in one loop a {_work_ms():g} ms computation stops every connection",
                ", ".join(f"{r['design']} ECHO p99 {r['ECHO p99 ms']:.2f} ms" for r in loops),
            )
        )
    if loops and own:
        ratio = min(r["ECHO p99 ms"] for r in loops) / max(own["ECHO p99 ms"], 0.001)
        unblocked = HEAD_OF_LINE.reported[0]
        verdicts.append(
            say(
                HOLDS if ratio >= 2 else DIFFERS,
                "a worker of its own per connection keeps the fast requests fast",
                f"{own['design']} ECHO p99 {own['ECHO p99 ms']:.3f} ms: one loop's is ×{ratio:,.0f} of it "
                f"({unblocked.who}: {unblocked.figures['p99 better ×']}× better p99 once blocking work left the loop)",
            )
        )
    return verdicts


def _forked_loops(p: dict[str, Any]) -> str:
    spread = p["connections per worker"].count("/") >= 1
    return say(
        HOLDS if spread == (p["ECHO p99 ms"] < 2) else DIFFERS,
        "pre-forked event loops help only when the connections land on different workers",
        f"connections per worker "
        f"{p['connections per worker']}, ECHO p99 {p['ECHO p99 ms']:.2f} ms"
        + ("" if spread else " — both on one worker: a shared listener does not balance (accept-balance)"),
    )


def _failures(n: int) -> str:
    return f"{n:,} failure" + ("" if n == 1 else "s")


def _migrate(label: str) -> str:
    """The tcp_migrate_req an arm of rolling-restart sets in its namespace ("0", "1"; "" when none)."""
    declared = {arm.label: arm for arm in ROLLING_RESTART.arms}
    sysctls = str(declared[label].options.get("sysctl", "")) if label in declared else ""
    return dict(s.split("=", 1) for s in sysctls.split(",") if "=" in s).get("net.ipv4.tcp_migrate_req", "")


@check(ROLLING_RESTART)
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
    by = {_migrate(r["arm"]): r for r in rows}
    verdicts = []
    off, on = by.get("0"), by.get("1")
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
    e = ROLLING_RESTART
    o = e.options
    setup = f"{e.design}, {_workers(e)} workers, backlog {o['backlog']}, {e.users_in_words()}"
    setup += f" ({o['op']} {o['sleep-ms']} ms)"
    return pd.DataFrame(rows), verdicts, f"{setup}; worker 1 exits in the middle of the window."
